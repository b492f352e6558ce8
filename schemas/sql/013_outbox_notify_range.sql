-- The outbox's notification names the ids its statement inserted, as "first last" (decimal, one space),
-- so that the relay reads those ids by the primary key instead of walking the outbox's index from its
-- start. That walk passed, on every read, the rows in flight, the rows deleted since the last vacuum
-- (their index entries stay until no transaction can see them), and the rows a command worker's batch had
-- inserted and not yet committed (each a heap visit and a check that its transaction is still running):
-- 12 ms a read under load, the largest cost in PostgreSQL of the whole pipeline (docs/BENCHMARKS.md).
-- A statement that inserted nothing notifies nothing. A relay of before this migration reads as it did
-- (it ignores the payload); a relay of after it reads everything on a notification it cannot parse.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text;
BEGIN
    SELECT min(id)::text || ' ' || max(id)::text INTO ids FROM outbox_inserted;
    IF ids IS NOT NULL THEN
        PERFORM pg_notify('raikoo_outbox', ids);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox REFERENCING NEW TABLE AS outbox_inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
