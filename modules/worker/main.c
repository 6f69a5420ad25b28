/* fl-worker: delivers the events outbox as signed HTTP callbacks.
 *
 * Wakes on NOTIFY fl_webhooks (or every FL_WEBHOOK_SWEEP_MS), claims due
 * deliveries with webhook_claim() (FOR UPDATE SKIP LOCKED, so any number of
 * workers on any number of hosts never send one delivery at the same time),
 * sends them concurrently with one libcurl multi handle (connections kept per
 * destination), and records each attempt with webhook_record(), which owns
 * the retry schedule.  A worker killed mid-delivery leaves a lease that
 * expires: the delivery is sent again (at-least-once; receivers drop
 * duplicates by Factorline-Event-Id).  SIGTERM: finish the batch, then exit.
 *
 * The same worker fetches leads attachments submitted by URL: GET, the same
 * SSRF guard on every hop, at most 3 redirects each checked again, 25 MB, 30 s.
 *
 *   fl-worker          run until SIGTERM
 *   fl-worker --once   deliver what is due now, then exit (tests, cron)
 */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>
#include "fl.h"

#define MAX_BATCH 64
#define MAX_RESPONSE (64 * 1024)

typedef struct job {
    long long delivery_id;
    char event_id[24];
    char *event_type;
    char *url, *body, *secret;
    const char *signature;      /* "isoamp" or "factorline" */
    CURL *easy;
    struct curl_slist *headers;
    size_t received;
    long status;
    long start_us;
    char error[CURL_ERROR_SIZE + 64];
    int refused;
} job;

static volatile sig_atomic_t stopping;
static struct {
    int allow_private, batch, lease_ms, base_ms, max_age_s, sweep_ms;
} cfg;

static void on_stop(int sig)
{
    (void) sig;
    stopping = 1;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *ud)
{
    job *j = ud;
    (void) ptr;
    j->received += size * n;
    /* the answer's body is read up to 64 KiB and dropped */
    return j->received > MAX_RESPONSE ? 0 : size * n;
}

static const fl_stmt st_claim = {
    "webhook_claim",
    "SELECT delivery_id, event_id, url, body, secret_enc, signature, event_type"
    " FROM webhook_claim($1::int, $2::int)",
    2, 0
};
static const fl_stmt st_record = {
    "webhook_record",
    "SELECT webhook_record($1::bigint, $2::int, $3::int, $4::text, $5::int, $6::int)",
    6, 0
};

/* Prepares one delivery: SSRF check with the address pinned, signature, headers. */
static void job_setup(job *j, fl_arena *a, CURLM *multi)
{
    fl_url u;
    char err[160], t[24], sig[65], resolve[400];
    char *secret = crypto_pii_decrypt(a, j->secret);

    j->start_us = req_now_us();
    if (secret == NULL) {
        snprintf(j->error, sizeof(j->error), "the signing secret cannot be decrypted with this data key");
        j->refused = 1;
        return;
    }
    if (net_url_check(j->url, cfg.allow_private, &u, err, sizeof(err)) < 0) {
        snprintf(j->error, sizeof(j->error), "refused: %s", err);
        j->refused = 1;
        return;
    }
    snprintf(t, sizeof(t), "%lld", (long long) time(NULL));
    if (strcmp(j->signature, "isoamp") == 0) {
        /* ISO Amp: HMAC(secret, t + body), no separator */
        crypto_hmac_sha256_hex(secret, strlen(secret), t, NULL, j->body, strlen(j->body), sig);
        j->headers = curl_slist_append(j->headers, arena_printf(a, "Isoamp-Signature: t=%s,v1=%s", t, sig));
    } else {
        crypto_hmac_sha256_hex(secret, strlen(secret), t, ".", j->body, strlen(j->body), sig);
        j->headers = curl_slist_append(j->headers, arena_printf(a, "Factorline-Signature: t=%s,v1=%s", t, sig));
    }
    j->headers = curl_slist_append(j->headers, arena_printf(a, "Factorline-Event-Id: %s", j->event_id));
    /* event types are ours ([A-Za-z0-9 ._-]), never a partner's text */
    j->headers = curl_slist_append(j->headers, arena_printf(a, "Factorline-Event-Type: %s", j->event_type));
    j->headers = curl_slist_append(j->headers, "Content-Type: application/json");
    j->headers = curl_slist_append(j->headers, "User-Agent: Factorline-Webhooks/1");
    j->headers = curl_slist_append(j->headers, "Expect:");

    /* connect to the address that was checked, not to a second lookup of the name */
    snprintf(resolve, sizeof(resolve), "%s:%d:%s%s%s", u.host, u.port,
             strchr(u.addr, ':') ? "[" : "", u.addr, strchr(u.addr, ':') ? "]" : "");
    struct curl_slist *res = curl_slist_append(NULL, resolve);

    j->easy = curl_easy_init();
    curl_easy_setopt(j->easy, CURLOPT_URL, j->url);
    curl_easy_setopt(j->easy, CURLOPT_RESOLVE, res);
    curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(j->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(j->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(j->body));
    curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->headers);
    curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->error);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, res);
    j->error[0] = '\0';
    curl_multi_add_handle(multi, j->easy);
}

