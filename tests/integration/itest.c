#include "itest.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <curl/curl.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int it_missing_request_id;

static PGconn *db;          /* the owner connection of it_qv, closed by it_cleanup */

/* ------------------------------------------------------------------ pool --- */

static void **pool;
static size_t npool, cappool;
static json_object **jpool;
static size_t njpool, capjpool;

static void *keep(void *p)
{
    if (p == NULL) {
        fprintf(stderr, "itest: out of memory\n");
        exit(2);
    }
    if (npool == cappool) {
        cappool = cappool ? cappool * 2 : 256;
        pool = realloc(pool, cappool * sizeof(*pool));
        if (pool == NULL) {
            fprintf(stderr, "itest: out of memory\n");
            exit(2);
        }
    }
    pool[npool++] = p;
    return p;
}

static json_object *keep_json(json_object *o)
{
    if (o == NULL)
        return NULL;
    if (njpool == capjpool) {
        capjpool = capjpool ? capjpool * 2 : 256;
        jpool = realloc(jpool, capjpool * sizeof(*jpool));
        if (jpool == NULL) {
            fprintf(stderr, "itest: out of memory\n");
            exit(2);
        }
    }
    jpool[njpool++] = o;
    return o;
}

static char *keep_str(const char *s)
{
    return s ? keep(strdup(s)) : NULL;
}

void it_init(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
}

void it_cleanup(void)
{
    for (size_t i = 0; i < njpool; i++)
        json_object_put(jpool[i]);
    for (size_t i = 0; i < npool; i++)
        free(pool[i]);
    free(jpool);
    free(pool);
    jpool = NULL;
    pool = NULL;
    njpool = capjpool = npool = cappool = 0;
    if (db != NULL)
        PQfinish(db);
    db = NULL;
    curl_global_cleanup();
}

const char *it_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "itest: %s is not set (run the suite with ./factorline test)\n", name);
        exit(2);
    }
    return v;
}

char *it_fmt(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        s = NULL;
    return keep(s);
}

char *it_alloc(size_t n)
{
    return keep(calloc(1, n + 1));
}

const char *it_empty_objects(int n)
{
    char *s = it_alloc(3 * (size_t) n + 2), *p = s;
    *p++ = '[';
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s{}", i ? "," : "");
    *p = ']';
    return s;
}

const char *it_uniq(const char *prefix)
{
    static unsigned counter;
    static unsigned long run;
    if (run == 0)
        run = ((unsigned long) time(NULL) * 1000003UL) ^ ((unsigned long) getpid() << 8);
    return it_fmt("%s%lx%u", prefix, run & 0xffffffffUL, ++counter);
}

