#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "env.h"
#include "log.h"

#define DB_MAX_STMTS 128

static PGconn *conn;
static char *conninfo_saved;
static const fl_stmt *prepared[DB_MAX_STMTS];
static size_t nprepared;
static unsigned long generation;        /* connections opened: db_generation() */

/* A limit is always set: a value that is not one (a typo, 0) is the default, not "none".  At
 * most 50 s: nginx gives up on a FastCGI answer after 60 s (fastcgi_read_timeout) and answers
 * 504, and a statement that ran on would commit what the client was told had failed. */
long db_statement_timeout_ms(void)
{
    return env_long("FL_STATEMENT_TIMEOUT_MS", 5000, 100, DB_STATEMENT_TIMEOUT_MAX_MS);
}

unsigned long db_generation(void)
{
    return generation;
}

PGconn *db_conn(void)
{
    return conn;
}

/* A TCP connection whose peer vanished without a reset (a failover, a network partition) would
 * hold a worker in libpq until the kernel gives up, ~15 minutes, with its stop signals blocked
 * by the request: keep-alive probes after 10 s of silence (5 s apart, 3 of them) and a 30 s
 * limit on unacknowledged data end it within about half a minute. These are defaults: the same
 * keywords in the conninfo win (they come first here, and PQconnectdbParams lets the expanded
 * conninfo override what comes before it). libpq ignores them on a Unix socket. */
PGconn *db_connect(const char *conninfo, int start_only)
{
    static const char *const kw[] = { "keepalives", "keepalives_idle", "keepalives_interval",
                                      "keepalives_count", "tcp_user_timeout", "dbname", NULL };
    const char *val[] = { "1", "10", "5", "3", "30000", conninfo ? conninfo : "", NULL };
    return start_only ? PQconnectStartParams(kw, val, 1) : PQconnectdbParams(kw, val, 1);
}

static int connect_now(void)
{
    if (conn != NULL)
        PQfinish(conn);
    nprepared = 0;
    generation++;
    conn = db_connect(conninfo_saved, 0);
    if (PQstatus(conn) != CONNECTION_OK) {
        log_msg("error", NULL, "database connection failed: %s", PQerrorMessage(conn));
        PQfinish(conn);
        conn = NULL;
        return -1;
    }
    static long timeout_ms = -1;
    if (timeout_ms < 0)
        timeout_ms = db_statement_timeout_ms();
    char ms[24];
    snprintf(ms, sizeof(ms), "%ld", timeout_ms);
    const char *p[1] = { ms };
    PGresult *res = PQexecParams(conn, "SELECT set_config('statement_timeout', $1, false)", 1, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        log_msg("error", NULL, "setting statement_timeout failed: %s", PQresultErrorMessage(res));
    PQclear(res);
    if (!ok) {
        PQfinish(conn);
        conn = NULL;
        return -1;
    }
    return 0;
}

/* A server that accepts the TCP connection and never answers (a host that is going down, a
 * stuck proxy) would hold connect_now() for ever: libpq has no connection timeout unless one is
 * given.  FL_DB_CONNECT_TIMEOUT_S (default 5) is the default; connect_timeout in the conninfo or
 * PGCONNECT_TIMEOUT in the environment, when given, win (libpq reads the environment only for
 * what the conninfo leaves out). */
static void default_connect_timeout(void)
{
    static long v = -1;
    if (v < 0)
        v = env_long("FL_DB_CONNECT_TIMEOUT_S", 5, 2, 300);     /* libpq takes under 2 s as 2 */
    char buf[16];
    snprintf(buf, sizeof(buf), "%ld", v);
    setenv("PGCONNECT_TIMEOUT", buf, 0);
}

int db_open(const char *conninfo)
{
    default_connect_timeout();
    free(conninfo_saved);
    conninfo_saved = strdup(conninfo ? conninfo : "");
    return connect_now();
}

void db_close(void)
{
    if (conn != NULL)
        PQfinish(conn);
    conn = NULL;
    nprepared = 0;
}

int db_ok(void)
{
    return conn != NULL && PQstatus(conn) == CONNECTION_OK;
}

/* One table maps SQLSTATEs to HTTP; classes first, then exact codes. */
int db_sqlstate_http(const char *s)
{
    static const struct { const char *code; int http; } map[] = {
        { "23505", 409 },        /* unique_violation */
        { "23503", 422 },        /* foreign_key_violation */
        { "23514", 422 },        /* check_violation */
        { "23502", 422 },        /* not_null_violation */
        { "57014", 503 },        /* query_canceled: statement_timeout */
        { "40001", 503 },        /* serialization_failure */
        { "40P01", 503 },        /* deadlock_detected */
        { "55P03", 503 },        /* lock_not_available */
        { "57P01", 503 },        /* admin_shutdown */
        { "57P02", 503 },        /* crash_shutdown */
        { "57P03", 503 },        /* cannot_connect_now: starting up, or shutting down */
        { "25006", 503 },        /* read_only_sql_transaction: a standby (after a failover) */
        { "42501", 500 },        /* insufficient_privilege: our bug, not the client's */
    };
    if (s == NULL || strlen(s) != 5)
        return 500;
    /* our own class: FLnnn means HTTP nnn */
    if (s[0] == 'F' && s[1] == 'L') {
        int v = atoi(s + 2);
        return v >= 400 && v <= 599 ? v : 500;
    }
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].code, s) == 0)
            return map[i].http;
    if (strncmp(s, "08", 2) == 0)        /* connection exceptions */
        return 503;
    if (strncmp(s, "22", 2) == 0)        /* data exceptions: bad input reached SQL */
        return 400;
    if (strncmp(s, "53", 2) == 0)        /* insufficient resources: disk full, out of memory,
                                          * too many connections */
        return 503;
    return 500;
}

