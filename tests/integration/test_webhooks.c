/* Integration tests of webhook delivery: the test stack's two supervised
 * fl-worker processes (FL_WEBHOOK_RETRY_BASE_MS=500, LEASE_MS=3000,
 * SWEEP_MS=200, ALLOW_PRIVATE=1) deliver to fl-receiver processes this
 * program starts, one per test, each with its own JSON-lines log.
 *
 * Events come from the posting API through nginx (tenant itest-a) or, where a
 * test needs many events or other families, from SQL as the owner into a
 * tenant of its own (so tests never see each other's deliveries).  Tests that
 * must control which worker runs (SSRF, SIGTERM) pause the supervised workers
 * with SIGSTOP and run $FL_TEST_WORKER themselves. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "itest.h"

/* ------------------------------------------------------------- database --- */

static long qlong(const char *v)
{
    return v && *v ? atol(v) : -1;
}

/* ---------------------------------------------------------------- fixtures --- */

/* A tenant of the test's own: {name, id}. */
typedef struct tenant {
    const char *name, *id;
} tenant;

static tenant new_tenant(void)
{
    tenant t;
    int st;
    t.name = it_fmt("wh-%s", it_uniq("t"));
    it_run(it_fmt("'%s' tenant add '%s' >/dev/null", it_env("FL_TEST_ADMIN"), t.name), &st);
    IT_CHECK(st == 0, "fl-admin tenant add %s: exit %d", t.name, st);
    t.id = IT_Q("SELECT id::text FROM tenants WHERE name = $1", t.name);
    return t;
}

typedef struct sub {
    const char *id, *secret;
} sub;

/* fl-admin webhook add; extra: more options (--events, --signature), or "". Private addresses
 * allowed, as `./factorline webhook add` allows them for the stacks it starts (the receivers
 * run on 127.0.0.1; the SSRF tests below run a worker that refuses them). */
static sub subscribe(const char *tenant_name, const char *family, const char *url, const char *extra)
{
    sub s = { NULL, NULL };
    int st;
    const char *out = it_run(it_fmt("FL_WEBHOOK_ALLOW_PRIVATE=1 FL_DATA_KEY_FILE='%s' '%s' webhook add --tenant '%s' --family %s "
                                    "--url '%s' --name test %s",
                                    it_env("FL_TEST_DATA_KEY"), it_env("FL_TEST_ADMIN"), tenant_name,
                                    family, url, extra), &st);
    IT_CHECK(st == 0, "fl-admin webhook add: exit %d: %s", st, out);
    json_object *j = it_json(out);
    s.id = it_jstr(j, "id");
    s.secret = it_jstr(j, "secret");
    IT_CHECK(s.id != NULL && s.secret != NULL && strlen(s.secret) == 64,
             "webhook add printed %s", out);
    return s;
}

/* The subscription stops, and what it still owes is dropped, so that no later
 * test sees retries to a receiver that is gone. */
static void unsubscribe(const sub *s)
{
    if (s->id == NULL)
        return;
    IT_Q("UPDATE webhook_subscriptions SET active = false WHERE id = $1::uuid", s->id);
    IT_Q("UPDATE webhook_deliveries SET state = 'dead', last_error = 'test cleanup' "
         "WHERE subscription_id = $1::uuid AND state IN ('pending','retrying','delivering')", s->id);
}

static const char *insert_event(const char *tenant_id, const char *family, const char *type,
                                const char *payload)
{
    return IT_Q("INSERT INTO events (tenant_id, family, type, payload) VALUES ($1::uuid, $2, $3, $4::jsonb) "
                "RETURNING id::text", tenant_id, family, type, payload);
}

static const char *delivery_of(const char *event_id, const sub *s)
{
    return IT_Q("SELECT id::text FROM webhook_deliveries WHERE event_id = $1::bigint AND subscription_id = $2::uuid",
                event_id, s->id);
}

static const char *dstate(const char *delivery)
{
    return IT_Q("SELECT state FROM webhook_deliveries WHERE id = $1::bigint", delivery);
}

/* Waits up to timeout seconds for the delivery to reach state; returns it. */
static const char *wait_state(const char *delivery, const char *state, double timeout)
{
    double end = it_now() + timeout;
    const char *s;
    while ((s = dstate(delivery)) != NULL && strcmp(s, state) != 0 && it_now() < end)
        it_sleep(0.05);
    return s;
}

/* Waits until the delivery has at least n recorded attempts. */
static long wait_attempts(const char *delivery, long n, double timeout)
{
    double end = it_now() + timeout;
    long k;
    while ((k = qlong(IT_Q("SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1::bigint", delivery))) < n
           && it_now() < end)
        it_sleep(0.05);
    return k;
}

/* ------------------------------------------------------------- signatures --- */

/* tests/integration/verify-signature.sh, as docs/webhooks.md shows it, on a
 * body written to a file byte for byte; returns its exit status. */
static int verify_script(const char *scheme, const char *secret, const char *header, const char *body,
                         const char *tolerance)
{
    const char *path = it_fmt("%s/body-%s.json", it_logdir(), it_uniq("b"));
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    fwrite(body, 1, strlen(body), f);
    fclose(f);
    int st;
    const char *out = it_run(it_fmt("sh '%s/tests/integration/verify-signature.sh' %s '%s' '%s' '%s' %s 2>&1",
                                    it_env("FL_TEST_ROOT"), scheme, secret, header, path, tolerance), &st);
    (void) out;
    return st;
}

/* ----------------------------------------------------------------- workers --- */

/* The worker whose TCP connection to the receiver comes from peer_port:
 * /proc/net/tcp gives the socket's inode, a worker's fd table names it. */
