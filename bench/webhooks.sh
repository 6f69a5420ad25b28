#!/usr/bin/env bash
# bench/webhooks.sh: webhook delivery throughput and latency.
#
# Starts its own stack (var/bench-webhooks, ports 38080/38443, 2 webhook
# workers, release build) and a local fl-receiver, subscribes one URL, then
#   1. backlog: 10,000 events inserted set-based in one transaction;
#      reports deliveries/s from the commit to the last receipt;
#   2. steady:  ~200 events/s for 10 s in small autocommitted inserts;
#      reports p50/p99/max event-to-delivery latency (events.created_at to
#      the receiver's receive time).
# Stops the stack and the receiver at the end.  Targets (docs/webhooks.md):
# >= 1,000 deliveries/s with two workers; p99 < 1 s while not backlogged.
#
#   bench/webhooks.sh [BACKLOG_EVENTS [STEADY_RATE [STEADY_SECONDS]]]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-10000}
RATE=${2:-200}
SECS=${3:-10}
TICK_MS=50                                  # one small insert every 50 ms

export FL_VAR=$ROOT/var/bench-webhooks FL_HTTP_PORT=38080 FL_HTTPS_PORT=38443 FL_WEBHOOK_WORKERS=2
FL="$ROOT/factorline"
RECEIVER=$ROOT/var/build/release/tests/integration/fl-receiver
RLOG=$FL_VAR/receiver.log
RPID=

say() { printf 'bench/webhooks: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
sql() { "$FL" psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

cleanup() {
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null || true
    "$FL" down >/dev/null 2>&1 || true
}

# a fresh stack every time: the figures must not depend on an earlier run
"$FL" down >/dev/null 2>&1 || true
rm -rf "$FL_VAR"
trap cleanup EXIT
say "starting the stack in $FL_VAR"
"$FL" up >/dev/null
make -C "$ROOT/var/build/release" -s tests >/dev/null

: > "$RLOG"
coproc RCV { exec "$RECEIVER" --port 0 --log "$RLOG"; }
RPID=$RCV_PID
read -r PORT <&"${RCV[0]}"
URL=http://127.0.0.1:$PORT/bench
"$FL" tenant add bench >/dev/null
"$FL" webhook add --tenant bench --family leads --url "$URL" --name bench >/dev/null
TENANT=$(sql -c "SELECT id FROM tenants WHERE name = 'bench'")
say "receiver on $PORT; $(nproc) cores; workers: $("$FL" status | grep '^webhooks')"

# ------------------------------------------------------------ 1. backlog ---
say "backlog: inserting $N events in one transaction"
sql -c "INSERT INTO events (tenant_id, family, type, payload)
        SELECT '$TENANT', 'leads', 'bench.backlog', jsonb_build_object('i', i, 'pad', repeat('x', 200))
          FROM generate_series(1, $N) i" >/dev/null
T0=$(now_ms)                                # committed: the workers may start
while :; do
    got=$(grep -c . "$RLOG" || true)
    [ "$got" -ge "$N" ] && break
    if [ $(( $(now_ms) - T0 )) -gt 300000 ]; then say "timeout: $got of $N received"; exit 1; fi
    sleep 0.2
done
read -r FIRST LAST < <(sed -n 's/.*"t_ms":\([0-9]*\).*/\1/p' "$RLOG" \
    | awk 'NR == 1 { lo = hi = $1 } { if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 } END { print lo, hi }')
# every delivery must be recorded too before the next phase
while [ "$(sql -c "SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'")" != 0 ]; do sleep 0.2; done
ELAPSED=$((LAST - T0))
DUPS=$(( $(grep -c . "$RLOG") - $(sed -n 's/.*"event_id":"\([0-9]*\)".*/\1/p' "$RLOG" | sort -u | wc -l) ))
BACKLOG_RATE=$(awk -v n="$N" -v ms="$ELAPSED" 'BEGIN { printf "%.0f", n / (ms / 1000) }')
say "backlog: $N deliveries in $ELAPSED ms after commit (first receipt after $((FIRST - T0)) ms), duplicates $DUPS"

# ------------------------------------------------------------- 2. steady ---
PER_TICK=$(( RATE * TICK_MS / 1000 ))
TICKS=$(( SECS * 1000 / TICK_MS ))
say "steady: $PER_TICK events every $TICK_MS ms for $SECS s (~$RATE/s)"
: > "$RLOG"
{
    for ((i = 0; i < TICKS; i++)); do
        echo "INSERT INTO events (tenant_id, family, type, payload)
              SELECT '$TENANT', 'leads', 'bench.steady', jsonb_build_object('tick', $i, 'j', j)
                FROM generate_series(1, $PER_TICK) j;"
        # sleep to the next tick boundary, so slow inserts do not lower the rate
        echo "SELECT pg_sleep(greatest(0, ($i + 1) * $TICK_MS / 1000.0
               - extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)));"
    done
} | { echo "SELECT clock_timestamp() AS t0 \\gset"; cat; } | sql >/dev/null
STEADY_N=$(( PER_TICK * TICKS ))
T1=$(now_ms)
while [ "$(grep -c . "$RLOG" || true)" -lt "$STEADY_N" ]; do
    if [ $(( $(now_ms) - T1 )) -gt 60000 ]; then say "timeout in the steady phase"; exit 1; fi
    sleep 0.2
done
sed -n 's/.*"t_ms":\([0-9]*\),.*"event_id":"\([0-9]*\)".*/\2,\1/p' "$RLOG" > "$FL_VAR/steady.csv"
STATS=$(sql <<EOF
CREATE TEMP TABLE r (event_id bigint, t_ms bigint);
\copy r FROM '$FL_VAR/steady.csv' WITH (FORMAT csv)
WITH l AS (
    SELECT r.t_ms - extract(epoch FROM e.created_at) * 1000 AS ms
      FROM r JOIN events e ON e.id = r.event_id WHERE e.type = 'bench.steady'),
span AS (
    SELECT count(*) AS n, extract(epoch FROM max(created_at) - min(created_at)) AS s
      FROM events WHERE type = 'bench.steady')
SELECT count(*) || ' ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)) || ' '
       || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)) || ' ' || round(max(ms)) || ' '
       || (SELECT round(n / nullif(s, 0)) FROM span)
  FROM l;
EOF
)
read -r SN P50 P99 PMAX SRATE <<<"$STATS"

echo "webhooks backlog: $N events, 2 workers: $BACKLOG_RATE deliveries/s ($ELAPSED ms, duplicates $DUPS)"
echo "webhooks steady:  $SN events at ~$SRATE/s: event-to-delivery p50 ${P50} ms, p99 ${P99} ms, max ${PMAX} ms"
