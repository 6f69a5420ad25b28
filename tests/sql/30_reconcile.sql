-- Reconciliation rules on a hand-made batch.
BEGIN;
SELECT plan(106);

SELECT fl_tenant_add('Recon T', 'RECON-T') AS t \gset
SET LOCAL ROLE fl_api;
SELECT posting_create_client(:'t', '{"ClientKey":"C1","Name":"One","CompCode":"ONE"}') IS NOT NULL AS x \gset
SELECT posting_create_client(:'t', '{"ClientKey":"C2","Name":"Two","CompCode":"TWO"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'t', '{"ClientKey":"C1","DebtorKey":"D1","Name":"Alpha Foods Inc"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'t', '{"ClientKey":"C1","DebtorKey":"D2","Name":"Beta Logistics"}') IS NOT NULL AS x \gset
SELECT posting_create_debtor(:'t', '{"ClientKey":"C2","DebtorKey":"D1","Name":"Alpha Foods Inc"}') IS NOT NULL AS x \gset
SELECT posting_create_sched(:'t', '{"ClientKey":"C1","Amount":"3730.00","PaymentMethod":"A","IntegrationBatchId":"S1","InvoiceArray":[
  {"DebtorKey":"D1","InvoiceNumber":"100","InvoiceAr":"1000.00","InvoiceIntegrationId":"I100"},
  {"DebtorKey":"D1","InvoiceNumber":"101","InvoiceAr":"500.00","InvoiceIntegrationId":"I101"},
  {"DebtorKey":"D1","InvoiceNumber":"102","InvoiceAr":"300.00","InvoiceIntegrationId":"I102"},
  {"DebtorKey":"D1","InvoiceNumber":"103","InvoiceAr":"200.00","InvoiceIntegrationId":"I103"},
  {"DebtorKey":"D2","InvoiceNumber":"104","InvoiceAr":"750.00","InvoiceIntegrationId":"I104"},
  {"DebtorKey":"D2","InvoiceNumber":"105","InvoiceAr":"50.00","InvoiceIntegrationId":"I105"},
  {"DebtorKey":"D1","InvoiceNumber":"200","InvoiceAr":"400.00","InvoiceIntegrationId":"I200-1"},
  {"DebtorKey":"D2","InvoiceNumber":"106","InvoiceAr":"350.00","InvoiceIntegrationId":"I106"},
  {"DebtorKey":"D1","InvoiceNumber":"300","InvoiceAr":"100.00","InvoiceIntegrationId":"I300-1"},
  {"DebtorKey":"D2","InvoiceNumber":"107","InvoiceAr":"80.00","InvoiceIntegrationId":"I107-1"}]}') IS NOT NULL AS x \gset
SELECT posting_create_sched(:'t', '{"ClientKey":"C2","Amount":"580.00","PaymentMethod":"A","IntegrationBatchId":"S2","InvoiceArray":[
  {"DebtorKey":"D1","InvoiceNumber":"200","InvoiceAr":"400.00","InvoiceIntegrationId":"I200-2"},
  {"DebtorKey":"D1","InvoiceNumber":"300","InvoiceAr":"100.00","InvoiceIntegrationId":"I300-2"},
  {"DebtorKey":"D1","InvoiceNumber":"107","InvoiceAr":"80.00","InvoiceIntegrationId":"I107-2"}]}') IS NOT NULL AS x \gset