static pid_t worker_holding(int peer_port, int rcv_port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    unsigned long inode = 0;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned lport, rport;
        unsigned long ino;
        /* sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*d: %*8[0-9A-F]:%x %*8[0-9A-F]:%x %*x %*s %*s %*s %*d %*d %lu",
                   &lport, &rport, &ino) == 3
            && (int) lport == peer_port && (int) rport == rcv_port) {
            inode = ino;
            break;
        }
    }
    fclose(f);
    if (inode == 0)
        return -1;
    char want[64];
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    pid_t p[16];
    int n = it_supervised("webhooks.pid", p, 16);
    for (int i = 0; i < n; i++) {
        char dir[64];
        snprintf(dir, sizeof(dir), "/proc/%d/fd", (int) p[i]);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            char path[400], target[128];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            ssize_t k = readlink(path, target, sizeof(target) - 1);
            if (k > 0) {
                target[k] = '\0';
                if (strcmp(target, want) == 0) {
                    closedir(d);
                    return p[i];
                }
            }
        }
        if (d)
            closedir(d);
    }
    return -1;
}

/* fl-worker --once on the test stack's database, with the environment env ("NAME=value ...",
 * which may override the database or the key; no proxy exemptions); its output (stdout and
 * stderr), its exit status in *st. */
static const char *worker_once_env(const char *env, int *st)
{
    return it_run(it_fmt("env -u no_proxy -u NO_PROXY FL_WORKER_DATABASE_URL='%s' FL_DATA_KEY_FILE='%s' %s '%s' --once "
                         "2>&1", it_env("FL_TEST_WORKER_DATABASE_URL"), it_env("FL_TEST_DATA_KEY"), env,
                         it_env("FL_TEST_WORKER")), st);
}

/* Runs `fl-worker --once` with private addresses allowed or not; its exit status. */
static int worker_once(int allow_private)
{
    int st;
    const char *out = worker_once_env(it_fmt("FL_WEBHOOK_ALLOW_PRIVATE=%d FL_WEBHOOK_RETRY_BASE_MS=60000", allow_private),
                                      &st);
    IT_CHECK(st == 0, "fl-worker --once: exit %d: %s", st, out);
    return st;
}

/* Forks a long-running fl-worker of the test's own ($FL_TEST_WORKER, private
 * addresses allowed, sweeping every 200 ms) with stdout and stderr in errlog;
 * then more environment as NAME, VALUE pairs, NULL-terminated.  Returns its
 * pid: the caller signals and reaps it. */
static pid_t worker_spawnv(const char *resolv, const char *errlog, va_list ap)
{
    fflush(stdout);
    fflush(stderr);
    pid_t w = fork();
    if (w == 0) {
        setenv("FL_WEBHOOK_ALLOW_PRIVATE", "1", 1);
        setenv("FL_WORKER_DATABASE_URL", it_env("FL_TEST_WORKER_DATABASE_URL"), 1);
        setenv("FL_DATA_KEY_FILE", it_env("FL_TEST_DATA_KEY"), 1);
        setenv("FL_WEBHOOK_SWEEP_MS", "200", 1);
        for (const char *name = va_arg(ap, const char *); name != NULL; name = va_arg(ap, const char *))
            setenv(name, va_arg(ap, const char *), 1);
        int fd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* a resolver of the test's own: /etc/resolv.conf replaced in a mount
         * namespace of the worker's own (the rest of the machine keeps its own) */
        if (resolv != NULL
            && (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0
                || mount(resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL) < 0)) {
            fprintf(stderr, "test: cannot put %s in place of /etc/resolv.conf: %s\n", resolv, strerror(errno));
            _exit(126);
        }
        execl(it_env("FL_TEST_WORKER"), "fl-worker", (char *) NULL);
        _exit(127);
    }
    return w;
}

static pid_t worker_spawn(const char *errlog, ...)
{
    va_list ap;
    va_start(ap, errlog);
    pid_t w = worker_spawnv(NULL, errlog, ap);
    va_end(ap);
    return w;
}

/* As worker_spawn, with the resolver configuration in the file resolv. */
static pid_t worker_spawn_resolv(const char *resolv, const char *errlog, ...)
{
    va_list ap;
    va_start(ap, errlog);
    pid_t w = worker_spawnv(resolv, errlog, ap);
    va_end(ap);
    return w;
}

/* Waits up to timeout s for text in the file; whether it came. */
static int wait_log(const char *file, const char *text, double timeout)
{
    double end = it_now() + timeout;
    for (;;) {
        int st;
        it_run(it_fmt("grep -qF '%s' '%s' 2>/dev/null", text, file), &st);
        if (st == 0)
            return 1;
        if (it_now() >= end)
            return 0;
        it_sleep(0.1);
    }
}

/* Ends the test's own workers (SIGKILL, reaped) and lets the supervised ones,
 * paused with SIGSTOP while those ran, go on. */
static void own_workers_end(const pid_t *w, int n)
{
    for (int i = 0; i < n; i++) {
        if (w[i] <= 0)              /* a fork that failed: kill(-1) would reach every process */
            continue;
        kill(w[i], SIGKILL);
        waitpid(w[i], NULL, 0);
    }
    it_signal_supervised("webhooks.pid", SIGCONT);
}

/* ------------------------------------------------------------------- tests --- */

/* The verifier itself, on the vendor document's example (Request Signatures):
 * the key is the hmacSecret text as it is, the message t + body. */
static void test_signature_vector(void)
{
    const char *body = "{\"id\":\"f9a6e449-e884-4726-973e-26d6bd99666a\",\"object\":\"event\",\"time\":1650654842,"
                       "\"type\":\"statement_analysis.completed\",\"data\":{\"statementAnalysisId\":"
                       "\"f472949d-8227-4514-aa1c-b40f1f00380c\",\"proposalId\":\"f9a4bb9c-d2b2-45fa-83fe-f895c74235ad\"}}";
    const char *secret = "f76fab345ce93a69aa77d68a08283400cd0b45cb0a0a16b61e20b4c1e626a115";
    const char *hdr = "t=1650654842,v1=143f3835f2bf090fa6fd78754517d51b1897f691682627d241c5ed309cad0515";
    IT_CHECK(it_sig_ok("isoamp", secret, hdr, body, NULL), "the vendor's example does not verify");
    IT_CHECK(!it_sig_ok("factorline", secret, hdr, body, NULL), "the example verifies with a '.' separator");
    IT_CHECK(!it_sig_ok("isoamp", secret, hdr, it_fmt("%s ", body), NULL), "a changed body verifies");
    IT_CHECK(verify_script("isoamp", secret, hdr, body, "0") == 0, "verify-signature.sh rejects the vendor's example");
    IT_CHECK(verify_script("isoamp", secret, hdr, body, "300") == 1,
             "verify-signature.sh accepts a 2022 timestamp within a 300 s tolerance");
    IT_CHECK(verify_script("factorline", secret, hdr, body, "0") == 1,
             "verify-signature.sh accepts the isoamp example as a factorline signature");
}

/* Settings outside their range, or not numbers: each is its default, with a warning naming it
 * (a sweep of 0 would spin, a lease of 0 would send everything twice). The worker is pointed at
 * no database, so that it claims nothing of the stack's: its settings are read and logged
 * first, and --once without a database exits 1. */
static void test_settings_out_of_range(void)
{
    int st;
    const char *out = worker_once_env("FL_WEBHOOK_BATCH=0 FL_WEBHOOK_PER_SUBSCRIPTION=abc FL_WEBHOOK_SWEEP_MS=0 "
                                      "FL_WEBHOOK_LEASE_MS=-1 FL_FETCH_TIMEOUT_MS=10 FL_FETCH_PER_PARTNER=17 "
                                      "FL_WEBHOOK_RETRY_BASE_MS=5x FL_WEBHOOK_MAX_AGE_S=1 FL_WEBHOOK_ALLOW_PRIVATE=2 "
                                      "FL_WORKER_DATABASE_URL='host=/nonexistent dbname=x user=x'", &st);
    IT_CHECK(st == 1, "fl-worker --once without a database: exit %d, expected 1: %s", st, out);
    IT_CHECK(strstr(out, "(batch 32, 8 a subscription, lease 60000 ms, attachment fetches 30 s, 1 a partner)") != NULL,
             "the defaults are not in force: %s", out);
    static const char *const warned[] = { "FL_WEBHOOK_BATCH=0 is not", "FL_WEBHOOK_PER_SUBSCRIPTION=abc is not",
                                          "FL_WEBHOOK_SWEEP_MS=0 is not", "FL_WEBHOOK_LEASE_MS=-1 is not",
                                          "FL_FETCH_TIMEOUT_MS=10 is not", "FL_FETCH_PER_PARTNER=17 is not",
                                          "FL_WEBHOOK_RETRY_BASE_MS=5x is not", "FL_WEBHOOK_MAX_AGE_S=1 is not",
                                          "FL_WEBHOOK_ALLOW_PRIVATE=2 is not" };
    for (size_t i = 0; i < sizeof(warned) / sizeof(warned[0]); i++)
        IT_CHECK(strstr(out, warned[i]) != NULL, "no warning \"%s...\": %s", warned[i], out);
}

/* A posting API call through nginx -> event -> signed delivery (Factorline scheme). */
static void test_delivery_factorline(void)
{
    const it_cred *a = it_cred_get("a", "posting"), *b = it_cred_get("b", "posting");
    it_rcv r = it_rcv_start(0, "");
    sub s = subscribe("itest-a", "posting", r.url, "--events client.upserted");
    const char *ck = it_uniq("WH");
    json_object *lines[8];

    double t0 = it_now();
    it_resp *resp = it_post(a, "/api_factor/create-client/",
                            it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"Webhook \\\"Client\\\" %s\"}", ck, ck));
    IT_STATUS(resp, 201);
    /* not subscribed: another event type, and another tenant's event */
    resp = it_post(a, "/api_factor/create-debtor/",
                   it_fmt("{\"ClientKey\":\"%s\",\"DebtorKey\":\"D%s\",\"Name\":\"D\",\"Country\":\"USA\"}", ck, ck));
    IT_STATUS(resp, 201);
    resp = it_post(b, "/api_factor/create-client/", it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"B\"}", ck));
    IT_STATUS(resp, 201);

    const char *ev = IT_Q("SELECT e.id::text FROM events e JOIN tenants t ON t.id = e.tenant_id "
                          "WHERE t.name = 'itest-a' AND e.type = 'client.upserted' AND e.payload->>'ClientKey' = $1", ck);
    int n = it_rcv_wait(&r, lines, 8, 1, 10);
    double waited = it_now() - t0;
    IT_CHECK(n == 1, "%d requests received in %.1f s, expected 1", n, waited);
    if (n >= 1 && ev != NULL) {
        json_object *l = lines[0];
        const char *body = it_jstr(l, "body");
        long t = -1;
        IT_JSTR(l, "method", "POST");
        IT_JSTR(l, "path", strchr(r.url + 7, '/'));
        IT_JSTR(l, "event_id", ev);
        IT_JSTR(l, "content_type", "application/json");
        IT_JSTR(l, "event_type", "client.upserted");
        IT_JSTR(l, "user_agent", "Factorline-Webhooks/1");
        IT_JSTR(l, "iso_sig", NULL);
        IT_CHECK(it_sig_ok("factorline", s.secret, it_jstr(l, "fl_sig"), body, &t),
                 "Factorline-Signature %s does not verify with the subscription's secret", it_jstr(l, "fl_sig"));
        IT_CHECK(labs(t - (long) time(NULL)) < 60, "signature t=%ld is not now", t);
        IT_CHECK(!it_sig_ok("isoamp", s.secret, it_jstr(l, "fl_sig"), body, NULL), "verifies without the '.'");
        IT_CHECK(!it_sig_ok("factorline", it_uniq("x"), it_jstr(l, "fl_sig"), body, NULL), "verifies with another secret");
        json_object *pj = it_json(body);
        IT_JSTR(pj, "ClientKey", ck);
        IT_JSTR(pj, "Name", it_fmt("Webhook \"Client\" %s", ck));
        IT_CHECK(!it_jhas(pj, "FedTaxNum"), "the payload carries FedTaxNum");
        /* the documented shell verification, on this very delivery */
        IT_CHECK(verify_script("factorline", s.secret, it_jstr(l, "fl_sig"), body, "300") == 0,
                 "verify-signature.sh rejects a real delivery");
        IT_CHECK(verify_script("factorline", s.secret, it_jstr(l, "fl_sig"), it_fmt("%s\n", body), "300") == 1,
                 "verify-signature.sh accepts a changed body");
        IT_CHECK(verify_script("isoamp", s.secret, it_jstr(l, "fl_sig"), body, "300") == 1,
                 "verify-signature.sh accepts it under the other scheme");

        const char *d = delivery_of(ev, &s);
        IT_STREQ(wait_state(d, "delivered", 5), "delivered");
        IT_STREQ(IT_Q("SELECT attempts || ' ' || last_status || ' ' || coalesce(last_error, '-') || ' ' || "
                      "(delivered_at IS NOT NULL) FROM webhook_deliveries WHERE id = $1::bigint", d), "1 200 - true");
        IT_STREQ(IT_Q("SELECT count(*) || ' ' || min(status_code) || ' ' || bool_and(latency_ms >= 0 AND latency_ms < 10000) "
                      "|| ' ' || bool_and(error IS NULL) || ' ' || bool_and(attempted_at > now() - interval '1 minute') "
                      "FROM webhook_attempts WHERE delivery_id = $1::bigint", d), "1 200 true true true");
    }
    /* the secret is stored sealed with the data key (key id, nonce, ciphertext), never in clear */
    IT_STREQ(IT_Q("SELECT (secret_enc ~ '^v1:[0-9a-f]{8}:') || ' ' || (strpos(secret_enc, $2) = 0) "
                  "FROM webhook_subscriptions WHERE id = $1::uuid", s.id, s.secret ? s.secret : "-"), "true true");
    /* nothing else arrives: the debtor event and tenant b's client are not this subscription's */
    it_sleep(1.0);
    IT_CHECK(it_rcv_read(&r, lines, 8) == 1, "more than one request received");
    IT_STREQ(IT_Q("SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1::uuid", s.id), "1");
    unsubscribe(&s);
    it_rcv_stop(&r);
}

