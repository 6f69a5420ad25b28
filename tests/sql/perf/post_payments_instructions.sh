#!/bin/sh
# Instructions a 100-line post-payments batch costs the backend, counted by valgrind (callgrind):
# a figure the load of a shared machine does not move, for comparing two versions of the SQL
# functions that the timed harness cannot tell apart. Not run by pg_prove.
#
#   tests/sql/perf/post_payments_instructions.sh [-h host] [-d db] [-n batches] [-f file.sql]...
#
# Needs the database post_payments_bench.sh set up (default fl_bench on the cluster at -h) and
# valgrind. Copies the whole cluster with pg_basebackup into a temporary directory (the running
# server is not touched), applies each -f file to the copy (e.g. sql/functions/*.sql of another
# version), then runs 10 and 10 + N batches (default 30) as fl_api in single-user mode
# (postgres --single, fsync off), each batch one of the harness's documents in a transaction of
# its own, and prints (instructions of the longer run - the shorter) / N. Both runs start from
# the same copy state, so start-up, catalog loading and the first calls' planning cancel out.
# The same version gives the same count within ~0.1 %. Instructions are not time (cache misses,
# WAL and locks cost time for few instructions): confirm a gain with the timed harness.
set -eu
HOST=${PGHOST:-/tmp/perfdev}; DB=fl_bench; N=30; FILES=
while [ $# -gt 0 ]; do
    case $1 in
        -h) HOST=$2; shift 2;; -d) DB=$2; shift 2;; -n) N=$2; shift 2;;
        -f) FILES="$FILES $(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2;;
        *) echo "usage: $0 [-h host] [-d db] [-n batches] [-f file.sql]..." >&2; exit 2;;
    esac
done
command -v valgrind >/dev/null || { echo "$0: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
SU=${PGUSER:-postgres}
BIN=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
[ -x "$BIN/postgres" ] || BIN=/usr/lib/postgresql/15/bin
# postgres refuses to run as root: run it as the owner of the copy
OWNER=$(id -un); [ "$(id -u)" -eq 0 ] && OWNER=postgres
as_owner() { if [ "$(id -un)" = "$OWNER" ]; then sh -c "$1"; else runuser -u "$OWNER" -- sh -c "$1"; fi; }

W=$(mktemp -d /tmp/fl-instr.XXXXXX)
trap 'rm -rf "$W"' EXIT
chmod 0755 "$W"
TENANT=$(psql -X -q -At -h "$HOST" -U "$SU" -d "$DB" -c "SELECT id FROM tenants WHERE name = 'Bench'")
[ -n "$TENANT" ] || { echo "$0: no Bench tenant in $DB: run post_payments_bench.sh first" >&2; exit 1; }
mkdir "$W/data"; chown "$OWNER" "$W" "$W/data"; chmod 0700 "$W/data"
as_owner "pg_basebackup -h '$HOST' -U '$SU' -D '$W/data' -X fetch -c fast"
# single-user mode with -j ends a command at a semicolon followed by an empty line: drop the
# empty lines, and add one after each line that ends a command (outside $$ quoting)
for f in $FILES; do
    awk '/^[[:space:]]*$/ { next }
         { print; n = gsub(/\$\$/, "&"); if (n % 2) q = !q; if (!q && $0 !~ /^[[:space:]]*--/ && $0 ~ /;[[:space:]]*(--.*)?$/) print "" }' "$f"
done > "$W/apply.sql"
run_single() {  # $1 input file, $2 valgrind prefix or ""
    as_owner "$2 '$BIN/postgres' --single -D '$W/data' -c fsync=off -c synchronous_commit=off -j '$DB' < '$1'"
}
if [ -s "$W/apply.sql" ]; then
    run_single "$W/apply.sql" "" > "$W/apply.out" 2>&1
    if grep -q 'ERROR' "$W/apply.out"; then grep 'ERROR' "$W/apply.out" >&2; exit 1; fi
fi
batches() {  # $1 count, $2 output file
    { echo "SET ROLE fl_api;"; echo
      i=1
      while [ "$i" -le "$1" ]; do
          echo "SELECT count(*) FROM bench_docs, posting_post_payments_lines('$TENANT', jsonb_set(doc, '{BatchReference}', to_jsonb('instr-' || nextval('bench_seq')))) WHERE n = $(( 1 + (i * 7919) % 2000 ));"
          echo; i=$((i + 1))
      done; } > "$2"
}
count() {  # $1 batches: instructions of the whole single-user run, from the same copy each time
    rm -rf "$W/run"; cp -a "$W/data" "$W/run"
    batches "$1" "$W/in.sql"
    as_owner "valgrind --tool=callgrind --callgrind-out-file='$W/cg.out' '$BIN/postgres' --single -D '$W/run' -c fsync=off -c synchronous_commit=off -j '$DB' < '$W/in.sql'" > "$W/out.txt" 2>/dev/null
    got=$(grep -c 'count = "100"' "$W/out.txt" || true)
    [ "$got" -eq "$1" ] || { echo "$0: $got of $1 batches answered 100 rows" >&2; grep ERROR "$W/out.txt" >&2; exit 1; }
    sed -n 's/^totals: //p' "$W/cg.out"
}
a=$(count 10)
b=$(count $((10 + N)))
echo "instructions: $N batches, $(( (b - a) / N )) per 100-line batch"
