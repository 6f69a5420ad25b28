/* posting: the FactorCloud api_factor dialect. */
#ifndef FL_POSTING_H
#define FL_POSTING_H
#include "fl.h"

#define POSTING_VERSION "v2.01.00"

/* What a create or get route does, beyond its field spec. */
#define OP_HASH_BODY  0x1   /* pass sha256 of the raw body as RequestHash (safe retries) */
#define OP_PII        0x2   /* FedTaxNum: encrypted in, decrypted out */
#define OP_CLEARS     0x8   /* upserts: a member sent null or blank clears the stored value */

typedef struct posting_qparam {
    const char *query;          /* query-string name, matched case-insensitively */
    const char *field;          /* key in the document passed to SQL */
} posting_qparam;

typedef struct posting_op {
    const fl_field *spec;       /* create: the body's fields */
    const posting_qparam *params;/* get: the query parameters, NULL-terminated */
    fl_stmt stmt;
    unsigned opts;
    const char *notfound;       /* get by a plain read: stmt is a SELECT of ($1 tenant,
                                 * $2.. the params) run by db_tenant_exec; no row: 404 */
} posting_op;

int posting_auth(fl_req *r);
void posting_error(fl_req *r, int status, const char *reason);
int posting_test_post(fl_req *r, const fl_route *route);
int posting_create(fl_req *r, const fl_route *route);
int posting_post_payments(fl_req *r, const fl_route *route);
int posting_get(fl_req *r, const fl_route *route);

extern const posting_op op_create_client, op_get_client, op_create_debtor, op_create_vendor,
    op_get_client_debtor, op_get_debtor_master, op_create_sched, op_create_sched_broker,
    op_get_sched, op_get_broker_sched, op_get_invoice, op_post_payments;

#endif
