-- A DBA's retry of lines left unapplied (docs/sql.md, reconcile_batch): once the invoices they
-- name exist, the lines set back to pending are applied by reconcile_batch, as the owner,
-- through both of its paths (a line naming its invoice by InvoiceRefNumber takes the fast path,
-- a line naming two in its MemoLine the line-by-line one); lines not set back are left alone.
BEGIN;
SELECT plan(19);

SELECT fl_tenant_add('Retry T', 'RETRY-T') AS t \gset
SET LOCAL ROLE fl_api;
SELECT posting_create_client(:'t', '{"ClientKey":"RC","Name":"Retry Client"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'t', '{"ClientKey":"RC","DebtorKey":"RD","Name":"Retry Payer"}') IS NOT NULL AS x \gset
SELECT posting_create_sched(:'t', '{"ClientKey":"RC","Amount":"100.00","PaymentMethod":"A","IntegrationBatchId":"RS1",
  "InvoiceArray":[{"DebtorKey":"RD","InvoiceNumber":"500","InvoiceAr":"100.00","InvoiceIntegrationId":"R500"}]}')
  IS NOT NULL AS x \gset
SELECT posting_post_payments(:'t', '{"BatchReference":"RB1","BatchTotal":"255.00","PaymentDetails":[
  {"PaymentDate":"2024-05-01","PaymentType":"ACH","Amount":"60.00","InvoiceRefNumber":"600"},
  {"PaymentDate":"2024-05-01","PaymentType":"ACH","Amount":"70.00","MemoLine":"for inv 601 and 602"},
  {"PaymentDate":"2024-05-01","PaymentType":"ACH","Amount":"100.00","InvoiceRefNumber":"500"},
  {"PaymentDate":"2024-05-01","PaymentType":"ACH","Amount":"25.00","InvoiceRefNumber":"603"}]}') AS r \gset
SELECT is((SELECT string_agg(status || ' ' || applied_amount, ', ' ORDER BY line_no) FROM payment_lines
            WHERE tenant_id = :'t'),
          'unapplied 0.00, unapplied 0.00, applied 100.00, unapplied 0.00',
          'before: three lines name invoices that do not exist yet');

-- The invoices arrive.
SELECT posting_create_sched(:'t', '{"ClientKey":"RC","Amount":"155.00","PaymentMethod":"A","IntegrationBatchId":"RS2",
  "InvoiceArray":[{"DebtorKey":"RD","InvoiceNumber":"600","InvoiceAr":"60.00","InvoiceIntegrationId":"R600"},
                  {"DebtorKey":"RD","InvoiceNumber":"601","InvoiceAr":"30.00","InvoiceIntegrationId":"R601"},
                  {"DebtorKey":"RD","InvoiceNumber":"602","InvoiceAr":"40.00","InvoiceIntegrationId":"R602"},
                  {"DebtorKey":"RD","InvoiceNumber":"603","InvoiceAr":"25.00","InvoiceIntegrationId":"R603"}]}')
  IS NOT NULL AS x \gset
RESET ROLE;

CREATE TEMP TABLE before_apps AS
SELECT a.* FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id WHERE l.tenant_id = :'t';

-- As the document says: lines 1 and 2 back to pending (line 4 is not), then reconcile_batch.
UPDATE payment_lines SET status = 'pending', exception_reason = NULL
 WHERE tenant_id = :'t' AND line_no IN (1, 2) AND status = 'unapplied' AND applied_amount = 0;
