/* fl-worker: delivers the events outbox as signed HTTP callbacks, and fetches
 * leads attachments submitted by URL.
 *
 * One event loop around one libcurl multi handle (connections kept per
 * destination).  Due work is claimed with webhook_claim() / attachment_claim()
 * (FOR UPDATE SKIP LOCKED, so any number of workers on any number of hosts
 * never take the same item at the same time) whenever a slot is free and
 * there may be work: after a NOTIFY on fl_webhooks (the PostgreSQL socket is
 * polled with curl's), after a claim that came back full, after a delivery
 * ends, and every FL_WEBHOOK_SWEEP_MS.  At most FL_WEBHOOK_PER_SUBSCRIPTION (8)
 * deliveries of one subscription are in flight across the workers, so one
 * hung receiver with a backlog cannot take every slot.  Each transfer is
 * recorded as soon as it ends, so a slow receiver holds its own slots, never
 * the others.  webhook_record() owns the
 * retry schedule.  A worker killed mid-delivery leaves a lease that expires:
 * the delivery is sent again (at-least-once; receivers drop duplicates by
 * Factorline-Event-Id).  SIGTERM: no new claims; transfers in flight finish
 * and are recorded, then the worker exits.
 *
 * Attachments: GET, the SSRF guard on every hop, at most 3 redirects each
 * checked again, 25 MB, 30 s in all (FL_FETCH_TIMEOUT_MS; the claim's lease is
 * 30 s longer); 4 at a time, at most FL_FETCH_PER_PARTNER (1) of one partner's.
 *
 *   fl-worker          run until SIGTERM
 *   fl-worker --once   deliver and fetch what is due now, then exit (tests, cron)
 */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>
#include "fl.h"

#define MAX_SLOTS 64
#define MAX_RESPONSE (64 * 1024)
#define FETCH_MAX (25 * 1024 * 1024)
#define FETCH_REDIRECTS 3
#define FETCH_SLOTS 4
#define FETCH_SLACK_MS 50        /* this close to the fetch's limit, its time is up */

enum job_kind { JOB_FREE, JOB_DELIVERY, JOB_FETCH };

typedef struct job {
    enum job_kind kind;
    char id[40];                 /* delivery id or attachment uuid */
    char event_id[24];
    char attempt[16];            /* the claim's attempt number (webhook_record, attachment_record) */
    char *event_type, *url, *body, *secret;   /* malloc'd, freed by job_free */
    const char *signature;       /* "isoamp" or "factorline" */
    CURL *easy;
    struct curl_slist *headers;
    long start_us, status;
    char error[CURL_ERROR_SIZE + 64];
    /* deliveries: bytes of the answer read (and dropped) */
    size_t received;
    /* fetches: the document, the hop, whether trying again could help */
    unsigned char *data;
    size_t len, cap;
    int too_big, hops, retry;
    int refused, allowed;        /* open_checked refused a connection's address, let one through */
} job;

static volatile sig_atomic_t stopping;
static struct {
    int allow_private, batch, per_subscription, per_partner, lease_ms, base_ms, max_age_s, sweep_ms;
    long fetch_timeout_ms;       /* an attachment fetch, all its hops together */
} cfg;
static job slots[MAX_SLOTS];

static void on_stop(int sig)
{
    (void) sig;
    stopping = 1;
}

static const fl_stmt st_claim = {
    "webhook_claim",
    "SELECT delivery_id, event_id, url, body, secret_enc, signature, event_type, attempts"
    " FROM webhook_claim($1::int, $2::int, $3::int)",
    3, 0
};
static const fl_stmt st_record = {
    "webhook_record",
    "SELECT webhook_record($1::bigint, $2::int, $3::int, $4::int, $5::text, $6::int, $7::int)",
    7, 0
};
static const fl_stmt st_att_claim = {
    "attachment_claim", "SELECT attachment_id::text, url, attempts FROM attachment_claim($1::int, $2::int, $3::int)",
    3, 0
};
static const fl_stmt st_att_record = {
    "attachment_record",
    "SELECT attachment_record($1::uuid, $2::int, $3::bytea, $4, $5, $6, $7::boolean)", 7, 0
};

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d == NULL) {
        log_msg("error", NULL, "out of memory");
        exit(1);
    }
    return d;
}

