-- leads: RLS on the new tables, the stage machine, set_stage and its events,
-- the shared rate limiter, partner isolation, attachments and the DBA views.
BEGIN;
SELECT plan(121);

-- RLS forced on every table of the family (00_schema covers the tenant_id
-- tables in general; rate_buckets has no tenant_id, so it is named here).
SELECT is((SELECT array_agg(t ORDER BY t) FROM unnest(ARRAY['leads','lead_stipulations',
              'lead_contacts','lead_stage_history',
              'lead_attachments','rate_buckets']) t
            WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t::regclass
                                AND c.relrowsecurity AND c.relforcerowsecurity)),
          NULL, 'RLS is enabled and forced on every leads table and on rate_buckets');
SELECT is((SELECT array_agg(t ORDER BY t) FROM unnest(ARRAY['leads','lead_stipulations',
              'lead_contacts','lead_stage_history',
              'lead_attachments']) t
            WHERE NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t::regclass
                                AND 'fl_api'::regrole = ANY (p.polroles)
                                AND pg_get_expr(p.polqual, p.polrelid) LIKE '%fl_current_tenant()%'
                                AND pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%fl_current_tenant()%')),
          NULL, 'every leads table has a tenant policy for fl_api (USING and WITH CHECK)');
SELECT ok(NOT has_table_privilege('fl_api', 'rate_buckets', 'SELECT')
          AND NOT has_table_privilege('fl_api', 'rate_buckets', 'INSERT')
          AND has_function_privilege('fl_api', 'fl_rate_take(uuid, double precision, integer)', 'EXECUTE'),
          'fl_api reaches rate_buckets only through fl_rate_take');
SELECT is((SELECT relpersistence FROM pg_class WHERE oid = 'rate_buckets'::regclass), 'u'::"char",
          'rate_buckets is unlogged: a take writes no WAL and waits for no flush (0013)');
SELECT ok((SELECT prosecdef AND proconfig::text LIKE '%search_path=public, pg_temp%'
             FROM pg_proc WHERE oid = 'fl_rate_take(uuid, double precision, integer)'::regprocedure),
          'fl_rate_take is SECURITY DEFINER with a fixed search_path');
SELECT ok(NOT has_function_privilege('fl_api', 'set_stage(text, text, jsonb)', 'EXECUTE')
          AND NOT has_function_privilege('fl_report', 'set_stage(text, text, jsonb)', 'EXECUTE')
          AND NOT has_function_privilege('fl_api', 'fl_key_limit(text, text, numeric, integer)', 'EXECUTE'),
          'set_stage and fl_key_limit are for the owner only');
SELECT ok(NOT has_table_privilege('fl_api', 'lead_decline_drivers', 'INSERT')
          AND NOT has_table_privilege('fl_api', 'leads', 'DELETE'),
          'fl_api cannot add decline drivers or delete leads');
SELECT ok(NOT has_column_privilege('fl_report', 'lead_contacts', 'ssn_enc', 'SELECT')
          AND NOT has_column_privilege('fl_report', 'lead_contacts', 'born_on_enc', 'SELECT')
          AND NOT has_column_privilege('fl_report', 'leads', 'fein_enc', 'SELECT')
          AND NOT has_column_privilege('fl_report', 'lead_attachments', 'content', 'SELECT')
          AND has_column_privilege('fl_report', 'lead_contacts', 'ssn_last4', 'SELECT'),
          'fl_report reads no sealed PII and no documents, only the last four');
SELECT is((SELECT array_agg(c.relname || '.' || a.attname ORDER BY c.relname, a.attname)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relname IN ('leads', 'lead_contacts') AND a.attnum > 0 AND NOT a.attisdropped
              AND NOT has_column_privilege('fl_report', c.oid, a.attnum, 'SELECT')),
          ARRAY['lead_contacts.born_on_enc', 'lead_contacts.ssn_enc', 'leads.fein_enc'],
          'fl_report reads every column of leads and lead_contacts but the three sealed ones');
SELECT ok(has_table_privilege('fl_report', 'lead_pipeline', 'SELECT')
          AND has_table_privilege('fl_report', 'lead_approval_rate', 'SELECT')
          AND has_table_privilege('fl_report', 'lead_decline_driver_counts', 'SELECT')
          AND has_table_privilege('fl_report', 'lead_contacts_masked', 'SELECT'),
          'fl_report reads the DBA views');

-- The stage machine: the whole table.
SELECT is((SELECT array_agg(f || '>' || t ORDER BY f, t)
             FROM unnest(ARRAY['Working','Approval Sent','Declined','File Missing Info','Waiting on ISO']) f,
                  unnest(ARRAY['Working','Approval Sent','Declined','File Missing Info','Waiting on ISO']) t
            WHERE lead_stage_allowed(f, t)),
          ARRAY['Approval Sent>Declined','Approval Sent>Waiting on ISO','Approval Sent>Working',
                'File Missing Info>Approval Sent','File Missing Info>Declined','File Missing Info>Waiting on ISO',
                'File Missing Info>Working',
                'Waiting on ISO>Approval Sent','Waiting on ISO>Declined','Waiting on ISO>File Missing Info',
                'Waiting on ISO>Working',
                'Working>Approval Sent','Working>Declined','Working>File Missing Info','Working>Waiting on ISO'],
          'lead_stage_allowed: the transition table');
SELECT ok(NOT lead_stage_allowed('Declined', 'Working') AND NOT lead_stage_allowed('Declined', 'Approval Sent')
          AND NOT lead_stage_allowed('Declined', 'Declined'), 'Declined is final');
SELECT ok(NOT lead_stage_allowed('Working', 'Working') AND NOT lead_stage_allowed('Working', 'Funded')
          AND NOT lead_stage_allowed('Funded', 'Working') AND lead_stage_allowed(NULL, 'Working') IS NOT TRUE,
          'no self-transitions, no unknown stages');

-- Fixture: tenants, three partners (two in tenant A), subscriptions.
SELECT fl_tenant_add('Leads T A', 'LEADS-TA') AS ta \gset
SELECT fl_tenant_add('Leads T B', 'LEADS-TB') AS tb \gset
SELECT fl_key_add('Leads T A', 'leads', 'pgtap-la1', sha256('s1'), 'Partner One') AS p1 \gset
SELECT fl_key_add('Leads T A', 'leads', 'pgtap-la2', sha256('s2'), 'Partner Two') AS p2 \gset
SELECT fl_key_add('Leads T B', 'leads', 'pgtap-lb1', sha256('s3'), 'Partner B') AS pb \gset

SET LOCAL ROLE fl_api;
SELECT is(leads_create(:'ta', :'p1', '{"public_id":"pt-lead-1","application_attributes":{"reference_id":"R1",
            "capital_needed":"1000.00","owner_1_percent_ownership":"50.00"},"account_attributes":{"name":"Acme",
            "fein":"v1:0000000a:sealed","fein_last4":"6789"},"contacts_attributes":[{"first_name":"A","last_name":"B",
            "ssn":"v1:0000000a:sealed","ssn_last4":"4321","born_on":"v1:0000000a:sealed",
            "current_address_attributes":{"street1":"1 Main","city":"Boston","state":"MA","zip":"02110"}}]}'),
          '{"id":"pt-lead-1"}'::jsonb, 'leads_create returns the public id');
