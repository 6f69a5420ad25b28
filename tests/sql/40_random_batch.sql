-- A reproducible random batch of 1,000 lines against a few hundred invoices; invariants must hold.
BEGIN;
SELECT plan(19);
SELECT setseed(0.20240301);

SELECT fl_tenant_add('Random T', 'RAND-T') AS t \gset
SET LOCAL ROLE fl_api;
SELECT count(posting_create_client(:'t', jsonb_build_object('ClientKey', 'C' || g, 'Name', 'Client ' || g,
                                                            'CompCode', 'K' || g))) AS x
  FROM generate_series(1, 3) g \gset
-- 20 debtors, each linked to one or two clients.
SELECT count(posting_create_debtor(:'t', jsonb_build_object('ClientKey', 'C' || c, 'DebtorKey', 'D' || d,
                                                            'Name', 'Debtor Number ' || d))) AS x
  FROM generate_series(1, 20) d
  CROSS JOIN LATERAL (SELECT 1 + d % 3 AS c UNION SELECT 1 + (d * 7) % 3 WHERE d % 2 = 0) cs \gset
-- 300 invoices in one schedule per client; invoice numbers N0..N239, so ~60 numbers are shared.
CREATE TEMP TABLE rnd_inv AS
SELECT g, c, d, 'N' || (g % 240) AS num, round((10 + random() * 990)::numeric, 2) AS amt
  FROM generate_series(1, 300) g
  CROSS JOIN LATERAL (SELECT 1 + g % 3 AS c) x
  CROSS JOIN LATERAL (SELECT (array_agg(cd.debtor_key ORDER BY cd.debtor_key))[1 + g % count(*)::int] AS d
                        FROM (SELECT d.debtor_key FROM client_debtors l JOIN debtors d ON d.id = l.debtor_id
                                JOIN clients cl ON cl.id = l.client_id
                               WHERE cl.client_key = 'C' || x.c) cd) y;
SELECT count(posting_create_sched(:'t', doc)) AS x
  FROM (SELECT jsonb_build_object(
                 'ClientKey', 'C' || c, 'Amount', sum(amt)::text, 'PaymentMethod', 'A', 'IntegrationBatchId', 'S' || c,
                 'InvoiceArray', jsonb_agg(jsonb_build_object('DebtorKey', d, 'InvoiceNumber', num, 'InvoiceAr', amt::text,
                                                              'InvoiceIntegrationId', 'I' || g) ORDER BY g)) AS doc
          FROM rnd_inv GROUP BY c) s \gset

-- 1,000 lines: references (some unknown), memos naming one or two invoices, known/unknown
-- accounts, remitter names, client codes, garbage; amounts random, exact, or over the balance.
CREATE TEMP TABLE rnd_line AS
SELECT n, k, i.num, i.d, i.c,
       CASE WHEN k IN (6, 7) OR random() < 0.3 THEN i.amt
            ELSE round((1 + random() * 1200)::numeric, 2) END AS amt
  FROM (SELECT n, floor(random() * 10)::int AS k, 1 + floor(random() * 300)::int AS pick
          FROM generate_series(1, 1000) n) s
  JOIN rnd_inv i ON i.g = s.pick;
-- The call the API makes: one row per line with its results (the worker writes the echo).
CREATE TEMP TABLE rnd_out AS
SELECT * FROM posting_post_payments_lines(:'t', (SELECT jsonb_build_object(
         'BatchReference', 'RB1', 'BatchTotal', sum(amt)::text, 'AccountNumber', '123', 'RequestHash', 'rh',
         'PaymentDetails', jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
             'PaymentDate', '2024-03-01', 'PaymentType', 'ACH', 'Amount', amt::text,
             'InvoiceRefNumber', CASE WHEN k IN (0, 1, 2) THEN num WHEN k = 3 THEN 'X' || n END,
             'MemoLine', CASE WHEN k = 4 THEN 'pmt ' || num || ' and N' || (n % 250) WHEN k = 8 THEN 'lorem ipsum ' || n END,
             'ClientCode', CASE WHEN k IN (2, 5) THEN 'K' || c END,
             'AccountNumber', CASE WHEN k IN (0, 6) THEN 'ACCT-' || d WHEN k = 3 THEN 'ACCT-UNKNOWN' END,
             'RemitterName', CASE WHEN k IN (1, 7) THEN 'DEBTOR number ' || substr(d, 2) || ' LLC' END))
             ORDER BY n))
  FROM rnd_line)) WITH ORDINALITY;
RESET ROLE;

SELECT is((SELECT count(*) FROM payment_lines WHERE tenant_id = :'t'), 1000::bigint, '1,000 lines stored');
SELECT is((SELECT count(*) FROM payment_lines WHERE tenant_id = :'t' AND status = 'pending'), 0::bigint,
          'no line left pending');
SELECT ok((SELECT count(DISTINCT status) = 4 FROM payment_lines WHERE tenant_id = :'t'),
          'the batch exercises applied, partial, unapplied and exception lines');
SELECT ok((SELECT count(*) > 0 FROM payment_lines l WHERE tenant_id = :'t'
             AND (SELECT count(*) FROM payment_applications a WHERE a.line_id = l.id) > 1),
          'some lines pay several invoices');
