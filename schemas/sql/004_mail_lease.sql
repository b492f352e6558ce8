-- The mailer's scan for due work: retries whose time has come, and sends whose lease ran out (a mailer
-- died mid-send). One partial index serves both, matching the scan's `status IN (...)` exactly.
CREATE INDEX mail_deliveries_lease_idx ON mail_deliveries (next_attempt_at) WHERE status IN ('retrying', 'sending');
