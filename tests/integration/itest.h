/* itest: a small harness for Factorline's integration tests.  Requests go
 * through real nginx with libcurl; answers are parsed with json-c.
 *
 * Ownership: everything the harness returns (responses, strings, parsed JSON,
 * credentials) belongs to the harness and is released by it_cleanup(), so a
 * test never frees anything and LeakSanitizer stays quiet. */
#ifndef FL_ITEST_H
#define FL_ITEST_H
#include <stddef.h>
#include <sys/types.h>
#include <CUnit/CUnit.h>
#include <json-c/json.h>

#define IT_MAX_HEADERS 64

typedef struct it_header {
    const char *name;
    const char *value;
} it_header;

typedef struct it_resp {
    long status;               /* 0 when the transfer failed (see error) */
    const char *error;         /* curl's message, or NULL */
    const char *body;          /* NUL-terminated */
    size_t body_len;
    it_header headers[IT_MAX_HEADERS];   /* of the final answer (not a 100 Continue) */
    size_t nheaders;
    json_object *json;         /* the body parsed, or NULL when it is not JSON */
} it_resp;

/* A credential: the base URL of a family and the headers that authenticate. */
typedef struct it_cred {
    const char *base_url;
    it_header headers[8];
    size_t nheaders;
} it_cred;

/* Once per program: curl and the allocation pool. */
void it_init(void);
void it_cleanup(void);

/* getenv, or the program stops with a message: the suite cannot run without it. */
const char *it_env(const char *name);

/* A pool-owned printf. */
char *it_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A pool-owned buffer of n bytes (+1 for a NUL), zeroed. */
char *it_alloc(size_t n);
/* [{},{},...] with n empty objects: a document past the core's bounds on values (json.h). */
const char *it_empty_objects(int n);
/* A string unique to this run: prefix + pid/time + counter, letters and digits only. */
const char *it_uniq(const char *prefix);

/* Credentials from $FL_TEST_CREDENTIALS: it_cred_get("a", "posting"). */
const it_cred *it_cred_get(const char *tenant, const char *family);
/* A credential from `{"base_url":..,"headers":{..}}` text (fl-admin key add). */
const it_cred *it_cred_parse(const char *json_text);
/* A copy of c with header name's value replaced (value NULL: header dropped;
 * a name not present is added).  Names compare case-insensitively; rename
 * gives the header that name instead (to test other spellings). */
const it_cred *it_cred_with(const it_cred *c, const char *name, const char *value);
const it_cred *it_cred_rename(const it_cred *c, const char *name, const char *new_name);
const char *it_cred_header(const it_cred *c, const char *name);
/* A leads credential's public id: its api_key before the '.' ("" when it has none). */
const char *it_leads_public_id(const it_cred *c);

/* One request on a fresh connection.  headers may be NULL; body may be NULL
 * (no body).  A body without a Content-Type header is sent as application/json. */
it_resp *it_request(const char *method, const char *url, const it_header *headers, size_t nheaders,
                    const char *body, size_t body_len);
/* c->base_url + path with c's headers (c NULL: no auth headers) and extra headers. */
it_resp *it_call_ex(const it_cred *c, const char *method, const char *path, const it_header *extra,
                    size_t nextra, const char *body, size_t body_len);
it_resp *it_get(const it_cred *c, const char *path);
/* n identical requests on n connections at once (out[i] for each, in order). */
void it_parallel(it_resp **out, size_t n, const it_cred *c, const char *method, const char *path,
                 const char *body);
it_resp *it_post(const it_cred *c, const char *path, const char *body);

/* A request in a child process, for tests that act while it is in flight (body NULL: none);
 * it_async_collect waits for it: its status (0 if the child wrote nothing), when it was
 * answered, its request id (63 characters at most) and its body (pool-owned). */
typedef struct it_async { pid_t pid; int fd; } it_async;
it_async it_async_start(const it_cred *c, const char *method, const char *path, const char *body);
long it_async_collect(it_async a, double *done_at, char *rid, const char **body);

/* A response header by name (case-insensitive), or NULL. */
const char *it_header_get(const it_resp *r, const char *name);

/* Responses lacking X-Request-Id are counted here; it_test_request_ids, the
 * last test of every integration program, fails when there was one. */
extern int it_missing_request_id;
void it_test_request_ids(void);

/* JSON: parse (pool-owned, NULL when malformed) and look up paths such as
 * "InvoiceArray[1].InvoiceNumber".  it_jstr gives strings as they are and other
 * values as json-c prints them ("true", "12"); NULL for a missing member or
 * JSON null. */
json_object *it_json(const char *text);
json_object *it_jget(json_object *o, const char *path);
const char *it_jstr(json_object *o, const char *path);
int it_jhas(json_object *o, const char *path);           /* present, even as null */
size_t it_jlen(json_object *o, const char *path);         /* array length, 0 otherwise */
/* o without the members named (NULL-terminated), as a pool-owned copy. */
json_object *it_jwithout(json_object *o, ...);

