-- post-payments reaches payment rows and invoices by key only, whatever the statistics said
-- when the session planned its statements. A session keeps its plans until the next ANALYZE;
-- plans made while the tables looked empty used to scan them sequentially on every batch
-- (a fresh install: 10 ms a batch became 40+ ms within a minute). Here the tables are analyzed
-- while nearly empty, the session posts enough batches for PL/pgSQL to settle on generic
-- plans, and the next batches must not scan any of the growing tables.
BEGIN;
SELECT plan(3);

SELECT fl_tenant_add('Plans T', 'PLANS-T') AS t \gset
ANALYZE payment_batches, payment_lines, payment_applications, invoices, debtor_accounts;
SET LOCAL ROLE fl_api;
SELECT posting_create_client(:'t', '{"ClientKey":"P1","Name":"Plans One","CompCode":"PONE"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'t', '{"ClientKey":"P1","DebtorKey":"PD1","Name":"Plans Debtor"}') IS NOT NULL AS x \gset
SELECT posting_create_sched(:'t', jsonb_build_object('ClientKey', 'P1', 'Amount', '40000.00', 'PaymentMethod', 'A',
           'IntegrationBatchId', 'PS1', 'InvoiceArray',
           (SELECT jsonb_agg(jsonb_build_object('DebtorKey', 'PD1', 'InvoiceNumber', 'PN' || g,
                                                'InvoiceAr', '1000.00', 'InvoiceIntegrationId', 'PI' || g))
              FROM generate_series(1, 40) g))) IS NOT NULL AS x \gset

-- Batch g: lines paying invoices by number, by memo, by amount through the payer's account
-- (the one-by-one path), and one unmatched line.
CREATE TEMP TABLE plan_docs AS
SELECT g, jsonb_build_object('BatchReference', 'PB' || g, 'BatchTotal', '16.00', 'AccountNumber', 'PACC',
           'PaymentDetails', jsonb_build_array(
               jsonb_build_object('PaymentDate', '2024-03-01', 'PaymentType', 'ACH', 'Amount', '5.00',
                                  'InvoiceRefNumber', 'PN' || g, 'AccountNumber', 'PACC'),
               jsonb_build_object('PaymentDate', '2024-03-01', 'PaymentType', 'ACH', 'Amount', '4.00',
                                  'MemoLine', 'for PN' || (g + 20)),
               jsonb_build_object('PaymentDate', '2024-03-01', 'PaymentType', 'ACH', 'Amount', '3.00',
                                  'InvoiceRefNumber', 'PN' || (g + 10)),
               jsonb_build_object('PaymentDate', '2024-03-01', 'PaymentType', 'ACH', 'Amount', '4.00',
                                  'AccountNumber', 'NOBODY'))) AS doc
  FROM generate_series(1, 10) g;
-- posting_post_payments_lines: the API's call (posting_post_payments, for DBAs, reads the batch back)
SELECT count(*) AS posted FROM plan_docs, posting_post_payments_lines(:'t', doc) WHERE g <= 7 \gset

SELECT coalesce(sum(seq_scan), 0)::bigint AS s0 FROM pg_stat_xact_user_tables
 WHERE relname IN ('payment_batches', 'payment_lines', 'payment_applications', 'invoices', 'debtor_accounts') \gset
SELECT count(*) AS posted FROM plan_docs, posting_post_payments_lines(:'t', doc) WHERE g > 7 \gset
SELECT is((SELECT coalesce(sum(seq_scan), 0)::bigint FROM pg_stat_xact_user_tables
            WHERE relname IN ('payment_batches', 'payment_lines', 'payment_applications', 'invoices', 'debtor_accounts'))
          - :s0, 0::bigint,
          'batches 8-10: no sequential scan of payment_batches, payment_lines, payment_applications, invoices, debtor_accounts');
SELECT is((SELECT count(*) FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id
            WHERE b.tenant_id = :'t' AND l.status = 'applied'), 30::bigint,
          'and the batches were reconciled (3 of 4 lines applied in each)');

-- Batches whose lines all name an invoice take the unlocked fast path (fl_reconcile_run) with
-- plans made on the same statistics; its invoice update is a Tid Scan under the sorted run (a
-- join on id could be driven from an index on tenant_id, which the tenant policy makes usable).
SELECT count(*) AS x FROM generate_series(1, 3) g, posting_post_payments_lines(:'t', jsonb_build_object('BatchReference', 'PU' || g, 'BatchTotal', '3.00',
           'PaymentDetails', jsonb_build_array(
               jsonb_build_object('PaymentDate', '2024-03-02', 'PaymentType', 'ACH', 'Amount', '2.00',
                                  'InvoiceRefNumber', 'PN' || (g + 30)),
               jsonb_build_object('PaymentDate', '2024-03-02', 'PaymentType', 'ACH', 'Amount', '1.00',
                                  'InvoiceRefNumber', 'PN' || (g + 35))))) \gset
SELECT is((SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t' AND invoice_number IN ('PN31', 'PN32', 'PN33', 'PN36', 'PN37', 'PN38')),
          5991.00, 'three batches whose lines all name an invoice, applied (9.00 in all)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
