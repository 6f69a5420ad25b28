#!/bin/sh
# SQL-only benchmark of post-payments as the API calls it (posting_post_payments_lines): 100-line
# batches against 100,000 open invoices, each line paying a random open invoice by
# InvoiceRefNumber with a few cents (invoices stay open), lines sorted by invoice number, unique
# BatchReference per batch: the workload of bench/post-payments.lua without the HTTP stack (and
# without the echo, which the worker writes).  Not run by pg_prove.
#
#   tests/sql/perf/post_payments_bench.sh [-h host] [-d db] [-T seconds] [-c "1 2"] [--no-setup] [--cpu N]
#                                         [--lc-collate C]
#
# Creates (drops first) the database, applies sql/migrations then sql/functions as the connecting
# superuser, seeds one tenant, client, debtor, 100,000 invoices (as bench/run does), ANALYZE,
# pre-generates 2,000 request documents, warms up (5 s of posting, VACUUM ANALYZE), then runs
# pgbench as fl_api once per client count.
# Prints lines/s = batches/s * 100.  Run with fsync and synchronous_commit on for honest figures.
# --cpu N: also post N batches in one session (one transaction each) and print the backend's CPU
# time per batch (from /proc, so the server must be local): a figure that other load on the
# machine does not distort the way it distorts wall-clock throughput.
# --lc-collate X: create the database with that LC_COLLATE (from template0), not the cluster's.
set -eu
HOST=${PGHOST:-/tmp/perfdev}; DB=fl_bench; T=20; CLIENTS="1 2"; SETUP=1; SU=${PGUSER:-postgres}; CPU=0; COLLATE=
while [ $# -gt 0 ]; do
    case $1 in
        -h) HOST=$2; shift 2;; -d) DB=$2; shift 2;; -T) T=$2; shift 2;; -c) CLIENTS=$2; shift 2;;
        --no-setup) SETUP=0; shift;;
        --cpu) CPU=$2; shift 2;;
        --lc-collate) COLLATE=$2; shift 2;;
        *) echo "usage: $0 [-h host] [-d db] [-T seconds] [-c \"1 2\"] [--no-setup] [--cpu N] [--lc-collate C]" >&2; exit 2;;
    esac
done
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
INVOICES=100000; LINES=100; DOCS=2000
psu() { psql -X -q -h "$HOST" -U "$SU" -v ON_ERROR_STOP=1 "$@"; }

