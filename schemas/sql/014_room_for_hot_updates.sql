-- Room on every page for the updates that change no indexed column, so that PostgreSQL can keep the new
-- row version on the same page (a HOT update: no new entry in any index, the old version pruned in place).
-- An invitation gets its mail state from the mailer (mail_state, mail_error, mail_updated_at: not indexed)
-- once or twice after it is made; a delivery gets its accepted_at note in the middle of the SMTP session.
-- With full pages (the default fillfactor, 100) a third of the invitations' mail-state updates and a quarter
-- of the deliveries' notes found no room and wrote a new entry into every index of the table: eight for an
-- invitation. New pages only: pages written before this migration fill up as they did.
ALTER TABLE invitations SET (fillfactor = 90);
ALTER TABLE mail_deliveries SET (fillfactor = 80);