static int ensure_prepared(const fl_stmt *st)
{
    for (size_t i = 0; i < nprepared; i++)
        if (prepared[i] == st)
            return 0;
    PGresult *res = PQprepare(conn, st->name, st->sql, st->nparams, NULL);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        log_msg("error", NULL, "prepare %s failed: %s", st->name, PQresultErrorMessage(res));
    PQclear(res);
    if (!ok)
        return -1;
    if (nprepared < DB_MAX_STMTS)
        prepared[nprepared++] = st;
    return 0;
}

static int fail(fl_req *r, int status, const char *reason)
{
    if (r != NULL) {
        r->err_status = status;
        r->err_reason = reason;
    }
    return -status;
}

int db_exec(fl_req *r, const fl_stmt *st, const char *const *params, PGresult **res)
{
    return db_exec_bin(r, st, params, NULL, NULL, res);
}

/* Turns a failed result into the HTTP status it maps to, logs it, and sets
 * the request's error; clears pr. */
static int result_fail(fl_req *r, const fl_stmt *st, PGresult *pr)
{
    const char *state = PQresultErrorField(pr, PG_DIAG_SQLSTATE);
    int http = db_sqlstate_http(state);
    const char *reason = NULL;
    if (http < 500 && r != NULL) {
        /* only our own FLnnn messages are written for clients; PostgreSQL's
         * own text (constraint names, values) stays in the log */
        if (state[0] == 'F' && state[1] == 'L') {
            const char *m = PQresultErrorField(pr, PG_DIAG_MESSAGE_PRIMARY);
            reason = m ? arena_strdup(r->arena, m) : NULL;
        } else {
            reason = http == 409 ? "Duplicate" : "Invalid input";
            log_msg("info", r->request_id, "%s: client error %s: %s", st->name, state,
                    PQresultErrorMessage(pr));
        }
    } else {
        log_msg("error", r ? r->request_id : NULL, "%s failed (%s): %s", st->name,
                state ? state : "?", PQresultErrorMessage(pr));
    }
    /* A read-only session: the connection went to a standby (a failover, or a host list in the
     * URL). Dropped, so that the next statement connects again and, with
     * target_session_attrs=read-write in the URL, finds the primary. */
    int standby = state != NULL && strcmp(state, "25006") == 0;
    PQclear(pr);
    if (standby) {
        PQfinish(conn);
        conn = NULL;
    }
    return fail(r, http, reason);
}

static int result_ok(const PGresult *pr)
{
    ExecStatusType est = PQresultStatus(pr);
    return est == PGRES_TUPLES_OK || est == PGRES_COMMAND_OK;
}