static void job_free(job *j)
{
    free(j->event_type);
    free(j->url);
    free(j->body);
    free(j->secret);
    free(j->data);
    curl_slist_free_all(j->headers);
    memset(j, 0, sizeof(*j));
}

static job *free_slot(void)
{
    for (int i = 0; i < MAX_SLOTS; i++)
        if (slots[i].kind == JOB_FREE)
            return &slots[i];
    return NULL;
}

static int count(enum job_kind k)
{
    int n = 0;
    for (int i = 0; i < MAX_SLOTS; i++)
        n += slots[i].kind == k;
    return n;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *ud)
{
    job *j = ud;
    (void) ptr;
    j->received += size * n;
    /* a delivery's answer is read up to 64 KiB and dropped */
    return j->received > MAX_RESPONSE ? 0 : size * n;
}

static size_t on_fetch(char *ptr, size_t size, size_t n, void *ud)
{
    job *j = ud;
    size_t k = size * n;
    if (j->len + k > FETCH_MAX) {
        j->too_big = 1;
        return 0;
    }
    if (j->len + k > j->cap) {
        size_t cap = j->cap ? j->cap : 65536;
        while (cap < j->len + k)
            cap *= 2;
        unsigned char *d = realloc(j->data, cap);
        if (d == NULL)
            return 0;
        j->data = d;
        j->cap = cap;
    }
    memcpy(j->data + j->len, ptr, k);
    j->len += k;
    return k;
}

/* Every connection a transfer makes, to the first hop or a later one, is
 * checked here, on the address it is about to connect to, after curl's own
 * (threaded, so the loop never waits for it) name lookup: a name that
 * resolves to a private address is refused, and a second lookup cannot swap
 * the address in between (DNS rebinding). */
static curl_socket_t open_checked(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    job *j = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (!cfg.allow_private && net_sockaddr_private(&a->addr)) {
        j->refused = 1;
        return CURL_SOCKET_BAD;
    }
    j->allowed = 1;
    return socket(a->family, a->socktype, a->protocol);
}

/* An easy handle for j->url, whose connections open_checked checks.  0, or -1
 * with j->error. */
static int start_transfer(job *j, CURLM *multi, long timeout_ms)
{
    fl_url u;
    char why[160];
    if (net_url_check(j->url, cfg.allow_private, &u, why, sizeof(why)) < 0) {
        snprintf(j->error, sizeof(j->error), "refused: %s", why);
        return -1;
    }
    j->refused = j->allowed = 0;
    j->easy = curl_easy_init();
    if (j->easy == NULL) {
        /* recorded as an error worth retrying: nothing was sent */
        snprintf(j->error, sizeof(j->error), "out of memory (curl_easy_init)");
        j->retry = 1;
        return -1;
    }
    curl_easy_setopt(j->easy, CURLOPT_URL, j->url);
    curl_easy_setopt(j->easy, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(j->easy, CURLOPT_OPENSOCKETDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_PROXY, "");      /* straight to the checked address, never a proxy from the environment */
#if LIBCURL_VERSION_NUM >= 0x075700
    /* a transfer that times out during its name lookup leaves the lookup's thread
     * behind instead of waiting for it inside curl_multi_perform (the whole loop) */
    curl_easy_setopt(j->easy, CURLOPT_QUICK_EXIT, 1L);
#endif
    curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(j->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->error);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
    j->error[0] = '\0';
    if (j->kind == JOB_DELIVERY) {
        curl_easy_setopt(j->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(j->body));
        curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->headers);
        curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_body);
    } else {
        curl_easy_setopt(j->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) FETCH_MAX);
        curl_easy_setopt(j->easy, CURLOPT_USERAGENT, "Factorline-Attachments/1");
        curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_fetch);
    }
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    if (curl_multi_add_handle(multi, j->easy) != CURLM_OK) {
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
        snprintf(j->error, sizeof(j->error), "out of memory (curl_multi_add_handle)");
        j->retry = 1;
        return -1;
    }
    return 0;
}

