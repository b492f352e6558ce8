-- Only an activated owner keeps an organization running: a pending owner (invited with owner capabilities,
-- account never activated) may never activate, so it does not count towards the last-owner rule. Removing
-- or demoting an activated owner fails with SQLSTATE RK001 when no other activated owner remains; a pending
-- owner may always be removed or demoted. (Replaces 003's function; the trigger stays as it is.)
CREATE OR REPLACE FUNCTION org_keeps_an_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.is_owner
       AND EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id AND enabled)
       AND EXISTS (SELECT 1 FROM organizations WHERE id = OLD.org_id)
       AND NOT EXISTS (SELECT 1 FROM org_members m JOIN users u ON u.id = m.user_id
                        WHERE m.org_id = OLD.org_id AND m.is_owner AND u.enabled) THEN
        RAISE EXCEPTION 'organization % would be left without an activated owner', OLD.org_id USING ERRCODE = 'RK001';
    END IF;
    RETURN NULL;
END $$;
