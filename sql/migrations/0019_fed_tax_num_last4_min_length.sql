-- 0019: FedTaxNum's last four characters are kept in clear only for a value of at least eight.
--
-- create-client keeps the last four characters of a FedTaxNum in clear
-- (clients.fed_tax_num_last4, which fl_report reads, and FedTaxNumLast4 in the client.upserted
-- event) next to the sealed value. Until now it did so whatever the length: a FedTaxNum of four
-- characters or fewer was in clear whole, and one of five to seven nearly so. From this
-- release the worker keeps them only when the value has at least eight characters (at least
-- as many hidden as shown; docs/posting.md); this migration applies the same rule to the rows
-- stored before.
--
-- The database cannot open the sealed value (the key is outside it), but AES-GCM keeps the
-- length: the sealed text is 'v1:' <key id, 8> ':' base64(12-byte nonce, the value's bytes,
-- 16-byte tag), so the value has (base64 length / 4 * 3 - padding) - 28 bytes. Bytes, not
-- characters: a value of eight bytes or more with multi-byte characters keeps its last four
-- here if it has more than four characters (the worker counts characters from now on). A
-- sealed value in any other form (none is written by Factorline) loses its last four too.

CREATE TEMPORARY TABLE fl_0019_cleared ON COMMIT DROP AS
SELECT c.tenant_id, c.client_key, c.fed_tax_num_last4 AS last4
  FROM clients c
 WHERE c.fed_tax_num_last4 IS NOT NULL
   AND (c.fed_tax_num_enc IS NULL
        OR c.fed_tax_num_enc !~ '^v1:[^:]{8}:[A-Za-z0-9+/]*={0,2}$'
        OR (length(c.fed_tax_num_enc) - 12) % 4 <> 0
        OR (length(c.fed_tax_num_enc) - 12) / 4 * 3
           - (length(c.fed_tax_num_enc) - length(rtrim(c.fed_tax_num_enc, '='))) - 28 < 8);

UPDATE clients c
   SET fed_tax_num_last4 = NULL
  FROM fl_0019_cleared x
 WHERE c.tenant_id = x.tenant_id AND c.client_key = x.client_key;

-- The client.upserted events: a FedTaxNumLast4 of fewer than four characters was the whole
-- value; one of four is cleared when it is the one just cleared from the same client (an event
-- of a client whose FedTaxNum changed since cannot be judged from what is stored, and keeps
-- its value; docs/operations.md gives the statement that clears them all).
UPDATE events e
   SET payload = jsonb_set(e.payload, '{FedTaxNumLast4}', 'null'::jsonb)
 WHERE e.family = 'posting' AND e.type = 'client.upserted'
   AND jsonb_typeof(e.payload -> 'FedTaxNumLast4') = 'string'
   AND (length(e.payload ->> 'FedTaxNumLast4') < 4
        OR EXISTS (SELECT 1 FROM fl_0019_cleared x
                    WHERE x.tenant_id = e.tenant_id AND x.client_key = e.payload ->> 'ClientKey'
                      AND x.last4 = e.payload ->> 'FedTaxNumLast4'));