static void job_finish(job *j, CURLM *multi, CURLcode rc)
{
    struct curl_slist *res = NULL;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && j->status > 0)) {
        if (j->error[0] == '\0')
            snprintf(j->error, sizeof(j->error), "%s", curl_easy_strerror(rc));
        j->status = 0;
    } else if (j->status < 200 || j->status > 299) {
        snprintf(j->error, sizeof(j->error), "HTTP %ld", j->status);
    }
    curl_easy_getinfo(j->easy, CURLINFO_PRIVATE, (char **) &res);
    curl_multi_remove_handle(multi, j->easy);
    curl_easy_cleanup(j->easy);
    curl_slist_free_all(res);
    curl_slist_free_all(j->headers);
    j->easy = NULL;
    j->headers = NULL;
}

/* Records the attempt; returns 0 or -1 when the database is gone. */
static int job_record(job *j, fl_arena *a)
{
    char id[24], status[24], lat[24], base[16], age[16];
    PGresult *res;
    snprintf(id, sizeof(id), "%lld", j->delivery_id);
    snprintf(status, sizeof(status), "%ld", j->status);
    snprintf(lat, sizeof(lat), "%ld", (req_now_us() - j->start_us) / 1000);
    snprintf(base, sizeof(base), "%d", cfg.base_ms);
    snprintf(age, sizeof(age), "%d", cfg.max_age_s);
    const char *p[6] = { id, j->status ? status : NULL, lat, j->error[0] ? j->error : NULL, base, age };
    (void) a;
    if (db_exec(NULL, &st_record, p, &res) < 0)
        return -1;
    PQclear(res);
    return 0;
}

/* One claim-deliver-record round; returns how many were claimed, or -1. */
static int round_once(CURLM *multi, fl_arena *a)
{
    char lim[16], lease[16];
    PGresult *res;
    job jobs[MAX_BATCH];
    int n;

    snprintf(lim, sizeof(lim), "%d", cfg.batch);
    snprintf(lease, sizeof(lease), "%d", cfg.lease_ms);
    const char *p[2] = { lim, lease };
    if (db_exec(NULL, &st_claim, p, &res) < 0)
        return -1;
    n = PQntuples(res);
    memset(jobs, 0, sizeof(jobs));
    for (int i = 0; i < n; i++) {
        job *j = &jobs[i];
        j->delivery_id = atoll(PQgetvalue(res, i, 0));
        snprintf(j->event_id, sizeof(j->event_id), "%s", PQgetvalue(res, i, 1));
        j->url = arena_strdup(a, PQgetvalue(res, i, 2));
        j->body = arena_strdup(a, PQgetisnull(res, i, 3) ? "{}" : PQgetvalue(res, i, 3));
        j->secret = arena_strdup(a, PQgetisnull(res, i, 4) ? "" : PQgetvalue(res, i, 4));
        j->signature = strcmp(PQgetvalue(res, i, 5), "isoamp") == 0 ? "isoamp" : "factorline";
        j->event_type = arena_strdup(a, PQgetvalue(res, i, 6));
    }
    PQclear(res);
    for (int i = 0; i < n; i++)
        job_setup(&jobs[i], a, multi);

    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            for (int i = 0; i < n; i++)
                if (jobs[i].easy == m->easy_handle) {
                    job_finish(&jobs[i], multi, m->data.result);
                    break;
                }
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    int rc = n;
    for (int i = 0; i < n; i++)
        if (job_record(&jobs[i], a) < 0)
            rc = -1;   /* the lease expires and another round sends it again */
    return rc;
}

