#!/bin/sh
# verify-signature.sh: checks a Factorline webhook signature with openssl.
#
#   verify-signature.sh factorline|isoamp SECRET SIGNATURE_HEADER BODY_FILE [TOLERANCE_S]
#
# SIGNATURE_HEADER is the value of Factorline-Signature (scheme factorline) or
# Isoamp-Signature (scheme isoamp): "t=<unix>,v1=<hex>".  BODY_FILE holds the
# request body exactly as received (byte for byte: no added newline).
# TOLERANCE_S (default 300) is the replay window: t must be within that many
# seconds of now; 0 skips the check.  Exit 0: valid; 1: invalid; 2: usage.
# docs/webhooks.md shows this script; tests/integration/test_webhooks runs it
# against real deliveries.
set -eu

[ $# -ge 4 ] || { echo "usage: $0 factorline|isoamp SECRET SIGNATURE_HEADER BODY_FILE [TOLERANCE_S]" >&2; exit 2; }
scheme=$1 secret=$2 header=$3 body=$4 tolerance=${5:-300}

# t=<unix>,v1=<hex>: the pairs may come in any order
t=$(printf '%s' "$header" | tr ',' '\n' | sed -n 's/^ *t=\([0-9][0-9]*\) *$/\1/p' | head -n 1)
v1=$(printf '%s' "$header" | tr ',' '\n' | sed -n 's/^ *v1=\([0-9a-f]\{64\}\) *$/\1/p' | head -n 1)
[ -n "$t" ] && [ -n "$v1" ] || { echo "malformed signature header" >&2; exit 1; }

case $scheme in
    factorline) sep=. ;;        # HMAC-SHA256(secret, t + "." + body)
    isoamp) sep= ;;             # HMAC-SHA256(hmacSecret, t + body)
    *) echo "unknown scheme $scheme" >&2; exit 2 ;;
esac

expected=$( { printf '%s%s' "$t" "$sep"; cat "$body"; } \
    | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)

if [ "$expected" != "$v1" ]; then
    echo "signature mismatch" >&2
    exit 1
fi
if [ "$tolerance" -gt 0 ]; then
    age=$(( $(date +%s) - t ))
    [ "$age" -lt 0 ] && age=$(( -age ))
    if [ "$age" -gt "$tolerance" ]; then
        echo "timestamp outside the ${tolerance}s tolerance (replay?)" >&2
        exit 1
    fi
fi
echo "valid"
