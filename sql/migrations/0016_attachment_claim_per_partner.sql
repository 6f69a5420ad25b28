-- 0016: attachment fetches are claimed per partner, by default one in flight each.
--
-- attachment_claim took the oldest due attachments, whoever sent them. The worker fetches at
-- most 4 at a time, each for up to 30 s: one partner sending URLs that hang (1 a second is
-- within its rate limit) kept all 4 slots busy, and every other partner's attachments waited
-- behind its backlog. The claim now takes, for each partner with due fetches, at most
-- (p_per_partner - its fetches in flight) of its oldest due ones, then those in turn
-- (sql/functions/70_leads.sql), as webhook_claim does per subscription (0014).
--
-- The partner is the lead's credential, copied onto its attachments (a lead never changes
-- partner) so that the due fetches can be indexed by partner. It is scheduling data, not a
-- second owner: RLS and the API's reads still go by tenant and lead.
ALTER TABLE lead_attachments ADD COLUMN credential_id uuid;
UPDATE lead_attachments a SET credential_id = l.credential_id FROM leads l WHERE l.id = a.lead_id;
ALTER TABLE lead_attachments ALTER COLUMN credential_id SET NOT NULL;

CREATE INDEX lead_attachments_partner_due ON lead_attachments (credential_id, next_attempt_at)
    WHERE state IN ('pending','fetching');
CREATE INDEX lead_attachments_in_flight ON lead_attachments (credential_id)
    WHERE state = 'fetching';
DROP INDEX lead_attachments_due;
DROP FUNCTION IF EXISTS attachment_claim(int, int);
GRANT SELECT (credential_id) ON lead_attachments TO fl_report;