/* The ISO Amp scheme on a quotes subscription: HMAC(hmacSecret, t + body). */
static void test_delivery_isoamp(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "");
    sub s = subscribe(t.name, "quotes", r.url, "--signature isoamp");
    sub other = subscribe(t.name, "leads", r.url, "");   /* another family: not sent this event */
    json_object *lines[4];
    const char *ev = insert_event(t.id, "quotes", "statement_analysis.completed",
                                  "{\"object\":\"event\",\"type\":\"statement_analysis.completed\","
                                  "\"data\":{\"note\":\"caf\\u00e9 \\\"quoted\\\" \\\\ \\n\"}}");
    int n = it_rcv_wait(&r, lines, 4, 1, 10);
    IT_CHECK(n == 1, "%d requests received, expected 1", n);
    if (n >= 1) {
        const char *body = it_jstr(lines[0], "body");
        const char *hdr = it_jstr(lines[0], "iso_sig");
        IT_JSTR(lines[0], "event_id", ev);
        IT_JSTR(lines[0], "fl_sig", NULL);
        IT_CHECK(it_sig_ok("isoamp", s.secret, hdr, body, NULL), "Isoamp-Signature %s does not verify", hdr);
        IT_CHECK(!it_sig_ok("factorline", s.secret, hdr, body, NULL), "Isoamp-Signature verifies with a '.'");
        IT_CHECK(verify_script("isoamp", s.secret, hdr, body, "300") == 0, "verify-signature.sh rejects it");
        IT_STREQ(it_jstr(it_jget(it_json(body), "data"), "note"), "caf\xc3\xa9 \"quoted\" \\ \n");
        IT_STREQ(wait_state(delivery_of(ev, &s), "delivered", 5), "delivered");
    }
    it_sleep(0.5);
    IT_CHECK(it_rcv_read(&r, lines, 4) == 1, "the leads subscription got a quotes event");
    unsubscribe(&s);
    unsubscribe(&other);
    it_rcv_stop(&r);
}

/* 500, then 200 on the retry; both attempts recorded; same event id. */
static void test_retry_500_then_200(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "--status-seq 500,200");
    sub s = subscribe(t.name, "leads", r.url, "");
    json_object *lines[4];
    const char *ev = insert_event(t.id, "leads", "lead.created", "{\"n\":1}");
    const char *d = delivery_of(ev, &s);
    int n = it_rcv_wait(&r, lines, 4, 2, 10);
    IT_CHECK(n == 2, "%d requests received, expected 2", n);
    IT_STREQ(wait_state(d, "delivered", 5), "delivered");
    if (n >= 2) {
        IT_JSTR(lines[0], "event_id", ev);
        IT_JSTR(lines[1], "event_id", ev);              /* stable across retries */
        IT_STREQ(it_jstr(lines[0], "body"), it_jstr(lines[1], "body"));
        IT_CHECK(it_sig_ok("factorline", s.secret, it_jstr(lines[1], "fl_sig"), it_jstr(lines[1], "body"), NULL),
                 "the retry's signature does not verify");
        long gap = atol(it_jstr(lines[1], "t_ms")) - atol(it_jstr(lines[0], "t_ms"));
        /* attempt 1 failed: backoff 500 ms +-20 %, found by a 200 ms sweep */
        /* (the ceiling leaves room for a loaded machine; the schedule itself is checked in SQL below) */
        IT_CHECK(gap >= 400 && gap <= 3000, "retry came %ld ms after the first attempt, expected 400..3000", gap);
    }
    IT_STREQ(IT_Q("SELECT string_agg(coalesce(status_code::text, '-') || ':' || coalesce(error, '-'), ' ' ORDER BY id) "
                  "FROM webhook_attempts WHERE delivery_id = $1::bigint", d), "500:HTTP 500 200:-");
    IT_STREQ(IT_Q("SELECT attempts || ' ' || last_status || ' ' || coalesce(last_error, '-') FROM webhook_deliveries "
                  "WHERE id = $1::bigint", d), "2 200 -");
    it_sleep(0.8);
    IT_CHECK(it_rcv_read(&r, lines, 4) == 2, "requests after the 200");
    unsubscribe(&s);
    it_rcv_stop(&r);
}

/* A receiver that is down, and one that answers with a redirect: retried, not followed. */
static void test_receiver_down_and_redirect(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "--status-seq 302,200");
    int port = r.port;
    it_rcv_stop(&r);                               /* nothing listens on the port now */
    sub s = subscribe(t.name, "financing", r.url, "");
    json_object *lines[4];
    const char *ev = insert_event(t.id, "financing", "offer.created", "{}");
    const char *d = delivery_of(ev, &s);
    IT_CHECK(wait_attempts(d, 1, 10) >= 1, "no attempt recorded");
    IT_STREQ(IT_Q("SELECT coalesce(status_code::text, 'null') || ' ' || (error ILIKE '%connect%') FROM webhook_attempts "
                  "WHERE delivery_id = $1::bigint ORDER BY id LIMIT 1", d), "null true");
    const char *st = dstate(d);
    IT_CHECK(st && (strcmp(st, "retrying") == 0 || strcmp(st, "pending") == 0 || strcmp(st, "delivering") == 0),
             "state %s after a refused connection", st);

    it_rcv r2 = it_rcv_start(port, "--status-seq 302,200");  /* the receiver comes back */
    IT_CHECK(r2.port == port, "receiver restarted on %d, not %d", r2.port, port);
    r2.url = r.url;
    IT_STREQ(wait_state(d, "delivered", 15), "delivered");
    int n = it_rcv_read(&r2, lines, 4);
    IT_CHECK(n == 2, "%d requests, expected 2 (302 not followed, then 200)", n);
    for (int i = 0; i < n; i++) {
        IT_JSTR(lines[i], "path", strchr(r.url + 7, '/'));   /* never /elsewhere */
        IT_JSTR(lines[i], "event_id", ev);
    }
    IT_STREQ(IT_Q("SELECT string_agg(coalesce(status_code::text, '-'), ' ' ORDER BY id) FROM webhook_attempts "
                  "WHERE delivery_id = $1::bigint AND status_code IS NOT NULL", d), "302 200");
    unsubscribe(&s);
    it_rcv_stop(&r2);
}

/* A receiver that does not answer in 10 s: the attempt times out and is
 * recorded; the lease (3 s here) ran out first, so the other worker has sent
 * it again meanwhile, and the late failure does not undo that delivery.  A
 * 1 MiB answer body is read up to 64 KiB, dropped, and counts as delivered. */
