-- raikoo-web: browser sessions and the throttle of failed sign-ins. A session id lives only in the
-- browser's cookie; the table keeps its BLAKE2b hash (32 bytes), so that reading the table signs nobody in.
-- No CHECK constraints: no command writes these tables (raikoo-web alone does, with values it makes), and
-- tests/test_poison.py holds every CHECK of the schema to a command the parser refuses.
CREATE TABLE web_sessions (
    id_hash    bytea PRIMARY KEY,
    -- NULL: a visitor not signed in (the session only carries the forms' CSRF token and the next message).
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- The message of the last action, shown once by the next page (post/redirect/get).
    flash      text
);
CREATE INDEX web_sessions_expiry_idx ON web_sessions (expires_at);
CREATE INDEX web_sessions_user_idx ON web_sessions (user_id);

-- Failed sign-ins per address (scope 'address', the address in lower case) and per client (scope
-- 'client', its IP address) in the current window.
CREATE TABLE web_signin_failures (
    scope    text NOT NULL, -- 'address' or 'client'
    subject  text NOT NULL,
    failures integer NOT NULL,
    first_at timestamptz NOT NULL,
    PRIMARY KEY (scope, subject)
);
