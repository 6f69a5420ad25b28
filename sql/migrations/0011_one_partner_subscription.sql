-- 0011: one webhook subscription per partner credential and family.
--
-- leads_webhook_register and leads_trigger_webhook looked for the partner's subscription and
-- inserted one when there was none. Two first calls at the same time (POST /webhook twice,
-- or with POST /trigger_webhook) both found none and both inserted: every stage event then
-- went out twice, and a later POST /webhook replaced the URL of one of the two only. A unique
-- key makes the second insert wait for the first and take its row (ON CONFLICT, in
-- sql/functions/70_leads.sql). Subscriptions made with `./factorline webhook add` have no
-- credential and any number of them stays allowed.
--
-- Duplicates already made keep their deliveries (webhook_deliveries refers to them): all but
-- the partner's most recently updated one are switched off and detached from the credential.
UPDATE webhook_subscriptions s
   SET active = false, credential_id = NULL, updated_at = now()
  FROM (SELECT id, row_number() OVER (PARTITION BY credential_id, family
                                      ORDER BY active DESC, updated_at DESC, created_at DESC, id) AS n
          FROM webhook_subscriptions WHERE credential_id IS NOT NULL) d
 WHERE s.id = d.id AND d.n > 1;

CREATE UNIQUE INDEX webhook_subscriptions_partner ON webhook_subscriptions (credential_id, family)
    WHERE credential_id IS NOT NULL;
