-- Listing with keyset paging (raikoo invitations / members --sort --limit --after): one index per sort
-- order, each ending in the row's id so that (key, id) is unique and a page starts exactly after the cursor.
-- An organization's page is then an index range scan that stops after --limit rows, however many
-- invitations it has (docs/AUDIT.md, "Listing", shows the plan and a figure for 100,000 invitations).
CREATE INDEX invitations_org_created_page ON invitations (org_id, created_at, id);
CREATE INDEX invitations_org_expires_page ON invitations (org_id, expires_at, id);
CREATE INDEX invitations_org_email_page ON invitations (org_id, lower(email), id);
CREATE INDEX org_members_org_created_page ON org_members (org_id, created_at, user_id);
-- (org_id, created_at) is a prefix of invitations_org_created_page: the older index only costs writes.
DROP INDEX invitations_org_idx;