SELECT posting_post_payments(:'t', '{"BatchReference":"B1","BatchTotal":"4162.34","AccountNumber":"999","RequestHash":"rh1",
  "PaymentDetails":[
  {"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"1000.00","InvoiceRefNumber":"100"},
  {"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"200.00","InvoiceRefNumber":" 101 "},
  {"PaymentDate":"2024-03-02","PaymentType":"CHECK","Amount":"500.00","InvoiceRefNumber":"101"},
  {"PaymentDate":"2024-03-02","PaymentType":"CHECK","Amount":"500.00","MemoLine":"Payment for inv 102 and 103"},
  {"PaymentDate":"2024-03-02","PaymentType":"WIRE","Amount":"400.00","InvoiceRefNumber":"200"},
  {"PaymentDate":"2024-03-02","PaymentType":"WIRE","Amount":"400.00","InvoiceRefNumber":"200","ClientCode":"two"},
  {"PaymentDate":"2024-03-03","PaymentType":"ACH","Amount":"50.00","InvoiceRefNumber":"105","AccountNumber":"ACC-D2"},
  {"PaymentDate":"2024-03-03","PaymentType":"ACH","Amount":"750.00","AccountNumber":"ACC-D2","MemoLine":"thanks"},
  {"PaymentDate":"2024-03-03","PaymentType":"ACH","Amount":"12.34","MemoLine":"hello world"},
  {"PaymentDate":"2024-03-03","PaymentType":"ACH","Amount":"350.00","RemitterName":"BETA LOGISTICS"}]}') AS r1 \gset

SELECT is(:'r1'::jsonb #>> '{PaymentDetails,0,Status}', 'applied', 'line 1: exact match by InvoiceRefNumber');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"I100"}') ->> 'PaidInFullOn', '2024-03-01',
          'the invoice is paid in full on the payment date');
SELECT is((SELECT count(*) FROM events WHERE type = 'invoice.paid' AND payload ->> 'InvoiceIntegrationId' = 'I100'),
          1::bigint, 'an invoice.paid event is written');
SELECT is(:'r1'::jsonb #>> '{PaymentDetails,1,Status}', 'applied', 'line 2: partial payment of an invoice');
SELECT is((:'r1'::jsonb #> '{PaymentDetails,2}') - 'Applications' - 'PaymentDate' - 'PaymentType' - 'BankBatchItem'
          - 'BankRefNumber' - 'TransactionNumber' - 'RemitterName' - 'MemoLine' - 'ClientCode' - 'FinancialDocs',
          '{"Amount":"500.00","AccountNumber":null,"InvoiceRefNumber":"101","AppliedAmount":"300.00",
            "UnappliedAmount":"200.00","Status":"partial","ExceptionReason":null}'::jsonb,
          'line 3: overpayment applies the balance and leaves the rest unapplied');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"I101"}') ->> 'OpenBalance', '0.00', 'invoice 101 is paid');
SELECT is(:'r1'::jsonb #> '{PaymentDetails,3,Applications}',
          '[{"InvoiceIntegrationId":"I102","InvoiceNumber":"102","ClientKey":"C1","Amount":"300.00"},
            {"InvoiceIntegrationId":"I103","InvoiceNumber":"103","ClientKey":"C1","Amount":"200.00"}]'::jsonb,
          'line 4: one memo line pays two invoices in memo order');
SELECT is(:'r1'::jsonb #>> '{PaymentDetails,4,Status}', 'exception', 'line 5: invoice number at two clients');
SELECT is(:'r1'::jsonb #>> '{PaymentDetails,4,ExceptionReason}', 'Ambiguous invoice 200', 'line 5: reason');
SELECT is(:'r1'::jsonb #>> '{PaymentDetails,4,AppliedAmount}', '0.00', 'line 5: nothing applied');
SELECT is(:'r1'::jsonb #> '{PaymentDetails,5,Applications,0}' ->> 'InvoiceIntegrationId', 'I200-2',
          'line 6: ClientCode resolves the ambiguity');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"I200-1"}') ->> 'OpenBalance', '400.00',
          'the other client''s invoice 200 is untouched');
SELECT is((SELECT count(*) FROM debtor_accounts da JOIN debtors d ON d.id = da.debtor_id
            WHERE da.account_number = 'ACC-D2' AND d.debtor_key = 'D2'), 1::bigint,
          'line 7: applying by invoice number teaches the payer account');
SELECT is(:'r1'::jsonb #> '{PaymentDetails,7,Applications,0}' ->> 'InvoiceIntegrationId', 'I104',
          'line 8: amount match through the learned account');
SELECT is(:'r1'::jsonb #>> '{PaymentDetails,8,Status}', 'unapplied', 'line 9: nothing matches');
SELECT is(:'r1'::jsonb #>> '{PaymentDetails,8,UnappliedAmount}', '12.34', 'line 9: all unapplied');
SELECT is(:'r1'::jsonb #> '{PaymentDetails,9,Applications,0}' ->> 'InvoiceIntegrationId', 'I106',
          'line 10: amount match through the remitter name');

-- Further rules in a second batch.
SELECT posting_post_payments(:'t', '{"BatchReference":"B2","BatchTotal":"1330.00","RequestHash":"rh2","PaymentDetails":[
  {"PaymentDate":"2024-03-04","PaymentType":"ACH","Amount":"1000.00","InvoiceRefNumber":"100","AccountNumber":"ACC-D2"},
  {"PaymentDate":"2024-03-04","PaymentType":"ACH","Amount":"100.00","InvoiceRefNumber":"300","AccountNumber":"ACC-X"},
  {"PaymentDate":"2024-03-04","PaymentType":"ACH","Amount":"100.00","InvoiceRefNumber":"none","AccountNumber":"ACC-D2"},
  {"PaymentDate":"2024-03-04","PaymentType":"ACH","Amount":"50.00","MemoLine":"inv #300"},
  {"PaymentDate":"2024-03-04","PaymentType":"ACH","Amount":"80.00","InvoiceRefNumber":"107","AccountNumber":"ACC-D2"}
  ]}') AS r2 \gset
SELECT is(:'r2'::jsonb #>> '{PaymentDetails,0,ExceptionReason}', 'Invoice 100 not open',
          'a payment of a paid invoice is an exception, not re-routed by amount');
SELECT is(:'r2'::jsonb #>> '{PaymentDetails,1,Status}', 'exception', 'an unknown account does not resolve an ambiguity');
SELECT is(:'r2'::jsonb #>> '{PaymentDetails,2,Status}', 'unapplied', 'an unknown reference and no amount match');
SELECT is(:'r2'::jsonb #>> '{PaymentDetails,3,ExceptionReason}', 'Ambiguous invoice 300', 'an ambiguous memo token');
SELECT is(:'r2'::jsonb #> '{PaymentDetails,4,Applications,0}' ->> 'InvoiceIntegrationId', 'I107-1',
          'the payer''s known account resolves an invoice number used at two clients');

-- Who the payer is (fl_payer_debtors): an account known for several debtors names none of them,
-- and a line repeating the batch's own AccountNumber (the receiving account) teaches nothing.
SELECT posting_create_sched(:'t', '{"ClientKey":"C1","Amount":"231.00","PaymentMethod":"A","IntegrationBatchId":"S9","InvoiceArray":[
  {"DebtorKey":"D1","InvoiceNumber":"901","InvoiceAr":"77.00","InvoiceIntegrationId":"I901"},
  {"DebtorKey":"D2","InvoiceNumber":"902","InvoiceAr":"88.00","InvoiceIntegrationId":"I902"},
  {"DebtorKey":"D1","InvoiceNumber":"903","InvoiceAr":"66.00","InvoiceIntegrationId":"I903"}]}') IS NOT NULL AS x \gset
SELECT posting_post_payments(:'t', '{"BatchReference":"B7","BatchTotal":"20.00","AccountNumber":"LOCKBOX-1","RequestHash":"rh7","PaymentDetails":[
  {"PaymentDate":"2024-03-05","PaymentType":"ACH","Amount":"10.00","InvoiceRefNumber":"901","AccountNumber":"LOCKBOX-1"},
  {"PaymentDate":"2024-03-05","PaymentType":"ACH","Amount":"10.00","InvoiceRefNumber":"902","AccountNumber":"SHARED-9"}]}') IS NOT NULL AS x \gset
SELECT posting_post_payments(:'t', '{"BatchReference":"B8","BatchTotal":"10.00","AccountNumber":"LOCKBOX-1","RequestHash":"rh8","PaymentDetails":[
  {"PaymentDate":"2024-03-05","PaymentType":"ACH","Amount":"10.00","InvoiceRefNumber":"903","AccountNumber":"SHARED-9"}]}') IS NOT NULL AS x \gset
SELECT is((SELECT count(*) FROM debtor_accounts WHERE account_number = 'LOCKBOX-1'), 0::bigint,
          'a line repeating the batch''s AccountNumber does not teach it');
SELECT is((SELECT count(*) FROM debtor_accounts WHERE account_number = 'SHARED-9'), 2::bigint,
          'an account paying two debtors'' invoices is learned for both');
SELECT is(fl_payer_debtors(:'t', 'SHARED-9', NULL), NULL::uuid[], 'an account known for two debtors names no payer');
SELECT is(fl_payer_debtors(:'t', 'SHARED-9', 'beta  logistics'),
          ARRAY[(SELECT id FROM debtors WHERE debtor_key = 'D2')], 'then the remitter name does');
SELECT posting_post_payments(:'t', '{"BatchReference":"B9","BatchTotal":"223.00","AccountNumber":"LOCKBOX-1","RequestHash":"rh9","PaymentDetails":[
  {"PaymentDate":"2024-03-06","PaymentType":"ACH","Amount":"78.00","AccountNumber":"SHARED-9"},
  {"PaymentDate":"2024-03-06","PaymentType":"ACH","Amount":"78.00","AccountNumber":"SHARED-9","RemitterName":"Beta Logistics"},
  {"PaymentDate":"2024-03-06","PaymentType":"ACH","Amount":"67.00","AccountNumber":"LOCKBOX-1"}]}') AS r9 \gset
SELECT is(:'r9'::jsonb #>> '{PaymentDetails,0,Status}', 'unapplied',
          'the amount rule does not pick among the debtors of a shared account');
SELECT is(:'r9'::jsonb #> '{PaymentDetails,1,Applications,0}' ->> 'InvoiceIntegrationId', 'I902',
          'the remitter name names the payer: its invoice with the amount');
SELECT is(:'r9'::jsonb #>> '{PaymentDetails,2,Status}', 'unapplied',
          'the batch''s own account does not drive the amount rule');

-- Idempotency and validation.
SELECT results_eq(format($$SELECT line_no, line_applied, line_status, line_apps, replay
                            FROM posting_post_payments_lines(%L, '{"BatchReference":"B1","BatchTotal":"1.00",
                                                               "RequestHash":"rh1","PaymentDetails":[]}')$$, :'t'),
                  format('VALUES (NULL::int, NULL::text, NULL::text, NULL::text, %L::text)', :'r1'),
                  'same BatchReference and RequestHash: one row, the stored batch (replay), as first answered');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"B1","BatchTotal":"1.00","RequestHash":"rh-other",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"1.00"}]}')$$, :'t'),
                 'FL409', 'Duplicate BatchReference', 'same BatchReference with another body is 409');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"B3","BatchTotal":"100.00","RequestHash":"x",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"60.00","InvoiceRefNumber":"106"},
                                     {"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"40.01"}]}')$$, :'t'),
                 'FL400', 'Invalid batchTotal', 'BatchTotal must equal the sum of the amounts');