static void test_timeout_and_large_answer(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "--hang-first-ms 14000");
    sub s = subscribe(t.name, "leads", r.url, "");
    json_object *lines[4];
    const char *ev = insert_event(t.id, "leads", "lead.created", "{}");
    const char *d = delivery_of(ev, &s);
    IT_STREQ(wait_state(d, "delivered", 10), "delivered");
    IT_CHECK(wait_attempts(d, 2, 15) == 2, "the timed-out attempt was not recorded");
    IT_STREQ(IT_Q("SELECT string_agg(coalesce(status_code::text, 'null') || ' ' "
                  "|| coalesce((error ILIKE '%timed out%')::text, '-') || ' ' "
                  "|| (latency_ms BETWEEN 9500 AND 20000)::text, ', ' ORDER BY status_code NULLS LAST) "
                  "FROM webhook_attempts WHERE delivery_id = $1::bigint", d), "200 - false, null true true");
    /* the limit as curl measured it, whatever the worker's own delays around the transfer */
    IT_STREQ(IT_Q("SELECT (substring(error from 'after ([0-9]+) milli')::int BETWEEN 10000 AND 10500)::text "
                  "FROM webhook_attempts WHERE delivery_id = $1::bigint AND status_code IS NULL", d), "true");
    IT_STREQ(dstate(d), "delivered");
    IT_CHECK(it_rcv_read(&r, lines, 4) == 2, "expected the hung request and the one after the lease");
    unsubscribe(&s);
    it_rcv_stop(&r);

    it_rcv big = it_rcv_start(0, "--answer-bytes 1048576");
    sub s2 = subscribe(t.name, "financing", big.url, "");
    ev = insert_event(t.id, "financing", "offer.created", "{}");
    d = delivery_of(ev, &s2);
    IT_STREQ(wait_state(d, "delivered", 10), "delivered");
    /* the answer cut at 64 KiB is no error of the receiver's (until the twenty-first session the
     * attempt kept curl's "Failure writing output to destination") */
    IT_STREQ(IT_Q("SELECT string_agg(coalesce(status_code::text, 'null') || ' ' || coalesce(error, '-'), ', ') "
                  "FROM webhook_attempts WHERE delivery_id = $1::bigint", d), "200 -");
    unsubscribe(&s2);
    it_rcv_stop(&big);

    /* a refusal with a 1 MiB body: the worker stops reading at 64 KiB and records the status */
    it_rcv bigno = it_rcv_start(0, "--status-seq 503 --answer-bytes 1048576");
    sub s3 = subscribe(t.name, "quotes", bigno.url, "");
    ev = insert_event(t.id, "quotes", "proposal.created", "{}");
    d = delivery_of(ev, &s3);
    IT_CHECK(wait_attempts(d, 1, 10) >= 1, "the refused delivery was not recorded");
    IT_STREQ(IT_Q("SELECT status_code || ' ' || error FROM webhook_attempts WHERE delivery_id = $1::bigint "
                  "ORDER BY id LIMIT 1", d), "503 HTTP 503");
    unsubscribe(&s3);
    it_rcv_stop(&bigno);
}

static double backoff_s(const char *attempt, const char *base, const char *jitter)
{
    const char *v = IT_Q("SELECT extract(epoch FROM webhook_backoff($1::int, $2::int, $3::float8))::text",
                         attempt, base, jitter);
    return v ? atof(v) : -1;
}

#define NEAR(got, want) IT_CHECK((got) > (want) - 0.001 && (got) < (want) + 0.001, \
                                 "%s = %.3f, expected %.3f", #got, (double) (got), (double) (want))

/* The schedule: base * 2^(n-1), capped at 6 h, jitter +-20 %; and the gap
 * webhook_record leaves after a real failure. */
static void test_backoff_schedule(void)
{
    NEAR(backoff_s("1", "30000", "0"), 30);
    NEAR(backoff_s("2", "30000", "0"), 60);
    NEAR(backoff_s("3", "30000", "0"), 120);
    NEAR(backoff_s("10", "30000", "0"), 15360);
    NEAR(backoff_s("11", "30000", "0"), 21600);          /* the 6 h cap */
    NEAR(backoff_s("1000", "30000", "0"), 21600);
    NEAR(backoff_s("0", "30000", "0"), 30);              /* attempt < 1 counts as the first */
    NEAR(backoff_s("1", "30000", "1"), 36);              /* first retry within a minute */
    NEAR(backoff_s("1", "30000", "-1"), 24);
    NEAR(backoff_s("1", "30000", "7"), 36);              /* jitter clamped to +-20 % */
    NEAR(backoff_s("11", "30000", "1"), 25920);
    NEAR(backoff_s("1", "500", "0"), 0.5);
    /* attempts until the 3-day window closes, with the default base and no jitter */
    IT_STREQ(IT_Q("WITH RECURSIVE s(n, at) AS (SELECT 1, 0::float8 UNION ALL "
                  "SELECT n + 1, at + extract(epoch FROM webhook_backoff(n, 30000, 0)) FROM s "
                  "WHERE at + extract(epoch FROM webhook_backoff(n, 30000, 0)) <= 259200) SELECT max(n)::text FROM s"),
             "21");

    /* webhook_record after the 3rd attempt fails: next = now + 2 s +-20 %, state retrying */
    tenant t = new_tenant();
    sub s = subscribe(t.name, "leads", "http://127.0.0.1:9/never", "");
    /* claimed by "us" in the event's own transaction: out of the workers' reach for an hour */
    IT_Q0("BEGIN");
    const char *ev = insert_event(t.id, "leads", "lead.created", "{}");
    const char *d = delivery_of(ev, &s);
    IT_Q("UPDATE webhook_deliveries SET state = 'delivering', attempts = 3, next_attempt_at = now() + interval '1 hour' "
         "WHERE id = $1::bigint", d);
    IT_Q0("COMMIT");
    for (int i = 0; i < 20; i++) {
        IT_Q0("BEGIN");
        const char *st = IT_Q("SELECT webhook_record($1::bigint, 3, 503, 12, 'HTTP 503', 1000, 259200)", d);
        const char *gap = IT_Q("SELECT extract(epoch FROM next_attempt_at - now())::text FROM webhook_deliveries "
                               "WHERE id = $1::bigint", d);
        IT_Q("UPDATE webhook_deliveries SET state = 'delivering', next_attempt_at = now() + interval '1 hour' "
             "WHERE id = $1::bigint", d);
        IT_Q0("COMMIT");
        IT_STREQ(st, "retrying");
        double g = gap ? atof(gap) : -1;
        IT_CHECK(g >= 3.2 - 0.001 && g <= 4.8 + 0.001, "next attempt %.3f s after attempt 3 (base 1 s), expected 3.2..4.8", g);
    }
    IT_STREQ(IT_Q("SELECT count(*) || ' ' || min(status_code) || ' ' || min(latency_ms) || ' ' || min(error) "
                  "FROM webhook_attempts WHERE delivery_id = $1::bigint", d), "20 503 12 HTTP 503");

    /* and end to end: a receiver that always fails sees gaps of ~0.5 s then ~1 s */
    it_rcv r = it_rcv_start(0, "--status-seq 500");
    sub s2 = subscribe(t.name, "financing", r.url, "");
    json_object *lines[8];
    insert_event(t.id, "financing", "offer.created", "{}");
    int n = it_rcv_wait(&r, lines, 8, 3, 10);
    IT_CHECK(n >= 3, "%d requests, expected 3", n);
    if (n >= 3) {
        long g1 = atol(it_jstr(lines[1], "t_ms")) - atol(it_jstr(lines[0], "t_ms"));
        long g2 = atol(it_jstr(lines[2], "t_ms")) - atol(it_jstr(lines[1], "t_ms"));
        /* floors: the backoff (0.5 s, then 1 s, +-20 %); ceilings with room for a loaded machine */
        IT_CHECK(g1 >= 400 && g1 <= 2600, "gap 1 = %ld ms, expected 400..2600 (0.5 s +-20 %%)", g1);
        IT_CHECK(g2 >= 800 && g2 <= 3200, "gap 2 = %ld ms, expected 800..3200 (1 s +-20 %%)", g2);
    }
    unsubscribe(&s);
    unsubscribe(&s2);
    it_rcv_stop(&r);
}

