/* The FastCGI worker: accept loop, routing, authentication, the family's
 * error format, logging and graceful shutdown.  A family's main.c fills one
 * fl_family and calls serve_main(). */
#ifndef FL_SERVE_H
#define FL_SERVE_H
#include <stddef.h>
#include "req.h"
#include "resp.h"
#include "route.h"

typedef struct fl_family {
    const char *name;                      /* "posting" */
    const fl_route *routes;
    size_t nroutes;
    size_t body_max;                       /* default cap; FL_BODY_MAX overrides */
    int https_only;                        /* 403 for every request not over TLS, before the route */
    /* Authenticates r (sets r->tenant_id); 0, or a negative HTTP status. */
    int (*authenticate)(fl_req *r);
    /* Writes the family's error body for status into r->resp. */
    void (*error)(fl_req *r, int status, const char *reason);
} fl_family;

/* Runs the worker until SIGTERM/SIGUSR1/SIGINT; returns the exit code. */
int serve_main(const fl_family *fam, int argc, char **argv);
/* The body cap in force: the family's body_max, or FL_BODY_MAX (0 before serve_main). */
size_t serve_body_max(void);
/* Answers status with the family's error format; reason may be NULL.
 * Returns -status so handlers can `return serve_fail(...)`. */
int serve_fail(fl_req *r, int status, const char *reason);
/* Answers a failure a core call left in r->err_status / r->err_reason. */
int serve_fail_pending(fl_req *r);
/* The request body parsed as strict JSON (json_parse_strict): 0 and *out (caller
 * owns); -1 when it is malformed, for the caller to answer in its route's shape;
 * -413 for a document past the core's bounds on values, answered here. */
struct json_object;
int serve_json_body(fl_req *r, struct json_object **out);

#endif