SELECT fl_set_tenant(:'ta') IS NULL AS x \gset
SELECT is((SELECT concat_ws('|', l.business_name, l.capital_needed, l.owner_1_percent_ownership, l.fein_last4,
                            l.prior_loan_balance IS NULL, c.first_name, c.street1, c.city, c.state, c.zip)
             FROM leads l JOIN lead_contacts c ON c.lead_id = l.id WHERE l.public_id = 'pt-lead-1'),
          'Acme|1000.00|50.00|6789|t|A|1 Main|Boston|MA|02110',
          'leads_create: the account and application in the lead''s row, the address in the contact''s (0022)');
SELECT throws_ok(format($$SELECT leads_create(%L, %L, '{"public_id":"pt-lead-dup","application_attributes":
                          {"reference_id":"R1"},"account_attributes":{"name":"Acme"},"contacts_attributes":[]}')$$,
                        :'ta', :'p1'),
                 'FL422', 'Reference ID is not unique.', 'a partner cannot reuse a reference_id');
SELECT lives_ok(format($$SELECT leads_create(%L, %L, '{"public_id":"pt-lead-2","application_attributes":
                         {"reference_id":"R1","capital_needed":"500"},"account_attributes":{"name":"Other"},
                         "contacts_attributes":[]}')$$, :'ta', :'p2'),
                'another partner may use the same reference_id');
SELECT count(leads_create(:'ta', :'p1', format('{"public_id":"pt-lead-%s","application_attributes":{"reference_id":"R%s",
         "capital_needed":"100"},"account_attributes":{"name":"N%s"},"contacts_attributes":[]}', i, i, i)::jsonb)) AS x
  FROM generate_series(3, 6) i \gset
SELECT leads_create(:'tb', :'pb', '{"public_id":"pt-lead-b","application_attributes":{"reference_id":"R1"},
         "account_attributes":{"name":"B"},"contacts_attributes":[]}') IS NOT NULL AS x \gset

-- leads_find: the partner's own lead only.
SELECT fl_set_tenant(:'ta') IS NULL AS x \gset
SELECT is((leads_find(:'p1', 'pt-lead-1')).reference_id, 'R1', 'leads_find finds the partner''s lead');
SELECT throws_ok(format($$SELECT leads_find(%L, 'pt-lead-1')$$, :'p2'), 'FL404', 'Lead not found',
                 'leads_find refuses another partner''s lead');
SELECT throws_ok(format($$SELECT leads_find(%L, 'no-such')$$, :'p1'), 'FL404', 'Lead not found',
                 'leads_find refuses an unknown id');
SELECT throws_ok(format($$SELECT leads_deal_status(%L, %L, '{"lead_id":"pt-lead-1"}')$$, :'tb', :'pb'),
                 'FL404', 'Lead not found', 'another tenant''s partner gets 404');
SELECT throws_ok(format($$SELECT leads_attachment_add(%L, %L, 'pt-lead-1', 'x.pdf', '\x25'::bytea, %L, 'text/plain')$$,
                        :'ta', :'p2', repeat('0', 64)),
                 'FL404', 'Lead not found', 'no attachment to another partner''s lead');
SELECT throws_ok(format($$SELECT leads_trigger_webhook(%L, %L, '{"lead_id":"pt-lead-1","webhook_url":"http://x/",
                          "event_type":"Approved"}')$$, :'ta', :'p2'),
                 'FL404', 'Lead not found', 'no trigger on another partner''s lead');
SELECT fl_set_tenant(:'tb');
SELECT is((SELECT count(*) FROM leads), 1::bigint, 'tenant B sees only its own lead');
SELECT fl_set_tenant(:'ta');
SELECT is(leads_deal_status(:'ta', :'p1', '{"lead_id":"pt-lead-1"}')::text, '{"stage":"Working"}',
          'a new deal is Working, with the stage only');

-- Webhook registration: created once, the secret kept, the URL replaced.
SELECT is(leads_webhook_register(:'ta', :'p1', '{"webhook_url":"http://127.0.0.1:9/h1","secret_enc":"v1:0000000a:s1"}')
          ->> 'created', 'true', 'the first registration creates the subscription');
SELECT is(leads_webhook_register(:'ta', :'p1', '{"webhook_url":"http://127.0.0.1:9/h2","secret_enc":"v1:0000000a:s2"}')
          ->> 'created', 'false', 'a second registration updates it');
SELECT is(leads_webhook_register(:'ta', :'p2', '{"webhook_url":"http://127.0.0.1:9/p2","secret_enc":"v1:0000000a:p2"}')
          ->> 'created', 'true', 'partner two registers its own');
RESET ROLE;
SELECT is((SELECT url || ' ' || secret_enc || ' ' || active FROM webhook_subscriptions WHERE credential_id = :'p1'),
          'http://127.0.0.1:9/h2 v1:0000000a:s1 true', 'the URL is replaced, the first secret kept');

-- set_stage: refusals.
SELECT throws_ok($$SELECT set_stage('no-such', 'Working')$$, 'FL404', 'Lead not found', 'set_stage: unknown lead');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Funded')$$, 'FL400', 'Unknown stage Funded', 'set_stage: unknown stage');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Approval Sent', '{"max_payments":20}')$$, 'FL400',
                 'Approval Sent needs max_approval (at most 2 decimals) and max_payments greater than zero',
                 'set_stage: Approval Sent without max_approval');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Approval Sent', '{"max_approval":"10000","max_payments":0}')$$, 'FL400',
                 'Approval Sent needs max_approval (at most 2 decimals) and max_payments greater than zero',
                 'set_stage: Approval Sent with zero payments');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Approval Sent', '{"max_approval":"NaN","max_payments":20}')$$, 'FL400',
                 'Approval Sent needs max_approval (at most 2 decimals) and max_payments greater than zero',
                 'set_stage: Approval Sent with max_approval NaN (above every number to PostgreSQL)');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Approval Sent', '{"max_approval":"10000.005","max_payments":20}')$$,
                 'FL400', 'Approval Sent needs max_approval (at most 2 decimals) and max_payments greater than zero',
                 'set_stage: Approval Sent with a max_approval of 3 decimals (not rounded in silence)');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Declined', '{"decline_drivers":[null]}')$$, 'FL400',
                 'Unknown decline driver null', 'set_stage: a null decline driver');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Declined', '{}')$$, 'FL400',
                 'Declined needs at least one decline driver', 'set_stage: Declined without a driver');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Declined', '{"decline_drivers":["Fraud","Bad vibes"]}')$$, 'FL400',
                 'Unknown decline driver Bad vibes', 'set_stage: unknown decline driver');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'File Missing Info', '{"missing_info":"  "}')$$, 'FL400',
                 'File Missing Info needs missing_info', 'set_stage: File Missing Info without text');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Working')$$, 'FL409', 'A deal cannot move from Working to Working',
                 'set_stage: no self-transition');