/* Dead after the 3-day window (moved back in SQL, not slept through); requeue. */
static void test_dead_after_limit(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "--status-seq 500,500,500,200");
    sub s = subscribe(t.name, "leads", r.url, "");
    json_object *lines[8];
    /* each attempt is one fl-worker --once (a 60 s retry base: nothing is tried again on its
     * own), the supervised workers paused meanwhile */
    it_signal_supervised("webhooks.pid", SIGSTOP);
    const char *ev = insert_event(t.id, "leads", "lead.created", "{}");
    const char *d = delivery_of(ev, &s);
    const char *q = "SELECT attempts || ' ' || state FROM webhook_deliveries WHERE id = $1::bigint";
    worker_once(1);
    IT_STREQ(IT_Q(q, d), "1 retrying");

    /* one hour of window left: the next failure is still retried */
    IT_STREQ(IT_Q("UPDATE webhook_deliveries SET window_start = now() - interval '71 hours', next_attempt_at = now() "
                  "WHERE id = $1::bigint AND state = 'retrying' RETURNING 1", d), "1");
    worker_once(1);
    IT_STREQ(IT_Q(q, d), "2 retrying");

    /* the window has closed: the next failure is the last */
    IT_STREQ(IT_Q("UPDATE webhook_deliveries SET window_start = now() - interval '3 days', next_attempt_at = now() "
                  "WHERE id = $1::bigint AND state = 'retrying' RETURNING 1", d), "1");
    worker_once(1);
    it_signal_supervised("webhooks.pid", SIGCONT);
    IT_STREQ(IT_Q(q, d), "3 dead");
    IT_STREQ(IT_Q("SELECT attempts || ' ' || last_status || ' ' || last_error FROM webhook_deliveries WHERE id = $1::bigint", d),
             "3 500 HTTP 500");
    it_sleep(1.5);                                  /* several sweeps: a dead delivery is not sent */
    IT_CHECK(it_rcv_read(&r, lines, 8) == 3, "requests after the delivery died");
    IT_STREQ(IT_Q("SELECT state FROM webhook_recent WHERE id = $1::bigint", d), "dead");
    IT_CHECK(qlong(IT_Q("SELECT sum(deliveries) FROM webhook_delivery_stats WHERE subscription_id = $1::uuid "
                        "AND state = 'dead'", s.id)) == 1, "webhook_delivery_stats does not count the dead delivery");

    /* a DBA re-queues it: a fresh window, sent at once, delivered */
    IT_STREQ(IT_Q("SELECT webhook_requeue($1::bigint)::text", d), "true");
    IT_STREQ(wait_state(d, "delivered", 10), "delivered");
    IT_STREQ(IT_Q("SELECT (window_start > now() - interval '1 minute')::text FROM webhook_deliveries "
                  "WHERE id = $1::bigint", d), "true");                             /* a fresh window */
    IT_CHECK(it_rcv_read(&r, lines, 8) == 4, "the re-queued delivery was not sent once");
    IT_STREQ(IT_Q("SELECT webhook_requeue($1::bigint)::text", d), "false");   /* delivered stays delivered */
    IT_STREQ(dstate(d), "delivered");
    unsubscribe(&s);
    it_rcv_stop(&r);
}

/* http_proxy and friends in the worker's environment are not used: the delivery goes straight
 * to the receiver (the guard checks the address it connects to), the proxy sees nothing. */
static void test_proxy_env_ignored(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, ""), proxy = it_rcv_start(0, "");
    sub s = subscribe(t.name, "leads", r.url, "");
    json_object *lines[4];
    it_signal_supervised("webhooks.pid", SIGSTOP);
    const char *ev = insert_event(t.id, "leads", "lead.proxied", "{}");
    const char *px = it_fmt("http://127.0.0.1:%d", proxy.port);
    int st;
    const char *out = worker_once_env(it_fmt("http_proxy=%s HTTP_PROXY=%s https_proxy=%s ALL_PROXY=%s all_proxy=%s "
                                             "FL_WEBHOOK_ALLOW_PRIVATE=1", px, px, px, px, px), &st);
    it_signal_supervised("webhooks.pid", SIGCONT);
    IT_CHECK(st == 0, "fl-worker --once: exit %d: %s", st, out);
    IT_STREQ(dstate(delivery_of(ev, &s)), "delivered");
    int n = it_rcv_read(&r, lines, 4);
    IT_CHECK(n == 1, "the receiver got %d requests, expected 1", n);
    if (n == 1)
        IT_JSTR(lines[0], "event_id", ev);
    IT_CHECK(it_rcv_read(&proxy, lines, 4) == 0, "the proxy from the environment was used");
    unsubscribe(&s);
    it_rcv_stop(&r);
    it_rcv_stop(&proxy);
}

/* SSRF: with private addresses refused, nothing is sent and the refusal is recorded. */
static void test_ssrf_refusals(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "");
    json_object *lines[8];
    static const char *const hosts[] = {
        "127.0.0.1:%d", "10.0.0.1:%d", "169.254.169.254", "[::1]:%d", "localhost:%d",
        "[::ffff:127.0.0.1]:%d", "0.0.0.0:%d", "192.168.1.1:%d", "[fd00:ec2::254]",
    };
    enum { NH = sizeof(hosts) / sizeof(hosts[0]) };
    sub subs[NH];
    const char *dels[NH];
    int st;

    /* not http(s): refused at subscription already (a CHECK constraint); credentials in the URL
     * are refused at send time, by net_url_check (unit test) */
    it_run(it_fmt("FL_DATA_KEY_FILE='%s' '%s' webhook add --tenant '%s' --family leads --url 'ftp://127.0.0.1/x' "
                  ">/dev/null 2>&1", it_env("FL_TEST_DATA_KEY"), it_env("FL_TEST_ADMIN"), t.name), &st);
    IT_CHECK(st != 0, "an ftp:// subscription was accepted");

    it_signal_supervised("webhooks.pid", SIGSTOP);
    for (size_t i = 0; i < NH; i++) {
        const char *hp = it_fmt(hosts[i], r.port);
        subs[i] = subscribe(t.name, "leads", it_fmt("http://%s/ssrf/%zu", hp, i), "--events ssrf.test");
    }
    const char *ev = insert_event(t.id, "leads", "ssrf.test", "{}");
    for (size_t i = 0; i < NH; i++)
        dels[i] = delivery_of(ev, &subs[i]);
    worker_once(0);
    for (size_t i = 0; i < NH; i++) {
        const char *row = IT_Q("SELECT state || '|' || coalesce(last_status::text, 'null') || '|' || last_error "
                               "FROM webhook_deliveries WHERE id = $1::bigint", dels[i]);
        IT_STREQ(row, "retrying|null|refused: the host resolves to a private, loopback or link-local address");
        IT_STREQ(IT_Q("SELECT count(*) || ' ' || count(status_code) FROM webhook_attempts WHERE delivery_id = $1::bigint",
                      dels[i]), "1 0");
    }
    IT_CHECK(it_rcv_read(&r, lines, 8) == 0, "the receiver got a request while private addresses are refused");
    /* a name that does not resolve: curl's lookup fails, recorded in the guard's words */
    sub nx = subscribe(t.name, "leads", "http://nowhere.invalid/hook", "--events ssrf.nx");
    const char *dnx = delivery_of(insert_event(t.id, "leads", "ssrf.nx", "{}"), &nx);
    worker_once(0);
    IT_STREQ(IT_Q("SELECT state || '|' || coalesce(last_status::text, 'null') || '|' || last_error "
                  "FROM webhook_deliveries WHERE id = $1::bigint", dnx), "retrying|null|refused: the host does not resolve");
    unsubscribe(&nx);

    /* the control: the same loopback URL is delivered when private addresses are allowed */
    IT_Q("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1::bigint", dels[0]);
    /* and an IPv6 address in the URL is delivered to (it is not pinned by name) */
    it_rcv r6 = it_rcv_start(0, "--ipv6 1");
    sub s6 = subscribe(t.name, "leads", it_fmt("http://[::1]:%d/v6", r6.port), "--events ssrf.test6");
    const char *d6 = delivery_of(insert_event(t.id, "leads", "ssrf.test6", "{}"), &s6);
    worker_once(1);
    it_signal_supervised("webhooks.pid", SIGCONT);
    IT_STREQ(dstate(dels[0]), "delivered");
    IT_CHECK(it_rcv_read(&r, lines, 8) == 1, "the allowed delivery did not arrive once");
    IT_STREQ(IT_Q("SELECT state || ' ' || coalesce(last_error, '-') FROM webhook_deliveries WHERE id = $1::bigint", d6),
             "delivered -");
    IT_CHECK(it_rcv_read(&r6, lines, 8) == 1, "the delivery to [::1] did not arrive once");
    unsubscribe(&s6);
    it_rcv_stop(&r6);
    for (size_t i = 0; i < NH; i++)
        unsubscribe(&subs[i]);
    it_rcv_stop(&r);
}

