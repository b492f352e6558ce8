-- The audit trail: every event of topic.events, once (by its CloudEvents id), in an append-only table with a
-- hash chain per organization. raikoo-audit-worker writes it; `raikoo audit` reads it, `raikoo audit verify`
-- checks it (docs/AUDIT.md).
--
-- Chain: the rows of one org_id (events without an organization: the nil uuid) numbered seq = 1, 2, ...;
-- hash = SHA-256(previous row's hash || event), the first row's previous hash 32 zero bytes, event the exact
-- bytes stored in the column `event` (the CloudEvent as compact JSON, keys sorted, ASCII only).
CREATE TABLE audit_log (
    org_id         uuid NOT NULL,
    seq            bigint NOT NULL CHECK (seq >= 1),
    event_id       uuid NOT NULL,
    event_type     text NOT NULL,
    event_time     timestamptz,
    actor_id       uuid,
    correlation_id uuid,
    -- whom the event is about (an address, else a user, invitation or organization), for reading
    subject        text,
    -- 'ok', or the result code / failure of a CommandRejected or InvitationEmailFailed event
    result         text NOT NULL,
    event          text NOT NULL,
    hash           bytea NOT NULL CHECK (length(hash) = 32),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, seq),
    CONSTRAINT audit_log_event_id_key UNIQUE (event_id)
);
CREATE INDEX audit_log_org_time_idx ON audit_log (org_id, event_time);

-- The end of each chain. Appending locks this row (FOR UPDATE), so two audit workers never give two rows
-- the same place in a chain; verify compares it with the last row, so a deleted or added last row shows.
CREATE TABLE audit_heads (
    org_id uuid PRIMARY KEY,
    seq    bigint NOT NULL CHECK (seq >= 0),
    hash   bytea NOT NULL CHECK (length(hash) = 32)
);

-- Append-only: UPDATE, DELETE and TRUNCATE of audit_log are refused; a head only moves forward.
CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'RK010';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();

CREATE FUNCTION audit_heads_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.org_id <> OLD.org_id OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'audit_heads only move forward: % refused', TG_OP USING ERRCODE = 'RK010';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_heads_forward BEFORE UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_heads_forward();

-- The event's time as the worker stores it: NULL when the text is no time PostgreSQL takes (an event is
-- recorded whatever its time says).
CREATE FUNCTION audit_time(t text) RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN t::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