SELECT is((SELECT count(*) FROM payment_batches WHERE batch_reference = 'B3'), 0::bigint, 'the refused batch stored nothing');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"B3","BatchTotal":"0","PaymentDetails":[]}')$$, :'t'),
                 'FL400', 'Invalid batchTotal', 'BatchTotal must be positive');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"B3","BatchTotal":"1.00","PaymentDetails":[]}')$$, :'t'),
                 'FL400', 'Invalid PaymentDetails', 'PaymentDetails must not be empty');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"B3","BatchTotal":"1.00",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"-1.00"},
                                     {"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"2.00"}]}')$$, :'t'),
                 'FL400', 'Invalid Amount', 'a line amount must be positive');
-- The API's parser refuses these; a caller of the function in SQL gets the same answers.
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"B3","BatchTotal":"NaN",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"NaN","InvoiceRefNumber":"106"}]}')$$, :'t'),
                 'FL400', 'Invalid batchTotal', 'BatchTotal NaN (greater than every number in PostgreSQL) is refused');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"B3","BatchTotal":"60.00",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"NaN","InvoiceRefNumber":"106"},
                                     {"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"Infinity"}]}')$$, :'t'),
                 'FL400', 'Invalid Amount', 'a line amount NaN or Infinity is refused');
SELECT is((SELECT count(*) FROM events WHERE type = 'payment_batch.posted'), 5::bigint, 'payment_batch.posted events (B1, B2, B7-B9)');
SELECT is(fl_batch_json((SELECT id FROM payment_batches WHERE batch_reference = 'B1'))::text, :'r1',
          'fl_batch_json is the batch''s echo as json');
