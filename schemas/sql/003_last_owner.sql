-- An organization always keeps at least one owner: whatever removes or demotes the last one fails with
-- SQLSTATE RK001, which the command worker reports as `last_owner`. Its own checks come first, with a
-- better message; this holds even when two commands race.
CREATE FUNCTION org_keeps_an_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.is_owner
       AND EXISTS (SELECT 1 FROM organizations WHERE id = OLD.org_id)
       AND NOT EXISTS (SELECT 1 FROM org_members WHERE org_id = OLD.org_id AND is_owner) THEN
        RAISE EXCEPTION 'organization % would be left without an owner', OLD.org_id USING ERRCODE = 'RK001';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER org_keeps_an_owner AFTER UPDATE OF is_owner OR DELETE ON org_members
    FOR EACH ROW EXECUTE FUNCTION org_keeps_an_owner();
