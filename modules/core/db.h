/* PostgreSQL access for a worker: one connection, opened after fork, with
 * prepared statements that are prepared again after a reconnect. */
#ifndef FL_DB_H
#define FL_DB_H
#include <libpq-fe.h>
#include "req.h"

/* A statement known at compile time.  Use DB_FN(name) for the usual call of a
 * stored API function "name(tenant uuid, doc jsonb) RETURNS jsonb". */
typedef struct fl_stmt {
    const char *name;
    const char *sql;
    int nparams;
    int read_only;             /* safe to retry once after a reconnect */
} fl_stmt;

#define DB_FN(fn, ro) { #fn, "SELECT " #fn "($1::uuid, $2::jsonb)::text", 2, ro }
/* The same for families whose partners are credentials: (tenant, credential, doc). */
#define DB_FN_CRED(fn, ro) { #fn, "SELECT " #fn "($1::uuid, $2::uuid, $3::jsonb)::text", 3, ro }

/* Connects with conninfo (statement_timeout from FL_STATEMENT_TIMEOUT_MS,
 * default 5000).  Returns 0, or -1 and keeps trying later on demand. */
int db_open(const char *conninfo);
void db_close(void);
int db_ok(void);

/* Runs st with params.  Returns 0 and *res (caller PQclear()s) on success.
 * On failure returns the HTTP status it maps to (negative), sets
 * r->err_status/err_reason, and *res is NULL.  r may be NULL outside requests. */
int db_exec(fl_req *r, const fl_stmt *st, const char *const *params, PGresult **res);
/* db_exec with explicit parameter lengths and formats (1: binary), for bytea. */
int db_exec_bin(fl_req *r, const fl_stmt *st, const char *const *params, const int *lengths,
                const int *formats, PGresult **res);
/* Runs st in the request's tenant: fl_set_tenant(r->tenant_id) and st sent as
 * one pipeline (one round trip, one transaction), for plain SQL reads under
 * RLS that need no stored function.  Same returns as db_exec. */
int db_tenant_exec(fl_req *r, const fl_stmt *st, const char *const *params, PGresult **res);
/* Calls a DB_FN (or DB_FN_CRED) statement with the request's tenant (and
 * credential) and doc; *out is the function's JSON text in the arena. */
int db_call(fl_req *r, const fl_stmt *st, const char *doc, char **out);
/* Maps a SQLSTATE to an HTTP status (0 when it is not a client error). */
int db_sqlstate_http(const char *sqlstate);
/* FL_STATEMENT_TIMEOUT_MS, 100..DB_STATEMENT_TIMEOUT_MAX_MS, else 5000 and a warning. */
#define DB_STATEMENT_TIMEOUT_MAX_MS 50000
long db_statement_timeout_ms(void);
/* Counts the connections opened (db_open, and every reconnect, including the silent one
 * inside db_exec): a caller that keeps session state (LISTEN) compares it to know when that
 * state was lost. */
unsigned long db_generation(void);
/* A connection with Factorline's defaults for a remote server (TCP keep-alives, a limit on
 * unacknowledged data; the conninfo's own settings win); start_only: PQconnectStartParams, for
 * tests that read the settings back without a server. */
PGconn *db_connect(const char *conninfo, int start_only);
PGconn *db_conn(void);

#endif
