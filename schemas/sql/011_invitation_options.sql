-- Options an invitation carries (issue: expiry per invitation, role at invitation, e-mail language,
-- reminders) and each organization's invitation policy. Columns only: the rules live in the command worker
-- (lib/svc/domain_*.c) and the expiry worker, and docs/ say what they do.

-- The role the invitation grants besides owner: user manager (org_members.can_manage_users).
ALTER TABLE invitations ADD COLUMN grant_manage_users boolean NOT NULL DEFAULT false;
-- The e-mail's language (a tag such as 'de' or 'de-AT'), resolved when the invitation is created or
-- resent: the command's, else the organization's default, else the configuration's. NULL on invitations
-- made before this migration (the mailer then uses its configured language).
ALTER TABLE invitations ADD COLUMN locale text
    CHECK (locale IS NULL OR locale ~ '^[a-z]{2,3}(-([A-Z]{2}|[0-9]{3}))?$');
-- When the expiry worker queued the one reminder e-mail for the current code (reset when the invitation
-- is resent, since a resend gives a new code and a new expiry).
ALTER TABLE invitations ADD COLUMN reminder_sent_at timestamptz;
-- The expiry worker's reminder scan: pending invitations not yet reminded, by expiry.
CREATE INDEX invitations_reminder_due ON invitations (expires_at)
    WHERE status = 'pending' AND reminder_sent_at IS NULL;

-- An organization's invitation policy, set by owners and admins (SetOrganizationPolicy). No row, or a NULL
-- column, means "no rule": any domain, no seat limit, the configured expiry, language and link.
CREATE TABLE organization_policies (
    org_id              uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    -- Lower-case domains invitations may go to (exact match of the address's domain); NULL or empty: any.
    allowed_domains     text[] CHECK (allowed_domains IS NULL OR cardinality(allowed_domains) <= 100),
    -- Members plus pending invitations may not exceed it.
    seat_limit          integer CHECK (seat_limit IS NULL OR seat_limit BETWEEN 1 AND 1000000),
    default_expiry_days integer CHECK (default_expiry_days IS NULL OR default_expiry_days BETWEEN 1 AND 30),
    default_locale      text CHECK (default_locale IS NULL OR default_locale ~ '^[a-z]{2,3}(-([A-Z]{2}|[0-9]{3}))?$'),
    -- The address the e-mail's link starts with (mail.app.url when NULL).
    app_url             text CHECK (app_url IS NULL OR (app_url ~ '^https?://[^/]' AND length(app_url) <= 512)),
    updated_by          uuid NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