-- What the API's worker gets for a new batch: a row per line, in line order, with its results.
SELECT results_eq(format($$SELECT line_no, line_applied, line_unapplied, line_status, line_reason, line_apps, replay
                            FROM posting_post_payments_lines(%L, '{"BatchReference":"B12","BatchTotal":"1100.00",
                                "RequestHash":"rh12","PaymentDetails":[
                                {"PaymentDate":"2024-03-09","PaymentType":"ACH","Amount":"100.00","InvoiceRefNumber":"nope"},
                                {"PaymentDate":"2024-03-09","PaymentType":"ACH","Amount":"1000.00","InvoiceRefNumber":"104"}]}')$$,
                          :'t'),
                  $$VALUES (1, '0.00', '100.00', 'unapplied', NULL::text, '[]', NULL::text),
                           (2, '0.00', '1000.00', 'exception', 'Invoice 104 not open', '[]', NULL::text)$$,
                  'posting_post_payments_lines: each line''s results, in line order, and no replay');
-- Two lines of one batch paying the same invoice: the second finds it paid by the first.
SELECT posting_post_payments(:'t', '{"BatchReference":"B4","BatchTotal":"405.00","RequestHash":"rh4","PaymentDetails":[
  {"PaymentDate":"2024-03-05","PaymentType":"ACH","Amount":"400.00","InvoiceRefNumber":"200"},
  {"PaymentDate":"2024-03-06","PaymentType":"ACH","Amount":"5.00","InvoiceRefNumber":"200"}]}') AS r4 \gset
SELECT is(:'r4'::jsonb #> '{PaymentDetails,0,Applications,0}' ->> 'InvoiceIntegrationId', 'I200-1',
          'the only open invoice 200 left is paid in full');
SELECT is(:'r4'::jsonb #>> '{PaymentDetails,1,ExceptionReason}', 'Invoice 200 not open',
          'a later line of the same batch finds it paid');
-- Every line names an invoice, one of them unknown: the first, unlocked attempt (every line
-- on the fast path) writes nothing, and the batch is applied the locked way, each line once.
SELECT posting_post_payments(:'t', '{"BatchReference":"B5","BatchTotal":"30.00","RequestHash":"rh5","PaymentDetails":[
  {"PaymentDate":"2024-03-07","PaymentType":"ACH","Amount":"10.00","InvoiceRefNumber":"107","ClientCode":"two"},
  {"PaymentDate":"2024-03-07","PaymentType":"ACH","Amount":"5.00","InvoiceRefNumber":"nosuch"},
  {"PaymentDate":"2024-03-08","PaymentType":"ACH","Amount":"15.00","InvoiceRefNumber":"107","ClientCode":"two"}]}') AS r5 \gset
SELECT is(ARRAY(SELECT e ->> 'Status' FROM jsonb_array_elements(:'r5'::jsonb -> 'PaymentDetails') e),
          '{applied,unapplied,applied}'::text[], 'a batch with an unknown number: each line gets its rule');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"I107-2"}') ->> 'OpenBalance', '55.00',
          'the invoice its lines name is paid once by each');
SELECT is((SELECT count(*) FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id WHERE b.batch_reference = 'B5'),
          3::bigint, 'its lines are stored once');
SELECT is((SELECT count(*) FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id
             JOIN payment_batches b ON b.id = l.batch_id WHERE b.batch_reference = 'B5'),
          2::bigint, 'and their applications once');
SELECT is(fl_batch_json((SELECT id FROM payment_batches WHERE batch_reference = 'B5'))::text, :'r5',
          'the answer is what was stored');
-- Invoice numbers with punctuation in a memo, and two invoices of the payer with the amount.
SELECT is(ARRAY(SELECT tok FROM fl_memo_tokens('Payment #INV-1001, 2021/0042 a1') ORDER BY wn, pn),
          '{payment,inv-1001,inv,1001,2021/0042,2021,0042}'::text[],
          'memo tokens: words with their punctuation inside, and their runs of 3 or more');
SELECT posting_create_sched(:'t', '{"ClientKey":"C1","Amount":"280.00","PaymentMethod":"A","IntegrationBatchId":"S3","InvoiceArray":[
  {"DebtorKey":"D1","InvoiceNumber":"INV-1001","InvoiceAr":"100.00","InvoiceIntegrationId":"IM1"},
  {"DebtorKey":"D1","InvoiceNumber":"1001","InvoiceAr":"60.00","InvoiceIntegrationId":"IM2"},
  {"DebtorKey":"D1","InvoiceNumber":"2021/0042","InvoiceAr":"70.00","InvoiceIntegrationId":"IM3"},
  {"DebtorKey":"D2","InvoiceNumber":"120","InvoiceAr":"25.00","InvoiceIntegrationId":"IM4"},
  {"DebtorKey":"D2","InvoiceNumber":"121","InvoiceAr":"25.00","InvoiceIntegrationId":"IM5"}]}') IS NOT NULL AS x \gset