int db_exec_bin(fl_req *r, const fl_stmt *st, const char *const *params, const int *lengths,
                const int *formats, PGresult **res)
{
    *res = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!db_ok() && connect_now() < 0)
            return fail(r, 503, NULL);
        if (ensure_prepared(st) < 0) {
            if (PQstatus(conn) != CONNECTION_OK)
                continue;
            return fail(r, 500, NULL);
        }
        PGresult *pr = PQexecPrepared(conn, st->name, st->nparams, params, lengths, formats, 0);
        if (result_ok(pr)) {
            *res = pr;
            return 0;
        }
        if (PQstatus(conn) != CONNECTION_OK) {
            /* the connection broke: reconnect once, and retry only reads */
            PQclear(pr);
            log_msg("warn", r ? r->request_id : NULL, "database connection lost; reconnecting");
            if (connect_now() < 0 || !st->read_only)
                return fail(r, 503, NULL);
            continue;
        }
        return result_fail(r, st, pr);
    }
    return fail(r, 503, NULL);
}

/* Sends fl_set_tenant and st in one pipeline: one round trip, one implicit
 * transaction, so st runs under RLS with the request's tenant (and the
 * setting ends with the transaction, as in the API functions).  Collects both
 * results up to the sync; got[i] is NULL if the server sent none.  Returns 0,
 * -1 on a failure with a good connection, or -2 when the connection broke (it
 * has been opened again, or is closed if that failed). */
static const fl_stmt set_tenant = { "fl_set_tenant", "SELECT fl_set_tenant($1::uuid)", 1, 1 };

static int broken(void)
{
    connect_now();
    return -2;
}

static int tenant_pipeline(const char *tenant, const fl_stmt *st, const char *const *params,
                           PGresult *got[2])
{
    const char *tp[1] = { tenant };
    got[0] = got[1] = NULL;
    if (ensure_prepared(&set_tenant) < 0 || ensure_prepared(st) < 0)
        return PQstatus(conn) == CONNECTION_OK ? -1 : broken();
    if (!PQenterPipelineMode(conn))
        return PQstatus(conn) == CONNECTION_OK ? -1 : broken();
    int sent = PQsendQueryPrepared(conn, set_tenant.name, 1, tp, NULL, NULL, 0)
        && PQsendQueryPrepared(conn, st->name, st->nparams, params, NULL, NULL, 0)
        && PQpipelineSync(conn);
    /* each query's results end with NULL; the sync comes last */
    for (int q = 0; sent && q < 3; ) {
        PGresult *x = PQgetResult(conn);
        if (x == NULL) {
            if (PQstatus(conn) != CONNECTION_OK)
                break;
            q++;
            continue;
        }
        if (PQresultStatus(x) == PGRES_PIPELINE_SYNC) {
            PQclear(x);
            break;
        }
        if (q < 2 && got[q] == NULL)
            got[q] = x;
        else
            PQclear(x);
    }
    if (!PQexitPipelineMode(conn) || PQstatus(conn) != CONNECTION_OK) {
        /* a pipeline left half-read, or a lost connection: start over on a fresh one */
        PQclear(got[0]);
        PQclear(got[1]);
        got[0] = got[1] = NULL;
        return broken();
    }
    return 0;
}

int db_tenant_exec(fl_req *r, const fl_stmt *st, const char *const *params, PGresult **res)
{
    PGresult *got[2];
    *res = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!db_ok() && connect_now() < 0)
            return fail(r, 503, NULL);
        int rc = tenant_pipeline(r->tenant_id, st, params, got);
        if (rc == -2) {
            /* as in db_exec: reconnected once, and only reads are sent again */
            log_msg("warn", r->request_id, "database connection lost; reconnecting");
            if (attempt == 0 && st->read_only)
                continue;
            return fail(r, 503, NULL);
        }
        if (rc < 0)
            return fail(r, 500, NULL);
        for (int i = 0; i < 2; i++) {
            if (got[i] == NULL || !result_ok(got[i])) {
                PQclear(got[1 - i]);
                if (got[i] == NULL)
                    return fail(r, 500, NULL);
                return result_fail(r, i == 0 ? &set_tenant : st, got[i]);
            }
        }
        PQclear(got[0]);
        *res = got[1];
        return 0;
    }
    return fail(r, 503, NULL);
}

int db_call(fl_req *r, const fl_stmt *st, const char *doc, char **out)
{
    PGresult *res;
    const char *p2[2] = { r->tenant_id, doc };
    const char *p3[3] = { r->tenant_id, r->credential_id, doc };
    int rc = db_exec(r, st, st->nparams == 3 ? p3 : p2, &res);
    if (rc < 0)
        return rc;
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        PQclear(res);
        return fail(r, 500, NULL);
    }
    *out = arena_strdup(r->arena, PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}