SELECT is((SELECT stage FROM leads WHERE public_id = 'pt-lead-1'), 'Working', 'refusals changed nothing');

-- set_stage: moves, details and events.
SELECT is(set_stage('pt-lead-1', 'File Missing Info', '{"missing_info":"statements"}'),
          '{"lead_id":"pt-lead-1","from":"Working","stage":"File Missing Info","event":null}'::jsonb,
          'File Missing Info: moved, no event');
SELECT is((SELECT count(*) FROM events WHERE payload->>'lead_id' = 'pt-lead-1'), 0::bigint,
          'File Missing Info writes no event');
SELECT is(set_stage('pt-lead-1', 'Approval Sent', '{"max_approval":"10000","max_payments":"20","offer_link":"offer.com",
                     "stipulations":["Voided Check","Bank Statements"]}') ->> 'event', 'Approved',
          'Approval Sent writes the Approved event');
SELECT is((SELECT type || ' ' || family || ' ' || payload::text || ' ' || (audience = :'p1') || ' ' || (tenant_id = :'ta')
             FROM events WHERE payload->>'lead_id' = 'pt-lead-1' ORDER BY id DESC LIMIT 1),
          'Approved leads {"lead_id": "pt-lead-1", "event_type": "Approved"} true true',
          'the event: type, payload {lead_id, event_type}, addressed to the partner');
SELECT is((SELECT array_agg(d.url ORDER BY d.url) FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
            WHERE e.payload->>'lead_id' = 'pt-lead-1'),
          ARRAY['http://127.0.0.1:9/h2'], 'one delivery, to the partner''s URL only (not partner two''s)');
SELECT is(leads_deal_status(:'ta', :'p1', '{"lead_id":"pt-lead-1"}')::text,
          '{"stage":"Approval Sent","required_stipulations":[{"type":"Voided Check"},{"type":"Bank Statements"}],'
          '"max_approval":10000,"max_payments":20,"offer_link":"offer.com"}',
          'deal_status of an approved deal, in the document''s order');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'File Missing Info', '{"missing_info":"x"}')$$, 'FL409',
                 'A deal cannot move from Approval Sent to File Missing Info', 'Approval Sent -> File Missing Info is refused');