SELECT posting_post_payments(:'t', '{"BatchReference":"B6","BatchTotal":"255.00","RequestHash":"rh6","PaymentDetails":[
  {"PaymentDate":"2024-03-09","PaymentType":"ACH","Amount":"100.00","MemoLine":"Payment #INV-1001, thanks"},
  {"PaymentDate":"2024-03-09","PaymentType":"ACH","Amount":"70.00","MemoLine":"inv 2021/0042"},
  {"PaymentDate":"2024-03-09","PaymentType":"ACH","Amount":"60.00","MemoLine":"Paid INV#1001"},
  {"PaymentDate":"2024-03-09","PaymentType":"ACH","Amount":"25.00","AccountNumber":"ACC-D2"}]}') AS r6 \gset
SELECT is(ARRAY(SELECT a ->> 'InvoiceIntegrationId' FROM jsonb_array_elements(:'r6'::jsonb #> '{PaymentDetails,0,Applications}') a),
          '{IM1}'::text[], 'a memo naming INV-1001 pays invoice INV-1001, and not invoice 1001 too');
SELECT is(:'r6'::jsonb #> '{PaymentDetails,1,Applications,0}' ->> 'InvoiceIntegrationId', 'IM3',
          'a memo naming 2021/0042 pays invoice 2021/0042');
SELECT is(:'r6'::jsonb #> '{PaymentDetails,2,Applications,0}' ->> 'InvoiceIntegrationId', 'IM2',
          'a word that names no invoice (inv#1001): its runs still count');
SELECT is(ARRAY[:'r6'::jsonb #>> '{PaymentDetails,3,Status}', :'r6'::jsonb #>> '{PaymentDetails,3,ExceptionReason}'],
          ARRAY['exception', 'Ambiguous amount 25.00'],
          'two open invoices of the payer with the amount: an exception, not a guess');
SELECT is((SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t' AND invoice_integration_id IN ('IM4', 'IM5')),
          50.00::numeric, 'neither of them is paid');
SELECT is(fl_batch_json((SELECT id FROM payment_batches WHERE batch_reference = 'B6'))::text, :'r6',
          'the answer is what was stored');
-- What a memo cannot name (docs/sql.md): a number with a space inside, or under 3 characters.
-- And an amount match teaches no account: only lines applied by invoice number do.
SELECT posting_create_sched(:'t', '{"ClientKey":"C1","Amount":"54.00","PaymentMethod":"A","IntegrationBatchId":"S4","InvoiceArray":[
  {"DebtorKey":"D1","InvoiceNumber":"AB 12","InvoiceAr":"10.00","InvoiceIntegrationId":"IS1"},
  {"DebtorKey":"D1","InvoiceNumber":"77","InvoiceAr":"11.00","InvoiceIntegrationId":"IS2"},
  {"DebtorKey":"D2","InvoiceNumber":"AMT-1","InvoiceAr":"33.00","InvoiceIntegrationId":"IS3"}]}') IS NOT NULL AS x \gset
SELECT is(ARRAY(SELECT tok FROM fl_memo_tokens('for AB 12 and 77') ORDER BY wn, pn),
          '{for,and}'::text[], 'memo tokens: no token for "AB 12" or "77"');
SELECT posting_post_payments(:'t', '{"BatchReference":"B10","BatchTotal":"43.00","RequestHash":"rh10","PaymentDetails":[
  {"PaymentDate":"2024-03-10","PaymentType":"ACH","Amount":"5.00","MemoLine":"for AB 12"},
  {"PaymentDate":"2024-03-10","PaymentType":"ACH","Amount":"5.00","MemoLine":"inv 77"},
  {"PaymentDate":"2024-03-10","PaymentType":"ACH","Amount":"33.00","AccountNumber":"ACC-NEW","RemitterName":"Beta Logistics"}]}') AS r10 \gset
SELECT is(ARRAY(SELECT e ->> 'Status' FROM jsonb_array_elements(:'r10'::jsonb -> 'PaymentDetails') e),
          '{unapplied,unapplied,applied}'::text[],
          'memos naming "AB 12" and "77" pay nothing; the third line is matched by amount');
SELECT is((SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t' AND invoice_integration_id IN ('IS1', 'IS2')),
          21.00::numeric, 'invoices AB 12 and 77 are untouched');
SELECT is(:'r10'::jsonb #> '{PaymentDetails,2,Applications,0}' ->> 'InvoiceIntegrationId', 'IS3',
          'the remitter''s one open invoice with the amount is paid');
SELECT is((SELECT count(*) FROM debtor_accounts WHERE account_number = 'ACC-NEW'), 0::bigint,
          'a line applied by amount does not teach its AccountNumber');
-- A memo naming an invoice that is no longer open: an exception, neither a run of its word
-- (invoice 2002 for INV-2002) nor the payer's invoice with the amount (rule 3). The same
-- batch closes INV-2002 first; INV-1001 was paid by B6, before this batch.
SELECT posting_create_sched(:'t', '{"ClientKey":"C1","Amount":"80.00","PaymentMethod":"A","IntegrationBatchId":"S5","InvoiceArray":[
  {"DebtorKey":"D1","InvoiceNumber":"INV-2002","InvoiceAr":"40.00","InvoiceIntegrationId":"IN1"},
  {"DebtorKey":"D1","InvoiceNumber":"2002","InvoiceAr":"40.00","InvoiceIntegrationId":"IN2"}]}') IS NOT NULL AS x \gset
SELECT posting_post_payments(:'t', '{"BatchReference":"B11","BatchTotal":"172.34","RequestHash":"rh11","PaymentDetails":[
  {"PaymentDate":"2024-03-11","PaymentType":"ACH","Amount":"40.00","InvoiceRefNumber":"INV-2002"},
  {"PaymentDate":"2024-03-11","PaymentType":"ACH","Amount":"40.00","MemoLine":"Payment #INV-2002","RemitterName":"Alpha Foods Inc"},
  {"PaymentDate":"2024-03-11","PaymentType":"ACH","Amount":"40.00","MemoLine":"again INV-1001","RemitterName":"Alpha Foods Inc"},
  {"PaymentDate":"2024-03-11","PaymentType":"ACH","Amount":"40.00","MemoLine":"INV-1001 2002","RemitterName":"Alpha Foods Inc"},
  {"PaymentDate":"2024-03-11","PaymentType":"ACH","Amount":"12.34","MemoLine":"ref AMT-1","RemitterName":"Alpha Foods Inc"}]}') AS r11 \gset
SELECT is(ARRAY(SELECT e ->> 'Status' || ' ' || coalesce(e ->> 'ExceptionReason', '-')
                  FROM jsonb_array_elements(:'r11'::jsonb -> 'PaymentDetails') e),
          '{"applied -","exception Invoice inv-2002 not open","exception Invoice inv-1001 not open","applied -","unapplied -"}'::text[],
          'memos naming only the payer''s invoices no longer open: exceptions; one naming an open one as well pays it; '
          'a closed invoice of another debtor (AMT-1, Beta''s) is no reason: rule 3 goes on');
SELECT is(:'r11'::jsonb #> '{PaymentDetails,3,Applications,0}' ->> 'InvoiceIntegrationId', 'IN2',
          'the open invoice a memo names (2002) is paid, by its own word');
SELECT is((SELECT count(*) FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id
             JOIN payment_batches b ON b.id = l.batch_id WHERE b.batch_reference = 'B11'),
          2::bigint, 'the two exceptions apply nothing');
SELECT is(fl_batch_json((SELECT id FROM payment_batches WHERE batch_reference = 'B11'))::text, :'r11',
          'the answer is what was stored');
RESET ROLE;

-- A DBA re-running reconciliation (as the owner) changes nothing.
CREATE TEMP TABLE snap AS
SELECT (SELECT count(*) FROM payment_applications) AS apps,
       (SELECT sum(amount) FROM payment_applications) AS applied,
       (SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t') AS open,
       (SELECT string_agg(status || applied_amount, ',' ORDER BY id) FROM payment_lines WHERE tenant_id = :'t') AS lines;
SELECT lives_ok(format($$SELECT reconcile_batch(%L)$$, (SELECT id FROM payment_batches WHERE batch_reference = 'B1' AND tenant_id = :'t')),
                'reconcile_batch runs again on a reconciled batch');
SELECT lives_ok(format($$SELECT reconcile_batch(%L)$$, (SELECT id FROM payment_batches WHERE batch_reference = 'B2' AND tenant_id = :'t')),
                'and on the second one');
SELECT is((SELECT count(*) FROM payment_applications), (SELECT apps FROM snap), 'no new applications');
SELECT is((SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t'), (SELECT open FROM snap), 'balances unchanged');
SELECT is((SELECT string_agg(status || applied_amount, ',' ORDER BY id) FROM payment_lines WHERE tenant_id = :'t'),
          (SELECT lines FROM snap), 'lines unchanged');

-- Invariants over everything above.
SELECT is((SELECT count(*) FROM invoices i WHERE tenant_id = :'t' AND i.amount <> i.open_balance
             + coalesce((SELECT sum(amount) FROM payment_applications a WHERE a.invoice_id = i.id), 0)),
          0::bigint, 'per invoice: amount = open_balance + applications');
SELECT is((SELECT count(*) FROM payment_lines l WHERE tenant_id = :'t' AND (l.applied_amount + l.unapplied_amount <> l.amount
             OR l.applied_amount <> coalesce((SELECT sum(amount) FROM payment_applications a WHERE a.line_id = l.id), 0))),
          0::bigint, 'per line: applied + unapplied = amount, applied = applications');

-- Integrity of payment rows (migration 0005: checked per statement, parents guarded).
SELECT fl_tenant_add('Recon T2', 'RECON-T2') AS t2 \gset
SELECT id AS b1 FROM payment_batches WHERE batch_reference = 'B1' AND tenant_id = :'t' \gset
SELECT id AS i100 FROM invoices WHERE invoice_integration_id = 'I100' AND tenant_id = :'t' \gset
SELECT min(l.id) AS l1 FROM payment_lines l JOIN payment_applications a ON a.line_id = l.id WHERE l.batch_id = :'b1' \gset
SET LOCAL ROLE fl_api;
SELECT fl_set_tenant(:'t') IS NOT NULL AS x \gset
SELECT throws_ok(format($$INSERT INTO payment_lines (tenant_id, batch_id, line_no, payment_date, payment_type, amount, unapplied_amount)
                          VALUES (%L, gen_random_uuid(), 1, '2024-03-01', 'ACH', 1, 1)$$, :'t'),
                 '23503', NULL, 'a payment line needs its batch');
SELECT throws_ok(format($$INSERT INTO payment_applications (tenant_id, line_id, invoice_id, amount)
                          VALUES (%L, %s, gen_random_uuid(), 1)$$, :'t', :'l1'),
                 '23503', NULL, 'an application needs its invoice');
SELECT throws_ok(format($$INSERT INTO payment_applications (tenant_id, line_id, invoice_id, amount)
                          SELECT %L, -1, id, 1 FROM invoices WHERE invoice_integration_id = 'I100'$$, :'t'),
                 '23503', NULL, 'an application needs its line');
SELECT throws_ok(format($$UPDATE payment_applications SET invoice_id = gen_random_uuid() WHERE line_id = %s$$, :'l1'),
                 '23503', NULL, 'an application cannot be moved to a missing invoice');
SELECT throws_ok(format($$UPDATE payment_lines SET batch_id = gen_random_uuid() WHERE id = %s$$, :'l1'),
                 '23503', NULL, 'a line cannot be moved to a missing batch');
SELECT fl_set_tenant(:'t2') IS NOT NULL AS x \gset
SELECT throws_ok(format($$INSERT INTO payment_lines (tenant_id, batch_id, line_no, payment_date, payment_type, amount, unapplied_amount)
                          VALUES (%L, %L, 99, '2024-03-01', 'ACH', 1, 1)$$, :'t2', :'b1'),
                 '23503', NULL, 'another tenant''s batch is a missing batch');
-- an application of T2 names neither T's invoice nor T's line (they are missing to it)
SELECT lives_ok($$WITH b AS (INSERT INTO payment_batches (tenant_id, batch_reference, batch_total)
                              VALUES (fl_current_tenant(), 'T2-B', 1) RETURNING id)
                  INSERT INTO payment_lines (tenant_id, batch_id, line_no, payment_date, payment_type, amount, unapplied_amount)
                  SELECT fl_current_tenant(), id, 1, '2024-03-01', 'ACH', 1, 1 FROM b$$,
                'T2 posts a batch and a line of its own');
SELECT throws_ok(format($$INSERT INTO payment_applications (tenant_id, line_id, invoice_id, amount)
                          SELECT %L, (SELECT id FROM payment_lines WHERE line_no = 1), %L, 1$$, :'t2', :'i100'),
                 '23503', NULL, 'another tenant''s invoice is a missing invoice');
SELECT throws_ok(format($$INSERT INTO payment_applications (tenant_id, line_id, invoice_id, amount)
                          VALUES (%L, %s, %L, 1)$$, :'t2', :'l1', :'i100'),
                 '23503', NULL, 'another tenant''s line is a missing line');
RESET ROLE;
SELECT throws_ok(format($$DELETE FROM invoices WHERE tenant_id = %L AND invoice_integration_id = 'I100'$$, :'t'),
                 '23503', NULL, 'an invoice with applications cannot be deleted');
SELECT throws_ok(format($$DELETE FROM payment_batches WHERE id = %L$$, :'b1'),
                 '23503', NULL, 'a batch with lines cannot be deleted');
SELECT throws_ok(format($$DELETE FROM payment_lines WHERE id = %s$$, :'l1'),
                 '23503', NULL, 'a line with applications cannot be deleted');
SELECT throws_ok('TRUNCATE invoices', '23503', NULL, 'invoices with applications cannot be truncated');
-- A parent's id or tenant_id does not change while children refer to it (AFTER UPDATE ... WHEN,
-- migration 0010); an update that leaves them as they are is not refused.
SELECT throws_ok(format($$UPDATE invoices SET id = gen_random_uuid() WHERE tenant_id = %L AND invoice_integration_id = 'I100'$$, :'t'),
                 '23503', 'update on table "invoices" violates the reference from "payment_applications"',
                 'an invoice with applications cannot change its id');
SELECT throws_ok(format($$UPDATE payment_lines SET id = -%s WHERE id = %s$$, :'l1', :'l1'),
                 '23503', 'update on table "payment_lines" violates the reference from "payment_applications"',
                 'a line with applications cannot change its id');
SELECT throws_ok(format($$UPDATE payment_batches SET tenant_id = %L WHERE id = %L$$, :'t2', :'b1'),
                 '23503', 'update on table "payment_batches" violates the reference from "payment_lines"',
                 'a batch with lines cannot move to another tenant');
SELECT lives_ok(format($$UPDATE invoices SET tenant_id = tenant_id, id = id WHERE tenant_id = %L AND invoice_integration_id = 'I100'$$, :'t'),
                'an update that sets id and tenant_id to their own values passes the guard');
SELECT throws_ok(format($$UPDATE payment_applications SET line_id = -1 WHERE line_id = %s$$, :'l1'),
                 '23503', NULL, 'an application cannot be moved to a missing line (as owner)');
-- The check sees the end of the statement (0010), as a foreign key does: one statement that moves
-- an invoice's applications with it to a new id passes, and leaves no application behind.
SELECT lives_ok(format($$WITH n AS (SELECT gen_random_uuid() AS id),
                             o AS (SELECT id FROM invoices WHERE tenant_id = %L AND invoice_integration_id = 'I100'),
                             m AS (UPDATE payment_applications a SET invoice_id = n.id FROM n, o WHERE a.invoice_id = o.id)
                        UPDATE invoices i SET id = n.id FROM n, o WHERE i.id = o.id$$, :'t'),
                'an invoice and its applications moved to a new id in one statement');
SELECT is((SELECT count(*) FROM payment_applications a
            WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = a.invoice_id)),
          0::bigint, 'no application refers to a missing invoice');
INSERT INTO payment_batches (tenant_id, batch_reference, batch_total) VALUES (:'t', 'EMPTY', 1.00);
SELECT lives_ok($$DELETE FROM payment_batches WHERE batch_reference = 'EMPTY'$$, 'a batch without lines can be deleted');

-- fl_learn_lock: at most 256 advisory locks a transaction (the lock table is shared); past
-- that a new pair is still learned, without one
SELECT coalesce(nullif(current_setting('fl.learn_locks', true), ''), '0')::int AS learn_prev,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS adv_prev \gset
SELECT is((SELECT count(*) FILTER (WHERE fl_learn_lock(:'t', gen_random_uuid(), 'cap-' || i))
             FROM generate_series(1, 300) i), 300::bigint, 'fl_learn_lock: 300 new pairs, each may be learned');
SELECT is((SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) - :adv_prev,
          (256 - :learn_prev)::bigint, 'with no more than 256 learn locks in the transaction');

-- The lines' checks: on the lines as read into their types when every line passes them there,
-- else on the document, in line order (posting_post_payments_lines); the same reasons as before
-- the thirty-first session, and a refused batch stores nothing.
SET LOCAL ROLE fl_api;
SELECT count(*) AS lines_before FROM payment_lines \gset
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V1","BatchTotal":"1.01",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"1.00"},
                                     {"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"0.005"}]}')$$, :'t'),
                 'FL400', 'Invalid Amount', 'an amount under 0.01 that would round to 0.01 is refused');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V2","BatchTotal":"2.00",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"1.00"},
                                     {"PaymentDate":"2024-03-01","Amount":"1.00"}]}')$$, :'t'),
                 'FL400', 'Invalid PaymentType', 'a line without PaymentType');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V3","BatchTotal":"1.00",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"1.00"},
                                     {"PaymentDate":"2024-03-01","PaymentType":"ACH"}]}')$$, :'t'),
                 'FL400', 'Invalid Amount', 'a line without Amount');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V4","BatchTotal":"1.00",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"1.00"},
                                     "x"]}')$$, :'t'),
                 'FL400', 'Invalid PaymentDetails', 'a line that is not an object');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V5","BatchTotal":"1.00",
                   "PaymentDetails":[{"PaymentDate":"2024-02-30","PaymentType":"ACH","Amount":"2.00"},
                                     {"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"-1.00"}]}')$$, :'t'),
                 'FL400', 'Invalid Amount', 'a line''s reason comes before another line''s unreadable date');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V6","BatchTotal":"9.00",
                   "PaymentDetails":[{"PaymentDate":"2024-02-30","PaymentType":"ACH","Amount":"2.00"}]}')$$, :'t'),
                 'FL400', 'Invalid batchTotal', 'the total is checked before an unreadable date');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V7","BatchTotal":"2.00",
                   "PaymentDetails":[{"PaymentDate":"2024-02-30","PaymentType":"ACH","Amount":"2.00"}]}')$$, :'t'),
                 '22008', NULL, 'an unreadable date: PostgreSQL''s own error');
