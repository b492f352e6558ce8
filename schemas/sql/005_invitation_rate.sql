-- New invitations per organization and minute, for the hourly rate limit: summing at most sixty small
-- rows costs the same however busy the organization is, where counting its invitations of the last hour
-- visited every one of them (and their heap pages, not yet all-visible).
CREATE TABLE invitation_rate (
    org_id  uuid NOT NULL, -- no foreign key: a counter, written with every invitation, locks nothing else
    minute  timestamptz NOT NULL,
    created integer NOT NULL CHECK (created > 0),
    PRIMARY KEY (org_id, minute)
);