/* Two workers, 300 deliveries: every event received exactly once. */
static void test_two_workers_no_double_send(void)
{
    enum { N = 300 };
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "--delay-ms 5");
    sub s = subscribe(t.name, "financing", r.url, "");
    static json_object *lines[N + 50];
    /* two workers of the test's own with a 60 s lease (the supervised ones, paused, have 3 s: a
     * delivery held longer than that by a stalled host would be sent again, rightly) */
    it_signal_supervised("webhooks.pid", SIGSTOP);
    pid_t w[2];
    for (int i = 0; i < 2; i++)
        w[i] = worker_spawn(it_fmt("%s/worker-%s.log", it_logdir(), it_uniq("w")),
                            "FL_WEBHOOK_LEASE_MS", "60000", (const char *) NULL);
    IT_Q("INSERT INTO events (tenant_id, family, type, payload) "
         "SELECT $1::uuid, 'financing', 'offer.created', jsonb_build_object('i', i) FROM generate_series(1, 300) i", t.id);
    double end = it_now() + 60;
    const char *left;
    while ((left = IT_Q("SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1::uuid AND state <> 'delivered'",
                        s.id)) && strcmp(left, "0") != 0 && it_now() < end)
        it_sleep(0.1);
    IT_STREQ(left, "0");
    it_sleep(0.5);
    int n = it_rcv_read(&r, lines, N + 50);
    IT_CHECK(n == N, "%d requests for %d events", n, N);
    /* every id once, and every id one of the tenant's events */
    const char *ids = "{";
    for (int i = 0; i < n; i++)
        ids = it_fmt("%s%s%s", ids, i ? "," : "", it_jstr(lines[i], "event_id") ? it_jstr(lines[i], "event_id") : "0");
    ids = it_fmt("%s}", ids);
    IT_STREQ(IT_Q("SELECT count(DISTINCT x)::text FROM unnest($1::bigint[]) x", ids), it_fmt("%d", N));
    IT_STREQ(IT_Q("SELECT count(*)::text FROM events WHERE tenant_id = $1::uuid AND id = ANY ($2::bigint[])", t.id, ids),
             it_fmt("%d", N));
    IT_STREQ(IT_Q("SELECT count(*) || ' ' || max(attempts) FROM webhook_deliveries d WHERE subscription_id = $1::uuid", s.id),
             "300 1");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id "
                  "WHERE d.subscription_id = $1::uuid", s.id), "300");
    /* connections are reused per destination: at most 8 per worker, not one per delivery */
    const char *ports = "{";
    for (int i = 0; i < n; i++)
        ports = it_fmt("%s%s%s", ports, i ? "," : "", it_jstr(lines[i], "peer_port"));
    ports = it_fmt("%s}", ports);
    long conns = qlong(IT_Q("SELECT count(DISTINCT x)::text FROM unnest($1::int[]) x", ports));
    IT_CHECK(conns >= 1 && conns <= 20, "%ld connections for %d deliveries to one receiver", conns, n);
    own_workers_end(w, 2);
    unsubscribe(&s);
    it_rcv_stop(&r);
}

/* A worker SIGKILLed mid-delivery: the lease runs out and the delivery is sent again. */
static void test_killed_worker_retried(void)
{
    IT_CHECK(it_wait_supervised("webhooks.pid", 2, 5) == 2, "the test stack does not run 2 webhook workers");
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "--hang-first-ms 30000");
    sub s = subscribe(t.name, "leads", r.url, "");
    json_object *lines[4];
    const char *ev = insert_event(t.id, "leads", "lead.created", "{\"kill\":true}");
    const char *d = delivery_of(ev, &s);
    int n = it_rcv_wait(&r, lines, 4, 1, 10);
    IT_CHECK(n == 1, "the first request did not arrive");
    if (n < 1)
        goto out;
    IT_STREQ(dstate(d), "delivering");
    pid_t victim = worker_holding(atoi(it_jstr(lines[0], "peer_port")), r.port);
    IT_CHECK(victim > 0, "no supervised worker holds the connection from port %s", it_jstr(lines[0], "peer_port"));
    if (victim <= 0)
        goto out;
    kill(victim, SIGKILL);
    double killed = it_now();
    n = it_rcv_wait(&r, lines, 4, 2, 15);
    double after = it_now() - killed;
    IT_CHECK(n == 2, "the delivery was not sent again after the worker was killed (%d requests in %.1f s)", n, after);
    if (n >= 2) {
        IT_JSTR(lines[1], "event_id", ev);
        long gap = atol(it_jstr(lines[1], "t_ms")) - atol(it_jstr(lines[0], "t_ms"));
        IT_CHECK(gap >= 2500 && gap <= 12000, "sent again %ld ms after the first, expected after the 3 s lease", gap);
        long t1 = -1, t2 = -1;
        IT_CHECK(it_sig_ok("factorline", s.secret, it_jstr(lines[0], "fl_sig"), it_jstr(lines[0], "body"), &t1)
                 && it_sig_ok("factorline", s.secret, it_jstr(lines[1], "fl_sig"), it_jstr(lines[1], "body"), &t2),
                 "a send's signature does not verify");
        /* t is when each attempt was sent: the second is signed anew */
        IT_CHECK(t2 - t1 >= 2 && t2 - t1 <= 13, "t=%ld, then t=%ld: not signed at each send", t1, t2);
    }
    IT_STREQ(wait_state(d, "delivered", 5), "delivered");
    /* the killed attempt left no record; the lease's claim counted it */
    IT_STREQ(IT_Q("SELECT d.attempts || ' ' || count(a.id) || ' ' || min(a.status_code) FROM webhook_deliveries d "
                  "LEFT JOIN webhook_attempts a ON a.delivery_id = d.id WHERE d.id = $1::bigint GROUP BY d.attempts", d),
             "2 1 200");
    IT_CHECK(kill(victim, 0) < 0, "the killed worker %d is still there", (int) victim);
    IT_CHECK(it_wait_supervised("webhooks.pid", 2, 10) == 2, "multiwatch did not restart the killed worker");
out:
    unsubscribe(&s);
    it_rcv_stop(&r);
}

/* SIGTERM to a worker with a delivery in flight: the delivery finishes and is
 * recorded, then the worker exits 0. */
static void test_sigterm_finishes_in_flight(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "--delay-ms 1500");
    sub s = subscribe(t.name, "leads", r.url, "");
    json_object *lines[4];
    const char *errlog = it_fmt("%s/worker-sigterm-%s.log", it_logdir(), it_uniq("w"));
    it_signal_supervised("webhooks.pid", SIGSTOP);
    pid_t w = worker_spawn(errlog, (const char *) NULL);
    const char *ev = insert_event(t.id, "leads", "lead.created", "{}");
    const char *d = delivery_of(ev, &s);
    int n = it_rcv_wait(&r, lines, 4, 1, 10);
    IT_CHECK(n == 1, "the worker did not send the delivery");
    kill(w, SIGTERM);
    int status = -1;
    double end = it_now() + 10;
    pid_t got;
    while ((got = waitpid(w, &status, WNOHANG)) == 0 && it_now() < end)
        it_sleep(0.05);
    if (got == 0) {
        IT_CHECK(0, "the worker did not exit within 10 s of SIGTERM");
        kill(w, SIGKILL);
        waitpid(w, &status, 0);
    } else {
        IT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the worker ended with status 0x%x (see %s)", status, errlog);
    }
    it_signal_supervised("webhooks.pid", SIGCONT);
    /* recorded by the stopping worker itself, with the 1.5 s the receiver took */
    IT_STREQ(dstate(d), "delivered");
    IT_STREQ(IT_Q("SELECT count(*) || ' ' || min(status_code) || ' ' || (min(latency_ms) >= 1400) FROM webhook_attempts "
                  "WHERE delivery_id = $1::bigint", d), "1 200 true");
    unsubscribe(&s);
    it_rcv_stop(&r);
}

/* Two subscriptions of one tenant, lead.slow to a receiver started with
 * slow_opts and lead.quick to one that answers at once, served by one worker of
 * the test's own (60 s lease, and env=val when env is not NULL) while the
 * supervised workers are paused. */
typedef struct slow_quick {
    tenant t;
    it_rcv slow, quick;
    sub s1, s2;
    const char *errlog;
    pid_t w;
} slow_quick;

static slow_quick slow_quick_start(const char *slow_opts, const char *env, const char *val)
{
    slow_quick f;
    f.t = new_tenant();
    f.slow = it_rcv_start(0, slow_opts);
    f.quick = it_rcv_start(0, "");
    f.s1 = subscribe(f.t.name, "leads", f.slow.url, "--events lead.slow");
    f.s2 = subscribe(f.t.name, "leads", f.quick.url, "--events lead.quick");
    f.errlog = it_fmt("%s/worker-%s.log", it_logdir(), it_uniq("w"));
    it_signal_supervised("webhooks.pid", SIGSTOP);
    f.w = worker_spawn(f.errlog, "FL_WEBHOOK_LEASE_MS", "60000", env, val, (const char *) NULL);
    return f;
}

static void slow_quick_stop(slow_quick *f)
{
    own_workers_end(&f->w, 1);
    unsubscribe(&f->s1);
    unsubscribe(&f->s2);
    it_rcv_stop(&f->slow);
    it_rcv_stop(&f->quick);
}

/* One worker, a receiver that hangs and another that answers at once: the
 * quick one's delivery does not wait for the hung one's transfer. */
