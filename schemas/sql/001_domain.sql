-- The domain: users, organizations, memberships, invitations. The rules that must hold under concurrency
-- live here as constraints, not only in C.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CHECK (email <> '' AND email = btrim(email) AND length(email) <= 254),
    username      text NOT NULL,
    name          text NOT NULL DEFAULT '',
    password_hash text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    enabled       boolean NOT NULL DEFAULT false,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    -- An enabled account can log in, so it has a password.
    CHECK (NOT enabled OR password_hash IS NOT NULL OR is_admin)
);
-- One account per address, compared case-insensitively (the C side also normalises the domain).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE org_members (
    org_id           uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_owner         boolean NOT NULL DEFAULT false,
    can_manage_users boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
-- (user_id, org_id), not (user_id): a lookup by both must not wade through a busy user's memberships.
CREATE INDEX org_members_user_idx ON org_members (user_id, org_id);

CREATE TABLE invitations (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (email <> ''),
    -- The invitee's account: the existing one, or the disabled one created for a new user (gone, and set
    -- to null, when a removed `new` invitation takes its never-activated account with it).
    user_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    kind            text NOT NULL CHECK (kind IN ('existing', 'new')),
    grant_owner     boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'expired', 'removed')),
    code_hash       bytea NOT NULL CHECK (length(code_hash) = 32),
    failed_attempts integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    -- Not a foreign key: only never-activated accounts are ever deleted, and they cannot invite; a key
    -- would take a KEY SHARE lock on the inviter's row for every invitation, and concurrent workers
    -- inviting for one admin would then turn those locks into MultiXacts.
    invited_by      uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    decided_at      timestamptz,
    resent_at       timestamptz,
    resend_count    integer NOT NULL DEFAULT 0,
    -- The latest mail job for this invitation and how its delivery went.
    mail_job_id     uuid,
    mail_state      text NOT NULL DEFAULT 'queued' CHECK (mail_state IN ('queued', 'sent', 'retrying', 'failed')),
    mail_error      text,
    mail_updated_at timestamptz,
    CHECK ((status = 'pending') = (decided_at IS NULL) OR status = 'expired'),
    CHECK (expires_at > created_at)
);
-- At most one pending invitation per organization and address.
CREATE UNIQUE INDEX invitations_one_pending ON invitations (org_id, lower(email)) WHERE status = 'pending';
CREATE INDEX invitations_org_idx ON invitations (org_id, created_at);
CREATE INDEX invitations_user_idx ON invitations (user_id);
CREATE INDEX invitations_expiry_idx ON invitations (expires_at) WHERE status = 'pending';
