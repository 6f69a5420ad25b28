#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "crypto.h"
#include "db.h"
#include "log.h"

#define AUTH_CACHE_SIZE 256

typedef struct entry {
    char family[16];
    char public_id[129];
    unsigned char hash[32];
    fl_cred cred;
    time_t fetched;
    int used;
} entry;

static entry cache[AUTH_CACHE_SIZE];

static const fl_stmt st_lookup = {
    "auth_lookup",
    "SELECT credential_id::text, tenant_id::text, factor_id, secret_hash, rate_per_sec::float8, burst"
    " FROM fl_auth_lookup($1, $2)",
    2, 1
};

static const fl_stmt st_rate = {
    "rate_take", "SELECT fl_rate_take($1::uuid, $2::float8, $3::int)", 3, 0
};

int auth_rate_take(fl_req *r, const fl_cred *cred)
{
    char rate[32], burst[16];
    PGresult *res;
    if (cred->rate_per_sec <= 0)
        return 0;
    snprintf(rate, sizeof(rate), "%.6f", cred->rate_per_sec);
    snprintf(burst, sizeof(burst), "%d", cred->burst > 0 ? cred->burst : 1);
    const char *p[3] = { cred->credential_id, rate, burst };
    if (db_exec(r, &st_rate, p, &res) < 0)
        return r->err_status == 503 ? -503 : -500;
    int ok = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
    PQclear(res);
    return ok ? 0 : -429;
}

static unsigned slot(const char *family, const char *public_id)
{
    unsigned h = 2166136261u;
    for (const char *p = family; *p; p++) h = (h ^ (unsigned char) *p) * 16777619u;
    for (const char *p = public_id; *p; p++) h = (h ^ (unsigned char) *p) * 16777619u;
    return h % AUTH_CACHE_SIZE;
}

void auth_cache_clear(void)
{
    memset(cache, 0, sizeof(cache));
}

static int unhex32(const char *s, unsigned char out[32])
{
    /* bytea in hex output format: \x followed by 64 hex digits */
    if (strncmp(s, "\\x", 2) != 0 || strlen(s) != 66)
        return -1;
    for (int i = 0; i < 32; i++) {
        char b[3] = { s[2 + 2 * i], s[3 + 2 * i], 0 };
        char *end;
        out[i] = (unsigned char) strtoul(b, &end, 16);
        if (*end)
            return -1;
    }
    return 0;
}

int auth_check(fl_req *r, const char *family, const char *public_id, const char *secret,
               fl_cred *out)
{
    unsigned char given[32];
    time_t now = time(NULL);

    if (public_id == NULL || secret == NULL || *public_id == '\0' || *secret == '\0'
        || strlen(public_id) >= sizeof(cache[0].public_id) || strlen(family) >= sizeof(cache[0].family)
        || !req_utf8_valid(public_id))      /* not text: no credential has it (and PostgreSQL refuses it) */
        return -401;
    crypto_sha256(secret, strlen(secret), given);

    entry *e = &cache[slot(family, public_id)];
    int cached = e->used && now - e->fetched < AUTH_CACHE_TTL && now >= e->fetched
                 && strcmp(e->family, family) == 0 && strcmp(e->public_id, public_id) == 0;
    /* A secret the cached entry does not match is looked up again before it is refused: a
     * rotated key (`key rotate`) works at once, while the old secret stops within the TTL.
     * (A wrong secret costs the lookup an unknown public id costs.) */
    if (!cached || !crypto_equal(e->hash, given, 32)) {
        PGresult *res;
        const char *params[2] = { family, public_id };
        e->used = 0;
        if (db_exec(r, &st_lookup, params, &res) < 0)
            return r->err_status == 503 ? -503 : -500;
        if (PQntuples(res) != 1 || unhex32(PQgetvalue(res, 0, 3), e->hash) < 0) {
            PQclear(res);
            return -401;
        }
        /* a FactorID longer than the cache holds (fl_tenant_add refuses one; a DBA's row may
         * have it) would be compared cut short: its first 64 characters would pass */
        if ((size_t) PQgetlength(res, 0, 2) >= sizeof(e->cred.factor_id)) {
            log_msg("error", r->request_id, "the tenant of %s key %s has a FactorID over %zu characters: refused",
                    family, public_id, sizeof(e->cred.factor_id) - 1);
            PQclear(res);
            return -401;
        }
        snprintf(e->family, sizeof(e->family), "%s", family);
        snprintf(e->public_id, sizeof(e->public_id), "%s", public_id);
        snprintf(e->cred.credential_id, sizeof(e->cred.credential_id), "%s", PQgetvalue(res, 0, 0));
        snprintf(e->cred.tenant_id, sizeof(e->cred.tenant_id), "%s", PQgetvalue(res, 0, 1));
        snprintf(e->cred.factor_id, sizeof(e->cred.factor_id), "%s", PQgetvalue(res, 0, 2));
        e->cred.rate_per_sec = PQgetisnull(res, 0, 4) ? 0.0 : atof(PQgetvalue(res, 0, 4));
        e->cred.burst = PQgetisnull(res, 0, 5) ? 5 : atoi(PQgetvalue(res, 0, 5));
        e->fetched = now;
        e->used = 1;
        PQclear(res);
    }
    if (!crypto_equal(e->hash, given, 32))
        return -401;
    *out = e->cred;
    r->tenant_id = arena_strdup(r->arena, e->cred.tenant_id);
    r->credential_id = arena_strdup(r->arena, e->cred.credential_id);
    return 0;
}