static void test_slow_receiver_holds_one_slot(void)
{
    slow_quick f = slow_quick_start("--hang-first-ms 6000", NULL, NULL);
    json_object *lines[4];
    insert_event(f.t.id, "leads", "lead.slow", "{}");
    IT_CHECK(it_rcv_wait(&f.slow, lines, 4, 1, 5) == 1, "the hung receiver never got its request");
    long slow_at = it_rcv_read(&f.slow, lines, 4) == 1 ? atol(it_jstr(lines[0], "t_ms")) : 0;
    const char *ev = insert_event(f.t.id, "leads", "lead.quick", "{}");
    int n = it_rcv_wait(&f.quick, lines, 4, 1, 5.5);
    IT_CHECK(n == 1, "the quick receiver waited for the hung one (see %s)", f.errlog);
    if (n == 1) {
        IT_JSTR(lines[0], "event_id", ev);
        /* sent while the hung transfer (6 s) was still waiting for its answer */
        long gap = atol(it_jstr(lines[0], "t_ms")) - slow_at;
        IT_CHECK(slow_at > 0 && gap < 5500, "the quick delivery came %ld ms after the hung one's request", gap);
    }
    slow_quick_stop(&f);
}

/* One worker, a subscription whose receiver hangs with a backlog of 40, and
 * another subscription: the first has FL_WEBHOOK_PER_SUBSCRIPTION (4) in
 * flight, never more, and the second is served at once.  Before migration
 * 0014 the backlog took all 32 slots and the other waited for the hangs. */
static void test_hung_backlog_capped_per_subscription(void)
{
    slow_quick f = slow_quick_start("--delay-ms 8000", "FL_WEBHOOK_PER_SUBSCRIPTION", "4");
    json_object *lines[48];
    IT_Q("INSERT INTO events (tenant_id, family, type, payload) "
         "SELECT $1::uuid, 'leads', 'lead.slow', jsonb_build_object('i', i) FROM generate_series(1, 40) i", f.t.id);
    IT_CHECK(it_rcv_wait(&f.slow, lines, 48, 4, 5) == 4, "the hung receiver did not get 4 requests");
    const char *ev = insert_event(f.t.id, "leads", "lead.quick", "{}");
    double sent = it_now();
    int n = it_rcv_wait(&f.quick, lines, 4, 1, 4);
    IT_CHECK(n == 1, "the other subscription waited for the hung backlog (see %s)", f.errlog);
    if (n == 1)
        IT_JSTR(lines[0], "event_id", ev);
    IT_CHECK(it_now() - sent < 4, "the other subscription's delivery took %.1f s", it_now() - sent);
    /* still within the 8 s hang: 4 of the backlog in flight, the rest due and waiting */
    IT_STREQ(IT_Q("SELECT count(*) FILTER (WHERE state = 'delivering') || ' ' || count(*) FILTER (WHERE state = 'pending') "
                  "FROM webhook_deliveries WHERE subscription_id = $1::uuid", f.s1.id), "4 36");
    IT_CHECK(it_rcv_read(&f.slow, lines, 48) == 4, "the hung receiver got more than 4 requests at once");
    /* as each hang ends the next ones go, still at most 4 at a time */
    IT_CHECK(it_rcv_wait(&f.slow, lines, 48, 8, 12) == 8, "the backlog did not move on after the first hangs ended");
    IT_STREQ(IT_Q("SELECT (count(*) FILTER (WHERE state = 'delivering') <= 4)::text "
                  "FROM webhook_deliveries WHERE subscription_id = $1::uuid", f.s1.id), "true");
    slow_quick_stop(&f);
}

/* A DNS server that reads every query and never answers: a UDP socket on port
 * 53 of a loopback address of this process's own (127.53.x.y), and a
 * resolv.conf naming it, with glibc waiting 30 s for an answer. */
typedef struct silent_dns {
    int fd;
    const char *resolv;
} silent_dns;

