#include "serve.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "crypto.h"
#include "db.h"
#include "env.h"
#include "json.h"
#include "log.h"

static volatile sig_atomic_t stopping;
static size_t body_max;                 /* the family's cap, or FL_BODY_MAX */

static void on_stop(int sig)
{
    (void) sig;
    stopping = 1;
    FCGX_ShutdownPending();
}

int serve_fail(fl_req *r, int status, const char *reason)
{
    r->err_status = status;
    r->err_reason = reason;
    if (status == 503)
        resp_header(r->resp, "Retry-After", "5");
    r->family->error(r, status, reason);
    return -status;
}

int serve_fail_pending(fl_req *r)
{
    return serve_fail(r, r->err_status ? r->err_status : 500, r->err_reason);
}

int serve_json_body(fl_req *r, json_object **out)
{
    int rc = json_parse_strict(r->body, r->body_len, out);
    if (rc == JSON_TOO_LARGE)
        return serve_fail(r, 413, arena_printf(r->arena, "JSON document with more than %d values or %d objects "
                                               "and arrays", JSON_MAX_VALUES, JSON_MAX_CONTAINERS));
    return rc < 0 ? -1 : 0;
}

size_t serve_body_max(void)
{
    return body_max;
}

static void handle(const fl_family *fam, fl_req *r)
{
    const fl_route *route = NULL;
    char allow[64];
    int rc;

    /* a family that takes secrets refuses plain HTTP on every path, known or not */
    if (fam->https_only && !r->tls) {
        serve_fail(r, 403, NULL);
        return;
    }
    rc = route_match(fam->routes, fam->nroutes, r, &route, allow, sizeof(allow));
    if (rc == -404) {
        serve_fail(r, 404, NULL);
        return;
    }
    if (rc == -405) {
        resp_header(r->resp, "Allow", allow);
        serve_fail(r, 405, NULL);
        return;
    }
    /* a path that is not UTF-8 text names nothing stored */
    if (!req_utf8_valid(r->path)) {
        serve_fail(r, 404, NULL);
        return;
    }
    if (!(route->flags & ROUTE_PUBLIC)) {
        rc = fam->authenticate(r);
        if (rc < 0) {
            serve_fail(r, -rc, NULL);
            return;
        }
    }
    /* after the route and the credentials: a request that fails those gets their
     * answer (leads: 403 over plain HTTP, 401 without a key), whatever its query */
    if (r->query_rc < 0) {
        serve_fail(r, 400, "malformed query string");
        return;
    }
    rc = req_read_body(r, body_max);
    if (rc < 0) {
        serve_fail(r, -rc, NULL);
        return;
    }
    route->handler(r, route);
    if (r->resp->status == 500 && r->resp->body.len == 0)
        serve_fail(r, 500, NULL);
}

/* A worker that cannot start waits a second before it exits: its supervisor restarts it
 * however often it dies (multiwatch -r 1000000 -t 1000), and a death after 1 s resets the
 * count, so a worker that cannot start is retried once a second, not in a fork loop. */
static int start_failed(void)
{
    sleep(1);
    return 1;
}

int serve_main(const fl_family *fam, int argc, char **argv)
{
    FCGX_Request fcgi;
    struct sigaction sa;
    const char *listen = getenv("FL_LISTEN");
    const char *dburl = getenv("FL_DATABASE_URL");
    const char *keyfile = getenv("FL_DATA_KEY_FILE");
    int sock = 0;

    (void) argc;
    (void) argv;
    log_init(fam->name);
    body_max = (size_t) env_long("FL_BODY_MAX", (long) fam->body_max, 1024, 1L << 30);
    /* Keep freed heap memory between requests instead of giving it back to the kernel
     * after each one and faulting it in again on the next: a post-payments request
     * (20 kB in, 56 kB out) spent ~15 % of its worker time in brk() and page faults
     * (perf). Blocks of 1 MB and more (uploads) are still mapped and unmapped on their
     * own, so they never stay resident. */
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    if (FCGX_Init() != 0)
        return start_failed();
    if (listen != NULL && *listen) {
        sock = FCGX_OpenSocket(listen, 128);
        if (sock < 0) {
            log_msg("error", NULL, "cannot listen on %s", listen);
            return start_failed();
        }
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;            /* no SA_RESTART: accept() must see EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (keyfile != NULL && *keyfile && crypto_pii_load(keyfile) < 0)
        log_msg("warn", NULL, "data key %s not loaded: PII endpoints will fail", keyfile);
    if (db_open(dburl) < 0)
        log_msg("warn", NULL, "database not reachable at start; answering 503 until it is");

    fl_arena *arena = arena_new(64 * 1024);
    if (arena == NULL || FCGX_InitRequest(&fcgi, sock, 0) != 0)
        return start_failed();
    /* While a request is served the stop signals wait (blocked): without SA_RESTART (accept
     * must see EINTR) one arriving during a read of the body or a write of the answer made
     * libfcgi fail that request (a valid body answered 400). Unblocked after the request, a
     * pending one is handled at once and the loop ends. */
    sigset_t stopset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGTERM);
    sigaddset(&stopset, SIGUSR1);
    sigaddset(&stopset, SIGINT);
    log_msg("info", NULL, "worker ready");
    while (!stopping) {
        if (FCGX_Accept_r(&fcgi) < 0)
            break;
        sigprocmask(SIG_BLOCK, &stopset, NULL);
        fl_req r;
        fl_resp resp;
        req_init(&r, &fcgi, arena);
        r.family = fam;
        r.resp = &resp;
        resp_init(&resp, arena);
        handle(fam, &r);
        resp_send(&resp, fcgi.out);
        log_request(&r, resp.status);
        /* libfcgi closes a connection by shutting down its side and waiting for
         * nginx to close the other (up to 2 s), so that input it left unread
         * cannot reset the connection under the answer.  With the request read
         * to its end there is none: close at once (FCGX_Detach makes libfcgi
         * 2.4 skip that wait), and take the next request without waiting for
         * nginx to be scheduled. */
        if (req_input_drained(&r))
            FCGX_Detach(&fcgi);
        FCGX_Finish_r(&fcgi);
        arena_reset(arena);
        sigprocmask(SIG_UNBLOCK, &stopset, NULL);
    }
    log_msg("info", NULL, "worker stopping");
    db_close();
    arena_free(arena);
    return 0;
}
