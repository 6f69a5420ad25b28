-- leads: the Forward Financing Partner API's stored functions, the deal stage
-- machine, the rate limiter and DBA views.
--
-- API functions take (tenant, credential, doc): the credential is the partner
-- the core authenticated; a partner reaches only its own leads (FL404 otherwise).

-- Token bucket: takes one token when one is available.  rate tokens/s, burst max.
CREATE OR REPLACE FUNCTION fl_rate_take(p_credential uuid, p_rate double precision, p_burst int)
RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
    INSERT INTO rate_buckets AS b (credential_id, tokens, updated_at)
    VALUES (p_credential, p_burst - 1, clock_timestamp())
    ON CONFLICT (credential_id) DO UPDATE
       SET tokens = least(p_burst::double precision,
                          b.tokens + extract(epoch FROM clock_timestamp() - b.updated_at) * p_rate) - 1,
           updated_at = clock_timestamp()
     WHERE least(p_burst::double precision,
                 b.tokens + extract(epoch FROM clock_timestamp() - b.updated_at) * p_rate) >= 1
    RETURNING true
$$;
REVOKE ALL ON FUNCTION fl_rate_take(uuid, double precision, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_rate_take(uuid, double precision, int) TO fl_api;

-- Owner: set a credential's rate (NULL: unlimited) and burst.
CREATE OR REPLACE FUNCTION fl_key_limit(p_family text, p_public_id text, p_rate numeric, p_burst int)
RETURNS boolean
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
BEGIN
    -- NaN passes "> 0" (it sorts above every number) and would lift the limit; under a
    -- millionth the workers' six decimals read 0, a bucket that never fills again
    IF p_rate IS NOT NULL AND NOT coalesce(p_rate BETWEEN 0.000001 AND 1000000, false) THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid rate',
            DETAIL = 'A rate is 0.000001 to 1000000 requests a second (or --unlimited).';
    END IF;
    IF p_burst IS NOT NULL AND NOT p_burst BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid burst',
            DETAIL = 'A burst is 1 to 1000000 requests.';
    END IF;
    UPDATE credentials SET rate_per_sec = p_rate, burst = coalesce(p_burst, burst)
     WHERE family = p_family AND public_id = p_public_id AND revoked_at IS NULL
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RETURN false;
    END IF;
    DELETE FROM rate_buckets WHERE credential_id = v_id;   -- the new limit starts with a full bucket
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION fl_key_limit(text, text, numeric, int) FROM PUBLIC;

-- The partner's lead by its public id, in the current tenant; FL404 when it is
-- missing or another partner's.
CREATE OR REPLACE FUNCTION leads_find(p_credential uuid, p_public_id text) RETURNS leads
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    l leads;
BEGIN
    SELECT * INTO l FROM leads WHERE public_id = p_public_id AND credential_id = p_credential;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Lead not found';
    END IF;
    RETURN l;
END
$$;
GRANT EXECUTE ON FUNCTION leads_find(uuid, text) TO fl_api;

-- POST /lead.  p_doc: the validated "lead" object, PII already sealed by the
-- C side (ssn, fein, born_on), plus "public_id".
CREATE OR REPLACE FUNCTION leads_create(p_tenant uuid, p_credential uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_lead uuid;
    a jsonb := p_doc->'account_attributes';
    aa jsonb := p_doc->'account_attributes'->'current_address_attributes';
    ap jsonb := p_doc->'application_attributes';
    ln jsonb := p_doc->'loan_attributes';
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    -- One statement for the lead, its contacts and its first history row: each statement of a
    -- PL/pgSQL function costs its own executor start and snapshot. The account, the application
    -- and the prior loan are the lead's columns, a contact's address its contact's (migration
    -- 0022). The children read the lead's id from l, so a duplicate reference_id (no row in l)
    -- writes nothing; the foreign keys are checked at the end of the statement.
    WITH l AS (
        INSERT INTO leads (tenant_id, credential_id, public_id, reference_id,
                           entity_type, business_name, started_on, legal_name, business_phone, business_email,
                           website, fein_enc, fein_last4, monthly_revenue, industry_name,
                           business_street1, business_street2, business_city, business_state, business_zip,
                           has_current_loan, applicant_is_owner, loan_use, capital_needed,
                           owner_1_percent_ownership, owner_2_percent_ownership, notes,
                           prior_loan_company, prior_loan_daily_payment, prior_loan_balance)
        VALUES (p_tenant, p_credential, p_doc->>'public_id', ap->>'reference_id',
                a->>'entity_type', a->>'name', (a->>'started_on')::date, a->>'legal_name', a->>'phone',
                a->>'email', a->>'website', a->>'fein', a->>'fein_last4', a->>'monthly_revenue',
                a->>'industry_name',
                aa->>'street1', aa->>'street2', aa->>'city', aa->>'state', aa->>'zip',
                (ap->>'has_current_loan')::boolean, (ap->>'applicant_is_owner')::boolean, ap->>'loan_use',
                (ap->>'capital_needed')::numeric, (ap->>'owner_1_percent_ownership')::numeric,
                (ap->>'owner_2_percent_ownership')::numeric, ap->>'notes',
                ln->>'company_name', (ln->>'daily_payment_amount')::numeric, (ln->>'balance')::numeric)
        ON CONFLICT (tenant_id, credential_id, reference_id) DO NOTHING
        RETURNING id
    ), c AS (
        INSERT INTO lead_contacts (tenant_id, lead_id, position, first_name, last_name, email, title,
                                   born_on_enc, home_phone, cell_phone, ssn_enc, ssn_last4, ownership_date,
                                   street1, street2, city, state, zip)
        SELECT p_tenant, l.id, e.n, e.x->>'first_name', e.x->>'last_name', e.x->>'email', e.x->>'title',
               e.x->>'born_on', e.x->>'home_phone', e.x->>'cell_phone', e.x->>'ssn', e.x->>'ssn_last4',
               (e.x->>'ownership_date')::date,
               e.x->'current_address_attributes'->>'street1', e.x->'current_address_attributes'->>'street2',
               e.x->'current_address_attributes'->>'city', e.x->'current_address_attributes'->>'state',
               e.x->'current_address_attributes'->>'zip'
          FROM l, jsonb_array_elements(p_doc->'contacts_attributes') WITH ORDINALITY AS e(x, n)
    ), h AS (
        INSERT INTO lead_stage_history (tenant_id, lead_id, from_stage, to_stage, changed_by)
        SELECT p_tenant, l.id, NULL, 'Working', 'partner' FROM l
    )
    SELECT id INTO v_lead FROM l;
    IF v_lead IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL422', MESSAGE = 'Reference ID is not unique.';
    END IF;
    RETURN jsonb_build_object('id', p_doc->>'public_id');
END
$$;
GRANT EXECUTE ON FUNCTION leads_create(uuid, uuid, jsonb) TO fl_api;

-- An amount as the partner API shows it: 10000 rather than 10000.00.
CREATE OR REPLACE FUNCTION leads_number(p numeric) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE WHEN p IS NULL THEN 'null'::jsonb
                  WHEN p = trunc(p) THEN to_jsonb(trunc(p)::bigint)
                  ELSE to_jsonb(p) END $$;
GRANT EXECUTE ON FUNCTION leads_number(numeric) TO fl_api, fl_report;

-- GET /deal_status/{lead_id}: the fields the stage has, exactly as documented, in the document's
-- order: built as compact text (fl_jstr, as post-payments' echo) and returned as json, which
-- keeps it as built (jsonb would sort the keys, shortest first). Until the twentieth session it returned jsonb.
DO $$
BEGIN
    IF to_regprocedure('leads_deal_status(uuid,uuid,jsonb)') IS NOT NULL
       AND (SELECT prorettype FROM pg_proc WHERE oid = to_regprocedure('leads_deal_status(uuid,uuid,jsonb)'))
           <> 'json'::regtype THEN
        DROP FUNCTION leads_deal_status(uuid, uuid, jsonb);
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION leads_deal_status(p_tenant uuid, p_credential uuid, p_doc jsonb) RETURNS json
    LANGUAGE plpgsql
AS $$
DECLARE
    l leads;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    l := leads_find(p_credential, p_doc->>'lead_id');
    RETURN (CASE l.stage
        WHEN 'Approval Sent' THEN format(
            '{"stage":%s,"required_stipulations":%s,"max_approval":%s,"max_payments":%s,"offer_link":%s}',
            fl_jstr(l.stage),
            coalesce((SELECT '[' || string_agg('{"type":' || fl_jstr(s.type) || '}', ',' ORDER BY s.id) || ']'
                        FROM lead_stipulations s WHERE s.lead_id = l.id), '[]'),
            leads_number(l.max_approval), coalesce(l.max_payments::text, 'null'), fl_jstr(l.offer_link))
        WHEN 'Declined' THEN format('{"stage":%s,"decline_drivers":%s,"decline_notes":%s}',
            fl_jstr(l.stage), fl_jstr(array_to_string(l.decline_drivers, ';')), fl_jstr(l.decline_notes))
        WHEN 'File Missing Info' THEN format('{"stage":%s,"missing_info":%s}', fl_jstr(l.stage), fl_jstr(l.missing_info))
        ELSE format('{"stage":%s}', fl_jstr(l.stage))
    END)::json;
END
$$;
GRANT EXECUTE ON FUNCTION leads_deal_status(uuid, uuid, jsonb) TO fl_api;

-- POST /attachment with the file in the body.
CREATE OR REPLACE FUNCTION leads_attachment_add(p_tenant uuid, p_credential uuid, p_lead text,
                                                p_filename text, p_content bytea, p_sha256 text,
                                                p_content_type text) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    l leads;
    v_id uuid;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    l := leads_find(p_credential, p_lead);
    INSERT INTO lead_attachments (tenant_id, lead_id, credential_id, filename, state, size, sha256,
                                  content_type, content, received_at)
    VALUES (p_tenant, l.id, l.credential_id, p_filename, 'received', octet_length(p_content), p_sha256,
            p_content_type, p_content, now())
    RETURNING id INTO v_id;
    RETURN jsonb_build_object('attachment_id', v_id);
END
$$;
GRANT EXECUTE ON FUNCTION leads_attachment_add(uuid, uuid, text, text, bytea, text, text) TO fl_api;

-- POST /attachment with {attachment_url, filename, lead_id}: the worker fetches it.
CREATE OR REPLACE FUNCTION leads_attachment_url(p_tenant uuid, p_credential uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    l leads;
    v_id uuid;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    l := leads_find(p_credential, p_doc->>'lead_id');
    INSERT INTO lead_attachments (tenant_id, lead_id, credential_id, filename, source_url, state)
    VALUES (p_tenant, l.id, l.credential_id, p_doc->>'filename', p_doc->>'attachment_url', 'pending')
    RETURNING id INTO v_id;
    PERFORM pg_notify('fl_webhooks', '');     -- the same worker fetches attachments
    RETURN jsonb_build_object('attachment_id', v_id);
END
$$;
GRANT EXECUTE ON FUNCTION leads_attachment_url(uuid, uuid, jsonb) TO fl_api;

-- POST /webhook: the partner's one callback URL (created, or its URL replaced).
-- p_doc: {webhook_url, secret_enc}; the secret is kept from the first registration.
CREATE OR REPLACE FUNCTION leads_webhook_register(p_tenant uuid, p_credential uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
    v_was_active boolean;
    v_secret text;
    v_old_url text;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    -- an inactive subscription was made by trigger_webhook with a secret nobody
    -- was shown yet: registering activates it and hands back that secret (sealed;
    -- the C side opens it) so earlier triggered deliveries verify too
    -- One per partner (unique key, migration 0011): a concurrent first registration waits
    -- here for the other's insert and then takes its row below.
    INSERT INTO webhook_subscriptions (tenant_id, family, credential_id, name, url, event_types, secret_enc)
    VALUES (p_tenant, 'leads', p_credential, 'partner', p_doc->>'webhook_url',
            ARRAY['Approved','Declined','Waiting on ISO'], p_doc->>'secret_enc')
    ON CONFLICT (credential_id, family) WHERE credential_id IS NOT NULL DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
        RETURN jsonb_build_object('created', true, 'id', v_id);
    END IF;
    SELECT id, active, secret_enc, url INTO v_id, v_was_active, v_secret, v_old_url FROM webhook_subscriptions
     WHERE credential_id = p_credential AND family = 'leads' FOR UPDATE;
    UPDATE webhook_subscriptions
       SET url = p_doc->>'webhook_url', active = true, updated_at = now()
     WHERE id = v_id;
    IF v_was_active THEN
        -- A new URL takes the deliveries still owed to the old one (a partner whose endpoint
        -- was down registers another): due at once, within their retry window. Deliveries a
        -- trigger sent elsewhere keep their own URL.
        UPDATE webhook_deliveries
           SET url = p_doc->>'webhook_url',
               -- a retry due now is pending again at the next claim (webhook_claim)
               next_attempt_at = CASE WHEN state = 'delivering' THEN next_attempt_at ELSE now() END
         WHERE subscription_id = v_id AND state IN ('pending', 'retrying', 'delivering') AND url = v_old_url
           AND v_old_url <> p_doc->>'webhook_url';
        RETURN jsonb_build_object('created', false, 'id', v_id);
    END IF;
    RETURN jsonb_build_object('created', true, 'id', v_id, 'secret_enc', v_secret);
END
$$;
GRANT EXECUTE ON FUNCTION leads_webhook_register(uuid, uuid, jsonb) TO fl_api;

-- POST /trigger_webhook: one delivery of {lead_id, event_type} to the given URL,
-- signed with the partner's subscription secret (a subscription is made, not
-- active, when the partner has none yet).
CREATE OR REPLACE FUNCTION leads_trigger_webhook(p_tenant uuid, p_credential uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    l leads;
    v_sub uuid;
    v_event bigint;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    l := leads_find(p_credential, p_doc->>'lead_id');
    -- the partner's subscription, or a new inactive one (one per partner: unique key, 0011)
    INSERT INTO webhook_subscriptions (tenant_id, family, credential_id, name, url, event_types,
                                       secret_enc, active)
    VALUES (p_tenant, 'leads', p_credential, 'partner', p_doc->>'webhook_url',
            ARRAY['Approved','Declined','Waiting on ISO'], p_doc->>'secret_enc', false)
    ON CONFLICT (credential_id, family) WHERE credential_id IS NOT NULL DO NOTHING
    RETURNING id INTO v_sub;
    IF v_sub IS NULL THEN
        SELECT id INTO v_sub FROM webhook_subscriptions WHERE credential_id = p_credential AND family = 'leads';
    END IF;
    -- type 'trigger_webhook' is never fanned out (webhook_fanout): only this delivery
    INSERT INTO events (tenant_id, family, type, payload, audience)
    VALUES (p_tenant, 'leads', 'trigger_webhook',
            jsonb_build_object('lead_id', l.public_id, 'event_type', p_doc->>'event_type'), p_credential)
    RETURNING id INTO v_event;
    PERFORM webhook_enqueue(v_event, v_sub, p_doc->>'webhook_url');
    RETURN jsonb_build_object('event_id', v_event);
END
$$;
GRANT EXECUTE ON FUNCTION leads_trigger_webhook(uuid, uuid, jsonb) TO fl_api;

-- The deal stage machine.  Declined is final; a stage is never "changed" to itself.
CREATE OR REPLACE FUNCTION lead_stage_allowed(p_from text, p_to text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE p_from
        WHEN 'Working'           THEN p_to IN ('Approval Sent','Declined','File Missing Info','Waiting on ISO')
        WHEN 'File Missing Info' THEN p_to IN ('Working','Approval Sent','Declined','Waiting on ISO')
        WHEN 'Waiting on ISO'    THEN p_to IN ('Working','Approval Sent','Declined','File Missing Info')
        WHEN 'Approval Sent'     THEN p_to IN ('Working','Declined','Waiting on ISO')
        ELSE false
    END
$$;
GRANT EXECUTE ON FUNCTION lead_stage_allowed(text, text) TO fl_report;

-- Underwriting moves a deal (owner: the CLI `./factorline lead stage`, or a DBA).
-- p_details: max_approval, max_payments, offer_link, stipulations[] (Approval Sent);
-- decline_drivers[], decline_notes (Declined); missing_info (File Missing Info).
-- Approval Sent, Declined and Waiting on ISO write an event for the partner's webhook.
CREATE OR REPLACE FUNCTION set_stage(p_lead text, p_stage text, p_details jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    l leads;
    d jsonb := coalesce(p_details, '{}'::jsonb);
    v_bad text;
    v_event text;
BEGIN
    SELECT * INTO l FROM leads WHERE public_id = p_lead FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Lead not found';
    END IF;
    PERFORM fl_set_tenant(l.tenant_id);
    IF p_stage NOT IN ('Working','Approval Sent','Declined','File Missing Info','Waiting on ISO') THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = format('Unknown stage %s', p_stage),
            HINT = 'Working, Approval Sent, Declined, File Missing Info or Waiting on ISO.';
    END IF;
    IF NOT lead_stage_allowed(l.stage, p_stage) THEN
        RAISE EXCEPTION USING ERRCODE = 'FL409',
            MESSAGE = format('A deal cannot move from %s to %s', l.stage, p_stage);
    END IF;

    IF p_stage = 'Approval Sent' THEN
        -- NaN is above every number in PostgreSQL: refused by name (it reached deal_status,
        -- which cannot show it: 500); an amount of cents, as every amount (no silent rounding)
        IF coalesce((d->>'max_approval')::numeric, 0) <= 0 OR (d->>'max_approval')::numeric = 'NaN'
           OR (d->>'max_approval')::numeric <> round((d->>'max_approval')::numeric, 2)
           OR coalesce((d->>'max_payments')::int, 0) <= 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'FL400',
                MESSAGE = 'Approval Sent needs max_approval (at most 2 decimals) and max_payments greater than zero';
        END IF;
        UPDATE leads SET max_approval = (d->>'max_approval')::numeric, max_payments = (d->>'max_payments')::int,
                         offer_link = d->>'offer_link'
         WHERE id = l.id;
        DELETE FROM lead_stipulations WHERE lead_id = l.id;
        INSERT INTO lead_stipulations (tenant_id, lead_id, type)
        SELECT l.tenant_id, l.id, s FROM jsonb_array_elements_text(coalesce(d->'stipulations', '[]')) s;
    ELSIF p_stage = 'Declined' THEN
        IF jsonb_array_length(coalesce(d->'decline_drivers', '[]')) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Declined needs at least one decline driver';
        END IF;
        -- a JSON null is no driver (NOT IN would let it through as unknown)
        SELECT coalesce(s, 'null') INTO v_bad FROM jsonb_array_elements_text(d->'decline_drivers') s
         WHERE s IS NULL OR NOT EXISTS (SELECT 1 FROM lead_decline_drivers x WHERE x.driver = s) LIMIT 1;
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = format('Unknown decline driver %s', v_bad),
                HINT = 'SELECT driver FROM lead_decline_drivers lists them.';
        END IF;
        UPDATE leads SET decline_drivers = ARRAY(SELECT s FROM jsonb_array_elements_text(d->'decline_drivers')
                                                      WITH ORDINALITY AS t(s, k)
                                                  GROUP BY s ORDER BY min(k)),     -- each once, in order
                         decline_notes = d->>'decline_notes'
         WHERE id = l.id;
    ELSIF p_stage = 'File Missing Info' THEN
        IF coalesce(btrim(d->>'missing_info'), '') = '' THEN
            RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'File Missing Info needs missing_info';
        END IF;
        UPDATE leads SET missing_info = d->>'missing_info' WHERE id = l.id;
    END IF;

    UPDATE leads SET stage = p_stage, stage_changed_at = now() WHERE id = l.id;
    INSERT INTO lead_stage_history (tenant_id, lead_id, from_stage, to_stage, details)
    VALUES (l.tenant_id, l.id, l.stage, p_stage, d);

    v_event := CASE p_stage WHEN 'Approval Sent' THEN 'Approved' WHEN 'Declined' THEN 'Declined'
                            WHEN 'Waiting on ISO' THEN 'Waiting on ISO' END;
    IF v_event IS NOT NULL THEN
        INSERT INTO events (tenant_id, family, type, payload, audience)
        VALUES (l.tenant_id, 'leads', v_event,
                jsonb_build_object('lead_id', l.public_id, 'event_type', v_event), l.credential_id);
    END IF;
    RETURN jsonb_build_object('lead_id', l.public_id, 'from', l.stage, 'stage', p_stage, 'event', v_event);
END
$$;
REVOKE ALL ON FUNCTION set_stage(text, text, jsonb) FROM PUBLIC;

-- Worker: claim attachments to fetch (SKIP LOCKED, leased like deliveries).  Per partner
-- (the lead's credential), at most p_per_partner fetches in flight (migration 0016), so that
-- one partner's URLs that hang cannot hold every fetch slot: each partner with due fetches
-- offers its oldest due ones up to what it has left, and those are claimed in turn.
-- The partners are found with a skip scan of lead_attachments_partner_due, one probe each, as
-- in webhook_claim (60_webhooks.sql, which explains the plan choices).
CREATE OR REPLACE FUNCTION attachment_claim(p_limit int, p_lease_ms int, p_per_partner int DEFAULT 1)
RETURNS TABLE (attachment_id uuid, url text, attempts int)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp
    SET jit = off
    SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH RECURSIVE partners(c, first_at) AS (
        -- each partner with work, and the earliest next_attempt_at of that work (as in
        -- webhook_claim): one probe per partner
        (SELECT a.credential_id, a.next_attempt_at FROM lead_attachments a
          WHERE a.state IN ('pending','fetching')
          ORDER BY a.credential_id, a.next_attempt_at LIMIT 1)
        UNION ALL
        SELECT n.credential_id, n.next_attempt_at
          FROM partners
         CROSS JOIN LATERAL (
               SELECT a.credential_id, a.next_attempt_at FROM lead_attachments a
                WHERE a.state IN ('pending','fetching') AND a.credential_id > partners.c
                ORDER BY a.credential_id, a.next_attempt_at LIMIT 1) n
    ), offered AS (
        SELECT o.id, o.k, o.due_at
          FROM (SELECT d.id, d.next_attempt_at AS due_at, busy.n,
                       row_number() OVER (PARTITION BY partners.c ORDER BY d.next_attempt_at, d.id) AS k
                  FROM partners
                 CROSS JOIN LATERAL (
                       SELECT count(*) AS n FROM lead_attachments b
                        WHERE b.credential_id = partners.c AND b.state = 'fetching'
                          AND b.next_attempt_at > now()) busy
                 CROSS JOIN LATERAL (
                       SELECT a.id, a.next_attempt_at FROM lead_attachments a
                        WHERE a.credential_id = partners.c AND a.state IN ('pending','fetching')
                          AND a.next_attempt_at <= now()
                        ORDER BY a.next_attempt_at
                        LIMIT 16) d
                 -- nothing due (retries waiting, fetches in flight): no further probe
                 WHERE partners.first_at <= now()) o
         WHERE o.k <= p_per_partner - o.n
    ), due AS (
        -- round robin: every partner's first offered fetch before anyone's second
        SELECT a.id
          FROM unnest(ARRAY(SELECT o.id FROM offered o ORDER BY o.k, o.due_at, o.id)) WITH ORDINALITY x(id, ord)
          JOIN lead_attachments a ON a.id = x.id
         WHERE a.state IN ('pending','fetching') AND a.next_attempt_at <= now()
         ORDER BY x.ord
         LIMIT p_limit
           FOR UPDATE OF a SKIP LOCKED
    )
    , spent AS (
        -- A fetch whose lease ran out on its third attempt (the worker that held it recorded
        -- no outcome: it died, or could not reach the database) fails here: a fetch is tried
        -- 3 times, whatever kept the outcomes from being recorded.
        UPDATE lead_attachments a
           SET state = 'failed', error = 'no outcome recorded within the lease of attempt ' || a.attempts
         WHERE a.id = ANY (ARRAY(SELECT id FROM due)) AND a.state = 'fetching' AND a.attempts >= 3
    ), claimed AS (
        UPDATE lead_attachments a
           SET state = 'fetching', attempts = a.attempts + 1,
               next_attempt_at = now() + make_interval(secs => p_lease_ms / 1000.0)
         WHERE a.id = ANY (ARRAY(SELECT id FROM due)) AND NOT (a.state = 'fetching' AND a.attempts >= 3)
        RETURNING a.id, a.source_url, a.attempts
    )
    SELECT c.id, c.source_url, c.attempts FROM claimed c;
END
$$;
REVOKE ALL ON FUNCTION attachment_claim(int, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION attachment_claim(int, int, int) TO fl_worker;

-- Worker: the outcome of a fetch, attempt p_attempt (attachment_claim's attempts).  Content:
-- received, while the attachment is not received or failed already (a late success of an
-- attempt whose lease ran out is still the document).  An error: failed (after 3 attempts for
-- errors worth retrying; at once otherwise), or pending for another attempt; only from the
-- attempt that holds the attachment now: an attempt whose lease ran out while another worker
-- took the attachment up leaves that one's outcome alone (it returns the current state).
CREATE OR REPLACE FUNCTION attachment_record(p_id uuid, p_attempt int, p_content bytea, p_sha256 text,
                                             p_content_type text, p_error text, p_retry boolean)
RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
DECLARE
    a lead_attachments;
BEGIN
    SELECT * INTO a FROM lead_attachments WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'missing';
    END IF;
    IF p_content IS NOT NULL AND a.state IN ('fetching', 'pending') THEN
        UPDATE lead_attachments
           SET state = 'received', content = p_content, size = octet_length(p_content), sha256 = p_sha256,
               content_type = p_content_type, error = NULL, received_at = now()
         WHERE id = p_id;
        RETURN 'received';
    END IF;
    IF p_content IS NOT NULL OR a.state <> 'fetching' OR a.attempts IS DISTINCT FROM p_attempt THEN
        RETURN a.state;
    END IF;
    IF p_retry AND a.attempts < 3 THEN
        UPDATE lead_attachments SET state = 'pending', error = left(p_error, 500),
               next_attempt_at = now() + make_interval(secs => 30 * a.attempts)
         WHERE id = p_id;
        RETURN 'pending';
    END IF;
    UPDATE lead_attachments SET state = 'failed', error = left(p_error, 500) WHERE id = p_id;
    RETURN 'failed';
END
$$;
REVOKE ALL ON FUNCTION attachment_record(uuid, int, bytea, text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION attachment_record(uuid, int, bytea, text, text, text, boolean) TO fl_worker;

-- The signature of workers built before the twenty-third session (no attempt number): kept so
-- that a worker still on the old build records its fetches while the hosts are upgraded. It
-- records against the attachment's current claim, as before. Drop it once every fl-worker runs
-- the new build.
CREATE OR REPLACE FUNCTION attachment_record(p_id uuid, p_content bytea, p_sha256 text,
                                             p_content_type text, p_error text, p_retry boolean)
RETURNS text
    LANGUAGE sql SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
    SELECT attachment_record(p_id, (SELECT attempts FROM lead_attachments WHERE id = p_id), p_content, p_sha256,
                             p_content_type, p_error, p_retry)
$$;
REVOKE ALL ON FUNCTION attachment_record(uuid, bytea, text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION attachment_record(uuid, bytea, text, text, text, boolean) TO fl_worker;

-- DBA views.  Partners are credentials: shown by label and public id.
CREATE OR REPLACE VIEW lead_pipeline AS
SELECT l.tenant_id, t.name AS tenant, c.public_id AS partner, c.label AS partner_label, l.stage,
       count(*) AS deals, sum(l.capital_needed) AS capital_needed, max(l.stage_changed_at) AS last_change
  FROM leads l
  JOIN tenants t ON t.id = l.tenant_id
  JOIN credentials c ON c.id = l.credential_id
 GROUP BY l.tenant_id, t.name, c.public_id, c.label, l.stage;

-- Approval rate over decided deals (approved or declined), per partner.
CREATE OR REPLACE VIEW lead_approval_rate AS
SELECT l.tenant_id, t.name AS tenant, c.public_id AS partner, c.label AS partner_label,
       count(*) AS deals,
       count(*) FILTER (WHERE l.stage = 'Approval Sent') AS approved,
       count(*) FILTER (WHERE l.stage = 'Declined') AS declined,
       round(count(*) FILTER (WHERE l.stage = 'Approval Sent')::numeric
             / nullif(count(*) FILTER (WHERE l.stage IN ('Approval Sent','Declined')), 0), 4) AS approval_rate
  FROM leads l
  JOIN tenants t ON t.id = l.tenant_id
  JOIN credentials c ON c.id = l.credential_id
 GROUP BY l.tenant_id, t.name, c.public_id, c.label;

CREATE OR REPLACE VIEW lead_decline_driver_counts AS
SELECT l.tenant_id, t.name AS tenant, d.driver, count(*) AS deals
  FROM leads l
  JOIN tenants t ON t.id = l.tenant_id
  CROSS JOIN LATERAL unnest(l.decline_drivers) AS d(driver)
 WHERE l.stage = 'Declined'
 GROUP BY l.tenant_id, t.name, d.driver;

-- Contacts with their PII masked: only the last four digits ever leave the database.
CREATE OR REPLACE VIEW lead_contacts_masked AS
SELECT c.tenant_id, l.public_id AS lead_id, c.position, c.first_name, c.last_name, c.email,
       CASE WHEN c.ssn_last4 IS NOT NULL THEN '***-**-' || c.ssn_last4 END AS ssn,
       CASE WHEN l.fein_last4 IS NOT NULL THEN '**-***' || l.fein_last4 END AS fein,
       CASE WHEN c.born_on_enc IS NOT NULL THEN '****-**-**' END AS born_on
  FROM lead_contacts c
  JOIN leads l ON l.id = c.lead_id;

-- The lead's parts, as the partner's document and the tables of 0004 named them: its account,
-- its application, its prior loan and its addresses. Since 0022 they are columns of leads (a
-- contact's address of lead_contacts), since the document gives a lead one of each; these views
-- give each part back as a relation, with the columns those tables had (the sealed FEIN aside,
-- and the addresses' and prior loans' serial ids, which no longer exist) and the lead's public id
-- last. A prior loan or an address with every column empty has no row. (Before 0022 a
-- prior loan sent empty had none either, but an address sent as an empty object had a row
-- of NULLs; 0022 folded those into NULL columns, which cannot tell them apart.)
-- security_invoker: the reader's privileges and row policies apply (fl_report reads every
-- tenant; a role without a policy reads nothing).
CREATE OR REPLACE VIEW lead_accounts WITH (security_invoker = true) AS
SELECT l.id AS lead_id, l.tenant_id, l.entity_type, l.business_name AS name, l.started_on, l.legal_name,
       l.business_phone AS phone, l.business_email AS email, l.website, l.fein_last4, l.monthly_revenue,
       l.industry_name, l.public_id
  FROM leads l;

CREATE OR REPLACE VIEW lead_applications WITH (security_invoker = true) AS
SELECT l.id AS lead_id, l.tenant_id, l.has_current_loan, l.applicant_is_owner, l.loan_use, l.capital_needed,
       l.owner_1_percent_ownership, l.owner_2_percent_ownership, l.notes, l.public_id
  FROM leads l;

CREATE OR REPLACE VIEW lead_prior_loans WITH (security_invoker = true) AS
SELECT l.tenant_id, l.id AS lead_id, l.prior_loan_company AS company_name,
       l.prior_loan_daily_payment AS daily_payment_amount, l.prior_loan_balance AS balance, l.public_id
  FROM leads l
 WHERE num_nonnulls(l.prior_loan_company, l.prior_loan_daily_payment, l.prior_loan_balance) > 0;

-- contact_id NULL: the business's address
CREATE OR REPLACE VIEW lead_addresses WITH (security_invoker = true) AS
SELECT l.tenant_id, l.id AS lead_id, NULL::bigint AS contact_id, l.business_street1 AS street1,
       l.business_street2 AS street2, l.business_city AS city, l.business_state AS state, l.business_zip AS zip,
       l.public_id
  FROM leads l
 WHERE num_nonnulls(l.business_street1, l.business_street2, l.business_city, l.business_state, l.business_zip) > 0
UNION ALL
SELECT c.tenant_id, c.lead_id, c.id, c.street1, c.street2, c.city, c.state, c.zip, l.public_id
  FROM lead_contacts c
  JOIN leads l ON l.id = c.lead_id
 WHERE num_nonnulls(c.street1, c.street2, c.city, c.state, c.zip) > 0;

GRANT SELECT ON lead_pipeline, lead_approval_rate, lead_decline_driver_counts, lead_contacts_masked,
                lead_accounts, lead_applications, lead_prior_loans, lead_addresses
    TO fl_report;