static silent_dns silent_dns_start(void)
{
    silent_dns d = { -1, NULL };
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    a.sin_addr.s_addr = htonl(0x7f350000u | ((unsigned) getpid() & 0xfffeu) | 1u);
    d.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (d.fd < 0 || bind(d.fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
        IT_CHECK(0, "cannot bind UDP port 53 for the silent DNS server: %s", strerror(errno));
        if (d.fd >= 0)
            close(d.fd);
        d.fd = -1;
        return d;
    }
    unsigned ip = ntohl(a.sin_addr.s_addr);
    d.resolv = it_fmt("%s/resolv-%s.conf", it_logdir(), it_uniq("dns"));
    FILE *f = fopen(d.resolv, "w");
    IT_CHECK(f != NULL, "cannot write %s", d.resolv);
    if (f != NULL) {
        fprintf(f, "nameserver %u.%u.%u.%u\noptions timeout:30 attempts:1\n",
                ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
        fclose(f);
    }
    return d;
}

/* Waits up to timeout seconds for a query that asks for a name with the
 * label; 1 when one came. */
static int silent_dns_asked(const silent_dns *d, const char *label, double timeout)
{
    char want[64];
    size_t n = strlen(label);
    want[0] = (char) n;
    memcpy(want + 1, label, n);
    double end = it_now() + timeout;
    while (d->fd >= 0 && it_now() < end) {
        struct pollfd p = { d->fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        unsigned char q[512];
        ssize_t got = recv(d->fd, q, sizeof(q), 0);
        if (got > 12 && memmem(q + 12, (size_t) got - 12, want, n + 1) != NULL)
            return 1;
    }
    return 0;
}

/* A name with a private and a public address (/etc/hosts in a mount namespace, the public
 * address on the loopback device of a network namespace, both of the worker's own): the
 * private one, which glibc sorts first, is refused in the socket callback, the public one is
 * delivered to, and the delivery is recorded as delivered, not refused. A receiver listens on
 * each address; the private one must get nothing. */
static void test_ssrf_mixed_addresses(void)
{
    if (geteuid() != 0) {
        printf("skipped: needs root (network and mount namespaces) ");
        return;
    }
    tenant t = new_tenant();
    const char *dir = it_fmt("%s/%s", it_logdir(), it_uniq("mixed"));
    it_run(it_fmt("mkdir -p '%s' && printf '127.0.0.1 mixed.example\\n93.184.216.34 mixed.example\\n' > '%s/hosts'",
                  dir, dir), NULL);
    it_signal_supervised("webhooks.pid", SIGSTOP);
    sub s = subscribe(t.name, "leads", "http://mixed.example:8089/mixed", "--events ssrf.mixed");
    const char *d = delivery_of(insert_event(t.id, "leads", "ssrf.mixed", "{}"), &s);
    int st;
    const char *out = it_run(it_fmt(
        "D='%s'; unshare --net --mount sh -ec '"
        /* the receivers stop however the script ends (else they would hold it_run's pipe) */
        "p1=; p2=; trap \"kill \\$p1 \\$p2 2>/dev/null\" EXIT; "
        "mount --make-rprivate /; mount --bind \"$0/hosts\" /etc/hosts; "
        "ip link set lo up; ip addr add 93.184.216.34/32 dev lo; "
        "getent ahosts mixed.example | head -n 1 | cut -d\" \" -f1 > \"$0/first\"; "
        "\"$1\" --bind 93.184.216.34 --port 8089 --log \"$0/public.log\" > \"$0/public.port\" 2>\"$0/public.err\" & p1=$!; "
        "\"$1\" --port 8089 --log \"$0/private.log\" > \"$0/private.port\" 2>\"$0/private.err\" & p2=$!; "
        "i=0; while ! [ -s \"$0/public.port\" ] || ! [ -s \"$0/private.port\" ]; do "
        "i=$((i+1)); [ $i -lt 100 ] || exit 3; sleep 0.05; done; "
        "rc=0; env -u no_proxy -u NO_PROXY FL_WORKER_DATABASE_URL=\"$2\" FL_DATA_KEY_FILE=\"$3\" "
        "FL_WEBHOOK_ALLOW_PRIVATE=0 FL_WEBHOOK_RETRY_BASE_MS=60000 timeout 30 \"$4\" --once || rc=$?; "
        "exit $rc' \"$D\" '%s' '%s' '%s' '%s' 2>&1",
        dir, it_env("FL_TEST_RECEIVER"), it_env("FL_TEST_WORKER_DATABASE_URL"), it_env("FL_TEST_DATA_KEY"),
        it_env("FL_TEST_WORKER")), &st);
    it_signal_supervised("webhooks.pid", SIGCONT);
    IT_CHECK(st == 0, "the worker in its namespaces: exit %d: %s", st, out);
    const char *first = it_run(it_fmt("cat '%s/first' 2>/dev/null", dir), NULL);
    IT_CHECK(strcmp(first, "127.0.0.1\n") == 0,
             "glibc did not sort the private address first (<%s>): the refusal is not exercised", first);
    IT_STREQ(IT_Q("SELECT state || '|' || coalesce(last_status::text, 'null') || '|' || coalesce(last_error, 'null') "
                  "FROM webhook_deliveries WHERE id = $1::bigint", d), "delivered|200|null");
    IT_STREQ(IT_Q("SELECT count(*) || ' ' || count(status_code) FROM webhook_attempts WHERE delivery_id = $1::bigint", d),
             "1 1");
    IT_STREQ(it_run(it_fmt("cat '%s/public.log' 2>/dev/null | wc -l", dir), NULL), "1\n");
    IT_STREQ(it_run(it_fmt("cat '%s/private.log' 2>/dev/null | wc -l", dir), NULL), "0\n");
    unsubscribe(&s);
}

/* One worker whose DNS never answers, a subscription to a name (its lookup
 * stalls) and another to 127.0.0.1: the name's lookup holds neither the
 * worker's loop while it runs (curl's threaded resolver) nor after the
 * transfer gave up on it (CURLOPT_QUICK_EXIT: without it, ending the transfer
 * waits for the lookup's thread, here until glibc's 30 s are up). */
static void test_silent_dns_holds_nothing(void)
{
    if (geteuid() != 0) {
        /* ./factorline test as root (CI, a fresh machine) always runs it */
        printf("skipped: needs root (UDP port 53, a mount namespace) ");
        return;
    }
    silent_dns d = silent_dns_start();
    if (d.resolv == NULL)
        return;
    tenant t = new_tenant();
    it_rcv quick = it_rcv_start(0, "");
    const char *label = it_fmt("fl-stall-%d", (int) getpid());
    sub s1 = subscribe(t.name, "leads", it_fmt("http://%s.example.com:%d/hook", label, quick.port), "--events lead.slow");
    sub s2 = subscribe(t.name, "leads", quick.url, "--events lead.quick");
    const char *errlog = it_fmt("%s/worker-%s.log", it_logdir(), it_uniq("w"));
    it_signal_supervised("webhooks.pid", SIGSTOP);
    /* a 60 s retry base: the failed attempt stays 'retrying' while the test looks */
    pid_t w = worker_spawn_resolv(d.resolv, errlog, "FL_WEBHOOK_LEASE_MS", "60000",
                                  "FL_WEBHOOK_RETRY_BASE_MS", "60000", (const char *) NULL);
    json_object *lines[4];

    const char *slow = delivery_of(insert_event(t.id, "leads", "lead.slow", "{}"), &s1);
    IT_CHECK(silent_dns_asked(&d, label, 5), "the worker never asked the silent DNS server for %s (see %s)", label, errlog);
    /* while the lookup stalls */
    const char *ev = insert_event(t.id, "leads", "lead.quick", "{}");
    int n = it_rcv_wait(&quick, lines, 4, 1, 2);
    IT_CHECK(n == 1, "the quick delivery waited for the stalled lookup (see %s)", errlog);
    if (n == 1)
        IT_JSTR(lines[0], "event_id", ev);
    IT_STREQ(dstate(slow), "delivering");
    IT_CHECK(qlong(IT_Q("SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1::bigint", slow)) == 0,
             "the stalled delivery was recorded before its connect timeout");
    /* the transfer gives up at its 5 s connect timeout, the lookup goes on */
    IT_CHECK(wait_attempts(slow, 1, 8) == 1, "the stalled delivery was not recorded after its connect timeout");
    IT_STREQ(IT_Q("SELECT (substring(error from '^Resolving timed out after ([0-9]+) milli')::int BETWEEN 5000 AND 6000)::text "
                  "FROM webhook_attempts WHERE delivery_id = $1::bigint", slow), "true");
    IT_STREQ(dstate(slow), "retrying");
    double sent = it_now();
    ev = insert_event(t.id, "leads", "lead.quick", "{}");
    n = it_rcv_wait(&quick, lines, 4, 2, 3);
    IT_CHECK(n == 2, "after the stalled transfer ended, the next delivery waited %.1f s (see %s)", it_now() - sent, errlog);
    if (n == 2)
        IT_JSTR(lines[1], "event_id", ev);

    own_workers_end(&w, 1);
    unsubscribe(&s1);
    unsubscribe(&s2);
    it_rcv_stop(&quick);
    close(d.fd);
}

/* A PostgreSQL restart: a worker that sweeps only once a minute is woken by NOTIFY before it,
 * and after it too (it reconnects and LISTENs again); the supervised workers deliver again. */
static void test_postgres_restart(void)
{
    tenant t = new_tenant();
    it_rcv r = it_rcv_start(0, "");
    sub s = subscribe(t.name, "leads", r.url, "");
    json_object *lines[4];
    int st;
    const char *errlog = it_fmt("%s/worker-listen-%s.log", it_logdir(), it_uniq("w"));
    it_signal_supervised("webhooks.pid", SIGSTOP);
    pid_t w = worker_spawn(errlog, "FL_WEBHOOK_SWEEP_MS", "60000", NULL);
    /* with a sweep once a minute, only NOTIFY brings an event inserted after its start-up claim
     * within 10 s */
    IT_CHECK(wait_log(errlog, "webhook worker ready", 10), "the worker did not start (see %s)", errlog);
    it_sleep(1.5);                                  /* its start-up claim is over */
    const char *ev = insert_event(t.id, "leads", "lead.notified", "{}");
    IT_CHECK(it_rcv_wait(&r, lines, 4, 1, 10) == 1, "NOTIFY did not wake the worker within 10 s (see %s)", errlog);
    it_run(it_fmt("%s >/dev/null 2>&1", it_env("FL_TEST_PG_STOP")), &st);
    IT_CHECK(st == 0, "stopping PostgreSQL failed");
    it_sleep(1.5);
    it_run(it_fmt("%s >/dev/null 2>&1", it_env("FL_TEST_PG_START")), &st);
    IT_CHECK(st == 0, "starting PostgreSQL failed");
    it_db_reset();
    IT_CHECK(wait_log(errlog, "(re)connected", 15), "the worker did not reconnect within 15 s (see %s)", errlog);
    it_sleep(1.5);                                  /* and its claim after reconnecting is over */
    ev = insert_event(t.id, "leads", "lead.notified", "{}");
    int n = it_rcv_wait(&r, lines, 4, 2, 10);
    IT_CHECK(n == 2, "after the restart, NOTIFY did not wake the worker within 10 s: it did not LISTEN again "
                     "(see %s)", errlog);
    if (n == 2)
        IT_JSTR(lines[1], "event_id", ev);
    own_workers_end(&w, 1);
    ev = insert_event(t.id, "leads", "lead.created", "{}");
    n = it_rcv_wait(&r, lines, 4, 3, 20);
    IT_CHECK(n == 3, "no delivery by the supervised workers within 20 s of a PostgreSQL restart");
    if (n == 3)
        IT_JSTR(lines[2], "event_id", ev);
    IT_STREQ(wait_state(delivery_of(ev, &s), "delivered", 5), "delivered");
    IT_CHECK(it_wait_supervised("webhooks.pid", 2, 5) == 2, "webhook workers missing after the restart");
    unsubscribe(&s);
    it_rcv_stop(&r);
}

int main(void)
{
    it_init();
    signal(SIGPIPE, SIG_IGN);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("webhooks", NULL, NULL);
    CU_add_test(s, "signature verifier on the vendor's example", test_signature_vector);
    CU_add_test(s, "settings out of range: the default and a warning", test_settings_out_of_range);
    CU_add_test(s, "API event delivered, Factorline-Signature verifies", test_delivery_factorline);
    CU_add_test(s, "quotes delivery, Isoamp-Signature verifies", test_delivery_isoamp);
    CU_add_test(s, "500 then 200: delivered on retry", test_retry_500_then_200);
    CU_add_test(s, "receiver down, then redirect not followed", test_receiver_down_and_redirect);
    CU_add_test(s, "timeout after 10 s; a 1 MiB answer", test_timeout_and_large_answer);
    CU_add_test(s, "backoff schedule", test_backoff_schedule);
    CU_add_test(s, "dead after the 3-day window; requeue", test_dead_after_limit);
    CU_add_test(s, "SSRF refusals without FL_WEBHOOK_ALLOW_PRIVATE", test_ssrf_refusals);
    CU_add_test(s, "a proxy from the environment is not used", test_proxy_env_ignored);
    CU_add_test(s, "two workers never double-send (300 events)", test_two_workers_no_double_send);
    CU_add_test(s, "SIGKILLed worker: delivery sent again after the lease", test_killed_worker_retried);
    CU_add_test(s, "a hung receiver holds one slot, not the worker", test_slow_receiver_holds_one_slot);
    CU_add_test(s, "a hung receiver's backlog: 4 in flight, others served", test_hung_backlog_capped_per_subscription);
    CU_add_test(s, "silent DNS holds neither the loop nor the next delivery", test_silent_dns_holds_nothing);
    CU_add_test(s, "SSRF: a name with a private and a public address is delivered to the public one",
                test_ssrf_mixed_addresses);
    CU_add_test(s, "SIGTERM: in-flight delivery finishes, then exit", test_sigterm_finishes_in_flight);
    CU_add_test(s, "PostgreSQL restart", test_postgres_restart);
    CU_add_test(s, "every response carried X-Request-Id", it_test_request_ids);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    it_cleanup();
    return failures > 0 ? 1 : 0;
}