-- (the test's own mark, so that the check below sees reconcile_batch set it again)
UPDATE payment_lines SET reconciled_at = '2000-01-01' WHERE tenant_id = :'t' AND line_no IN (1, 2);
SELECT lives_ok(format($$SELECT reconcile_batch(%L)$$,
                       (SELECT id FROM payment_batches WHERE tenant_id = :'t' AND batch_reference = 'RB1')),
                'reconcile_batch on the lines set back to pending, as the owner');

SELECT is((SELECT status || ' ' || applied_amount || ' ' || unapplied_amount FROM payment_lines
            WHERE tenant_id = :'t' AND line_no = 1), 'applied 60.00 0.00', 'line 1: applied by InvoiceRefNumber');
SELECT is((SELECT string_agg(i.invoice_number || ' ' || a.amount, ', ' ORDER BY a.id)
             FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id JOIN invoices i ON i.id = a.invoice_id
            WHERE l.tenant_id = :'t' AND l.line_no = 1), '600 60.00', 'line 1: its application');
SELECT is((SELECT status || ' ' || applied_amount || ' ' || unapplied_amount FROM payment_lines
            WHERE tenant_id = :'t' AND line_no = 2), 'applied 70.00 0.00', 'line 2: applied by its MemoLine');
SELECT is((SELECT string_agg(i.invoice_number || ' ' || a.amount, ', ' ORDER BY a.id)
             FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id JOIN invoices i ON i.id = a.invoice_id
            WHERE l.tenant_id = :'t' AND l.line_no = 2), '601 30.00, 602 40.00', 'line 2: two applications, memo order');
SELECT is((SELECT count(*) FROM payment_lines WHERE tenant_id = :'t' AND line_no IN (1, 2)
              AND reconciled_at > '2000-01-01'), 2::bigint, 'lines 1 and 2: reconciled_at set anew');
SET LOCAL ROLE fl_api;
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"R600"}') ->> 'PaidInFull', 'true', 'invoice 600 paid in full');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"R600"}') ->> 'PaidInFullOn', '2024-05-01',
          'on the line''s payment date');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"R601"}') ->> 'OpenBalance', '0.00', 'invoice 601 paid');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"R602"}') ->> 'OpenBalance', '0.00', 'invoice 602 paid');
RESET ROLE;

-- Untouched: line 3 (applied before) and line 4 (left unapplied), invoice 603.
SELECT is((SELECT status || ' ' || applied_amount FROM payment_lines WHERE tenant_id = :'t' AND line_no = 4),
          'unapplied 0.00', 'line 4, not set back: still unapplied');
SELECT is((SELECT open_balance FROM invoices WHERE tenant_id = :'t' AND invoice_number = '603'), 25.00::numeric(18,2),
          'invoice 603 untouched');
SELECT set_eq($$SELECT a.* FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id
                 WHERE l.tenant_id = '$$ || :'t' || $$' AND l.line_no IN (3, 4)$$,
              'SELECT * FROM before_apps', 'the applications made before are exactly as they were');

-- Again: nothing more.
CREATE TEMP TABLE snap AS
SELECT (SELECT count(*) FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id WHERE l.tenant_id = :'t') AS apps,
       (SELECT string_agg(status || applied_amount, ',' ORDER BY line_no) FROM payment_lines WHERE tenant_id = :'t') AS lines;
SELECT lives_ok(format($$SELECT reconcile_batch(%L)$$,
                       (SELECT id FROM payment_batches WHERE tenant_id = :'t' AND batch_reference = 'RB1')),
                'reconcile_batch again');
SELECT is((SELECT count(*) FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id WHERE l.tenant_id = :'t'),
          (SELECT apps FROM snap), 'no new applications');
SELECT is((SELECT string_agg(status || applied_amount, ',' ORDER BY line_no) FROM payment_lines WHERE tenant_id = :'t'),
          (SELECT lines FROM snap), 'lines unchanged');

-- The invariants.
SELECT is((SELECT count(*) FROM invoices i WHERE tenant_id = :'t' AND i.amount <> i.open_balance
             + coalesce((SELECT sum(amount) FROM payment_applications a WHERE a.invoice_id = i.id), 0)),
          0::bigint, 'per invoice: amount = open_balance + applications');
SELECT is((SELECT count(*) FROM payment_lines l WHERE tenant_id = :'t'
             AND (l.applied_amount + l.unapplied_amount <> l.amount
                  OR l.applied_amount <> coalesce((SELECT sum(amount) FROM payment_applications a WHERE a.line_id = l.id), 0))),
          0::bigint, 'per line: applied + unapplied = amount, applied = applications');

SELECT * FROM finish();
ROLLBACK;
