-- A mixed payment batch, timed: the batch of tests/sql/40_random_batch.sql (numbers, unknown
-- numbers, memos, accounts, remitter names, client codes; amounts exact, random or over the
-- balance) scaled to :n lines against :m invoices (numbers shared by two invoices in places),
-- as a new tenant. Not run by pg_prove. Against a database migrated with sql/ (the one
-- tests/sql/perf/post_payments_bench.sh creates will do), as a superuser:
--
--   psql -X -At -d fl_bench -v n=2000 -v m=600 -v seed=0.5 -v mode=mixed -v tag=$RANDOM \
--        -f tests/sql/perf/mixed_batch.sql
--
-- mode: mixed (as the pgTAP test), refs (every line names an invoice), alt (every other line
-- names an unknown invoice), memo (every line a MemoLine near its 500-character cap, 60 words
-- of which one names an invoice). tag: any new word (the tenant's name). The setup is committed and
-- analyzed before the batch. Prints lines|invoices|md5 of the answer|ms|applied/exception lines|
-- md5 of the tenant's invoices|of its invoice.paid events|of its learned accounts: the md5s let
-- two versions of the functions be compared on the same seed.
\set QUIET on
BEGIN;
SELECT setseed(:seed);
SELECT fl_tenant_add('Mixed ' || :'tag', 'MIXED-' || :'tag') AS t \gset
SET LOCAL ROLE fl_api;
SELECT count(posting_create_client(:'t', jsonb_build_object('ClientKey', 'C' || g, 'Name', 'Client ' || g,
                                                            'CompCode', 'K' || g))) AS x
  FROM generate_series(1, 3) g \gset
SELECT count(posting_create_debtor(:'t', jsonb_build_object('ClientKey', 'C' || c, 'DebtorKey', 'D' || d,
                                                            'Name', 'Debtor Number ' || d, 'CompCode', 'DC' || d || '_' || c))) AS x
  FROM generate_series(1, 20) d
  CROSS JOIN LATERAL (SELECT 1 + d % 3 AS c UNION SELECT 1 + (d * 7) % 3 WHERE d % 2 = 0) cs \gset
CREATE TEMP TABLE rnd_inv ON COMMIT DROP AS
SELECT g, c, d, 'N' || (g % (:m * 4 / 5)) AS num, round((10 + random() * 990)::numeric, 2) AS amt
  FROM generate_series(1, :m) g
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
CREATE TEMP TABLE rnd_line ON COMMIT DROP AS
SELECT n, k, i.num, i.d, i.c,
       CASE WHEN k IN (6, 7) OR random() < 0.3 THEN i.amt
            ELSE round((1 + random() * 1200)::numeric, 2) END AS amt
  FROM (SELECT n, floor(random() * 10)::int AS k, 1 + floor(random() * :m)::int AS pick
          FROM generate_series(1, :n) n) s
  JOIN rnd_inv i ON i.g = s.pick;
CREATE TEMP TABLE rnd_doc AS SELECT jsonb_build_object(
         'BatchReference', 'RB1', 'BatchTotal', sum(amt)::text, 'AccountNumber', '123', 'RequestHash', 'rh',
         'PaymentDetails', jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
             'PaymentDate', '2024-03-01', 'PaymentType', 'ACH', 'Amount', amt::text,
             'InvoiceRefNumber', CASE WHEN :'mode' = 'alt' THEN CASE WHEN n % 2 = 0 THEN num ELSE 'X' || n END
                                      WHEN :'mode' = 'refs' THEN num
                                      WHEN k IN (0, 1, 2) THEN num WHEN k = 3 THEN 'X' || n END,
             'MemoLine', CASE WHEN :'mode' = 'memo'   -- ~490 characters: 60 words, one names the invoice
                              THEN (SELECT string_agg(CASE WHEN w = 1 + n % 60 THEN num ELSE 'ref-' || (n * 61 + w) END, ' ')
                                      FROM generate_series(1, 60) w)
                              WHEN k = 4 THEN 'pmt ' || num || ' and N' || (n % 250) WHEN k = 8 THEN 'lorem ipsum ' || n END,
             'ClientCode', CASE WHEN k IN (2, 5) THEN 'K' || c END,
             'AccountNumber', CASE WHEN k IN (0, 6) THEN 'ACCT-' || d WHEN k = 3 THEN 'ACCT-UNKNOWN' END,
             'RemitterName', CASE WHEN k IN (1, 7) THEN 'DEBTOR number ' || substr(d, 2) || ' LLC' END))
             ORDER BY n)) AS doc
  FROM rnd_line;
COMMIT;
ANALYZE;
BEGIN;
SET LOCAL ROLE fl_api;
SELECT clock_timestamp() AS t0 \gset
SELECT md5(posting_post_payments(:'t', doc)) AS h FROM rnd_doc \gset
SELECT :n AS lines, :m AS invoices, :'h' AS echo_md5, round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000) AS ms,
       (SELECT count(*) FILTER (WHERE status = 'applied') || '/' || count(*) FILTER (WHERE status = 'exception') FROM payment_lines WHERE tenant_id = :'t') AS applied_exc,
       (SELECT md5(string_agg(invoice_integration_id || ':' || open_balance || ':' || coalesce(paid_in_full_on::text, '-') || ':' || coalesce(last_payment_on::text, '-'), ',' ORDER BY invoice_integration_id)) FROM invoices WHERE tenant_id = :'t') AS inv_md5,
       (SELECT md5(string_agg(type || payload::text, ',' ORDER BY id)) FROM events WHERE type = 'invoice.paid' AND tenant_id = :'t') AS ev_md5,
       (SELECT md5(string_agg(d.debtor_key || ':' || a.account_number, ',' ORDER BY d.debtor_key, a.account_number)) FROM debtor_accounts a JOIN debtors d ON d.id = a.debtor_id WHERE a.tenant_id = :'t') AS da_md5;
COMMIT;
DROP TABLE rnd_doc;
