/* One HTTP request as nginx hands it to a FastCGI worker.  Everything here
 * lives in the request arena and dies at the end of the request. */
#ifndef FL_REQ_H
#define FL_REQ_H
#include <stddef.h>
#include <fcgiapp.h>
#include "arena.h"

#define REQ_MAX_PARAMS 64
#define REQ_MAX_PATH_PARAMS 8

typedef struct fl_kv {
    const char *name;
    const char *value;
} fl_kv;

typedef struct fl_req {
    FCGX_Request *fcgi;
    fl_arena *arena;
    const char *method;
    const char *path;          /* path below the family prefix, e.g. /api_factor/get-client/ */
    const char *request_id;
    int tls;                   /* reached nginx over TLS */
    fl_kv query[REQ_MAX_PARAMS];
    size_t nquery;
    fl_kv path_params[REQ_MAX_PATH_PARAMS];
    size_t npath_params;
    char *body;                /* NUL-terminated copy, body_len bytes */
    size_t body_len;
    size_t content_length;     /* CONTENT_LENGTH, read once by req_init */
    int content_length_rc;     /* 0, or -400/-413 when it is not a size */
    int query_rc;              /* 0, or -400: a malformed query string, answered after
                                  the route and the credentials are checked */
    const char *route;         /* matched pattern, for the log */
    /* set by authentication */
    const char *tenant_id;
    const char *credential_id;
    /* the error a failing step left for the family formatter */
    int err_status;
    const char *err_reason;
    long start_us;
    struct fl_resp *resp;      /* what the handler answers */
    const struct fl_family *family;
} fl_req;

/* Reads method, path, query and headers from the FastCGI environment.
 * path_param names the FastCGI parameter holding the prefix-stripped path. */
int req_init(fl_req *r, FCGX_Request *fcgi, fl_arena *a);
/* CONTENT_LENGTH as a size: 0 and *out = 0 when absent or empty; -400 unless all
 * digits; -413 when over max.  req_init keeps it in the request (content_length). */
int req_content_length(const char *cl, size_t max, size_t *out);
/* Reads exactly CONTENT_LENGTH bytes; -413 when over max, -400 on short read. */
int req_read_body(fl_req *r, size_t max);
/* 1 if nginx's request has been read to its end (the body, if any, whole, and the
 * empty FCGI_STDIN record that ends it): nothing of it is left unread, so the
 * connection can be closed without libfcgi's lingering close.  May consume the
 * end-of-input record; call only when the request is answered. */
int req_input_drained(fl_req *r);
/* Header by its HTTP name, case-insensitive ("Auth-FactorID"); borrowed from
 * libfcgi: valid until the request ends; NULL when absent. */
const char *req_header(fl_req *r, const char *name);
/* Query parameter by name, case-insensitive, percent-decoded; NULL when absent. */
const char *req_query(const fl_req *r, const char *name);
const char *req_path_param(const fl_req *r, const char *name);
/* Percent-decodes s ('+' as space when plus_space); result in the arena.
 * Returns NULL on a malformed escape or an embedded NUL. */
char *req_decode(fl_arena *a, const char *s, size_t n, int plus_space);
/* Splits a query string into r->query; -400 on a malformed escape, or a name or
 * value that is not UTF-8 text. */
int req_parse_query(fl_req *r, const char *qs);
long req_now_us(void);
/* 1 if s is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): text PostgreSQL will take; 0 otherwise. */
int req_utf8_valid(const char *s);

#endif
