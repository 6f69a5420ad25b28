/* The benchmark's baseline: a bare libfcgi worker that answers every request
 * with one indexed SELECT (an invoice by its integration id) and no auth, no
 * routing, no arena.  Factorline's endpoints are reported as a ratio of it.
 * It closes each connection as Factorline's workers do (modules/core/serve.c):
 * at once when the request was read to its end, not with libfcgi's lingering
 * close, which waits for nginx to close its side; so the ratio compares the
 * work of a request, not two ways of closing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcgiapp.h>
#include <libpq-fe.h>

int main(void)
{
    FCGX_Request r;
    PGconn *c = PQconnectdb(getenv("FL_BENCH_DATABASE_URL") ? getenv("FL_BENCH_DATABASE_URL") : "");
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "baseline: %s", PQerrorMessage(c));
        return 1;
    }
    PGresult *p = PQprepare(c, "q", "SELECT invoice_number, amount::text FROM invoices"
                            " WHERE tenant_id = $1::uuid AND invoice_integration_id = $2", 2, NULL);
    if (PQresultStatus(p) != PGRES_COMMAND_OK) {
        fprintf(stderr, "baseline: %s", PQresultErrorMessage(p));
        return 1;
    }
    PQclear(p);
    FCGX_Init();
    FCGX_InitRequest(&r, 0, 0);
    while (FCGX_Accept_r(&r) >= 0) {
        const char *qs = FCGX_GetParam("QUERY_STRING", r.envp);
        const char *tenant = getenv("FL_BENCH_TENANT");
        const char *id = qs && strncmp(qs, "id=", 3) == 0 ? qs + 3 : "";
        const char *params[2] = { tenant ? tenant : "00000000-0000-0000-0000-000000000000", id };
        PGresult *res = PQexecPrepared(c, "q", 2, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            FCGX_FPrintF(r.out, "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n"
                         "{\"InvoiceNumber\":\"%s\",\"InvoiceAmount\":\"%s\"}",
                         PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        else
            FCGX_FPrintF(r.out, "Status: 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}");
        PQclear(res);
        if (FCGX_GetChar(r.in) == EOF && FCGX_GetError(r.in) == 0)    /* GETs: no body */
            FCGX_Detach(&r);
        FCGX_Finish_r(&r);
    }
    PQfinish(c);
    return 0;
}