/* Runs cmd with /bin/sh; returns its stdout (pool-owned) and *status its exit
 * status (-1 when it could not run or died by a signal). */
const char *it_run(const char *cmd, int *status);

/* Wall-clock seconds, monotonic. */
double it_now(void);
void it_sleep(double seconds);

/* Asserts that record a readable message in CUnit's failure list. */
int it_check(int ok, unsigned line, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define IT_CHECK(cond, ...) it_check(!!(cond), __LINE__, __FILE__, __VA_ARGS__)
#define IT_STATUS(r, code) it_expect_status((r), (code), __LINE__, __FILE__)
#define IT_STREQ(got, want) it_expect_str((got), (want), #got, __LINE__, __FILE__)
#define IT_JSTR(o, path, want) it_expect_str(it_jstr((o), (path)), (want), path, __LINE__, __FILE__)
#define IT_MESSAGE(r, want) it_expect_str(it_jstr((r)->json, "message"), (want), "message", \
                                          __LINE__, __FILE__)
#define IT_BODY(r, want) it_expect_str((r)->body, (want), "body", __LINE__, __FILE__)

/* r->status == code, with the body in the failure message; r is evaluated once. */
int it_expect_status(const it_resp *r, long code, unsigned line, const char *file);
/* want NULL means "missing or null". */
int it_expect_str(const char *got, const char *want, const char *what, unsigned line, const char *file);

/* ------------------------------------------------------------- database --- */

/* Runs sql as the owner ($FL_ADMIN_DATABASE_URL, one connection per program,
 * reconnected once when PostgreSQL went away) with n text parameters; returns
 * the first cell of the first row (pool-owned), "" when there is no row, NULL
 * on SQL NULL or on error (which fails the test at line of file). */
const char *it_qv(unsigned line, const char *file, const char *sql, const char *const *p, int n);
/* Resets the owner connection (after PostgreSQL restarted); returns nothing. */
void it_db_reset(void);

#define IT_QARGS(...) ((const char *const[]){ __VA_ARGS__ })
#define IT_Q(sql, ...) it_qv(__LINE__, __FILE__, (sql), IT_QARGS(__VA_ARGS__), \
                             (int) (sizeof(IT_QARGS(__VA_ARGS__)) / sizeof(const char *)))
#define IT_Q0(sql) it_qv(__LINE__, __FILE__, (sql), NULL, 0)

/* ------------------------------------------------ test stack, processes --- */

/* The test stack's log directory ($FL_TEST_RUN/../log); pool-owned. */
const char *it_logdir(void);

/* The live (not zombie) children of the supervisor whose pid is in
 * $FL_TEST_RUN/pidfile_name ("webhooks.pid", "posting.pid"), or in pidfile_name
 * itself when it is an absolute path (another stack's): up to max pids
 * into out (the caller's array); returns how many. */
int it_supervised(const char *pidfile_name, pid_t *out, int max);
/* Sends sig to every supervised child (at least one must exist, else the test
 * fails); returns nothing. */
void it_signal_supervised(const char *pidfile_name, int sig);
/* Waits up to timeout s until at least n supervised children are live (the
 * supervisor restarts them); returns how many there are. */
int it_wait_supervised(const char *pidfile_name, int n, double timeout);

/* ------------------------------------------------------- fl-receiver --- */

/* A running fl-receiver ($FL_TEST_RECEIVER): its pid (-1 when stopped), its
 * port, its JSON-lines log and the URL to subscribe (strings pool-owned). */
typedef struct it_rcv {
    pid_t pid;
    int port;
    const char *log, *url;
} it_rcv;

/* Starts fl-receiver with opts ("" or --status-seq, --hang-first-ms, ...) on
 * port (0: any); returns it by value, url http://127.0.0.1:port/hook/<uniq>.
 * The caller stops it with it_rcv_stop. */
it_rcv it_rcv_start(int port, const char *opts);
/* Stops (SIGTERM) and reaps the receiver; returns nothing. */
void it_rcv_stop(it_rcv *r);
/* The requests received so far, as parsed log lines (pool-owned) into out (the
 * caller's array, up to max); returns how many.  A complete line that is not
 * JSON fails the test. */
int it_rcv_read(const it_rcv *r, json_object **out, int max);
/* it_rcv_read until at least n requests arrived or timeout s passed; returns
 * how many were read last. */
int it_rcv_wait(const it_rcv *r, json_object **out, int max, int n, double timeout);

/* ------------------------------------------------------------ signatures --- */

/* Checks a signature header "t=..,v1=.." against HMAC-SHA256(secret, message)
 * computed with OpenSSL, the message being t + body for scheme "isoamp" and
 * t + "." + body for "factorline"; *t_out (may be NULL) gets t.  Returns 1
 * when it verifies, 0 otherwise; nothing is allocated outside the pool. */
int it_sig_ok(const char *scheme, const char *secret, const char *header, const char *body, long *t_out);

#endif