/* Signature and headers of a delivery; -1 with j->error when it cannot be signed. */
static int sign(job *j, fl_arena *a)
{
    char t[24], sig[65];
    char *secret = crypto_pii_decrypt(a, j->secret);
    if (secret == NULL) {
        snprintf(j->error, sizeof(j->error), "the signing secret cannot be decrypted with this data key");
        return -1;
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
    OPENSSL_cleanse(secret, strlen(secret));    /* the arena is reused, not cleared */
    j->headers = curl_slist_append(j->headers, arena_printf(a, "Factorline-Event-Id: %s", j->event_id));
    /* event types are ours ([A-Za-z0-9 ._-]), never a partner's text */
    j->headers = curl_slist_append(j->headers, arena_printf(a, "Factorline-Event-Type: %s", j->event_type));
    j->headers = curl_slist_append(j->headers, "Content-Type: application/json");
    j->headers = curl_slist_append(j->headers, "User-Agent: Factorline-Webhooks/1");
    j->headers = curl_slist_append(j->headers, "Expect:");
    return 0;
}

/* Records a finished delivery and frees its slot; -1 when the database is gone
 * (the lease then expires and another round sends it again). */
static int record_delivery(job *j)
{
    char status[24], lat[24], base[16], age[16];
    PGresult *res;
    snprintf(status, sizeof(status), "%ld", j->status);
    snprintf(lat, sizeof(lat), "%ld", (req_now_us() - j->start_us) / 1000);
    snprintf(base, sizeof(base), "%d", cfg.base_ms);
    snprintf(age, sizeof(age), "%d", cfg.max_age_s);
    const char *p[7] = { j->id, j->attempt, j->status ? status : NULL, lat, j->error[0] ? j->error : NULL, base,
                         age };
    int rc = db_exec(NULL, &st_record, p, &res);
    if (rc == 0)
        PQclear(res);
    job_free(j);
    return rc < 0 ? -1 : 0;
}

static int record_fetch(job *j)
{
    char sha[65] = "";
    PGresult *res;
    int ok = j->error[0] == '\0' && j->len > 0;
    if (ok)
        crypto_sha256_hex(j->data, j->len, sha);
    else if (j->error[0] == '\0')
        snprintf(j->error, sizeof(j->error), "empty document");
    /* the attempt: an error recorded after the lease ran out leaves the current claim alone */
    const char *p[7] = { j->id, j->attempt, ok ? (const char *) j->data : NULL, ok ? sha : NULL,
                         ok ? mime_sniff(j->data, j->len) : NULL, ok ? NULL : j->error, j->retry ? "t" : "f" };
    int lengths[7] = { 0, 0, ok ? (int) j->len : 0, 0, 0, 0, 0 };
    int formats[7] = { 0, 0, 1, 0, 0, 0, 0 };
    if (!ok)
        log_msg("warn", NULL, "attachment %s: %s", j->id, j->error);
    int rc = db_exec_bin(NULL, &st_att_record, p, lengths, formats, &res);
    if (rc == 0)
        PQclear(res);
    job_free(j);
    return rc < 0 ? -1 : 0;
}

/* Claims up to want deliveries and starts them; the number claimed, or -1. */
static int claim_deliveries(CURLM *multi, fl_arena *a, int want)
{
    char lim[16], lease[16], per[16];
    PGresult *res;
    snprintf(lim, sizeof(lim), "%d", want);
    snprintf(lease, sizeof(lease), "%d", cfg.lease_ms);
    snprintf(per, sizeof(per), "%d", cfg.per_subscription);
    const char *p[3] = { lim, lease, per };
    if (db_exec(NULL, &st_claim, p, &res) < 0)
        return -1;
    int n = PQntuples(res), rc = n;
    for (int i = 0; i < n; i++) {
        job *j = free_slot();
        j->kind = JOB_DELIVERY;
        snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, i, 0));
        snprintf(j->event_id, sizeof(j->event_id), "%s", PQgetvalue(res, i, 1));
        j->url = xstrdup(PQgetvalue(res, i, 2));
        j->body = xstrdup(PQgetisnull(res, i, 3) ? "{}" : PQgetvalue(res, i, 3));
        j->secret = xstrdup(PQgetvalue(res, i, 4));
        j->signature = strcmp(PQgetvalue(res, i, 5), "isoamp") == 0 ? "isoamp" : "factorline";
        j->event_type = xstrdup(PQgetvalue(res, i, 6));
        snprintf(j->attempt, sizeof(j->attempt), "%s", PQgetvalue(res, i, 7));
        j->start_us = req_now_us();
        if (sign(j, a) < 0 || start_transfer(j, multi, 10000L) < 0) {
            if (record_delivery(j) < 0)
                rc = -1;
        }
    }
    PQclear(res);
    arena_reset(a);
    return rc;
}