double it_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void it_sleep(double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t) seconds;
    ts.tv_nsec = (long) ((seconds - (double) ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* --------------------------------------------------------------- asserts --- */

int it_check(int ok, unsigned line, const char *file, const char *fmt, ...)
{
    char msg[1200];
    if (ok) {
        CU_assertImplementation(CU_TRUE, line, "ok", file, "", CU_FALSE);
        return 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* CUnit copies the condition text into its failure record */
    CU_assertImplementation(CU_FALSE, line, msg, file, "", CU_FALSE);
    return 0;
}

int it_expect_status(const it_resp *r, long code, unsigned line, const char *file)
{
    return it_check(r->status == code, line, file, "status %ld, expected %ld: %s%s", r->status, code,
                    r->body, r->error ? r->error : "");
}

int it_expect_str(const char *got, const char *want, const char *what, unsigned line, const char *file)
{
    int ok = (got == NULL && want == NULL) || (got != NULL && want != NULL && strcmp(got, want) == 0);
    return it_check(ok, line, file, "%s: got %s%s%s, expected %s%s%s", what,
                    got ? "\"" : "", got ? got : "(missing/null)", got ? "\"" : "",
                    want ? "\"" : "", want ? want : "(missing/null)", want ? "\"" : "");
}

/* ------------------------------------------------------------------ HTTP --- */

typedef struct sink {
    char *data;
    size_t len, cap;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t k = size * n;
    if (s->len + k + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + k + 1)
            cap *= 2;
        char *d = realloc(s->data, cap);
        if (d == NULL)
            return 0;
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, k);
    s->len += k;
    s->data[s->len] = '\0';
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    it_resp *r = ud;
    size_t k = size * n;
    if (k >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        r->nheaders = 0;        /* a new answer (after 100 Continue): forget the old one */
        return k;
    }
    const char *colon = memchr(p, ':', k);
    if (colon == NULL || r->nheaders == IT_MAX_HEADERS)
        return k;
    size_t nl = (size_t) (colon - p);
    const char *v = colon + 1, *end = p + k;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    char *name = keep(strndup(p, nl));
    char *value = keep(strndup(v, (size_t) (end - v)));
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = value;
    r->nheaders++;
    return k;
}

const char *it_header_get(const it_resp *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* A request being prepared or in flight. */
typedef struct xfer {
    CURL *curl;
    it_resp *r;
    sink s;
    struct curl_slist *hl;
    char errbuf[CURL_ERROR_SIZE];
    const char *method, *url;
} xfer;

static int xfer_init(xfer *x, const char *method, const char *url, const it_header *headers, size_t nheaders,
                     const char *body, size_t body_len)
{
    int has_ct = 0;
    memset(x, 0, sizeof(*x));
    x->r = keep(calloc(1, sizeof(*x->r)));
    x->method = method;
    x->url = url;
    x->curl = curl_easy_init();
    if (x->curl == NULL) {
        x->r->error = "curl_easy_init failed";
        x->r->body = "";
        return -1;
    }
    CURL *c = x->curl;
    for (size_t i = 0; i < nheaders; i++) {
        if (strcasecmp(headers[i].name, "Content-Type") == 0)
            has_ct = 1;
        char *line = it_fmt("%s: %s", headers[i].name, headers[i].value ? headers[i].value : "");
        x->hl = curl_slist_append(x->hl, line);
    }
    if (body != NULL && !has_ct)
        x->hl = curl_slist_append(x->hl, "Content-Type: application/json");

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hl);
    /* the test stack's certificate is self-signed */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    /* one connection per request: no state carried between tests */
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x->s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x->r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    return 0;
}

static it_resp *xfer_done(xfer *x, CURLcode rc)
{
    it_resp *r = x->r;
    if (x->curl == NULL)
        return r;
    if (rc != CURLE_OK)
        r->error = it_fmt(" [curl: %s]", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(x->curl);
    curl_slist_free_all(x->hl);
    x->curl = NULL;
    x->hl = NULL;
    if (x->s.data == NULL)
        x->s.data = strdup("");
    r->body = keep(x->s.data);
    r->body_len = x->s.len;
    r->json = it_json(r->body);
    if (r->status != 0 && it_header_get(r, "X-Request-Id") == NULL) {
        it_missing_request_id++;
        fprintf(stderr, "itest: %s %s answered %ld without X-Request-Id\n", x->method, x->url, r->status);
    }
    return r;
}

void it_test_request_ids(void)
{
    IT_CHECK(it_missing_request_id == 0, "%d responses lacked X-Request-Id (see stderr)", it_missing_request_id);
}

it_resp *it_request(const char *method, const char *url, const it_header *headers, size_t nheaders,
                    const char *body, size_t body_len)
{
    xfer x;
    if (xfer_init(&x, method, url, headers, nheaders, body, body_len) < 0)
        return x.r;
    return xfer_done(&x, curl_easy_perform(x.curl));
}

void it_parallel(it_resp **out, size_t n, const it_cred *c, const char *method, const char *path,
                 const char *body)
{
    xfer *xs = calloc(n, sizeof(*xs));
    CURLM *m = curl_multi_init();
    if (xs == NULL || m == NULL) {
        fprintf(stderr, "itest: out of memory\n");
        exit(2);
    }
    const char *url = it_fmt("%s%s", c->base_url, path);
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    for (size_t i = 0; i < n; i++)
        if (xfer_init(&xs[i], method, url, c->headers, c->nheaders, body, body ? strlen(body) : 0) == 0)
            curl_multi_add_handle(m, xs[i].curl);
    int running = 1;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg is the multi handle's: copy it before the handle is removed */
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        for (size_t i = 0; i < n; i++)
            if (xs[i].curl == easy) {
                curl_multi_remove_handle(m, easy);
                out[i] = xfer_done(&xs[i], result);
                break;
            }
    }
    for (size_t i = 0; i < n; i++)
        if (xs[i].curl != NULL) {          /* never finished: report it as failed */
            curl_multi_remove_handle(m, xs[i].curl);
            out[i] = xfer_done(&xs[i], CURLE_OPERATION_TIMEDOUT);
        } else if (out[i] == NULL) {
            out[i] = xs[i].r;
        }
    curl_multi_cleanup(m);
    free(xs);
}

it_resp *it_call_ex(const it_cred *c, const char *method, const char *path, const it_header *extra,
                    size_t nextra, const char *body, size_t body_len)
{
    it_header h[IT_MAX_HEADERS];
    size_t n = 0;
    if (c != NULL)
        for (size_t i = 0; i < c->nheaders && n < IT_MAX_HEADERS; i++)
            h[n++] = c->headers[i];
    for (size_t i = 0; i < nextra && n < IT_MAX_HEADERS; i++)
        h[n++] = extra[i];
    const char *base = c ? c->base_url : it_fmt("%s/posting", it_env("FL_TEST_HTTPS"));
    return it_request(method, it_fmt("%s%s", base, path), h, n, body, body_len);
}

it_resp *it_get(const it_cred *c, const char *path)
{
    return it_call_ex(c, "GET", path, NULL, 0, NULL, 0);
}

it_async it_async_start(const it_cred *c, const char *method, const char *path, const char *body)
{
    int fds[2];
    it_async a = { -1, -1 };
    IT_CHECK(pipe(fds) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    a.pid = fork();
    if (a.pid == 0) {
        close(fds[0]);
        it_resp *r = it_call_ex(c, method, path, NULL, 0, body, body ? strlen(body) : 0);
        const char *rid = it_header_get(r, "X-Request-Id");
        char *msg = it_fmt("%ld %.6f %s %s", r->status, it_now(), rid ? rid : "-", r->body ? r->body : "");
        size_t k = strlen(msg);
        _exit(write(fds[1], msg, k) == (ssize_t) k ? 0 : 1);
    }
    close(fds[1]);
    a.fd = fds[0];
    return a;
}

long it_async_collect(it_async a, double *done_at, char *rid, const char **body)
{
    static char msg[65536];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof(msg) - 1 && (k = read(a.fd, msg + got, sizeof(msg) - 1 - got)) > 0)
        got += (size_t) k;
    msg[got] = '\0';
    close(a.fd);
    waitpid(a.pid, NULL, 0);
    long status = 0;
    int off = 0;
    *done_at = 0;
    if (sscanf(msg, "%ld %lf %63s %n", &status, done_at, rid, &off) < 3)
        status = 0;
    *body = it_fmt("%s", msg + off);
    return status;
}

it_resp *it_post(const it_cred *c, const char *path, const char *body)
{
    return it_call_ex(c, "POST", path, NULL, 0, body, body ? strlen(body) : 0);
}

/* ----------------------------------------------------------- credentials --- */

static const it_cred *cred_from(json_object *o)
{
    json_object *base, *hdrs;
    if (o == NULL || !json_object_object_get_ex(o, "base_url", &base)
        || !json_object_object_get_ex(o, "headers", &hdrs) || !json_object_is_type(hdrs, json_type_object))
        return NULL;
    it_cred *c = keep(calloc(1, sizeof(*c)));
    c->base_url = keep_str(json_object_get_string(base));
    json_object_object_foreach(hdrs, k, v) {
        if (c->nheaders == sizeof(c->headers) / sizeof(c->headers[0]))
            break;
        c->headers[c->nheaders].name = keep_str(k);
        c->headers[c->nheaders].value = keep_str(json_object_get_string(v));
        c->nheaders++;
    }
    return c;
}

const it_cred *it_cred_get(const char *tenant, const char *family)
{
    static json_object *all;
    if (all == NULL) {
        const char *path = it_env("FL_TEST_CREDENTIALS");
        all = keep_json(json_object_from_file(path));
        if (all == NULL) {
            fprintf(stderr, "itest: cannot read credentials from %s\n", path);
            exit(2);
        }
    }
    json_object *t, *f;
    if (!json_object_object_get_ex(all, tenant, &t) || !json_object_object_get_ex(t, family, &f)) {
        fprintf(stderr, "itest: no %s credential for tenant %s\n", family, tenant);
        exit(2);
    }
    const it_cred *c = cred_from(f);
    if (c == NULL) {
        fprintf(stderr, "itest: malformed %s credential for tenant %s\n", family, tenant);
        exit(2);
    }
    return c;
}

const it_cred *it_cred_parse(const char *json_text)
{
    return cred_from(it_json(json_text));
}

const char *it_cred_header(const it_cred *c, const char *name)
{
    for (size_t i = 0; i < c->nheaders; i++)
        if (strcasecmp(c->headers[i].name, name) == 0)
            return c->headers[i].value;
    return NULL;
}

const char *it_leads_public_id(const it_cred *c)
{
    const char *key = c ? it_cred_header(c, "api_key") : NULL;
    const char *dot = key ? strchr(key, '.') : NULL;
    return dot ? it_fmt("%.*s", (int) (dot - key), key) : "";
}

const it_cred *it_cred_with(const it_cred *c, const char *name, const char *value)
{
    it_cred *o = keep(calloc(1, sizeof(*o)));
    int found = 0;
    o->base_url = c->base_url;
    for (size_t i = 0; i < c->nheaders; i++) {
        if (strcasecmp(c->headers[i].name, name) == 0) {
            found = 1;
            if (value == NULL)
                continue;
            o->headers[o->nheaders] = c->headers[i];
            o->headers[o->nheaders++].value = keep_str(value);
        } else {
            o->headers[o->nheaders++] = c->headers[i];
        }
    }
    if (!found && value != NULL && o->nheaders < sizeof(o->headers) / sizeof(o->headers[0])) {
        o->headers[o->nheaders].name = keep_str(name);
        o->headers[o->nheaders++].value = keep_str(value);
    }
    return o;
}

const it_cred *it_cred_rename(const it_cred *c, const char *name, const char *new_name)
{
    it_cred *o = keep(calloc(1, sizeof(*o)));
    *o = *c;
    for (size_t i = 0; i < o->nheaders; i++)
        if (strcasecmp(o->headers[i].name, name) == 0)
            o->headers[i].name = keep_str(new_name);
    return o;
}

/* ------------------------------------------------------------------ JSON --- */

json_object *it_json(const char *text)
{
    if (text == NULL)
        return NULL;
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, text, (int) strlen(text));
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return keep_json(o);
}

json_object *it_jget(json_object *o, const char *path)
{
    char seg[256];
    const char *p = path;
    while (o != NULL && *p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            char *end;
            long idx = strtol(p + 1, &end, 10);
            if (*end != ']' || !json_object_is_type(o, json_type_array)
                || idx < 0 || (size_t) idx >= json_object_array_length(o))
                return NULL;
            o = json_object_array_get_idx(o, (size_t) idx);
            p = end + 1;
            continue;
        }
        size_t n = strcspn(p, ".[");
        if (n >= sizeof(seg) || !json_object_is_type(o, json_type_object))
            return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        json_object *v;
        if (!json_object_object_get_ex(o, seg, &v))
            return NULL;
        o = v;
        p += n;
    }
    return o;
}