SELECT is(set_stage('pt-lead-1', 'Declined', '{"decline_drivers":["Default history","Excessive liens or judgements","Default history"],
                     "decline_notes":"not credible"}') ->> 'event', 'Declined', 'Declined writes the Declined event');
SELECT is(leads_deal_status(:'ta', :'p1', '{"lead_id":"pt-lead-1"}')::text,
          '{"stage":"Declined","decline_drivers":"Default history;Excessive liens or judgements",'
          '"decline_notes":"not credible"}', 'deal_status of a declined deal: drivers joined with ;, each once');
SELECT throws_ok($$SELECT set_stage('pt-lead-1', 'Working')$$, 'FL409', 'A deal cannot move from Declined to Working',
                 'FL409 on a refused transition: Declined is final');
SELECT is(set_stage('pt-lead-3', 'Waiting on ISO') ->> 'event', 'Waiting on ISO', 'Waiting on ISO writes its event');
SELECT is(set_stage('pt-lead-3', 'Working') ->> 'event', NULL, 'back to Working: no event');
SELECT is((SELECT string_agg(coalesce(h.from_stage, '-') || '>' || h.to_stage, ',' ORDER BY h.id)
             FROM lead_stage_history h JOIN leads l ON l.id = h.lead_id WHERE l.public_id = 'pt-lead-1'),
          '->Working,Working>File Missing Info,File Missing Info>Approval Sent,Approval Sent>Declined',
          'the stage history');

-- fl_rate_take: a token bucket per credential.
SELECT is(ARRAY(SELECT coalesce(fl_rate_take(:'p2', 0.001, 3), false) FROM generate_series(1, 5)),
          ARRAY[true, true, true, false, false], 'burst 3: three takes, then refused');
UPDATE rate_buckets SET tokens = 0, updated_at = clock_timestamp() - interval '2.5 seconds' WHERE credential_id = :'p2';
SELECT is(ARRAY(SELECT coalesce(fl_rate_take(:'p2', 1, 3), false) FROM generate_series(1, 4)),
          ARRAY[true, true, false, false], 'refill: 2.5 s at 1 token/s gives two takes');
UPDATE rate_buckets SET tokens = 0, updated_at = clock_timestamp() - interval '1 hour' WHERE credential_id = :'p2';
SELECT is(ARRAY(SELECT coalesce(fl_rate_take(:'p2', 1, 3), false) FROM generate_series(1, 4)),
          ARRAY[true, true, true, false], 'refill is capped at the burst');
SET LOCAL ROLE fl_api;
SELECT is(ARRAY(SELECT coalesce(fl_rate_take(:'pb', 0.001, 2), false) FROM generate_series(1, 3)),
          ARRAY[true, true, false], 'fl_api takes tokens; buckets are per credential');
RESET ROLE;
SELECT is((SELECT round(tokens::numeric, 2) FROM rate_buckets WHERE credential_id = :'pb'), 0.00::numeric,
          'a refused take leaves the bucket as it was');
SELECT is(fl_key_limit('leads', 'pgtap-la1', 2, 4), true,
          'fl_key_limit on a credential that has no bucket yet reports success');
SELECT is((SELECT rate_per_sec || ' ' || burst FROM credentials WHERE id = :'p1'), '2 4', 'fl_key_limit sets rate and burst');
SELECT is(fl_key_limit('leads', 'no-such-key', 2, 4), false, 'fl_key_limit of an unknown key is false');
SELECT is(fl_key_limit('leads', 'pgtap-la2', NULL, NULL), true, 'fl_key_limit --unlimited on a used key');
SELECT ok((SELECT rate_per_sec IS NULL FROM credentials WHERE id = :'p2')
          AND NOT EXISTS (SELECT 1 FROM rate_buckets WHERE credential_id = :'p2'),
          'unlimited: no rate, the bucket dropped');

-- Attachments by URL: claimed, retried, failed or received.
SET LOCAL ROLE fl_api;
SELECT fl_set_tenant(:'ta');
SELECT leads_attachment_url(:'ta', :'p1', '{"lead_id":"pt-lead-3","filename":"a.pdf","attachment_url":"http://x/a"}')
       IS NOT NULL AS x \gset
RESET ROLE;
UPDATE lead_attachments SET next_attempt_at = now() - interval '1 hour' WHERE state IN ('pending','fetching');
SELECT count(*) AS x FROM attachment_claim(100, 60000) \gset
SELECT is((SELECT state || ' ' || attempts FROM lead_attachments WHERE filename = 'a.pdf' AND source_url = 'http://x/a'),
          'fetching 1', 'claimed: fetching, one attempt');
SELECT is(attachment_record((SELECT id FROM lead_attachments WHERE source_url = 'http://x/a'), 1, NULL, NULL, NULL,
                            'HTTP 503', true), 'pending', 'a retryable error: pending again');
UPDATE lead_attachments SET attempts = 3, state = 'fetching' WHERE source_url = 'http://x/a';
SELECT is(attachment_record((SELECT id FROM lead_attachments WHERE source_url = 'http://x/a'), 3, NULL, NULL, NULL,
                            'HTTP 503', true), 'failed', 'after 3 attempts: failed');
UPDATE lead_attachments SET state = 'fetching' WHERE source_url = 'http://x/a';
SELECT is(attachment_record((SELECT id FROM lead_attachments WHERE source_url = 'http://x/a'), 3, '\x25504446'::bytea,
                            encode(sha256('\x25504446'::bytea), 'hex'), 'application/pdf', NULL, false),
          'received', 'content: received');
SELECT is((SELECT size || ' ' || content_type || ' ' || (error IS NULL) || ' ' || (received_at IS NOT NULL)
             FROM lead_attachments WHERE source_url = 'http://x/a'),
          '4 application/pdf true true', 'received with size and type, error cleared');

-- An attempt whose lease ran out while another worker took the attachment up (twenty-third
-- session): its late error leaves the new claim alone, a late success is still the document;
-- a lease that runs out on the third attempt fails the fetch at the next claim.
SET LOCAL ROLE fl_api;
SELECT fl_set_tenant(:'ta');
SELECT leads_attachment_url(:'ta', :'p1', '{"lead_id":"pt-lead-3","filename":"s.pdf","attachment_url":"http://x/s"}')
       IS NOT NULL AS x \gset
SELECT leads_attachment_url(:'ta', :'p1', '{"lead_id":"pt-lead-3","filename":"t.pdf","attachment_url":"http://x/t"}')
       IS NOT NULL AS x \gset
RESET ROLE;
SELECT id AS att_s FROM lead_attachments WHERE source_url = 'http://x/s' \gset
UPDATE lead_attachments SET next_attempt_at = now() - interval '1 hour' WHERE id = :'att_s';
SELECT count(*) AS x FROM attachment_claim(100, 60000, 100) \gset
UPDATE lead_attachments SET next_attempt_at = now() - interval '1 minute' WHERE id = :'att_s';
SELECT is((SELECT string_agg(c.url || ' ' || c.attempts, ',') FROM attachment_claim(100, 60000, 100) c
            WHERE c.attachment_id = :'att_s'), 'http://x/s 2', 'a lease run out: claimed again, attempt 2');
SELECT is(attachment_record(:'att_s', 1, NULL, NULL, NULL, 'HTTP 404', false), 'fetching',
          'a late error of attempt 1 answers the current state');
SELECT is((SELECT state || ' ' || attempts || ' ' || coalesce(error, 'null') FROM lead_attachments WHERE id = :'att_s'),
          'fetching 2 null', 'and leaves attempt 2''s claim alone');
SELECT is(attachment_record(:'att_s', 2, NULL, NULL, NULL, 'HTTP 503', true), 'pending',
          'attempt 2''s own error is recorded');
SELECT is(attachment_record(:'att_s', 1, '\x25504446'::bytea, encode(sha256('\x25504446'::bytea), 'hex'),
                            'application/pdf', NULL, false), 'received', 'a late success of attempt 1 is kept');
SELECT is(attachment_record(:'att_s', 2, NULL, NULL, NULL, 'HTTP 500', false), 'received',
          'an error after it changes nothing');
UPDATE lead_attachments SET state = 'fetching', attempts = 3, next_attempt_at = now() - interval '1 minute'
 WHERE source_url = 'http://x/t';
SELECT is((SELECT count(*)::int FROM attachment_claim(100, 60000, 100) c WHERE c.url = 'http://x/t'), 0,
          'a lease run out on attempt 3: not claimed again');
SELECT is((SELECT state || ' ' || attempts || ' ' || error FROM lead_attachments WHERE source_url = 'http://x/t'),
          'failed 3 no outcome recorded within the lease of attempt 3', 'but failed, with the reason');
-- the signature of workers built before (no attempt): records against the current claim
UPDATE lead_attachments SET state = 'fetching', attempts = 1 WHERE source_url = 'http://x/t';
SELECT is(attachment_record((SELECT id FROM lead_attachments WHERE source_url = 'http://x/t'), NULL, NULL, NULL,
                            'HTTP 503', true), 'pending', 'the old six-argument attachment_record still records');

-- Fetches per partner: at most p_per_partner in flight (0016).
UPDATE lead_attachments SET next_attempt_at = now() + interval '1 day' WHERE state IN ('pending','fetching');
SET LOCAL ROLE fl_api;
SELECT fl_set_tenant(:'ta');
SELECT count(leads_attachment_url(:'ta', :'p1', jsonb_build_object('lead_id', 'pt-lead-3', 'filename', 'h' || g || '.pdf',
                                                                   'attachment_url', 'http://x/h' || g))) AS x
  FROM generate_series(1, 5) g \gset
SELECT leads_attachment_url(:'ta', :'p2', '{"lead_id":"pt-lead-2","filename":"q.pdf","attachment_url":"http://x/q"}')
       IS NOT NULL AS x \gset
RESET ROLE;
-- partner one's backlog is older, h1 first
UPDATE lead_attachments SET next_attempt_at = now() - interval '1 hour' + substr(source_url, 11)::int * interval '1 s'
 WHERE source_url ~ '^http://x/h[0-9]$';
SELECT is((SELECT string_agg(c.url, ',' ORDER BY c.url) FROM attachment_claim(4, 60000, 2) c),
          'http://x/h1,http://x/h2,http://x/q',
          'a partner with 5 due fetches gets 2 in flight; the other partner''s is claimed beside them');
SELECT is((SELECT count(*)::int FROM attachment_claim(4, 60000, 2)), 0, 'nothing more while partner one has 2 in flight');
-- a partner whose work is all in flight costs the claim one index probe (three until the
-- seventeenth session): partner two's in-flight fetch, counted by taking it out
SELECT coalesce(sum(idx_scan), 0) AS s0 FROM pg_stat_xact_user_tables WHERE relname = 'lead_attachments' \gset
SELECT count(*) AS x FROM attachment_claim(4, 60000, 2) \gset
SELECT coalesce(sum(idx_scan), 0) AS s1 FROM pg_stat_xact_user_tables WHERE relname = 'lead_attachments' \gset
UPDATE lead_attachments SET state = 'failed', error = 'test' WHERE source_url = 'http://x/q';
SELECT coalesce(sum(idx_scan), 0) AS s2 FROM pg_stat_xact_user_tables WHERE relname = 'lead_attachments' \gset
SELECT count(*) AS x FROM attachment_claim(4, 60000, 2) \gset
SELECT coalesce(sum(idx_scan), 0) AS s3 FROM pg_stat_xact_user_tables WHERE relname = 'lead_attachments' \gset
SELECT is(((:s1 - :s0) - (:s3 - :s2))::int, 1, 'a partner with its fetch in flight: one index probe in a claim');
SELECT is((SELECT credential_id FROM lead_attachments WHERE source_url = 'http://x/q'), :'p2'::uuid,
          'an attachment records its lead''s partner');

-- The DBA views.
SELECT set_stage('pt-lead-4', 'Approval Sent', '{"max_approval":"500","max_payments":"10"}') IS NOT NULL AS x \gset
SELECT set_stage('pt-lead-5', 'Declined', '{"decline_drivers":["Fraud"]}') IS NOT NULL AS x \gset
SELECT is((SELECT string_agg(stage || ':' || deals || ':' || coalesce(capital_needed::text, '-'), ',' ORDER BY stage)
             FROM lead_pipeline WHERE tenant = 'Leads T A' AND partner = 'pgtap-la1'),
          'Approval Sent:1:100.00,Declined:2:1100.00,Working:2:200.00', 'lead_pipeline: deals by stage and partner');
SELECT is((SELECT partner_label FROM lead_pipeline WHERE partner = 'pgtap-la2'), 'Partner Two',
          'lead_pipeline names the partner');
SELECT is((SELECT deals || ' ' || approved || ' ' || declined || ' ' || approval_rate FROM lead_approval_rate
            WHERE partner = 'pgtap-la1'), '5 1 2 0.3333', 'lead_approval_rate: approved over decided');
SELECT is((SELECT approval_rate FROM lead_approval_rate WHERE partner = 'pgtap-la2'), NULL,
          'no decided deal: no rate (not a division by zero)');
SELECT is((SELECT string_agg(driver || ':' || deals, ',' ORDER BY driver) FROM lead_decline_driver_counts
            WHERE tenant = 'Leads T A'),
          'Default history:1,Excessive liens or judgements:1,Fraud:1', 'lead_decline_driver_counts');
SELECT is((SELECT ssn || ' ' || fein || ' ' || born_on FROM lead_contacts_masked WHERE lead_id = 'pt-lead-1'),
          '***-**-4321 **-***6789 ****-**-**', 'lead_contacts_masked shows the last four only');

-- The lead's parts as relations (lead_accounts, lead_applications, lead_prior_loans,
-- lead_addresses): views over the lead's columns since 0022, read by fl_report.
SET LOCAL ROLE fl_api;
SELECT leads_create(:'tb', :'pb', '{"public_id":"pt-lead-parts","application_attributes":{"reference_id":"R-parts",
         "capital_needed":"7500.00","owner_1_percent_ownership":"60","owner_2_percent_ownership":"40",
         "loan_use":"Inventory","notes":"n"},
         "account_attributes":{"name":"Parts Co","entity_type":"LLC","phone":"6175550100","fein":"v1:0000000a:sealed",
         "fein_last4":"1111","current_address_attributes":{"street1":"9 Dock St","city":"Salem","state":"MA","zip":"01970"}},
         "loan_attributes":{"company_name":"Lender X","daily_payment_amount":"150.00","balance":"9000.00"},
         "contacts_attributes":[{"first_name":"C","last_name":"D",
           "current_address_attributes":{"street1":"2 Elm","city":"Lynn","state":"MA","zip":"01901"}}]}')
       IS NOT NULL AS x \gset
