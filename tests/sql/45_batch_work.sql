-- A batch's work grows with its lines, not with their square. The fast path used to look up
-- every remaining line each time it stopped at a line that did not qualify, so a file mixing
-- lines that qualify with lines that do not (numbers of paid or shared invoices, memos) cost a
-- look-up per line per stop: 4,000 such lines took 7-16 s, over the API's statement_timeout.
-- Counted here as index scans of invoices (pg_stat_xact_user_tables.idx_scan: one per look-up),
-- not timed. (Not rows fetched: on this never-analyzed database a look-up by number may read
-- all of the tenant's open invoices, until ANALYZE; docs/sql.md.)
BEGIN;
SELECT plan(8);

SELECT fl_tenant_add('Work T', 'WORK-T') AS t \gset
SET LOCAL ROLE fl_api;
SELECT posting_create_client(:'t', '{"ClientKey":"W1","Name":"Work One","CompCode":"WONE"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'t', '{"ClientKey":"W1","DebtorKey":"WD1","Name":"Work Debtor"}') IS NOT NULL AS x \gset
SELECT posting_create_sched(:'t', jsonb_build_object('ClientKey', 'W1', 'Amount', '60000.00', 'PaymentMethod', 'A',
           'IntegrationBatchId', 'WS1', 'InvoiceArray',
           (SELECT jsonb_agg(jsonb_build_object('DebtorKey', 'WD1', 'InvoiceNumber', 'WN' || g,
                                                'InvoiceAr', '100.00', 'InvoiceIntegrationId', 'WI' || g) ORDER BY g)
              FROM generate_series(1, 600) g))) IS NOT NULL AS x \gset

-- WN1..WN300 paid in full.
SELECT posting_post_payments(:'t', jsonb_build_object('BatchReference', 'WB1', 'BatchTotal', '30000.00',
           'PaymentDetails', (SELECT jsonb_agg(jsonb_build_object('PaymentDate', '2024-03-01', 'PaymentType', 'ACH',
                                                                  'Amount', '100.00', 'InvoiceRefNumber', 'WN' || g) ORDER BY g)
                                FROM generate_series(1, 300) g))) IS NOT NULL AS x \gset
RESET ROLE;
SELECT coalesce(sum(idx_scan), 0) AS f0 FROM pg_stat_xact_user_tables WHERE relname = 'invoices' \gset

-- The same file again: 300 lines, none qualifies for the fast path.
SET LOCAL ROLE fl_api;
SELECT posting_post_payments(:'t', jsonb_build_object('BatchReference', 'WB2', 'BatchTotal', '30000.00',
           'PaymentDetails', (SELECT jsonb_agg(jsonb_build_object('PaymentDate', '2024-03-02', 'PaymentType', 'ACH',
                                                                  'Amount', '100.00', 'InvoiceRefNumber', 'WN' || g) ORDER BY g)
                                FROM generate_series(1, 300) g))) IS NOT NULL AS x \gset
RESET ROLE;
SELECT coalesce(sum(idx_scan), 0) AS f1 FROM pg_stat_xact_user_tables WHERE relname = 'invoices' \gset

SELECT is((SELECT count(*) FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id
            WHERE b.tenant_id = :'t' AND b.batch_reference = 'WB2' AND l.status = 'exception'
              AND l.exception_reason = 'Invoice ' || l.invoice_ref_number || ' not open'), 300::bigint,
          'a file paid twice: every line of the second is an exception, Invoice <n> not open');
SELECT cmp_ok(:f1::bigint - :f0::bigint, '<', 300 * 10::bigint,
              'and it looked invoices up fewer than 10 times per line');

-- 300 lines mixing a number of an open invoice, a number of a paid one and a memo naming an
-- open invoice, in turn.
SET LOCAL ROLE fl_api;
SELECT posting_post_payments(:'t', jsonb_build_object('BatchReference', 'WB3', 'BatchTotal', '12000.00',
           'PaymentDetails', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                        'PaymentDate', '2024-03-03', 'PaymentType', 'ACH',
                                        'Amount', CASE WHEN g % 3 = 1 THEN '100.00' ELSE '10.00' END,
                                        'InvoiceRefNumber', CASE g % 3 WHEN 0 THEN 'WN' || (300 + g)
                                                                       WHEN 1 THEN 'WN' || g END,
                                        'MemoLine', CASE WHEN g % 3 = 2 THEN 'inv WN' || (300 + g) END)) ORDER BY g)
                                FROM generate_series(1, 300) g))) IS NOT NULL AS x \gset