SELECT throws_ok(format($$SELECT posting_post_payments(%L, '{"BatchReference":"V8","BatchTotal":"2.00",
                   "PaymentDetails":[{"PaymentDate":"2024-03-01","PaymentType":"ACH","Amount":"abc"}]}')$$, :'t'),
                 '22P02', NULL, 'an unreadable amount: PostgreSQL''s own error');
SELECT is((SELECT count(*) FROM payment_batches WHERE batch_reference LIKE 'V_'), 0::bigint,
          'the refused batches stored nothing');
SELECT is((SELECT count(*) FROM payment_lines), :lines_before::bigint, 'nor any line');
SELECT posting_post_payments(:'t', '{"BatchReference":"V9","BatchTotal":"1.01","PaymentDetails":[
  {"PaymentDate":"2024-03-01","PaymentType":"wire","Amount":"1.00"},
  {"PaymentDate":"2024-03-02","PaymentType":"ACH","Amount":0.01}]}') AS r9 \gset
SELECT is(ARRAY(SELECT format('%s %s %s %s', l.line_no, l.payment_date, l.payment_type, l.amount)
                   FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id
                  WHERE b.batch_reference = 'V9' ORDER BY l.line_no),
          '{"1 2024-03-01 WIRE 1.00","2 2024-03-02 ACH 0.01"}'::text[],
          'an amount of 0.01 (decided on the document) is taken; dates and types as stored');
SELECT is(fl_batch_json((SELECT id FROM payment_batches WHERE batch_reference = 'V9'))::text, :'r9',
          'and answered as stored');

SELECT * FROM finish();
ROLLBACK;