SELECT throws_ok('SELECT * FROM lead_accounts', '42501', NULL, 'fl_api does not read the lead part views');
RESET ROLE;
SELECT count(*) AS all_leads FROM leads \gset
SET LOCAL ROLE fl_report;
SELECT is((SELECT concat_ws('|', a.name, a.entity_type, a.phone, a.fein_last4, a.tenant_id = :'tb', a.lead_id = l.id)
             FROM lead_accounts a JOIN leads l ON l.public_id = a.public_id WHERE a.public_id = 'pt-lead-parts'),
          'Parts Co|LLC|6175550100|1111|t|t', 'lead_accounts: the account, keyed by the lead''s id');
SELECT is((SELECT concat_ws('|', capital_needed, owner_1_percent_ownership, owner_2_percent_ownership, loan_use, notes)
             FROM lead_applications WHERE public_id = 'pt-lead-parts'),
          '7500.00|60.00|40.00|Inventory|n', 'lead_applications: the application');
SELECT is((SELECT array_agg(concat_ws('|', public_id, company_name, daily_payment_amount, balance))
             FROM lead_prior_loans WHERE public_id IN ('pt-lead-parts', 'pt-lead-1')),
          ARRAY['pt-lead-parts|Lender X|150.00|9000.00'], 'lead_prior_loans: a lead sent without one has no row');
