-- Tenant isolation through row-level security, as the API role.
BEGIN;
SELECT plan(25);

SELECT fl_tenant_add('Iso A', 'ISO-A') AS ta \gset
SELECT fl_tenant_add('Iso B', 'ISO-B') AS tb \gset

-- Tenant A's data, created through the API functions as the API role.
SET LOCAL ROLE fl_api;
SELECT posting_create_client(:'ta', '{"ClientKey":"AC1","Name":"A Client"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'ta', '{"ClientKey":"AC1","DebtorKey":"AD1","Name":"A Debtor"}') IS NOT NULL AS x \gset
SELECT posting_create_sched(:'ta', '{"ClientKey":"AC1","Amount":"100.00","PaymentMethod":"A","IntegrationBatchId":"AS1",
  "InvoiceArray":[{"DebtorKey":"AD1","InvoiceNumber":"A-1","InvoiceAr":"100.00","InvoiceIntegrationId":"AI1"}]}') IS NOT NULL AS x \gset
SELECT posting_post_payments(:'ta', '{"BatchReference":"AB1","BatchTotal":"60.00","AccountNumber":"1","RequestHash":"h",
  "PaymentDetails":[{"PaymentDate":"2024-01-02","PaymentType":"ACH","Amount":"60.00","AccountNumber":"A-ACCT","InvoiceRefNumber":"A-1"}]}') IS NOT NULL AS x \gset
-- Tenant B has one client of its own.
SELECT posting_create_client(:'tb', '{"ClientKey":"BC1","Name":"B Client"}') IS NOT NULL AS x \gset
RESET ROLE;

SELECT is((SELECT count(*) FROM payment_applications WHERE tenant_id = :'ta'), 1::bigint,
          'tenant A has an application (fixture)');

SET LOCAL ROLE fl_api;
SELECT fl_set_tenant(:'tb');
SELECT is((SELECT count(*) FROM clients WHERE tenant_id = :'ta'), 0::bigint, 'B sees none of A''s clients');
SELECT is((SELECT count(*) FROM clients), 1::bigint, 'B sees its own client');
SELECT is((SELECT count(*) FROM debtors), 0::bigint, 'B sees none of A''s debtors');
SELECT is((SELECT count(*) FROM client_debtors), 0::bigint, 'B sees none of A''s sub-debtors');
SELECT is((SELECT count(*) FROM debtor_accounts), 0::bigint, 'B sees none of A''s debtor accounts');
SELECT is((SELECT count(*) FROM schedules), 0::bigint, 'B sees none of A''s schedules');
SELECT is((SELECT count(*) FROM invoices), 0::bigint, 'B sees none of A''s invoices');
SELECT is((SELECT count(*) FROM payment_batches), 0::bigint, 'B sees none of A''s payment batches');
SELECT is((SELECT count(*) FROM payment_lines), 0::bigint, 'B sees none of A''s payment lines');
SELECT is((SELECT count(*) FROM payment_applications), 0::bigint, 'B sees none of A''s applications');
SELECT is((SELECT count(*) FROM events WHERE tenant_id = :'ta'), 0::bigint, 'B sees none of A''s events');

SELECT throws_ok(format($$INSERT INTO clients (tenant_id, client_key, name) VALUES (%L, 'EVIL', 'x')$$, :'ta'),
                 '42501', NULL, 'B cannot insert a row with A''s tenant_id');
SELECT throws_ok(format($$INSERT INTO events (tenant_id, family, type) VALUES (%L, 'posting', 'x')$$, :'ta'),
                 '42501', NULL, 'B cannot insert an event for A');
SELECT throws_ok(format($$UPDATE clients SET tenant_id = %L$$, :'ta'),
                 '42501', NULL, 'B cannot move its own row to A');
SELECT throws_ok($$SELECT * FROM tenants$$, '42501', NULL, 'fl_api cannot read tenants');
WITH u AS (UPDATE invoices SET open_balance = 0 RETURNING 1)
SELECT is(count(*), 0::bigint, 'B updates none of A''s invoices') FROM u;
SELECT throws_ok(format($$SELECT posting_get_invoice(%L, '{"InvoiceIntegrationId":"AI1"}')$$, :'tb'),
                 'FL404', 'Invoice not found', 'get-invoice of A''s invoice under B is 404');
SELECT throws_ok(format($$SELECT posting_get_client(%L, '{"ClientKey":"AC1"}')$$, :'tb'),
                 'FL404', 'Client not found', 'get-client of A''s client under B is 404');
SELECT throws_ok(format($$SELECT posting_create_debtor(%L, '{"ClientKey":"AC1","DebtorKey":"X","Name":"X"}')$$, :'tb'),
                 'FL400', 'Invalid ClientKey', 'B cannot attach a debtor to A''s client');
SELECT throws_ok(format($$SELECT reconcile_batch(%L)$$,
                        (SELECT id FROM payment_batches WHERE batch_reference = 'AB1' AND tenant_id = :'ta')),
                 'FL404', 'Batch not found', 'B cannot reconcile A''s batch');
SELECT is(posting_post_payments(:'tb', '{"BatchReference":"AB1","BatchTotal":"100.00","RequestHash":"other",
  "PaymentDetails":[{"PaymentDate":"2024-01-02","PaymentType":"ACH","Amount":"100.00","InvoiceRefNumber":"A-1"}]}')::jsonb
  #>> '{PaymentDetails,0,Status}', 'unapplied',
          'B''s payment naming A''s invoice number applies nothing (and A''s BatchReference is free in B)');

SELECT fl_set_tenant(NULL);
SELECT is((SELECT count(*) FROM clients) + (SELECT count(*) FROM invoices), 0::bigint,
          'without a tenant set fl_api sees nothing');
RESET ROLE;

SET LOCAL ROLE fl_report;
SELECT is((SELECT count(DISTINCT tenant_id) FROM clients WHERE tenant_id IN (:'ta', :'tb')), 2::bigint,
          'fl_report sees every tenant');
SELECT throws_ok($$UPDATE invoices SET open_balance = 0$$, '42501', NULL, 'fl_report cannot write');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