static int claim_fetches(CURLM *multi, int want)
{
    char lim[16], lease[24], per[16];
    PGresult *res;
    snprintf(lim, sizeof(lim), "%d", want);
    /* the lease outlives the fetch: no other worker takes it up meanwhile */
    snprintf(lease, sizeof(lease), "%ld", cfg.fetch_timeout_ms + 30000);
    snprintf(per, sizeof(per), "%d", cfg.per_partner);
    const char *p[3] = { lim, lease, per };
    if (db_exec(NULL, &st_att_claim, p, &res) < 0)
        return -1;
    int n = PQntuples(res), rc = n;
    for (int i = 0; i < n; i++) {
        job *j = free_slot();
        j->kind = JOB_FETCH;
        snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, i, 0));
        j->url = xstrdup(PQgetvalue(res, i, 1));
        snprintf(j->attempt, sizeof(j->attempt), "%s", PQgetvalue(res, i, 2));
        j->start_us = req_now_us();
        if (start_transfer(j, multi, cfg.fetch_timeout_ms) < 0 && record_fetch(j) < 0)
            rc = -1;
    }
    PQclear(res);
    return rc;
}

/* A transfer ended.  Deliveries are recorded; a fetch follows a redirect
 * (checked again) or is recorded.  0, or -1 when the database is gone. */
static int finished(job *j, CURLM *multi, CURLcode rc)
{
    char *next = NULL;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
    if (j->kind == JOB_FETCH)
        curl_easy_getinfo(j->easy, CURLINFO_REDIRECT_URL, &next);
    char *redirect = next && j->status >= 300 && j->status < 400 ? xstrdup(next) : NULL;
    curl_multi_remove_handle(multi, j->easy);
    curl_easy_cleanup(j->easy);
    j->easy = NULL;
    /* the SSRF guard's refusals, as net_url_check words them: recorded, not curl's message
     * (a refused address among others that then connected is no refusal) */
    if ((j->refused && !j->allowed && rc != CURLE_OK) || rc == CURLE_COULDNT_RESOLVE_HOST) {
        snprintf(j->error, sizeof(j->error), "refused: %s",
                 j->refused ? NET_REFUSED_PRIVATE : "the host does not resolve");
        j->status = 0;
        /* a lookup that fails may work in a minute (a DNS outage, a record not yet published):
         * a fetch is tried again, as a delivery is; a private address is no passing state
         * (until the twenty-second session a fetch failed for good on its first lookup) */
        j->retry = !j->refused;
        free(redirect);
        return j->kind == JOB_DELIVERY ? record_delivery(j) : record_fetch(j);
    }

    if (j->kind == JOB_DELIVERY) {
        /* an answer past 64 KiB is cut by on_body: curl's "Failure writing output" is ours,
         * not the receiver's, and the status stands */
        if (rc == CURLE_WRITE_ERROR && j->status > 0 && j->received > MAX_RESPONSE)
            j->error[0] = '\0';
        if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && j->status > 0)) {
            if (j->error[0] == '\0')
                snprintf(j->error, sizeof(j->error), "%s", curl_easy_strerror(rc));
            j->status = 0;
        } else if (j->status < 200 || j->status > 299) {
            snprintf(j->error, sizeof(j->error), "HTTP %ld", j->status);
        }
        return record_delivery(j);
    }

    long left = cfg.fetch_timeout_ms - (req_now_us() - j->start_us) / 1000;
    if (j->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(j->error, sizeof(j->error), "larger than 25 MB");
    } else if (rc == CURLE_OPERATION_TIMEDOUT && left <= FETCH_SLACK_MS) {
        /* the overall limit (curl's message would give this hop's share only);
         * a connect timeout before it keeps curl's message */
        snprintf(j->error, sizeof(j->error), "timed out after %g s", cfg.fetch_timeout_ms / 1000.0);
        j->retry = 1;
    } else if (rc != CURLE_OK) {
        if (j->error[0] == '\0')
            snprintf(j->error, sizeof(j->error), "%s", curl_easy_strerror(rc));
        /* a URL curl cannot use stays unusable */
        j->retry = rc != CURLE_URL_MALFORMAT && rc != CURLE_UNSUPPORTED_PROTOCOL;
    } else if (redirect != NULL) {
        if (++j->hops > FETCH_REDIRECTS) {
            snprintf(j->error, sizeof(j->error), "more than %d redirects", FETCH_REDIRECTS);
        } else if (left <= FETCH_SLACK_MS) {
            snprintf(j->error, sizeof(j->error), "timed out after %g s", cfg.fetch_timeout_ms / 1000.0);
            j->retry = 1;
        } else {
            free(j->url);
            j->url = redirect;
            j->len = 0;
            if (start_transfer(j, multi, left) == 0)
                return 0;
            redirect = NULL;          /* now j->url, freed with the job */
        }
    } else if (j->status < 200 || j->status > 299) {
        snprintf(j->error, sizeof(j->error), "HTTP %ld", j->status);
        j->retry = j->status >= 500 || j->status == 429;
    }
    free(redirect);
    return record_fetch(j);
}

