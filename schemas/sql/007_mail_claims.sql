-- The mailer that holds a `sending` job (its instance id; its database sessions carry the application_name
-- "raikoo-mailer <id>"), so that a job whose mailer is gone (killed: its sessions ended) is taken over at
-- once instead of at the end of its lease. `held`: a `retrying` job that waits for the SMTP server to answer
-- again (server-wide outage, the mailer's circuit breaker), not for a backoff of its own; all of them are
-- released together when the server is back. `accepted_at`: when the SMTP server accepted the message, noted
-- during the session, so that a job taken over from a mailer killed mid-session is recorded sent, not sent
-- again.
ALTER TABLE mail_deliveries ADD COLUMN claimed_by text, ADD COLUMN held boolean NOT NULL DEFAULT false,
    ADD COLUMN accepted_at timestamptz;
CREATE INDEX mail_deliveries_claimed_idx ON mail_deliveries (claimed_by) WHERE status = 'sending';
CREATE INDEX mail_deliveries_held_idx ON mail_deliveries (job_id) WHERE held;