RESET ROLE;
SELECT coalesce(sum(idx_scan), 0) AS f2 FROM pg_stat_xact_user_tables WHERE relname = 'invoices' \gset

SELECT is((SELECT string_agg(s, ',' ORDER BY s) FROM (
             SELECT l.line_no % 3 || ':' || l.status || ':' || count(*) AS s
               FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id
              WHERE b.tenant_id = :'t' AND b.batch_reference = 'WB3'
              GROUP BY l.line_no % 3, l.status) x),
          '0:applied:100,1:exception:100,2:applied:100',
          'a mixed file: numbers of open invoices applied, of paid ones exceptions, memos applied');
SELECT is((SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t' AND invoice_number_norm ~ '^wn[0-9]+$'),
          30000.00 - 2000.00, 'the open invoices were paid 10.00 each by number and by memo');
SELECT cmp_ok(:f2::bigint - :f1::bigint, '<', 300 * 10::bigint,
              'and it looked invoices up fewer than 10 times per line (37 before: every later line at each stop)');

-- 100 lines whose MemoLine is 40 words ("ref-<n>", each also giving the runs "ref" and "<n>"),
-- one of which names an open invoice. Its tokens are split once and looked up together at the
-- lock step; line by line only the tokens that named an invoice there are looked up again
-- (before, all ~80 of every line were).
SELECT coalesce(sum(idx_scan), 0) AS f3 FROM pg_stat_xact_user_tables WHERE relname = 'invoices' \gset
SET LOCAL ROLE fl_api;
SELECT posting_post_payments(:'t', jsonb_build_object('BatchReference', 'WB4', 'BatchTotal', '100.00',
           'PaymentDetails', (SELECT jsonb_agg(jsonb_build_object(
                                        'PaymentDate', '2024-03-04', 'PaymentType', 'ACH', 'Amount', '1.00',
                                        'MemoLine', (SELECT string_agg(CASE WHEN w = 1 + g % 40 THEN 'WN' || (400 + g)
                                                                            ELSE 'ref-' || (g * 41 + w) END, ' ')
                                                       FROM generate_series(1, 40) w)) ORDER BY g)
                                FROM generate_series(1, 100) g))) IS NOT NULL AS x \gset
RESET ROLE;
SELECT coalesce(sum(idx_scan), 0) AS f4 FROM pg_stat_xact_user_tables WHERE relname = 'invoices' \gset
SELECT is((SELECT count(*) FILTER (WHERE a.invoice_id = i.id AND i.invoice_number_norm = 'wn' || (400 + l.line_no))
             FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id
             JOIN payment_applications a ON a.line_id = l.id JOIN invoices i ON i.id = a.invoice_id
            WHERE b.tenant_id = :'t' AND b.batch_reference = 'WB4'), 100::bigint,
          'long memos: each line paid the invoice its one matching word names');
SELECT cmp_ok(:f4::bigint - :f3::bigint, '<', 100 * 10::bigint,
              'and it looked invoices up fewer than 10 times per line, not once per token');

-- reconcile_batch on the stored batch changes nothing (every line is done).
SELECT reconcile_batch(id) FROM payment_batches WHERE tenant_id = :'t' AND batch_reference = 'WB3' \gset
SELECT is((SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t'), 28000.00 - 100.00,
          'reconcile_batch again: nothing more applied');

SELECT * FROM finish();
ROLLBACK;
