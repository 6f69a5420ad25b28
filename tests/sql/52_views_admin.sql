-- docs/sql.md: the aging buckets of the DBA views, the views' security_invoker, and the admin
-- functions' refusals.
BEGIN;
SELECT plan(15);

SELECT fl_tenant_add('Aging T', 'AGING-T') AS t \gset
SET LOCAL ROLE fl_api;
SELECT posting_create_client(:'t', '{"ClientKey":"AC","Name":"Aging Client"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'t', '{"ClientKey":"AC","DebtorKey":"AD","Name":"Aging Payer"}') IS NOT NULL AS x \gset
-- One invoice per edge of the buckets, each a power of two so that a sum tells which fell where:
-- due in 5 days (1), today (2), 1 day ago (4), 30 (8), 31 (16), 60 (32), 61 (64), 90 (128),
-- 91 (256); one cancelled (512) and one paid in full (1024), both left out.
SELECT posting_create_sched(:'t', format('{"ClientKey":"AC","Amount":"2047.00","PaymentMethod":"A",
  "IntegrationBatchId":"AS1","InvoiceArray":[%s]}',
  (SELECT string_agg(format('{"DebtorKey":"AD","InvoiceNumber":"A%s","InvoiceAr":"%s.00",'
                            '"InvoiceIntegrationId":"AI%s","InvoiceDate":"%s","DueDate":"%s"}',
                            k, 1 << k, k, to_char(current_date - 120, 'YYYY-MM-DD'),
                            to_char(current_date - d, 'YYYY-MM-DD')), ',' ORDER BY k)
     FROM unnest(ARRAY[-5, 0, 1, 30, 31, 60, 61, 90, 91, 10, 10]) WITH ORDINALITY u(d, n),
          LATERAL (SELECT (n - 1)::int AS k) kk))::jsonb) IS NOT NULL AS x \gset
SELECT posting_post_payments(:'t', '{"BatchReference":"AGB","BatchTotal":"1024.00","PaymentDetails":[
  {"PaymentDate":"2024-05-01","PaymentType":"ACH","Amount":"1024.00","InvoiceRefNumber":"A10"}]}') IS NOT NULL AS x \gset
RESET ROLE;
UPDATE invoices SET status = 'X' WHERE tenant_id = :'t' AND invoice_number = 'A9';

SET LOCAL ROLE fl_report;
SELECT is((SELECT format('%s %s %s %s %s | %s %s', current_amount, days_1_30, days_31_60, days_61_90, days_91_plus,
                         total_open, open_invoices)
             FROM debtor_aging WHERE tenant_id = :'t' AND debtor_key = 'AD'),
          '3.00 12.00 48.00 192.00 256.00 | 511.00 9',
          'debtor_aging: due today or later is current, 1-30, 31-60, 61-90, 91+ at their edges; cancelled and paid left out');
SELECT is((SELECT format('%s %s %s %s %s | %s %s', current_amount, days_1_30, days_31_60, days_61_90, days_91_plus,
                         total_open, open_invoices)
             FROM client_aging WHERE tenant_id = :'t' AND client_key = 'AC'),
          '3.00 12.00 48.00 192.00 256.00 | 511.00 9', 'client_aging: the same by client');
SELECT is((SELECT count(*) FROM open_invoice_aging WHERE tenant_id = :'t'), 9::bigint,
          'open_invoice_aging: one row per open invoice');
SELECT is((SELECT count(*) FROM open_invoice_aging WHERE tenant_id = :'t'
              AND current_amount + days_1_30 + days_31_60 + days_61_90 + days_91_plus <> open_balance), 0::bigint,
          'each open invoice in exactly one bucket');
RESET ROLE;

-- The posting views and the lead part views (lead_accounts and the like) read through the
-- caller's policies (security_invoker; the other leads and the webhook DBA views run as their
-- owner on purpose: they show fl_report masked columns of tables it cannot read), and fl_report
-- may read them.
SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
              AND coalesce(c.reloptions @> ARRAY['security_invoker=true'], false)),
          ARRAY['client_aging', 'debtor_aging', 'lead_accounts', 'lead_addresses', 'lead_applications',
                'lead_prior_loans', 'open_invoice_aging', 'payment_exceptions', 'posting_invoice_docs',
                'unapplied_cash'],
          'the posting views and the lead part views are security_invoker');
SELECT ok(has_table_privilege('fl_report', 'open_invoice_aging', 'SELECT')
          AND has_table_privilege('fl_report', 'debtor_aging', 'SELECT')
          AND has_table_privilege('fl_report', 'client_aging', 'SELECT')
          AND has_table_privilege('fl_report', 'unapplied_cash', 'SELECT')
          AND has_table_privilege('fl_report', 'payment_exceptions', 'SELECT'),
          'fl_report reads the DBA views');
SELECT ok(NOT has_table_privilege('fl_api', 'debtor_aging', 'SELECT')
          AND NOT has_table_privilege('fl_api', 'client_aging', 'SELECT'),
          'fl_api does not read the aging views');

-- Admin functions' refusals.
SELECT throws_ok($$SELECT fl_tenant_add('Aging T', 'OTHER-ID')$$, 'FL409', 'Tenant exists', 'a tenant name is taken once');
SELECT throws_ok($$SELECT fl_tenant_add('Aging T2', 'AGING-T')$$, 'FL409', 'FactorID exists',
                 'a FactorID is taken once');
SELECT throws_ok($$SELECT fl_tenant_add(' ', 'X-1')$$, 'FL400', 'Invalid tenant name', 'a blank tenant name');
SELECT throws_ok($$SELECT fl_tenant_add('Aging T3', '')$$, 'FL400', 'Invalid FactorID', 'a blank FactorID');
SELECT is(fl_key_revoke('posting', 'no-such-key'), false, 'revoking an unknown key answers false');
SELECT fl_key_add('Aging T', 'leads', 'aging-pub', sha256('x'), 'label') IS NOT NULL AS x \gset
SELECT is(fl_key_revoke('leads', 'aging-pub'), true, 'revoking an active key answers true');
SELECT is(fl_key_revoke('leads', 'aging-pub'), false, 'revoking it again answers false');
SELECT ok((SELECT revoked_at IS NOT NULL FROM credentials WHERE family = 'leads' AND public_id = 'aging-pub'),
          'the key is revoked');

SELECT * FROM finish();
ROLLBACK;