/* ---- attachments by URL ---------------------------------------------- */

#define FETCH_MAX (25 * 1024 * 1024)
#define FETCH_REDIRECTS 3
#define FETCH_TIMEOUT_MS 30000L

typedef struct fetch_buf {
    unsigned char *data;
    size_t len, cap;
    int too_big;
} fetch_buf;

static size_t on_fetch(char *ptr, size_t size, size_t n, void *ud)
{
    fetch_buf *b = ud;
    size_t k = size * n;
    if (b->len + k > FETCH_MAX) {
        b->too_big = 1;
        return 0;
    }
    if (b->len + k > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + k)
            cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (d == NULL)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, k);
    b->len += k;
    return k;
}

/* GETs url into b, following at most 3 redirects, each one checked by the
 * SSRF guard and pinned to the checked address.  0, or -1 with err set;
 * *retry says whether trying again later could help. */
static int fetch(const char *url, fetch_buf *b, char *err, size_t errsz, int *retry)
{
    char cur[2048];
    long start = req_now_us();
    snprintf(cur, sizeof(cur), "%s", url);
    *retry = 0;
    for (int hop = 0; hop <= FETCH_REDIRECTS; hop++) {
        fl_url u;
        char why[160], resolve[400], cerr[CURL_ERROR_SIZE] = "";
        long left = FETCH_TIMEOUT_MS - (req_now_us() - start) / 1000, status = 0;
        if (left <= 0) {
            snprintf(err, errsz, "timed out after 30 s");
            *retry = 1;
            return -1;
        }
        if (net_url_check(cur, cfg.allow_private, &u, why, sizeof(why)) < 0) {
            snprintf(err, errsz, "refused: %s", why);
            return -1;
        }
        snprintf(resolve, sizeof(resolve), "%s:%d:%s%s%s", u.host, u.port,
                 strchr(u.addr, ':') ? "[" : "", u.addr, strchr(u.addr, ':') ? "]" : "");
        struct curl_slist *res = curl_slist_append(NULL, resolve);
        CURL *e = curl_easy_init();
        b->len = 0;
        curl_easy_setopt(e, CURLOPT_URL, cur);
        curl_easy_setopt(e, CURLOPT_RESOLVE, res);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) FETCH_MAX);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_fetch);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "Factorline-Attachments/1");
        CURLcode rc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        char *next = NULL;
        curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &next);
        if (next != NULL)
            snprintf(cur, sizeof(cur), "%s", next);
        curl_easy_cleanup(e);
        curl_slist_free_all(res);
        if (b->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
            snprintf(err, errsz, "larger than 25 MB");
            return -1;
        }
        if (rc != CURLE_OK) {
            snprintf(err, errsz, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
            *retry = 1;
            return -1;
        }
        if (status >= 300 && status < 400 && next != NULL)
            continue;
        if (status < 200 || status > 299) {
            snprintf(err, errsz, "HTTP %ld", status);
            *retry = status >= 500 || status == 429;
            return -1;
        }
        return 0;
    }
    snprintf(err, errsz, "more than %d redirects", FETCH_REDIRECTS);
    return -1;
}

static const fl_stmt st_att_claim = {
    "attachment_claim", "SELECT attachment_id::text, url FROM attachment_claim($1::int, $2::int)", 2, 0
};
static const fl_stmt st_att_record = {
    "attachment_record",
    "SELECT attachment_record($1::uuid, $2::bytea, $3, $4, $5, $6::boolean)", 6, 0
};

