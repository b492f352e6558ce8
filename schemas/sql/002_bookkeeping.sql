-- Bookkeeping: processed commands (idempotency), the transactional outbox, mail deliveries.

CREATE TABLE processed_commands (
    command_id   uuid PRIMARY KEY,
    command_type text NOT NULL,
    status       text NOT NULL CHECK (status IN ('accepted', 'rejected')),
    -- The result CloudEvent exactly as first published, sent again for a redelivered command.
    result       text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Rows waiting for the relay: written in the transaction that made the change, deleted once Kafka has
-- acknowledged them.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('raikoo_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- One row per mail job the mailer has seen: a redelivered job is not sent twice, and a job that failed
-- for a passing reason waits here (with its sealed payload) for its next attempt.
CREATE TABLE mail_deliveries (
    job_id          uuid PRIMARY KEY,
    invitation_id   uuid NOT NULL,
    status          text NOT NULL CHECK (status IN ('sending', 'retrying', 'sent', 'failed', 'superseded')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    job             text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_deliveries_due_idx ON mail_deliveries (next_attempt_at) WHERE status = 'retrying';
