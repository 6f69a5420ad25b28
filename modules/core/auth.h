/* Credential lookup for a family: the public id finds the credential, the
 * secret is compared by hash in constant time.  Results are cached in the
 * worker for at most AUTH_CACHE_TTL seconds, so a revoked key stops working
 * within that time on every worker. */
#ifndef FL_AUTH_H
#define FL_AUTH_H
#include "req.h"

#define AUTH_CACHE_TTL 5

typedef struct fl_cred {
    char credential_id[37];
    char tenant_id[37];
    char factor_id[65];
    double rate_per_sec;       /* request-rate settings (not money); 0: unlimited */
    int burst;
} fl_cred;

/* 0 and *out when (family, public_id) exists, is not revoked and secret
 * matches; -401 when not; -503 when the database cannot be asked. */
int auth_check(fl_req *r, const char *family, const char *public_id, const char *secret,
               fl_cred *out);
/* Takes one request from the credential's token bucket, shared by every
 * worker through PostgreSQL.  0, -429 when the bucket is empty, -503. */
int auth_rate_take(fl_req *r, const fl_cred *cred);
/* Drops the cache (tests). */
void auth_cache_clear(void);

#endif