/* Fetches the attachments that are due; returns how many, or -1. */
static int fetch_round(void)
{
    PGresult *res;
    const char *p[2] = { "4", "60000" };
    if (db_exec(NULL, &st_att_claim, p, &res) < 0)
        return -1;
    int n = PQntuples(res), rc = n;
    for (int i = 0; i < n && rc >= 0; i++) {
        fetch_buf b = { NULL, 0, 0, 0 };
        char err[300] = "", sha[65] = "", lenbuf[24];
        int retry = 0;
        int ok = fetch(PQgetvalue(res, i, 1), &b, err, sizeof(err), &retry) == 0 && b.len > 0;
        if (ok)
            crypto_sha256_hex(b.data, b.len, sha);
        else if (err[0] == '\0')
            snprintf(err, sizeof(err), "empty document");
        snprintf(lenbuf, sizeof(lenbuf), "%zu", b.len);
        const char *rp[6] = { PQgetvalue(res, i, 0), ok ? (const char *) b.data : NULL, ok ? sha : NULL,
                              ok ? mime_sniff(b.data, b.len) : NULL, ok ? NULL : err, retry ? "t" : "f" };
        int lengths[6] = { 0, ok ? (int) b.len : 0, 0, 0, 0, 0 };
        int formats[6] = { 0, 1, 0, 0, 0, 0 };
        PGresult *r2;
        if (db_exec_bin(NULL, &st_att_record, rp, lengths, formats, &r2) < 0)
            rc = -1;
        else
            PQclear(r2);
        if (!ok)
            log_msg("warn", NULL, "attachment %s: %s", PQgetvalue(res, i, 0), err);
        free(b.data);
    }
    PQclear(res);
    return rc;
}

static int listen_now(void)
{
    PGresult *r = PQexec(db_conn(), "LISTEN fl_webhooks");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

/* Waits for a NOTIFY or the sweep interval. */
static void wait_for_work(void)
{
    PGconn *c = db_conn();
    if (c == NULL) {
        usleep((useconds_t) cfg.sweep_ms * 1000);
        return;
    }
    PGnotify *n;
    int queued = 0;
    /* libpq may already hold notifications it read during the last query */
    while ((n = PQnotifies(c)) != NULL) {
        PQfreemem(n);
        queued = 1;
    }
    if (queued)
        return;
    int fd = PQsocket(c);
    fd_set rfds;
    struct timeval tv = { cfg.sweep_ms / 1000, (cfg.sweep_ms % 1000) * 1000 };
    FD_ZERO(&rfds);
    FD_SET(fd, &rfds);
    if (select(fd + 1, &rfds, NULL, NULL, &tv) > 0) {
        PQconsumeInput(c);
        while ((n = PQnotifies(c)) != NULL)
            PQfreemem(n);
    }
}

int main(int argc, char **argv)
{
    int once = argc > 1 && strcmp(argv[1], "--once") == 0;
    const char *keyfile = getenv("FL_DATA_KEY_FILE");
    struct sigaction sa;

    log_init("worker");
    cfg.allow_private = env_int("FL_WEBHOOK_ALLOW_PRIVATE", 0);
    cfg.batch = env_int("FL_WEBHOOK_BATCH", 32);
    if (cfg.batch < 1 || cfg.batch > MAX_BATCH)
        cfg.batch = 32;
    cfg.lease_ms = env_int("FL_WEBHOOK_LEASE_MS", 60000);
    cfg.base_ms = env_int("FL_WEBHOOK_RETRY_BASE_MS", 30000);
    cfg.max_age_s = env_int("FL_WEBHOOK_MAX_AGE_S", 3 * 24 * 3600);
    cfg.sweep_ms = env_int("FL_WEBHOOK_SWEEP_MS", 1000);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (keyfile == NULL || crypto_pii_load(keyfile) < 0) {
        log_msg("error", NULL, "data key not loaded (FL_DATA_KEY_FILE): secrets cannot be read");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 64L);
    fl_arena *arena = arena_new(64 * 1024);

    int listening = 0;
    if (db_open(getenv("FL_WORKER_DATABASE_URL")) == 0)
        listening = listen_now() == 0;
    log_msg("info", NULL, "webhook worker ready (batch %d, lease %d ms)", cfg.batch, cfg.lease_ms);
    while (!stopping) {
        if (!db_ok() || !listening) {
            /* PostgreSQL restarted or is down: reconnect, listen again, sweep */
            db_close();
            if (db_open(getenv("FL_WORKER_DATABASE_URL")) < 0) {
                if (once)
                    break;
                sleep(1);
                continue;
            }
            listening = listen_now() == 0;
            log_msg("info", NULL, "webhook worker reconnected");
        }
        int n = round_once(multi, arena);
        arena_reset(arena);
        int f = n < 0 ? -1 : fetch_round();
        if (n < 0 || f < 0) {
            listening = 0;
            continue;
        }
        n += f;
        if (n > 0)
            continue;                   /* more may be due: claim again at once */
        if (once)
            break;
        wait_for_work();
    }
    log_msg("info", NULL, "webhook worker stopping");
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    arena_free(arena);
    db_close();
    return 0;
}