SELECT is((SELECT array_agg(concat_ws('|', a.contact_id IS NULL, a.street1, a.city, a.state, a.zip,
                                      a.contact_id IS NULL OR a.contact_id = c.id)
                            ORDER BY a.contact_id NULLS FIRST)
             FROM lead_addresses a LEFT JOIN lead_contacts c ON c.lead_id = a.lead_id
            WHERE a.public_id = 'pt-lead-parts'),
          ARRAY['t|9 Dock St|Salem|MA|01970|t', 'f|2 Elm|Lynn|MA|01901|t'],
          'lead_addresses: the business''s address (no contact) and each contact''s');
SELECT is((SELECT array_agg(public_id ORDER BY public_id) FROM lead_addresses WHERE contact_id IS NULL
             AND public_id LIKE 'pt-lead-%'),
          ARRAY['pt-lead-parts'], 'a lead sent without a business address has no business address row');
SELECT is(ARRAY[(SELECT count(*) FROM lead_accounts), (SELECT count(*) FROM lead_applications),
                (SELECT count(DISTINCT tenant_id) FROM lead_accounts WHERE public_id IN ('pt-lead-1', 'pt-lead-parts'))],
          ARRAY[:all_leads, :all_leads, 2]::bigint[],
          'fl_report reads an account and an application for every lead (counted as the owner), of both tenants');