SELECT ok((SELECT count(*) > 0 FROM invoices WHERE tenant_id = :'t' AND open_balance = 0)
          AND (SELECT count(*) > 0 FROM invoices WHERE tenant_id = :'t' AND open_balance BETWEEN 0.01 AND amount - 0.01),
          'some invoices are paid in full, some partly');

SELECT is((SELECT count(*) FROM payment_lines WHERE tenant_id = :'t'
             AND applied_amount + unapplied_amount <> amount), 0::bigint,
          'per line: applied + unapplied = amount');
SELECT is((SELECT count(*) FROM payment_lines l WHERE tenant_id = :'t'
             AND applied_amount <> coalesce((SELECT sum(amount) FROM payment_applications a WHERE a.line_id = l.id), 0)),
          0::bigint, 'per line: applied = sum of its applications');
SELECT is((SELECT count(*) FROM payment_lines l WHERE tenant_id = :'t' AND status IN ('exception', 'unapplied')
             AND EXISTS (SELECT 1 FROM payment_applications a WHERE a.line_id = l.id)), 0::bigint,
          'exception and unapplied lines have no applications');
SELECT is((SELECT count(*) FROM invoices i WHERE tenant_id = :'t'
             AND amount <> open_balance + coalesce((SELECT sum(amount) FROM payment_applications a WHERE a.invoice_id = i.id), 0)),
          0::bigint, 'per invoice: amount = open_balance + sum of applications');
SELECT is((SELECT count(*) FROM invoices WHERE tenant_id = :'t'
             AND (open_balance < 0 OR open_balance > amount OR (open_balance = 0) <> (paid_in_full_on IS NOT NULL))),
          0::bigint, 'per invoice: 0 <= open_balance <= amount, paid_in_full_on iff paid');
SELECT is((SELECT sum(a.amount) FROM payment_applications a JOIN payment_lines l ON l.id = a.line_id
            JOIN payment_batches b ON b.id = l.batch_id WHERE b.tenant_id = :'t' AND b.batch_reference = 'RB1'),
          (SELECT sum(applied_amount) FROM payment_lines WHERE tenant_id = :'t'),
          'sum of applications = sum of applied over the batch');
SELECT is((SELECT sum(amount) FROM payment_lines WHERE tenant_id = :'t'),
          (SELECT batch_total FROM payment_batches WHERE tenant_id = :'t'), 'the lines add up to BatchTotal');
SELECT is((SELECT count(*) FROM events WHERE tenant_id = :'t' AND type = 'invoice.paid'),
          (SELECT count(*) FROM invoices WHERE tenant_id = :'t' AND open_balance = 0),
          'one invoice.paid event per paid invoice');
SELECT is((SELECT count(*) FROM rnd_out o
             JOIN payment_lines l ON l.tenant_id = :'t' AND l.line_no = o.line_no
            WHERE o.replay IS NULL AND o.line_unapplied = fl_money(l.unapplied_amount)
              AND o.line_no = o.ordinality),
          1000::bigint, 'the answer: a row per line, in line order, with its unapplied amount as stored');
-- Each row's results with the line as stored make the stored batch read back (the answer to a
-- retry): what was answered is what was stored, Applications included.
SELECT is((SELECT fl_batch_echo_wrap(b.batch_reference, b.batch_total, b.account_number,
                      string_agg(fl_payment_line_json(l, o.line_applied::numeric, o.line_status, o.line_reason,
                                                      o.line_apps), ',' ORDER BY l.line_no))
             FROM payment_batches b JOIN payment_lines l ON l.batch_id = b.id JOIN rnd_out o ON o.line_no = l.line_no
            WHERE b.tenant_id = :'t' GROUP BY b.id),
          (SELECT fl_batch_echo(id) FROM payment_batches WHERE tenant_id = :'t'),
          'the answer''s results and the stored lines are the batch read back (fl_batch_echo), byte for byte');

-- DBA views, read as fl_report through RLS.
CREATE TEMP TABLE rnd_expect AS
SELECT (SELECT count(*) FROM payment_lines WHERE tenant_id = :'t' AND unapplied_amount > 0) AS unapplied,
       (SELECT count(*) FROM payment_lines WHERE tenant_id = :'t' AND status = 'exception') AS exceptions,
       (SELECT sum(open_balance) FROM invoices WHERE tenant_id = :'t') AS open;
GRANT SELECT ON rnd_expect TO fl_report;
SET LOCAL ROLE fl_report;
SELECT is((SELECT count(*) FROM unapplied_cash WHERE tenant_id = :'t'), (SELECT unapplied FROM rnd_expect),
          'unapplied_cash lists the lines with unapplied cash');
SELECT is((SELECT count(*) FROM payment_exceptions WHERE tenant_id = :'t' AND exception_reason IS NOT NULL),
          (SELECT exceptions FROM rnd_expect), 'payment_exceptions lists the exceptions with their reason');
SELECT is((SELECT sum(total_open) FROM client_aging WHERE tenant_id = :'t'), (SELECT open FROM rnd_expect),
          'client_aging totals the open balances');
SELECT is((SELECT sum(current_amount + days_1_30 + days_31_60 + days_61_90 + days_91_plus) FROM debtor_aging
            WHERE tenant_id = :'t'), (SELECT open FROM rnd_expect), 'debtor_aging buckets add up to the total');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
