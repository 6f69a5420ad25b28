-- 0020: no credentials in stored attachment URLs.
--
-- POST /attachment (the URL form) accepted an attachment_url with credentials
-- (https://user:password@host/...) and stored it whole in lead_attachments.source_url, which
-- fl_report reads. From this release the API refuses such a URL (docs/leads.md); the worker
-- always refused to fetch one (its SSRF guard fails a URL that carries credentials), so every
-- such row is failed and the credentials served nothing. They are taken out of the URL here.
UPDATE lead_attachments
   SET source_url = regexp_replace(source_url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1')
 WHERE source_url ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@';
