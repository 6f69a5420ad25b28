#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
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

static size_t body_max;                 /* the family's cap, or FL_BODY_MAX */

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
    /* The stop signals are blocked all the time and read from a signalfd that the worker
     * polls with the listening socket while it waits for a connection: a stop then ends the
     * wait at once, and one that comes later waits until the request is answered. (libfcgi
     * reads with plain read()s that take an interrupted read for a broken stream: a signal
     * handled while it read the request's header and parameters, between accept() and the
     * return of FCGX_Accept_r, or its body, or while the answer was written, dropped that
     * request.) Polled, not ppoll(): ppoll() leaves a signal pending when a connection is
     * ready too, so under steady load a stop would never be seen. The listening socket is
     * non-blocking, so a worker woken for a connection another worker took goes back to
     * waiting. */
    sigset_t stopset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGTERM);
    sigaddset(&stopset, SIGUSR1);
    sigaddset(&stopset, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    int sigfd = -1, fl = -1;
    if (sigprocmask(SIG_BLOCK, &stopset, NULL) != 0
        || (sigfd = signalfd(-1, &stopset, SFD_CLOEXEC)) < 0
        || (fl = fcntl(sock, F_GETFL)) < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0) {
        log_msg("error", NULL, "cannot set up the stop signals and the listening socket: %s", strerror(errno));
        return start_failed();
    }

    if (keyfile != NULL && *keyfile && crypto_pii_load(keyfile) < 0)
        log_msg("warn", NULL, "data key %s not loaded: PII endpoints will fail", keyfile);
    if (db_open(dburl) < 0)
        log_msg("warn", NULL, "database not reachable at start; answering 503 until it is");

    fl_arena *arena = arena_new(64 * 1024);
    if (arena == NULL || FCGX_InitRequest(&fcgi, sock, 0) != 0)
        return start_failed();
    log_msg("info", NULL, "worker ready");
    for (;;) {
        struct pollfd pfd[2] = { { .fd = sock, .events = POLLIN }, { .fd = sigfd, .events = POLLIN } };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_msg("error", NULL, "waiting for a connection: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents != 0)
            break;                      /* a stop signal (left pending: the worker exits) */
        int rc = FCGX_Accept_r(&fcgi);
        if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -ECONNABORTED)
            continue;                   /* another worker took it, or nginx gave up on it */
        if (rc < 0) {
            log_msg("error", NULL, "FastCGI accept failed (%d)", rc);
            break;
        }
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
    }
    log_msg("info", NULL, "worker stopping");
    db_close();
    arena_free(arena);
    return 0;
}