if [ $SETUP = 1 ]; then
    psu -d postgres -c "DROP DATABASE IF EXISTS $DB" \
        -c "CREATE DATABASE $DB${COLLATE:+ TEMPLATE template0 LC_COLLATE '$COLLATE'}"
    for f in "$ROOT"/sql/migrations/*.sql "$ROOT"/sql/functions/*.sql; do
        psu -d "$DB" --single-transaction -f "$f" >/dev/null
    done
    psu -d "$DB" >/dev/null <<SQL
SELECT fl_tenant_add('Bench', 'BENCH-F') AS t \gset
BEGIN;
SET LOCAL ROLE fl_api;
SELECT posting_create_client(:'t', '{"ClientKey":"BENCH","Name":"Bench Trucking LLC","State":"TX","Type":0,"Industry":1}');
SELECT posting_create_debtor(:'t', '{"ClientKey":"BENCH","DebtorKey":"BENCHDEBTOR","Name":"Bench Debtor Inc","Country":"USA"}');
RESET ROLE;
INSERT INTO schedules (tenant_id, integration_batch_id, client_id, amount, label, payment_method)
SELECT c.tenant_id, 'bench-sched-1', c.id, $INVOICES * 1000.00, 'Benchmark', 'A'
  FROM clients c WHERE c.tenant_id = :'t' AND c.client_key = 'BENCH';
INSERT INTO invoices (tenant_id, schedule_id, seq, client_id, debtor_id, client_key, debtor_key,
                      invoice_integration_id, invoice_number, amount, open_balance, invoice_date, due_date)
SELECT s.tenant_id, s.id, g, s.client_id, d.id, c.client_key, d.debtor_key, 'bench-inv-' || lpad(g::text, 6, '0'),
       'BN' || lpad(g::text, 6, '0'), 1000.00, 1000.00, current_date - 30, current_date
  FROM schedules s
  JOIN clients c ON c.id = s.client_id
  JOIN debtors d ON d.tenant_id = s.tenant_id AND d.debtor_key = 'BENCHDEBTOR'
 CROSS JOIN generate_series(1, $INVOICES) g
 WHERE s.tenant_id = :'t' AND s.integration_batch_id = 'bench-sched-1';
INSERT INTO debtor_accounts (tenant_id, debtor_id, account_number, source)
SELECT tenant_id, id, 'BENCH-ACCT-1', 'manual' FROM debtors
 WHERE tenant_id = :'t' AND debtor_key = 'BENCHDEBTOR'
ON CONFLICT DO NOTHING;
-- Request documents as bench/post-payments.lua builds them (BatchReference set per call).
CREATE TABLE bench_docs (n int PRIMARY KEY, doc jsonb NOT NULL);
INSERT INTO bench_docs
SELECT n, jsonb_build_object('BatchReference', 'x', 'BatchTotal', fl_money(sum(amt) / 100.0),
                             'AccountNumber', 'BENCH-OPS-1',
                             'PaymentDetails', jsonb_agg(jsonb_build_object(
           'PaymentDate', current_date::text, 'PaymentType', 'ACH', 'Amount', fl_money(amt / 100.0),
           'TransactionNumber', 'tx-' || n || '-' || k, 'AccountNumber', 'BENCH-ACCT-1',
           'RemitterName', 'Bench Debtor Inc', 'InvoiceRefNumber', 'BN' || lpad(inv::text, 6, '0'))
           ORDER BY inv))
  FROM (SELECT n, row_number() OVER (PARTITION BY n ORDER BY inv) AS k, inv, 1 + floor(random() * 99)::int AS amt
          FROM (SELECT DISTINCT n, inv
                  FROM generate_series(1, $DOCS) n
                 CROSS JOIN LATERAL (SELECT 1 + floor(random() * $INVOICES)::int + n * 0 AS inv
                                       FROM generate_series(1, $LINES + 5)) r) s) x
 WHERE k <= $LINES
 GROUP BY n;
CREATE SEQUENCE bench_seq;
GRANT SELECT ON bench_docs TO fl_api;
GRANT USAGE ON SEQUENCE bench_seq TO fl_api;
COMMIT;
VACUUM ANALYZE;
CHECKPOINT;
SQL
fi

TENANT=$(psu -d "$DB" -At -c "SELECT id FROM tenants WHERE name = 'Bench'")
SCRIPT=$(mktemp)
trap 'rm -f "$SCRIPT"' EXIT
cat > "$SCRIPT" <<SQL
\set n random(1, $DOCS)
SELECT count(*) FROM bench_docs, posting_post_payments_lines('$TENANT', jsonb_set(doc, '{BatchReference}',
       to_jsonb('bench-' || nextval('bench_seq')))) WHERE n = :n;
SQL
# Warm-up: some payment history, then fresh statistics (plans made on empty payment tables are
# not representative; autovacuum would analyze them after a minute or so).
if [ $SETUP = 1 ]; then
    pgbench -n -h "$HOST" -U fl_api -d "$DB" -M prepared -f "$SCRIPT" -c 2 -j 2 -T 5 >/dev/null 2>&1
    psu -d "$DB" -c "VACUUM ANALYZE" -c "CHECKPOINT"
fi
for c in $CLIENTS; do
    out=$(pgbench -n -h "$HOST" -U fl_api -d "$DB" -M prepared -f "$SCRIPT" -c "$c" -j "$c" -T "$T" 2>&1) || { echo "$out"; exit 1; }
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    failed=$(echo "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
    echo "clients=$c batches/s=$tps lines/s=$(awk -v t="$tps" -v l=$LINES 'BEGIN { printf "%.0f", t * l }') latency_ms=$lat failed=${failed:-0}"
done
if [ "$CPU" -gt 0 ]; then
    psql -X -q -h "$HOST" -U fl_api -d "$DB" -v ON_ERROR_STOP=1 -At <<SQL
SELECT pg_backend_pid() AS pid \gset
SELECT count(*) AS x FROM bench_docs, posting_post_payments_lines('$TENANT', jsonb_set(doc, '{BatchReference}', to_jsonb('cpu-warm-' || nextval('bench_seq')))) WHERE n = 1 \gset
\setenv PID :pid
\! awk '{ print \$14 + \$15 }' /proc/\$PID/stat > /tmp/fl_bench_cpu.\$PID
\o /dev/null
SELECT format('SELECT count(*) FROM bench_docs, posting_post_payments_lines(%L, jsonb_set(doc, %L, to_jsonb(%L || nextval(%L)))) WHERE n = %s',
              '$TENANT', '{BatchReference}', 'cpu-', 'bench_seq', 1 + (g * 7919) % $DOCS) FROM generate_series(1, $CPU) g \gexec
\o
\! awk -v n=$CPU -v hz=\$(getconf CLK_TCK) -v t0=\$(cat /tmp/fl_bench_cpu.\$PID) '{ printf "cpu: %d batches, %.2f ms backend CPU per batch (%.0f lines/s per core)\\n", n, (\$14 + \$15 - t0) * 1000 / hz / n, n * 100 * hz / (\$14 + \$15 - t0) }' /proc/\$PID/stat; rm -f /tmp/fl_bench_cpu.\$PID
SQL
fi
psu -d "$DB" -At -c "SELECT 'check: ' || count(*) FILTER (WHERE status <> 'applied') || ' lines not applied of ' || count(*) FROM payment_lines"