static int listen_now(void)
{
    PGresult *r = PQexec(db_conn(), "LISTEN fl_webhooks");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

/* Reads pending notifications; 1 when there was at least one. */
static int drain_notifies(void)
{
    PGconn *c = db_conn();
    PGnotify *n;
    int any = 0;
    if (c == NULL)
        return 0;
    PQconsumeInput(c);
    while ((n = PQnotifies(c)) != NULL) {
        PQfreemem(n);
        any = 1;
    }
    return any;
}

int main(int argc, char **argv)
{
    int once = argc > 1 && strcmp(argv[1], "--once") == 0;
    const char *keyfile = getenv("FL_DATA_KEY_FILE");
    struct sigaction sa;

    log_init("worker");
    /* each setting within its range, else its default and a warning (env_long): a sweep of
     * 0 would spin, a lease of 0 would send every delivery twice, a retry base of 0 would
     * retry a refused delivery in a loop */
    cfg.allow_private = (int) env_long("FL_WEBHOOK_ALLOW_PRIVATE", 0, 0, 1);
    cfg.batch = (int) env_long("FL_WEBHOOK_BATCH", 32, 1, MAX_SLOTS - FETCH_SLOTS);
    cfg.per_subscription = (int) env_long("FL_WEBHOOK_PER_SUBSCRIPTION", 8, 1, MAX_SLOTS);
    cfg.per_partner = (int) env_long("FL_FETCH_PER_PARTNER", 1, 1, 16);
    cfg.lease_ms = (int) env_long("FL_WEBHOOK_LEASE_MS", 60000, 1000, 3600000);
    cfg.base_ms = (int) env_long("FL_WEBHOOK_RETRY_BASE_MS", 30000, 100, 3600000);
    cfg.max_age_s = (int) env_long("FL_WEBHOOK_MAX_AGE_S", 3 * 24 * 3600, 60, 30 * 24 * 3600);
    cfg.sweep_ms = (int) env_long("FL_WEBHOOK_SWEEP_MS", 1000, 50, 600000);
    cfg.fetch_timeout_ms = env_long("FL_FETCH_TIMEOUT_MS", 30000, 1000, 600000);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (keyfile == NULL || crypto_pii_load(keyfile) < 0) {
        log_msg("error", NULL, "data key not loaded (FL_DATA_KEY_FILE): secrets cannot be read");
        sleep(1);               /* restarted once a second, not in a fork loop (multiwatch -t 1000) */
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 64L);
    fl_arena *arena = arena_new(16 * 1024);

    int listening = 0, want = 1, wantf = 1, dbdown = 0, status = 0;
    unsigned long listen_gen = 0;       /* the connection LISTEN was sent on */
    long last_claim = 0, last_reconnect = 0;
    if (db_open(getenv("FL_WORKER_DATABASE_URL")) == 0)
        listening = listen_now() == 0;
    listen_gen = db_generation();
    log_msg("info", NULL, "webhook worker ready (batch %d, %d a subscription, lease %d ms, attachment fetches %g s, "
            "%d a partner)", cfg.batch, cfg.per_subscription, cfg.lease_ms, cfg.fetch_timeout_ms / 1000.0,
            cfg.per_partner);

    for (;;) {
        int inflight = count(JOB_DELIVERY) + count(JOB_FETCH);
        if (stopping && inflight == 0)
            break;
        /* a statement that found the connection broken reconnected on its own (db_exec):
         * the new session does not listen */
        if (listening && db_generation() != listen_gen)
            listening = 0;
        /* while transfers run the loop turns every 100 ms: a database that refuses at once is
         * tried again once a second, not at every turn (nor logged at every turn) */
        if (!stopping && (!db_ok() || !listening || dbdown) && req_now_us() - last_reconnect >= 1000000L) {
            /* PostgreSQL restarted or is down: reconnect, listen again, sweep */
            last_reconnect = req_now_us();
            db_close();
            if (db_open(getenv("FL_WORKER_DATABASE_URL")) < 0 || listen_now() < 0) {
                if (once) {             /* cron learns that nothing was delivered */
                    status = 1;
                    break;
                }
                if (inflight == 0) {
                    sleep(1);
                    continue;
                }
            } else {
                listening = 1;
                listen_gen = db_generation();
                dbdown = 0;
                want = wantf = 1;
                log_msg("info", NULL, "webhook worker (re)connected");
            }
        }
        long now = req_now_us();
        if (now - last_claim >= (long) cfg.sweep_ms * 1000)
            want = wantf = 1;
        int room = cfg.batch - count(JOB_DELIVERY);
        int froom = FETCH_SLOTS - count(JOB_FETCH);
        /* claimed when a slot is free and there may be work (a NOTIFY, a sweep, a claim that
         * came back full, a transfer that ended): not only when half the slots are free, or
         * a few subscriptions at their cap, hanging, would keep the rest from being claimed */
        if (!stopping && listening && !dbdown && want && room > 0) {
            int before = count(JOB_DELIVERY);
            int got = claim_deliveries(multi, arena, room);
            if (got < 0)
                dbdown = 1;
            /* more may be due: the claim came back full, or some of it ended at once (a
             * refused URL), which frees room under the subscription's cap */
            want = got == room || (got > 0 && count(JOB_DELIVERY) < before + got);
            last_claim = now;
        }
        if (!stopping && listening && !dbdown && wantf && froom > 0) {
            int before = count(JOB_FETCH);
            int got = claim_fetches(multi, froom);
            if (got < 0)
                dbdown = 1;
            wantf = got == froom || (got > 0 && count(JOB_FETCH) < before + got);
        }
        inflight = count(JOB_DELIVERY) + count(JOB_FETCH);
        if (once && inflight == 0 && !want && !wantf)
            break;

        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            job *j = NULL;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &j);
            /* a subscription or partner at its cap may have more due: claim again */
            if (j->kind == JOB_DELIVERY)
                want = 1;
            else
                wantf = 1;
            if (finished(j, multi, m->data.result) < 0)
                dbdown = 1;
        }

        /* sleep until a transfer moves, a NOTIFY arrives, or the sweep is due */
        struct curl_waitfd pg = { 0, CURL_WAIT_POLLIN, 0 };
        unsigned npg = 0;
        if (db_conn() != NULL && listening && PQsocket(db_conn()) >= 0) {
            pg.fd = PQsocket(db_conn());
            npg = 1;
        }
        if (drain_notifies()) {
            want = wantf = 1;
            continue;
        }
        inflight = count(JOB_DELIVERY) + count(JOB_FETCH);
        if (once && inflight == 0 && !want && !wantf)
            break;
        /* more is due (the last claim was full): claim again at once */
        if (!stopping && !dbdown && (want || wantf) && inflight == 0)
            continue;
        int timeout = inflight ? 100 : cfg.sweep_ms;
        curl_multi_poll(multi, &pg, npg, timeout, NULL);
        if (npg && (pg.revents & CURL_WAIT_POLLIN) && drain_notifies())
            want = wantf = 1;
    }
    log_msg("info", NULL, "webhook worker stopping");
    for (int i = 0; i < MAX_SLOTS; i++)
        if (slots[i].kind != JOB_FREE) {
            if (slots[i].easy) {
                curl_multi_remove_handle(multi, slots[i].easy);
                curl_easy_cleanup(slots[i].easy);
            }
            job_free(&slots[i]);
        }
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    arena_free(arena);
    db_close();
    return status;
}
