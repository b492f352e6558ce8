-- The reminder e-mail the expiry worker queued for an invitation's current code (with reminder_sent_at,
-- 011): the mailer sends a reminder job only while it is this one and reminder_sent_at is set, so a
-- reminder queued before a resend (which clears reminder_sent_at) is not sent.
ALTER TABLE invitations ADD COLUMN reminder_job_id uuid;