RESET ROLE;
-- the columns of the tables 0004 made (with 0009's domains), for reports written against them
SELECT is((SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
             FROM pg_attribute a WHERE a.attrelid = 'lead_accounts'::regclass AND a.attnum > 0),
          ARRAY['lead_id uuid', 'tenant_id uuid', 'entity_type text', 'name text', 'started_on date',
                'legal_name text', 'phone text', 'email text', 'website text', 'fein_last4 fl_last4',
                'monthly_revenue text', 'industry_name text', 'public_id text'],
          'lead_accounts: the old table''s columns, less fein_enc, and public_id');
SELECT is((SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
             FROM pg_attribute a WHERE a.attrelid = 'lead_applications'::regclass AND a.attnum > 0),
          ARRAY['lead_id uuid', 'tenant_id uuid', 'has_current_loan boolean', 'applicant_is_owner boolean',
                'loan_use text', 'capital_needed fl_money_pos', 'owner_1_percent_ownership fl_percent',
                'owner_2_percent_ownership fl_percent', 'notes text', 'public_id text'],
          'lead_applications: the old table''s columns, and public_id');
SELECT is((SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
             FROM pg_attribute a WHERE a.attrelid = 'lead_prior_loans'::regclass AND a.attnum > 0),
          ARRAY['tenant_id uuid', 'lead_id uuid', 'company_name text', 'daily_payment_amount fl_money_nonneg',
                'balance fl_money_nonneg', 'public_id text'],
          'lead_prior_loans: the old table''s columns, less id, and public_id');
SELECT is((SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
             FROM pg_attribute a WHERE a.attrelid = 'lead_addresses'::regclass AND a.attnum > 0),
          ARRAY['tenant_id uuid', 'lead_id uuid', 'contact_id bigint', 'street1 text', 'street2 text', 'city text',
                'state character(2)', 'zip text', 'public_id text'],
          'lead_addresses: the old table''s columns, less id, and public_id');
SELECT is((SELECT array_agg(a.attrelid::regclass::text || '.' || a.attname ORDER BY a.attname)
             FROM pg_attribute a
            WHERE a.attrelid IN ('lead_accounts'::regclass, 'lead_applications'::regclass,
                                 'lead_prior_loans'::regclass, 'lead_addresses'::regclass)
              AND a.attnum > 0 AND a.attname LIKE '%\_enc'),
          NULL, 'no lead part view has a sealed column');

-- Migrations 0009 and 0022: the one-column rules are domains, checked as before (23514, nothing
-- written); the two-column ownership rule is a CHECK; a lead is one row (its account, application
-- and prior loan are columns), a contact's address its columns; the children are keyed by
-- (lead_id, id).
RESET ROLE;
SELECT is((SELECT array_agg(c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                            ORDER BY c.relname, a.attname)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relname IN ('leads', 'lead_contacts')
              AND a.attname IN ('stage', 'max_approval', 'max_payments', 'fein_last4', 'ssn_last4',
                                'prior_loan_daily_payment', 'prior_loan_balance', 'capital_needed',
                                'owner_1_percent_ownership', 'owner_2_percent_ownership')),
          ARRAY['lead_contacts.ssn_last4 fl_last4', 'leads.capital_needed fl_money_pos', 'leads.fein_last4 fl_last4',
                'leads.max_approval fl_money_pos', 'leads.max_payments fl_count_pos',
                'leads.owner_1_percent_ownership fl_percent', 'leads.owner_2_percent_ownership fl_percent',
                'leads.prior_loan_balance fl_money_nonneg', 'leads.prior_loan_daily_payment fl_money_nonneg',
                'leads.stage lead_stage'],
          'the one-column rules of the leads tables are domains');
SELECT is((SELECT array_agg(c.conrelid::regclass::text || '.' || c.conname::text
                            ORDER BY c.conrelid::regclass::text, c.conname)
             FROM pg_constraint c
            WHERE c.contype = 'c' AND cardinality(c.conkey) = 1
              AND c.conrelid IN ('leads'::regclass, 'lead_contacts'::regclass, 'lead_stage_history'::regclass)),
          NULL, 'no one-column CHECK left on the tables POST /lead writes');
SELECT is(ARRAY(SELECT t FROM unnest(ARRAY['lead_accounts', 'lead_applications', 'lead_prior_loans',
                                           'lead_addresses']) t
                   WHERE (SELECT relkind FROM pg_class WHERE oid = to_regclass(t)) IS DISTINCT FROM 'v'),
          '{}'::text[], 'the one-to-one tables are gone, views by their names instead: a lead is one row (0022)');
SELECT is((SELECT array_agg(i.indexrelid::regclass::text ORDER BY i.indexrelid::regclass::text)
             FROM pg_index i WHERE i.indrelid = 'lead_contacts'::regclass),
          ARRAY['lead_contacts_lead_id_position_key', 'lead_contacts_pkey'],
          'a contact has two index entries: the key an address named it by went with the addresses (0022)');
SELECT is((SELECT array_agg(c.conname::text || ' ' || pg_get_constraintdef(c.oid) ORDER BY c.conname)
             FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = 'leads'::regclass),
          ARRAY['leads_credential_id_fkey FOREIGN KEY (tenant_id, credential_id) REFERENCES credentials(tenant_id, id)'],
          'a lead''s one key is its partner''s, which carries the tenant (no second key locking the tenant''s row)');
SELECT throws_ok($$UPDATE leads SET stage = 'Funded' WHERE public_id = 'pt-lead-1'$$, '23514', NULL,
                 'lead_stage refuses an unknown stage');
SELECT throws_ok($$UPDATE leads SET max_approval = 0 WHERE public_id = 'pt-lead-1'$$, '23514', NULL,
                 'fl_money_pos refuses 0 (leads.max_approval)');
SELECT throws_ok($$UPDATE leads SET max_payments = 0 WHERE public_id = 'pt-lead-1'$$, '23514', NULL,
                 'fl_count_pos refuses 0 (leads.max_payments)');
SELECT throws_ok($$UPDATE lead_contacts SET ssn_last4 = '12a4'$$, '23514', NULL,
                 'fl_last4 refuses a non-digit (lead_contacts.ssn_last4)');
SELECT throws_ok($$UPDATE leads SET fein_last4 = '123'$$, '23514', NULL,
                 'fl_last4 refuses three digits (leads.fein_last4)');
SELECT throws_ok($$UPDATE leads SET prior_loan_balance = -1 WHERE public_id = 'pt-lead-1'$$, '23514', NULL,
                 'fl_money_nonneg refuses a negative balance (leads.prior_loan_balance)');
SELECT throws_ok($$UPDATE leads SET capital_needed = 0$$, '23514', NULL,
                 'fl_money_pos refuses 0 (leads.capital_needed)');
SELECT throws_ok($$UPDATE leads SET owner_2_percent_ownership = 100.5$$, '23514', NULL,
                 'fl_percent refuses 100.5');
SELECT throws_ok($$UPDATE leads SET owner_1_percent_ownership = 60, owner_2_percent_ownership = 50$$,
                 '23514', NULL, 'the ownership percentages still add up to at most 100 (a CHECK)');
SELECT is((SELECT array_agg(i.indexrelid::regclass::text || ' ' || replace(pg_get_indexdef(i.indexrelid), 'public.', '')
                            ORDER BY i.indexrelid::regclass::text)
             FROM pg_index i
            WHERE i.indrelid IN ('lead_stage_history'::regclass, 'lead_stipulations'::regclass)),
          ARRAY['lead_stage_history_pkey CREATE UNIQUE INDEX lead_stage_history_pkey ON lead_stage_history USING btree (lead_id, id)',
                'lead_stipulations_pkey CREATE UNIQUE INDEX lead_stipulations_pkey ON lead_stipulations USING btree (lead_id, id)'],
          'the lead''s child tables have one index each: PRIMARY KEY (lead_id, id)');

RESET ROLE;
-- A partner's test (trigger_webhook) goes only to the URL it names, not to an operator's
-- subscription for every event of the family; a stage event still reaches both.
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, secret_enc)
VALUES (:'ta', 'leads', 'ops', 'http://127.0.0.1:9/ops', 'v1:0000000a:o') RETURNING id AS ops \gset
SET LOCAL ROLE fl_api;
SELECT leads_trigger_webhook(:'ta', :'p1', '{"lead_id":"pt-lead-1","webhook_url":"http://127.0.0.1:9/elsewhere",
                             "event_type":"Approved","secret_enc":"v1:0000000a:t"}') ->> 'event_id' AS trig \gset
