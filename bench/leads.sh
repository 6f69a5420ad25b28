#!/usr/bin/env bash
# bench/leads.sh: POST /leads/lead throughput with wrk over HTTPS (the leads
# family refuses plain HTTP), each request a full lead document with a unique
# reference_id, on the demo partner whose rate limit is lifted.
#
#   bench/leads.sh            (builds the release build through ./factorline up)
#
# Own stack in var/bench-leads on ports 48080/48443, stopped at the end.
# Environment: FL_WORKERS (2, FastCGI workers per family), FL_WORKERS_LEADS (measure only this
# leads pool size; by default two passes on the same stack, the second on the tables the first
# filled: the pool docs/operations.md recommends for leads, 3 workers per core, then
# FL_WORKERS, the size ./factorline up starts; one pass when the two are equal),
# FL_BENCH_DURATION (15), FL_BENCH_CONNECTIONS (32), FL_BENCH_THREADS (2), FL_BENCH_WARMUP (3),
# FL_BENCH_STAY_UP=1 leaves the stack running (with the last pool measured).
# Prints, per pool size, req/s, p50, p99, non-2xx count, the leads stored, and CPU by component
# over one second in the middle of the run (bench/cpu.sh; "rest of machine" is other load), and
# the target (>= 2,000 leads/s) for each; the target is read at the recommended pool (docs/leads.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export FL_VAR=$ROOT/var/bench-leads FL_HTTP_PORT=48080 FL_HTTPS_PORT=48443
export FL_WORKERS=${FL_WORKERS:-2}
# Each lead is a small transaction that waits for its own WAL flush: with as many workers as
# cores, the cores idle through those waits (docs/leads.md), so the leads pool is sized apart.
for v in FL_WORKERS FL_WORKERS_LEADS; do
    [ -z "${!v:-}" ] || [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench-leads: $v must be a positive integer" >&2; exit 1; }
done
RECOMMENDED=$((3 * $(nproc)))
if [ -n "${FL_WORKERS_LEADS:-}" ]; then
    POOLS=$FL_WORKERS_LEADS
elif [ "$RECOMMENDED" -ne "$FL_WORKERS" ]; then
    POOLS="$RECOMMENDED $FL_WORKERS"
else
    POOLS=$FL_WORKERS
fi
pool_note() {   # pool_note N: why this pool size
    if [ "$1" -eq "$RECOMMENDED" ] && [ -z "${FL_WORKERS_LEADS:-}" ]; then
        echo "the recommended leads pool, 3 per core"
    elif [ "$1" -eq "$FL_WORKERS" ] && [ -z "${FL_WORKERS_LEADS:-}" ]; then
        echo "FL_WORKERS, the pool ./factorline up starts by default"
    else
        echo "FL_WORKERS_LEADS"
    fi
}
DURATION=${FL_BENCH_DURATION:-15}
WARMUP=${FL_BENCH_WARMUP:-3}
CONNS=${FL_BENCH_CONNECTIONS:-32}
THREADS=${FL_BENCH_THREADS:-2}
BASE=https://127.0.0.1:$FL_HTTPS_PORT

say() { printf 'bench-leads: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { say "$*"; exit 1; }
fl() { "$ROOT/factorline" "$@"; }
sql() { fl psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"

cleanup() {
    set +e
    rm -f "${LUA:-}"
    if [ "${FL_BENCH_STAY_UP:-0}" = 1 ]; then
        say "FL_BENCH_STAY_UP=1: the stack stays up (FL_VAR=$FL_VAR ./factorline down)"
        return 0
    fi
    fl down >/dev/null 2>&1
    say "stack stopped"
}
trap cleanup EXIT

fl down >/dev/null 2>&1 || true
rm -rf "$FL_VAR"
FIRST=${POOLS%% *}
say "starting the stack in $FL_VAR (release build, $FIRST leads workers)"
FL_WORKERS_LEADS=$FIRST fl up >&2

KEY=$(sed -n 's/.*"leads":{"base_url":"[^"]*","headers":{"api_key":"\([^"]*\)"}.*/\1/p' "$FL_VAR/credentials.json")
[ -n "$KEY" ] || die "no leads credential in $FL_VAR/credentials.json"
PUB=${KEY%%.*}

# Lift the demo partner's 1 request/s.
fl key limit --family leads --public-id "$PUB" --unlimited >/dev/null || die "key limit --unlimited failed"
sleep 6     # workers cache credentials for AUTH_CACHE_TTL (5 s)

code=$(curl -sk -o /dev/null -w '%{http_code}' -H "api_key: $KEY" "$BASE/leads/deal_status/none")
[ "$code" = 404 ] || die "GET /leads/deal_status/none answered $code, expected 404"

LUA=$(mktemp /tmp/fl-bench-leads.XXXXXX.lua)
cat > "$LUA" <<'EOF'
-- One lead per request: the vendor document's example with a unique reference_id.
local tid, seq, tag = 0, 0, os.getenv("FL_BENCH_TAG") or tostring(os.time())
local threads = {}
local body = [[{"lead":{"contacts_attributes":[{"first_name":"Erlich","last_name":"Bachman",
"email":"erlich@piedpiper.com","title":"COO and Spiritual Advisor","born_on":"1980-01-01",
"home_phone":"6176781000","cell_phone":"6176781000","ssn":"234345566","ownership_date":"2015-01-01",
"current_address_attributes":{"street1":"36 Bromfield St","street2":"Second Floor","city":"Boston",
"state":"MA","zip":"00112"}}],"account_attributes":{"entity_type":"Limited Liability Company (LLC)",
"name":"Pied Piper","started_on":"2015-01-01","legal_name":"Pied Piper LLC","phone":"6176781000",
"email":"support@piedpiper.com","website":"https://www.piedpiper.com/","fein":"000000000",
"monthly_revenue":"Less than $5,000","industry_name":"Compression Algorithms",
"current_address_attributes":{"street1":"36 Bromfield St","street2":"Second Floor","city":"Boston",
"state":"MA","zip":"00112"}},"loan_attributes":{"company_name":"Wells Fargo","daily_payment_amount":25,
"balance":15000.23},"application_attributes":{"has_current_loan":true,"applicant_is_owner":true,
"loan_use":"Debt Refinancing","capital_needed":"50000","owner_1_percent_ownership":56,
"owner_2_percent_ownership":9,"reference_id":"@REF@","notes":"We think this is a great deal!"}}}]]

-- split once: wrk shares the two cores with the stack, so the generator does as little as it can
local at = body:find("@REF@", 1, true)
local head, tail = body:sub(1, at - 1), body:sub(at + 5)

wrk.method = "POST"
wrk.path = "/leads/v1/lead"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["api_key"] = os.getenv("FL_BENCH_KEY")

function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    tid = tonumber(wrk.thread:get("tid")) or 0
end

function request()
    seq = seq + 1
    local ref = string.format("bench-%s-%d-%d", tag, tid, seq)
    return wrk.format(nil, nil, nil, head .. ref .. tail)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("FLBENCH requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d "
        .. "p50_us=%d p99_us=%d max_us=%d\n", summary.requests, summary.duration, e.status, e.connect, e.read,
        e.write, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
EOF

export FL_BENCH_KEY=$KEY
VAR=$FL_VAR CPU_GROUPS="postgres nginx fl-leads wrk"
# shellcheck source=bench/cpu.sh
. "$ROOT/bench/cpu.sh"
measure() {   # measure POOL: one warm-up and one measured run on the stack as it is
    say "warm-up ${WARMUP}s"
    FL_BENCH_TAG=warm$$-$1 wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$LUA" "$BASE" >/dev/null
    before=$(sql -c "SELECT count(*) FROM leads")
    say "POST /leads/v1/lead: ${DURATION}s, $CONNS connections, $THREADS threads"
    cpu_sample "$FL_VAR/log/cpu-leads.txt" $((DURATION / 2)) &
    cpu=$!
    out=$(FL_BENCH_TAG=run$$-$1 wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$LUA" "$BASE")
    wait "$cpu" || true
    after=$(sql -c "SELECT count(*) FROM leads")
    line=$(printf '%s\n' "$out" | grep '^FLBENCH') || die "wrk gave no summary: $out"
    get() { printf '%s\n' "$line" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
    req=$(printf '%s\n' "$line" | sed -n 's/.*requests=\([0-9]*\).*/\1/p')
    dur=$(get duration_us)
    rps=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    stored=$((after - before))
    sealed=$(sql -c "SELECT count(*) FILTER (WHERE ssn_enc LIKE 'v1:%') || '/' || count(*) FROM lead_contacts")
    printf 'leads POST /lead over HTTPS (%s leads workers: %s; %s connections, %ss)\n' "$1" "$(pool_note "$1")" "$CONNS" "$DURATION"
    p99=$(awk -v v="$(get p99_us)" 'BEGIN{print v/1000}')
    verdict=$([ "$rps" -ge 2000 ] && echo met || echo NOT met)
    printf '  requests   %s\n  req/s      %s\n  p50        %.2f ms\n  p99        %.2f ms\n  max        %.2f ms\n' \
        "$req" "$rps" "$(awk -v v="$(get p50_us)" 'BEGIN{print v/1000}')" \
        "$p99" "$(awk -v v="$(get max_us)" 'BEGIN{print v/1000}')"
    printf '  non-2xx    %s\n  socket errors connect/read/write/timeout %s/%s/%s/%s\n' \
        "$(get non2xx)" "$(get connect)" "$(get read)" "$(get write)" "$(get timeout)"
    printf '  leads stored during the run %s (contacts with sealed ssn %s)\n' "$stored" "$sealed"
    cpuline=$(cat "$FL_VAR/log/cpu-leads.txt" 2>/dev/null || echo n/a)
    printf '  CPU, 1 s in the middle (100%% = one core, %s cores): %s\n' "$(nproc)" "$cpuline"
    # the same second per lead: a component's share of a core divided by the rate
    printf '%s\n' "$cpuline" | tr ',' '\n' | sed -n 's/^ *\([a-z-]*\) \([0-9]*\)%.*/\1 \2/p' |
        awk -v rps="$rps" 'rps > 0 { printf "%s%s %.0f us", (n++ ? ", " : "  CPU per lead: "), $1, $2 * 10000 / rps }
                           END { if (n) print "" }'
    printf '  target >= 2000 leads/s: %s\n' "$verdict"
    VERDICTS+=("$(printf '  %2s leads workers (%s): %5s leads/s, p99 %.2f ms, target %s' \
        "$1" "$(pool_note "$1")" "$rps" "$p99" "$verdict")")
}

VERDICTS=()
n=0
for pool in $POOLS; do
    if [ "$n" -gt 0 ]; then
        echo
        say "restarting the stack with $pool leads workers"
        FL_WORKERS_LEADS=$pool fl up >&2 || die "factorline up with $pool leads workers failed"
        sleep 1
    fi
    measure "$pool"
    n=$((n + 1))
done
if [ "$n" -gt 1 ]; then
    echo
    echo "summary (same stack, one pool size after the other):"
    printf '%s\n' "${VERDICTS[@]}"
    echo "the target is read at the recommended pool (docs/leads.md, benchmark); the other pass is for comparison"
fi