int it_jhas(json_object *o, const char *path)
{
    /* present-as-null: the parent holds the key */
    const char *dot = strrchr(path, '.');
    json_object *parent = o;
    const char *key = path;
    if (dot != NULL) {
        char *pp = it_fmt("%.*s", (int) (dot - path), path);
        parent = it_jget(o, pp);
        key = dot + 1;
    }
    if (strchr(key, '[') != NULL)
        return it_jget(o, path) != NULL;
    return parent != NULL && json_object_is_type(parent, json_type_object)
        && json_object_object_get_ex(parent, key, NULL);
}

const char *it_jstr(json_object *o, const char *path)
{
    json_object *v = it_jget(o, path);
    if (v == NULL)
        return NULL;
    return json_object_get_string(v);
}

size_t it_jlen(json_object *o, const char *path)
{
    json_object *v = it_jget(o, path);
    return v && json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
}

json_object *it_jwithout(json_object *o, ...)
{
    json_object *copy = NULL;
    if (o == NULL || json_object_deep_copy(o, &copy, NULL) != 0)
        return NULL;
    keep_json(copy);
    va_list ap;
    va_start(ap, o);
    for (const char *k = va_arg(ap, const char *); k != NULL; k = va_arg(ap, const char *))
        json_object_object_del(copy, k);
    va_end(ap);
    return copy;
}