RESET ROLE;
INSERT INTO events (tenant_id, family, type, payload, audience)
VALUES (:'ta', 'leads', 'Approved', '{"lead_id":"pt-lead-1","event_type":"Approved"}', :'p1') RETURNING id AS ev \gset
SELECT is((SELECT string_agg(coalesce(s.name, '-') || ' ' || d.url, ', ' ORDER BY s.name) FROM webhook_deliveries d
             JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE d.event_id = :'trig'),
          'partner http://127.0.0.1:9/elsewhere', 'a trigger test is delivered to its URL only');
SELECT is((SELECT string_agg(s.name || ' ' || d.url, ', ' ORDER BY s.name) FROM webhook_deliveries d
             JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE d.event_id = :'ev'),
          'ops http://127.0.0.1:9/ops, partner http://127.0.0.1:9/h2', 'a stage event reaches the partner and the operator');
UPDATE webhook_subscriptions SET active = false WHERE id = :'ops';
-- A new URL takes the deliveries the old one still owes (due at once); the trigger's keeps its own.
UPDATE webhook_deliveries SET state = 'retrying', next_attempt_at = now() + interval '1 hour', attempts = 2
 WHERE event_id = :'ev';
SET LOCAL ROLE fl_api;
SELECT is(leads_webhook_register(:'ta', :'p1', '{"webhook_url":"http://127.0.0.1:9/h3","secret_enc":"v1:0000000a:s3"}')
          ->> 'created', 'false', 'the partner registers a new URL');
RESET ROLE;
SELECT is((SELECT string_agg(s.name || ' ' || d.url || ' ' || (d.next_attempt_at <= now()) || ' ' || d.attempts, ', '
                             ORDER BY s.name)
             FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE d.event_id = :'ev'),
          'ops http://127.0.0.1:9/ops false 2, partner http://127.0.0.1:9/h3 true 2',
          'the partner''s delivery waiting for a retry moves to the new URL, due now; the operator''s stays');
SELECT is((SELECT url FROM webhook_deliveries WHERE event_id = :'trig'), 'http://127.0.0.1:9/elsewhere',
          'the trigger''s delivery keeps the URL it named');
SELECT ok(NOT has_column_privilege('fl_api', 'webhook_deliveries', 'state', 'UPDATE')
          AND has_column_privilege('fl_api', 'webhook_deliveries', 'url', 'UPDATE'),
          'fl_api may move a delivery''s URL, not change its state');

SELECT * FROM finish();
ROLLBACK;
