-- Every foreign key carries the tenant (migration 0018): a row of one tenant cannot name a
-- row of another, whatever the API role inserts or passes to webhook_enqueue. A key is
-- checked past row-level security, so without the tenant in it these inserts succeeded.
BEGIN;
SELECT plan(13);

-- two tenants, each with a partner credential, an event, a subscription and a lead
INSERT INTO tenants (name, factor_id) VALUES ('keys-a', 'KEYS-A') RETURNING id AS ta \gset
INSERT INTO tenants (name, factor_id) VALUES ('keys-b', 'KEYS-B') RETURNING id AS tb \gset
INSERT INTO credentials (tenant_id, family, public_id, secret_hash)
VALUES (:'ta', 'leads', 'keys-ca', sha256('a')) RETURNING id AS ca \gset
INSERT INTO credentials (tenant_id, family, public_id, secret_hash)
VALUES (:'tb', 'leads', 'keys-cb', sha256('b')) RETURNING id AS cb \gset
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'ta', 'leads', 'keys.a', '{"who":"a"}')
RETURNING id AS ea \gset
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'tb', 'leads', 'keys.b', '{"who":"b"}')
RETURNING id AS eb \gset
INSERT INTO webhook_subscriptions (tenant_id, family, url, event_types, secret_enc)
VALUES (:'ta', 'financing', 'http://127.0.0.1:9/keys-a', ARRAY['none'], 'v1:0000000a:a') RETURNING id AS sa \gset
INSERT INTO webhook_subscriptions (tenant_id, family, url, event_types, secret_enc)
VALUES (:'tb', 'financing', 'http://127.0.0.1:9/keys-b', ARRAY['none'], 'v1:0000000a:b') RETURNING id AS sb \gset
INSERT INTO leads (tenant_id, credential_id, public_id, reference_id, business_name)
VALUES (:'ta', :'ca', 'keys-la', 'r', 'A') RETURNING id AS la \gset
INSERT INTO leads (tenant_id, credential_id, public_id, reference_id, business_name)
VALUES (:'tb', :'cb', 'keys-lb', 'r', 'B') RETURNING id AS lb \gset

SET LOCAL ROLE fl_api;
SELECT fl_set_tenant(:'ta');

-- webhooks: A cannot have B's event sent, nor send under B's subscription
SELECT throws_ok(format('SELECT webhook_enqueue(%s, %L, %L)', :'eb', :'sa', 'http://127.0.0.1:9/steal'),
                 '23503', NULL, 'webhook_enqueue: A cannot queue B''s event under its own subscription');
SELECT throws_ok(format('INSERT INTO webhook_deliveries (tenant_id, event_id, subscription_id, url) '
                        'VALUES (%L, %s, %L, %L)', :'ta', :'eb', :'sa', 'http://127.0.0.1:9/steal'),
                 '23503', NULL, 'an INSERT into webhook_deliveries cannot name B''s event');
SELECT throws_ok(format('SELECT webhook_enqueue(%s, %L, %L)', :'ea', :'sb', 'http://127.0.0.1:9/x'),
                 '23503', NULL, 'webhook_enqueue: A cannot use B''s subscription (and its secret)');
SELECT lives_ok(format('SELECT webhook_enqueue(%s, %L, %L)', :'ea', :'sa', 'http://127.0.0.1:9/mine'),
                'webhook_enqueue of A''s own event under A''s subscription');
SELECT throws_ok(format('INSERT INTO webhook_subscriptions (tenant_id, family, credential_id, url, secret_enc) '
                        'VALUES (%L, %L, %L, %L, %L)', :'ta', 'leads', :'cb', 'http://127.0.0.1:9/x', 'v1:0000000a:x'),
                 '23503', NULL, 'a subscription cannot belong to B''s partner (nor take its one registration)');
SELECT throws_ok(format('INSERT INTO events (tenant_id, family, type, audience) VALUES (%L, %L, %L, %L)',
                        :'ta', 'leads', 'x', :'cb'),
                 '23503', NULL, 'an event cannot be addressed to B''s partner');

-- leads: no row of A names B's credential or lead (a contact's address is its own columns: 0022)
SELECT throws_ok(format('INSERT INTO leads (tenant_id, credential_id, public_id, reference_id, business_name) '
                        'VALUES (%L, %L, %L, %L, %L)', :'ta', :'cb', 'keys-evil', 'e', 'x'),
                 '23503', NULL, 'a lead cannot name B''s partner');
SELECT throws_ok(format('INSERT INTO lead_stipulations (tenant_id, lead_id, type) VALUES (%L, %L, %L)',
                        :'ta', :'lb', 'x'),
                 '23503', NULL, 'a stipulation cannot name B''s lead');
SELECT throws_ok(format('INSERT INTO lead_contacts (tenant_id, lead_id, position, first_name, last_name) '
                        'VALUES (%L, %L, 9, %L, %L)', :'ta', :'lb', 'x', 'y'),
                 '23503', NULL, 'a contact cannot name B''s lead');
SELECT throws_ok(format('INSERT INTO lead_attachments (tenant_id, lead_id, credential_id, filename, state) '
                        'VALUES (%L, %L, %L, %L, %L)', :'ta', :'la', :'cb', 'x.pdf', 'pending'),
                 '23503', NULL, 'an attachment cannot be scheduled as B''s partner''s');
SELECT throws_ok(format('INSERT INTO lead_attachments (tenant_id, lead_id, credential_id, filename, state) '
                        'VALUES (%L, %L, %L, %L, %L)', :'ta', :'lb', :'ca', 'x.pdf', 'pending'),
                 '23503', NULL, 'an attachment cannot name B''s lead');
SELECT fl_set_tenant(NULL);
RESET ROLE;

-- the keys themselves, as a DBA finds them
SELECT is((SELECT count(*) FROM pg_constraint c
            WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
              AND c.conrelid::regclass::text IN ('events', 'credentials', 'webhook_subscriptions',
                                                  'webhook_deliveries', 'webhook_attempts')
              AND cardinality(c.conkey) = 1
              AND c.confrelid::regclass::text <> 'tenants'),
          0::bigint, 'no single-column key to another tenant-owned table in the webhook tables');
SELECT is((SELECT count(*) FROM pg_constraint c
            WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
              AND c.conrelid::regclass::text LIKE 'lead%' AND cardinality(c.conkey) = 1
              AND c.confrelid::regclass::text NOT IN ('tenants', 'lead_decline_drivers')),
          0::bigint, 'no single-column key to another tenant-owned table in the leads tables');

SELECT * FROM finish();
ROLLBACK;