/* ----------------------------------------------------------------- shell --- */

const char *it_run(const char *cmd, int *status)
{
    sink s = { 0 };
    char buf[4096];
    fflush(stdout);
    fflush(stderr);
    FILE *f = popen(cmd, "r");
    if (f == NULL) {
        if (status)
            *status = -1;
        return "";
    }
    size_t k;
    while ((k = fread(buf, 1, sizeof(buf), f)) > 0)
        on_body(buf, 1, k, &s);
    int st = pclose(f);
    if (status)
        *status = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (s.data == NULL)
        s.data = strdup("");
    return keep(s.data);
}

/* -------------------------------------------------------------- database --- */

static PGconn *db_get(void)
{
    if (db == NULL)
        db = PQconnectdb(it_env("FL_ADMIN_DATABASE_URL"));
    if (PQstatus(db) != CONNECTION_OK)
        PQreset(db);
    return db;
}

void it_db_reset(void)
{
    PQreset(db_get());
}

const char *it_qv(unsigned line, const char *file, const char *sql, const char *const *p, int n)
{
    PGresult *r = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        r = PQexecParams(db_get(), sql, n, NULL, p, NULL, NULL, 0);
        if (PQstatus(db) == CONNECTION_OK || attempt == 1)
            break;
        PQclear(r);                     /* PostgreSQL restarted: reconnect once */
        r = NULL;
        PQreset(db);
    }
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        it_check(0, line, file, "SQL failed: %s: %s", sql, PQerrorMessage(db));
        PQclear(r);
        return NULL;
    }
    const char *out = "";
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
        out = PQgetisnull(r, 0, 0) ? NULL : it_fmt("%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

/* ------------------------------------------------- test stack, processes --- */

const char *it_logdir(void)
{
    return it_fmt("%s/../log", it_env("FL_TEST_RUN"));
}

int it_supervised(const char *pidfile_name, pid_t *out, int max)
{
    const char *s = it_run(pidfile_name[0] == '/' ? it_fmt("cat '%s' 2>/dev/null", pidfile_name)
                           : it_fmt("cat '%s/%s'", it_env("FL_TEST_RUN"), pidfile_name), NULL);
    pid_t sup = (pid_t) atol(s);
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    if (d == NULL || sup <= 0) {
        if (d)
            closedir(d);
        return 0;
    }
    while ((e = readdir(d)) != NULL && n < max) {
        if (!isdigit((unsigned char) e->d_name[0]))
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t k = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[k] = '\0';
        const char *rp = strrchr(buf, ')');     /* comm may hold spaces */
        char state;
        int ppid;
        if (rp && sscanf(rp + 2, "%c %d", &state, &ppid) == 2 && ppid == sup && state != 'Z')
            out[n++] = (pid_t) atol(e->d_name);
    }
    closedir(d);
    return n;
}

void it_signal_supervised(const char *pidfile_name, int sig)
{
    pid_t p[16];
    int n = it_supervised(pidfile_name, p, 16);
    IT_CHECK(n >= 1, "no supervised workers found (%s)", pidfile_name);
    for (int i = 0; i < n; i++)
        kill(p[i], sig);
}

int it_wait_supervised(const char *pidfile_name, int n, double timeout)
{
    pid_t p[16];
    double end = it_now() + timeout;
    int k;
    while ((k = it_supervised(pidfile_name, p, 16)) < n && it_now() < end)
        it_sleep(0.1);
    return k;
}

/* ----------------------------------------------------------- fl-receiver --- */

/* One fl-receiver; r.port 0 when it did not start (its process reaped). */
static it_rcv rcv_spawn(int port, const char *opts, const char *tag, const char **cmd_out)
{
    it_rcv r = { -1, 0, NULL, NULL };
    int fds[2];
    r.log = it_fmt("%s/receiver-%s.log", it_logdir(), tag);
    const char *cmd = it_fmt("exec '%s' --port %d --log '%s' %s", it_env("FL_TEST_RECEIVER"), port, r.log, opts);
    *cmd_out = cmd;
    if (pipe(fds) < 0)
        return r;
    fflush(stdout);
    fflush(stderr);
    r.pid = fork();
    if (r.pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[32] = { 0 };
    ssize_t k = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    r.port = k > 0 ? atoi(buf) : 0;
    if (r.port <= 0 && r.pid > 0) {
        waitpid(r.pid, NULL, 0);
        r.pid = -1;
    }
    return r;
}

it_rcv it_rcv_start(int port, const char *opts)
{
    const char *tag = it_uniq("r"), *cmd = "";
    it_rcv r = rcv_spawn(port, opts, tag, &cmd);
    /* a port asked for again (a receiver restarted on it) can be taken for a while by the
     * local end of an outgoing connection: try again for up to 5 s */
    for (double t0 = it_now(); port > 0 && r.port <= 0 && it_now() - t0 < 5.0; ) {
        it_sleep(0.2);
        r = rcv_spawn(port, opts, tag, &cmd);
    }
    IT_CHECK(r.port > 0, "fl-receiver did not start (%s)", cmd);
    r.url = it_fmt("http://127.0.0.1:%d/hook/%s", r.port, tag);
    return r;
}

void it_rcv_stop(it_rcv *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
        r->pid = -1;
    }
}

int it_rcv_read(const it_rcv *r, json_object **out, int max)
{
    FILE *f = fopen(r->log, "r");
    int n = 0;
    if (f == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0 && n < max) {
        if (line[len - 1] != '\n')
            break;                          /* a line still being written */
        json_object *j = it_json(line);
        IT_CHECK(j != NULL, "receiver log line is not JSON: %s", line);
        if (j != NULL)
            out[n++] = j;
    }
    free(line);
    fclose(f);
    return n;
}

int it_rcv_wait(const it_rcv *r, json_object **out, int max, int n, double timeout)
{
    double end = it_now() + timeout;
    int k;
    while ((k = it_rcv_read(r, out, max)) < n && it_now() < end)
        it_sleep(0.05);
    return k;
}

/* ------------------------------------------------------------ signatures --- */

int it_sig_ok(const char *scheme, const char *secret, const char *header, const char *body, long *t_out)
{
    long t = -1;
    const char *v1 = NULL;
    if (header == NULL || secret == NULL || body == NULL)
        return 0;
    for (const char *p = header; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (strncmp(p, "t=", 2) == 0)
            t = atol(p + 2);
        else if (strncmp(p, "v1=", 3) == 0)
            v1 = p + 3;
    }
    if (t_out)
        *t_out = t;
    if (t < 0 || v1 == NULL || strlen(v1) < 64 || (v1[64] != '\0' && v1[64] != ','))
        return 0;
    const char *msg = it_fmt("%ld%s%s", t, strcmp(scheme, "isoamp") == 0 ? "" : ".", body);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, (int) strlen(secret), (const unsigned char *) msg, strlen(msg), mac, &maclen);
    char hex[65];
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    return maclen == 32 && strncmp(hex, v1, 64) == 0;
}
