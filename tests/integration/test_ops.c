/* Integration tests of the factorline script itself: the commands an operator
 * runs (up, up again, status, tenant add, key add, migrate, down), on stacks of
 * their own next to the test stack.
 *
 * Each stack is the release build that `./factorline up` makes, under
 * $FL_TEST_OPS_VAR/<name> on ports $FL_TEST_OPS_HTTP_PORT/$FL_TEST_OPS_HTTPS_PORT,
 * with one worker per pool and two for leads:
 *   own   a private PostgreSQL under its var/ (the default);
 *   ext   DATABASE_URL: a database of its own on the test stack's PostgreSQL.
 * Last, nginx/production.conf.example runs for real in front of the test stack's posting pool.
 * The tests run in order and share the stack they start; the last one of each
 * stack stops it, and the program stops both on the way out whatever failed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "itest.h"

/* ----------------------------------------------------------------- stacks --- */

typedef struct stack {
    const char *name;           /* own, ext */
    const char *var;            /* its FL_VAR */
    const char *env;            /* extra environment for every command ("" or DATABASE_URL=..) */
    const char *db;             /* ext: its database on the test stack's PostgreSQL */
} stack;

static stack own, ext;

static const char *ops_var(const char *name)
{
    return it_fmt("%s/%s", it_env("FL_TEST_OPS_VAR"), name);
}

/* ./factorline ARGS for stack s, stderr sent where stderr_to says (a shell redirection);
 * returns stdout, *st the exit status. */
static const char *fl_cmdline(const stack *s, const char *args)
{
    return it_fmt("env -u DATABASE_URL FL_VAR='%s' FL_HTTP_PORT=%s FL_HTTPS_PORT=%s FL_WORKERS=1 "
                  "FL_WORKERS_LEADS=2 FL_WEBHOOK_WORKERS=1 %s '%s/factorline' %s",
                  s->var, it_env("FL_TEST_OPS_HTTP_PORT"), it_env("FL_TEST_OPS_HTTPS_PORT"), s->env,
                  it_env("FL_TEST_ROOT"), args);
}

static const char *fl_run(const stack *s, const char *args, const char *stderr_to, int *st)
{
    return it_run(it_fmt("%s %s", fl_cmdline(s, args), stderr_to), st);
}

/* stdout and stderr together: for messages. */
static const char *fl(const stack *s, const char *args, int *st)
{
    return fl_run(s, args, "2>&1", st);
}

/* stdout only (stderr appended to the stack's ops.log): for commands that print JSON. */
static const char *fl_out(const stack *s, const char *args, int *st)
{
    return fl_run(s, args, it_fmt("2>>'%s/ops.log'", s->var), st);
}

static const char *https_base(void)
{
    return it_fmt("https://127.0.0.1:%s", it_env("FL_TEST_OPS_HTTPS_PORT"));
}

static const char *http_base(void)
{
    return it_fmt("http://127.0.0.1:%s", it_env("FL_TEST_OPS_HTTP_PORT"));
}

static const char *file_text(const char *path)
{
    return it_run(it_fmt("cat '%s' 2>/dev/null", path), NULL);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static const char *const families_all[] = { "posting", "factoring", "leads", "quotes", "financing" };

/* The family has an executable in the release build that up makes. */
static int built(const char *family)
{
    return access(it_fmt("%s/var/build/release/modules/%s/fl-%s", it_env("FL_TEST_ROOT"), family, family), X_OK)
           == 0;
}

static pid_t pid_in(const stack *s, const char *file)
{
    return (pid_t) atol(file_text(it_fmt("%s/run/%s", s->var, file)));
}

/* The processes a stack's run/ names: the pool supervisors, the webhook worker's, nginx. */
static const char *const pidfiles[] = { "posting.pid", "leads.pid", "webhooks.pid", "nginx.pid" };
#define NPIDFILES ((int) (sizeof(pidfiles) / sizeof(pidfiles[0])))

static void stack_pids(const stack *s, pid_t *out)
{
    for (int i = 0; i < NPIDFILES; i++)
        out[i] = pid_in(s, pidfiles[i]);
}

/* Alive and not a zombie (a stopped stack's processes are not our children). */
static int alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH))
        return 0;
    const char *st = file_text(it_fmt("/proc/%d/stat", (int) pid));
    const char *rp = strrchr(st, ')');
    return rp != NULL && rp[1] == ' ' && rp[2] != 'Z';
}

/* Waits up to 5 s for pid to be gone; returns 1 when it is. */
static int gone(pid_t pid)
{
    for (int i = 0; i < 50 && alive(pid); i++)
        it_sleep(0.1);
    return !alive(pid);
}

/* 1 if /proc/pid/environ holds needle anywhere (names and values) */
static int environ_has(pid_t pid, const char *needle)
{
    char path[64], buf[65536];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int) pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = '\n';
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static int workers(const stack *s, const char *family)
{
    pid_t p[16];
    return it_supervised(it_fmt("%s/run/%s.pid", s->var, family), p, 16);
}

/* The stack's demo credential for family, from its credentials.json. */
static const it_cred *demo_cred(const stack *s, const char *family)
{
    json_object *all = it_json(file_text(it_fmt("%s/credentials.json", s->var))), *f;
    if (all == NULL || !json_object_object_get_ex(all, family, &f))
        return NULL;
    return it_cred_parse(json_object_to_json_string(f));
}

/* test-post through the credential: 201 when it authenticates. */
static long test_post(const it_cred *c)
{
    return c ? it_post(c, "/api_factor/test-post/", "{\"TestValue\":\"ops\"}")->status : -1;
}

/* Stops whatever a stack left running (a failed test); used on the way out. */
static void stack_stop(const stack *s)
{
    if (s->var && file_exists(it_fmt("%s/run", s->var)))
        fl(s, "down", NULL);
}

/* Asks the stack's database sql (one value) every 50 ms for up to timeout s, until it
 * answers want; 1 if it did. */
static int psql_until(const stack *s, const char *sql, const char *want, double timeout)
{
    for (double t0 = it_now();; it_sleep(0.05)) {
        const char *got = fl_out(s, it_fmt("psql -XAtc \"%s\"", sql), NULL);
        if (strcmp(got, it_fmt("%s\n", want)) == 0)
            return 1;
        if (it_now() - t0 >= timeout)
            return 0;
    }
}

/* Starts a session that holds clients locked for seconds (then commits), and waits until
 * it holds the lock; 1 if it does. */
static int hold_clients(const stack *s, int seconds)
{
    fl_run(s, it_fmt("psql -Xqc \"BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(%d); COMMIT\"",
                     seconds), ">/dev/null 2>&1 &", NULL);
    return psql_until(s, "SELECT count(*) FROM pg_locks WHERE relation = 'clients'::regclass "
                         "AND mode = 'AccessExclusiveLock' AND granted", "1", 2.5);
}

/* Waits up to 10 s for hold_clients' session to end. */
static void release_clients(const stack *s)
{
    IT_CHECK(psql_until(s, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%LOCK TABLE clients%' "
                           "AND pid <> pg_backend_pid()", "0", 10.0),
             "the session holding clients did not end");
}

/* ------------------------------------------------- own PostgreSQL (default) --- */

static void test_up_fresh(void)
{
    int st;
    it_run(it_fmt("rm -rf '%s'", own.var), NULL);
    const char *out = fl(&own, "up", &st);
    IT_CHECK(st == 0, "factorline up failed (%d): %s", st, out);
    IT_CHECK(strstr(out, "credentials written to") != NULL, "up did not write credentials: %s", out);
    IT_CHECK(file_exists(it_fmt("%s/pg/data/PG_VERSION", own.var)), "no PostgreSQL cluster under %s/pg",
             own.var);
    IT_CHECK(file_exists(it_fmt("%s/run/pg/.s.PGSQL.5432", own.var)), "no PostgreSQL socket in %s/run/pg", own.var);
    /* root's pid files, sockets and logs are in directories root owns (the postgres account
     * cannot put a link where root writes); PostgreSQL has its own socket directory */
    if (getuid() == 0) {
        const char *owners = it_run(it_fmt("stat -c '%%U %%a' '%s/run' '%s/log' '%s/run/pg' '%s/log/postgresql.log'",
                                           own.var, own.var, own.var, own.var), NULL);
        IT_STREQ(owners, "root 755\nroot 755\npostgres 700\npostgres 600\n");
    }
    /* byte order for text keys, UTF-8 text (docs/operations.md, "The database's collation") */
    IT_STREQ(fl_out(&own, "psql -XAtc \"SELECT datcollate || ' ' || pg_encoding_to_char(encoding) FROM pg_database "
                          "WHERE datname = current_database()\"", &st), "C UTF8\n");

    struct stat sb;
    IT_CHECK(stat(it_fmt("%s/credentials.json", own.var), &sb) == 0 && (sb.st_mode & 0777) == 0600,
             "credentials.json missing or not mode 0600 (%o)", (unsigned) (sb.st_mode & 0777));
    IT_CHECK(stat(it_fmt("%s/keys/data.key", own.var), &sb) == 0 && (sb.st_mode & 0777) == 0600,
             "data key missing or not mode 0600 (%o)", (unsigned) (sb.st_mode & 0777));

    /* one entry per family that exists, each {"base_url", "headers"} */
    json_object *all = it_json(file_text(it_fmt("%s/credentials.json", own.var)));
    IT_CHECK(all != NULL && json_object_is_type(all, json_type_object), "credentials.json is not a JSON object");
    for (size_t i = 0; all != NULL && i < sizeof(families_all) / sizeof(families_all[0]); i++) {
        const char *f = families_all[i];
        const it_cred *c = demo_cred(&own, f);
        IT_CHECK(built(f) == (c != NULL), "credentials.json %s %s, and the build %s it", c ? "has" : "lacks", f,
                 built(f) ? "has" : "lacks");
        if (c != NULL)
            IT_STREQ(c->base_url, it_fmt("%s/%s", https_base(), f));
    }
    IT_CHECK(built("posting") && built("leads"), "the release build lacks fl-posting or fl-leads");
    const it_cred *p = demo_cred(&own, "posting"), *l = demo_cred(&own, "leads");
    IT_CHECK(p != NULL && l != NULL, "no posting or leads credential in credentials.json");
    if (p == NULL || l == NULL)
        return;
    IT_CHECK(p->nheaders == 3 && it_cred_header(p, "Auth-FactorID") && it_cred_header(p, "Auth-SystemKey")
             && it_cred_header(p, "Auth-APIKey"), "the posting credential lacks its three headers");
    IT_CHECK(l->nheaders == 1 && it_cred_header(l, "api_key"), "the leads credential lacks api_key");

    /* the credentials work as written, and the demo schedule is there */
    IT_CHECK(test_post(p) == 201, "test-post with the demo credential did not answer 201");
    it_resp *r = it_get(p, "/api_factor/get-invoice/?InvoiceIntegrationId=demo-inv-20212131");
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "InvoiceAmount", "1000.00");
    IT_STATUS(it_get(l, "/deal_status/none"), 404);
    const it_cred *plain = it_cred_parse(it_fmt("{\"base_url\":\"%s/leads\",\"headers\":{\"api_key\":\"%s\"}}",
                                                http_base(), it_cred_header(l, "api_key")));
    IT_STATUS(it_get(plain, "/deal_status/none"), 403);
    IT_STATUS(it_request("GET", it_fmt("%s/healthz", http_base()), NULL, 0, NULL, 0), 200);

    /* the README's post-payments example, its body read from README.md, against the demo
     * tenant: 201, and the two demo invoices it names are paid */
    const char *readme = it_run(it_fmt("sed -n \"s/^curl -k \\$H -X POST --data '\\([^']*\\)'.*/\\1/p\" '%s/README.md'",
                                       it_env("FL_TEST_ROOT")), NULL);
    IT_CHECK(strstr(readme, "\"BatchReference\":\"mmm-111\"") != NULL, "the README's example not found: <%s>", readme);
    r = it_post(p, "/api_factor/post-payments/", readme);
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "message", "201 Created - v2.01.00");
    static const char *const demo[][2] = { { "demo-inv-20212131", "1000.00" }, { "demo-inv-20212132", "500.00" } };
    for (int i = 0; i < 2; i++) {
        r = it_get(p, it_fmt("/api_factor/get-invoice/?invoiceintegrationid=%s", demo[i][0]));
        IT_STATUS(r, 200);
        IT_JSTR(r->json, "InvoiceAmount", demo[i][1]);
        IT_JSTR(r->json, "PaymentMade", demo[i][1]);
        IT_JSTR(r->json, "PaidInFull", "true");
        IT_JSTR(r->json, "PaidInFullOn", "2021-03-31");
    }
}

static void test_status_running(void)
{
    int st;
    const char *out = fl(&own, "status", &st);
    IT_CHECK(st == 0, "status failed (%d): %s", st, out);
    IT_CHECK(strstr(out, it_fmt("postgresql  running (%s/pg/data)", own.var)) != NULL, "status: %s", out);
    IT_CHECK(strstr(out, it_fmt("posting  running: supervisor %d, workers ", (int) pid_in(&own, "posting.pid")))
             != NULL, "status: %s", out);
    IT_CHECK(strstr(out, "leads  running: supervisor ") != NULL, "status: %s", out);
    IT_CHECK(strstr(out, "webhooks  running: supervisor ") != NULL, "status: %s", out);
    IT_CHECK(strstr(out, it_fmt("nginx  running: %s %s", http_base(), https_base())) != NULL, "status: %s", out);
    /* the pools' sockets are nginx's alone: root's and nogroup's (nginx's workers run as
     * nobody:nogroup) 0660 as root, else the caller's 0600; no other local user speaks FastCGI
     * to the workers past nginx */
    const char *want = getuid() == 0 ? "660 root nogroup\n" : it_fmt("600 %s", it_run("id -un", NULL));
    for (int i = 0; i < 2; i++) {
        const char *sock = it_fmt("%s/run/%s.sock", own.var, i == 0 ? "posting" : "leads");
        const char *mode = it_run(it_fmt(getuid() == 0 ? "stat -c '%%a %%U %%G' '%s'" : "stat -c '%%a %%U' '%s'", sock),
                                  NULL);
        IT_CHECK(strcmp(mode, want) == 0, "%s: %s", sock, mode);
    }
    /* the pools have the sizes asked for: FL_WORKERS=1, FL_WORKERS_LEADS=2 */
    IT_CHECK(workers(&own, "posting") == 1, "posting has %d workers, not 1", workers(&own, "posting"));
    IT_CHECK(workers(&own, "leads") == 2, "leads has %d workers, not 2", workers(&own, "leads"));
    IT_CHECK(workers(&own, "webhooks") == 1, "webhooks has %d workers, not 1", workers(&own, "webhooks"));

    /* a count that is not 1 or more stops up before it stops anything */
    pid_t before[NPIDFILES];
    stack_pids(&own, before);
    static const char *const bad[] = { "FL_WORKERS_POSTING=abc", "FL_WORKERS_LEADS=0", "FL_WEBHOOK_WORKERS=0",
                                       "FL_WEBHOOK_WORKERS=x1" };
    for (int i = 0; i < 4; i++) {
        stack s = own;
        s.env = it_fmt("%s %s", own.env, bad[i]);
        out = fl(&s, "up", &st);
        const char *name = it_fmt("%.*s", (int) (strchr(bad[i], '=') - bad[i]), bad[i]);
        IT_CHECK(st != 0 && strstr(out, it_fmt("%s: a number of workers (1 or more) expected", name)) != NULL,
                 "up with %s: %d %s", bad[i], st, out);
    }
    for (int i = 0; i < NPIDFILES; i++)
        IT_CHECK(pid_in(&own, pidfiles[i]) == before[i] && alive(before[i]),
                 "%s changed or stopped after the refused ups", pidfiles[i]);
}

/* A second up restarts every process, keeps the data and the credentials. */
static void test_up_again(void)
{
    pid_t before[NPIDFILES];
    stack_pids(&own, before);
    const char *creds = file_text(it_fmt("%s/credentials.json", own.var));
    int st;
    const char *out = fl(&own, "up", &st);
    IT_CHECK(st == 0, "a second up failed (%d): %s", st, out);
    IT_CHECK(strstr(out, "demo tenant exists; credentials unchanged") != NULL, "second up: %s", out);
    IT_STREQ(file_text(it_fmt("%s/credentials.json", own.var)), creds);
    for (int i = 0; i < NPIDFILES; i++) {
        pid_t now = pid_in(&own, pidfiles[i]);
        IT_CHECK(now > 0 && now != before[i] && alive(now), "%s: %d before, %d after the second up", pidfiles[i],
                 (int) before[i], (int) now);
        IT_CHECK(gone(before[i]), "%s: the old process %d is still running", pidfiles[i], (int) before[i]);
    }
    IT_CHECK(workers(&own, "posting") == 1 && workers(&own, "leads") == 2,
             "after the second up: posting %d workers, leads %d", workers(&own, "posting"), workers(&own, "leads"));
    IT_CHECK(test_post(demo_cred(&own, "posting")) == 201, "the demo credential stopped working after up");
    it_resp *r = it_get(demo_cred(&own, "posting"), "/api_factor/get-invoice/?InvoiceIntegrationId=demo-inv-20212131");
    IT_STATUS(r, 200);
}

/* Two stack commands on one var/ at once: while an up runs, a down and a second up stop at
 * once, name the up and change nothing; the up finishes as if alone. */
static void test_one_command_at_a_time(void)
{
    const char *owner = it_fmt("%s/.lock.owner", own.var), *out_file = it_fmt("%s/up-bg.out", own.var);
    unlink(owner);
    int st;
    it_run(it_fmt("(%s >'%s' 2>&1; echo \"exit $?\" >>'%s') </dev/null >/dev/null 2>&1 &", fl_cmdline(&own, "up"),
                  out_file, out_file), &st);
    const char *who = "";
    for (int i = 0; i < 600 && strncmp(who, "factorline up (pid ", 19) != 0; i++) {
        usleep(50 * 1000);
        who = file_text(owner);
    }
    IT_CHECK(strncmp(who, "factorline up (pid ", 19) == 0, "the background up never took the lock: '%s'", who);
    const char *running = it_fmt("%.*s is running on %s", (int) strcspn(who, "\n"), who, own.var);
    const char *out = fl(&own, "down", &st);
    IT_CHECK(st != 0 && strstr(out, running) != NULL, "down during an up: %d '%s' (wanted '%s')", st, out, running);
    out = fl(&own, "up", &st);
    IT_CHECK(st != 0 && strstr(out, running) != NULL, "up during an up: %d '%s'", st, out);
    const char *bg = "";
    for (int i = 0; i < 1200 && strstr(bg, "exit ") == NULL; i++) {
        usleep(100 * 1000);
        bg = file_text(out_file);
    }
    IT_CHECK(strstr(bg, "exit 0") != NULL && strstr(bg, "factorline: up: ") != NULL, "the background up: %s", bg);
    IT_CHECK(test_post(demo_cred(&own, "posting")) == 201, "the stack does not answer after the up");
    IT_CHECK(workers(&own, "posting") == 1 && workers(&own, "leads") == 2,
             "after the up: posting %d workers, leads %d", workers(&own, "posting"), workers(&own, "leads"));
    /* nothing the up started holds the lock: a command may run again */
    it_run(it_fmt("flock -n '%s/.lock' true", own.var), &st);
    IT_CHECK(st == 0, "the lock is still held after the up finished (%d)", st);
}

/* A stack's directory with a blank in its path: refused at once, nothing made (up used to stop
 * at PostgreSQL's start with the cluster made). */
static void test_blank_in_path(void)
{
    stack blank = { "blank", ops_var("with blank"), "", NULL };
    int st;
    const char *out = fl(&blank, "up", &st);
    IT_CHECK(st != 0 && strstr(out, "a blank in the path") != NULL, "up in '%s': %d %s", blank.var, st, out);
    IT_CHECK(!file_exists(blank.var), "up in '%s' made the directory", blank.var);
}

static void test_tenant_and_key(void)
{
    int st;
    const char *name = it_uniq("opsT");
    const char *out = fl_out(&own, it_fmt("tenant add %s", name), &st);
    IT_CHECK(st == 0, "tenant add failed (%d): %s", st, out);
    IT_JSTR(it_json(out), "tenant", name);
    const char *tid = it_jstr(it_json(out), "id"), *fid = it_jstr(it_json(out), "factor_id");
    IT_CHECK(tid != NULL && strlen(tid) == 36 && fid != NULL && *fid, "tenant add printed %s", out);
    out = fl(&own, it_fmt("tenant add %s", name), &st);
    IT_CHECK(st != 0 && strstr(out, "Tenant exists") != NULL, "a second tenant add: %d %s", st, out);

    out = fl_out(&own, it_fmt("key add --tenant %s --family posting", name), &st);
    IT_CHECK(st == 0, "key add failed (%d): %s", st, out);
    const it_cred *c = it_cred_parse(out);
    IT_CHECK(c != NULL, "key add did not print {\"base_url\",\"headers\"}: %s", out);
    if (c != NULL) {
        IT_STREQ(c->base_url, it_fmt("%s/posting", https_base()));
        IT_STREQ(it_cred_header(c, "Auth-FactorID"), fid ? fid : "-");     /* the tenant's factor_id */
        IT_CHECK(test_post(c) == 201, "the new key does not authenticate");
        /* a tenant of its own: the demo tenant's invoice is not there */
        IT_STATUS(it_get(c, "/api_factor/get-invoice/?InvoiceIntegrationId=demo-inv-20212131"), 404);
    }
    out = fl_out(&own, it_fmt("key add --tenant %s --family leads --label 'Partner ISO'", name), &st);
    c = it_cred_parse(out);
    IT_CHECK(st == 0 && c != NULL, "key add --family leads: %d %s", st, out);
    if (c != NULL) {
        IT_STATUS(it_get(c, "/deal_status/none"), 404);
        /* the label names the partner in the DBA views; without one there is none */
        const char *pub = it_leads_public_id(c);
        out = fl_out(&own, it_fmt("psql -XAtc \"SELECT coalesce(label, '(none)') FROM credentials WHERE family = "
                                  "'leads' AND public_id = '%s'\"", pub), &st);
        IT_STREQ(out, "Partner ISO\n");
        out = fl_out(&own, it_fmt("psql -XAtc \"SELECT count(*) FROM credentials c JOIN tenants t ON t.id = "
                                  "c.tenant_id WHERE t.name = '%s' AND c.label IS NULL\"", name), &st);
        IT_STREQ(out, "1\n");            /* the posting key above, added without --label */
    }

    out = fl(&own, "key add --tenant no-such-tenant --family posting", &st);
    IT_CHECK(st != 0 && strstr(out, "Tenant not found") != NULL, "key add for no tenant: %d %s", st, out);
    out = fl(&own, it_fmt("key add --tenant %s --family billing", name), &st);
    IT_CHECK(st != 0 && strstr(out, "unknown family billing") != NULL, "key add --family billing: %d %s", st, out);
    /* a family of the product that this build does not have yet gets no key nobody could use */
    for (size_t i = 0; i < sizeof(families_all) / sizeof(families_all[0]); i++) {
        const char *f = families_all[i];
        if (built(f))
            continue;
        out = fl(&own, it_fmt("key add --tenant %s --family %s", name, f), &st);
        IT_CHECK(st != 0 && strstr(out, it_fmt("family %s is not in this build", f)) != NULL,
                 "key add --family %s: %d %s", f, st, out);
        break;
    }
    const char *n = fl_out(&own, it_fmt("psql -XAtc \"SELECT count(*) FROM credentials c JOIN tenants t ON "
                                        "t.id = c.tenant_id WHERE t.name = '%s'\"", name), &st);
    IT_CHECK(st == 0 && atoi(n) == 2, "tenant %s has %s credentials, not 2", name, n);
}

/* webhook add prints the signing secret once; webhooks lists deliveries, by state. */
static void test_webhook_commands(void)
{
    int st;
    const char *name = it_uniq("opsW");
    const char *out = fl_out(&own, it_fmt("tenant add %s", name), &st);
    IT_CHECK(st == 0, "tenant add failed (%d): %s", st, out);
    out = fl_out(&own, it_fmt("webhook add --tenant %s --family posting --url http://127.0.0.1:9/ops-hook --name ops "
                              "--events client.upserted", name), &st);
    json_object *j = it_json(out);
    const char *secret = it_jstr(j, "secret");
    IT_CHECK(st == 0 && it_jstr(j, "id") != NULL && secret != NULL && strlen(secret) == 64,
             "webhook add: %d %s", st, out);
    out = fl(&own, it_fmt("webhook add --tenant %s --family posting --url ftp://127.0.0.1/x", name), &st);
    IT_CHECK(st != 0, "an ftp:// subscription was taken: %s", out);
    out = fl(&own, it_fmt("webhook add --tenant %s --family posting", name), &st);
    IT_CHECK(st != 0 && strstr(out, "usage") != NULL, "webhook add without --url: %d %s", st, out);
    /* the URL rules of the API and the worker (docs/webhooks.md): no credentials; no private
     * address unless FL_WEBHOOK_ALLOW_PRIVATE=1, which the script sets as up does */
    const char *nsubs = it_fmt("psql -XAtc \"SELECT count(*) FROM webhook_subscriptions s JOIN tenants t ON "
                               "t.id = s.tenant_id WHERE t.name = '%s'\"", name);
    out = fl(&own, it_fmt("webhook add --tenant %s --family posting --url https://user:pw@hooks.example.com/x", name), &st);
    IT_CHECK(st != 0 && strstr(out, "--url refused") != NULL, "a URL with credentials: %d %s", st, out);
    stack strict = own;
    strict.env = it_fmt("%s FL_WEBHOOK_ALLOW_PRIVATE=0", own.env);
    out = fl(&strict, it_fmt("webhook add --tenant %s --family posting --url http://127.0.0.1:9/x", name), &st);
    IT_CHECK(st != 0 && strstr(out, "--url refused") != NULL, "a private address, not allowed: %d %s", st, out);
    out = fl(&own, it_fmt("webhook add --tenant %s --family posting --url https://hooks.example.com/x --events ''", name), &st);
    IT_CHECK(st != 0 && strstr(out, "empty name") != NULL, "--events '': %d %s", st, out);
    out = fl(&own, it_fmt("webhook add --tenant %s --family posting --url https://hooks.example.com/x --events a,,b", name), &st);
    IT_CHECK(st != 0 && strstr(out, "empty name") != NULL, "--events a,,b: %d %s", st, out);
    out = fl(&own, it_fmt("webhook add --tenant %s --family posting --url https://hooks.example.com/x --evnets a", name), &st);
    IT_CHECK(st != 0 && strstr(out, "unknown option --evnets") != NULL, "--evnets: %d %s", st, out);
    /* a secret that cannot be written out: no subscription made */
    out = fl_run(&own, it_fmt("webhook add --tenant %s --family posting --url https://hooks.example.com/x", name),
                 "2>&1 >/dev/full", &st);
    IT_CHECK(st != 0 && strstr(out, "could not be written out") != NULL, "webhook add >/dev/full: %d %s", st, out);
    IT_STREQ(fl_out(&own, nsubs, &st), "1\n");     /* the first one above */
    /* an event named NULL is a name, not SQL's NULL in the array (which matched nothing) */
    out = fl_out(&own, it_fmt("webhook add --tenant %s --family posting --url https://hooks.example.com/n "
                              "--events NULL,client.upserted", name), &st);
    IT_CHECK(st == 0, "webhook add --events NULL,client.upserted: %d %s", st, out);
    IT_STREQ(fl_out(&own, "psql -XAtc \"SELECT event_types::text FROM webhook_subscriptions "
                          "WHERE url = 'https://hooks.example.com/n'\"", &st), "{\"NULL\",client.upserted}\n");

    const it_cred *c = it_cred_parse(fl_out(&own, it_fmt("key add --tenant %s --family posting", name), &st));
    IT_CHECK(c != NULL, "key add for %s failed", name);
    if (c == NULL)
        return;
    const char *ck = it_uniq("OPSW");
    IT_STATUS(it_post(c, "/api_factor/create-client/", it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\"}", ck)), 201);
    out = fl(&own, "webhooks --limit 500", &st);
    IT_CHECK(st == 0 && strstr(out, "client.upserted") != NULL && strstr(out, "http://127.0.0.1:9/ops-hook") != NULL
             && strstr(out, name) != NULL, "webhooks does not list the delivery: %d %s", st, out);
    out = fl(&own, "webhooks --state delivered", &st);
    IT_CHECK(st == 0 && strstr(out, "ops-hook") == NULL, "a refused delivery listed as delivered: %s", out);
    out = fl(&own, "webhooks --bogus", &st);
    IT_CHECK(st != 0 && strstr(out, "usage") != NULL, "webhooks --bogus: %d %s", st, out);
}

/* Polls (every 0.1 s, up to timeout s) until req answers want; 1 if it did. */
static int status_until(const it_cred *c, const char *method, const char *path, const char *body, long want,
                        double timeout)
{
    for (double t0 = it_now();; it_sleep(0.1)) {
        it_resp *r = strcmp(method, "GET") == 0 ? it_get(c, path) : it_post(c, path, body);
        if (r->status == want)
            return 1;
        if (it_now() - t0 >= timeout)
            return 0;
    }
}

/* The script's key rotate, limit and revoke (README, commands): what fl-admin does, through
 * the stack's own ports and database; the workers follow within their 5 s cache. */
static void test_key_commands(void)
{
    int st;
    const char *name = it_uniq("opsK");
    const char *out = fl_out(&own, it_fmt("tenant add %s", name), &st);
    IT_CHECK(st == 0, "tenant add failed (%d): %s", st, out);
    const it_cred *old = it_cred_parse(fl_out(&own, it_fmt("key add --tenant %s --family posting", name), &st));
    IT_CHECK(old != NULL && test_post(old) == 201, "key add for %s failed", name);
    if (old == NULL)
        return;
    const char *sys = it_cred_header(old, "Auth-SystemKey");
    out = fl_out(&own, it_fmt("key rotate --family posting --public-id '%s'", sys), &st);
    const it_cred *c = it_cred_parse(out);
    IT_CHECK(st == 0 && c != NULL, "key rotate: %d %s", st, out);
    if (c != NULL) {
        IT_STREQ(c->base_url, it_fmt("%s/posting", https_base()));
        IT_STREQ(it_cred_header(c, "Auth-SystemKey"), sys);            /* the same credential */
        IT_STREQ(it_cred_header(c, "Auth-FactorID"), it_cred_header(old, "Auth-FactorID"));
        IT_CHECK(strcmp(it_cred_header(c, "Auth-APIKey"), it_cred_header(old, "Auth-APIKey")) != 0,
                 "key rotate printed the old secret");
        IT_CHECK(test_post(c) == 201, "the rotated secret does not authenticate");
        IT_CHECK(status_until(old, "POST", "/api_factor/test-post/", "{\"TestValue\":\"ops\"}", 401, 6.0),
                 "the old secret still authenticates 6 s after key rotate");
    }
    /* a secret that cannot be written out (a full disk): nothing changes, the secret in use
     * keeps working (a rotation used to commit, leaving nobody with the new secret) */
    const char *nkeys = it_fmt("psql -XAtc \"SELECT count(*) FROM credentials c JOIN tenants t ON t.id = c.tenant_id "
                               "WHERE t.name = '%s'\"", name);
    const char *keys_before = fl_out(&own, nkeys, &st);
    out = fl_run(&own, it_fmt("key rotate --family posting --public-id '%s'", sys), "2>&1 >/dev/full", &st);
    IT_CHECK(st != 0 && strstr(out, "could not be written out") != NULL, "key rotate >/dev/full: %d %s", st, out);
    if (c != NULL)
        IT_CHECK(test_post(c) == 201, "the secret in use stopped working after a rotation that failed");
    out = fl_run(&own, it_fmt("key add --tenant %s --family posting", name), "2>&1 >/dev/full", &st);
    IT_CHECK(st != 0 && strstr(out, "could not be written out") != NULL, "key add >/dev/full: %d %s", st, out);
    IT_STREQ(fl_out(&own, nkeys, &st), keys_before);
    out = fl(&own, "key rotate --family posting", &st);
    IT_CHECK(st != 0 && strstr(out, "usage") != NULL, "key rotate without --public-id: %d %s", st, out);
    out = fl(&own, "key rotate --family posting --public-id no-such-key", &st);
    IT_CHECK(st != 0 && strstr(out, "no such active key") != NULL, "key rotate of an unknown key: %d %s", st, out);

    /* a leads partner: limited to 1 request/s with no burst, then unlimited, then revoked */
    const it_cred *l = it_cred_parse(fl_out(&own, it_fmt("key add --tenant %s --family leads", name), &st));
    IT_CHECK(l != NULL, "key add --family leads for %s failed", name);
    if (l == NULL)
        return;
    const char *pub = it_leads_public_id(l);
    out = fl(&own, it_fmt("key limit --family leads --public-id '%s' --rate 1 --burst 1", pub), &st);
    IT_CHECK(st == 0 && strcmp(out, "limited\n") == 0, "key limit --rate 1 --burst 1: %d %s", st, out);
    IT_CHECK(status_until(l, "GET", "/deal_status/none", NULL, 429, 8.0), "no 429 within 8 s of key limit");
    out = fl(&own, it_fmt("key limit --family leads --public-id '%s' --unlimited", pub), &st);
    IT_CHECK(st == 0 && strcmp(out, "limited\n") == 0, "key limit --unlimited: %d %s", st, out);
    int free_run = 0;           /* ten requests in a row, none refused */
    for (double t0 = it_now(); free_run < 10 && it_now() - t0 < 8.0;)
        free_run = it_get(l, "/deal_status/none")->status == 404 ? free_run + 1 : 0;
    IT_CHECK(free_run == 10, "still limited 8 s after key limit --unlimited");
    out = fl(&own, "key limit --family leads --public-id nope --unlimited", &st);
    IT_CHECK(st != 0, "key limit of an unknown key: %d %s", st, out);
    /* rates that are no limit (NaN sorts above every number), or none the workers can keep
     * (under a millionth reads 0), bursts out of range, mistyped options: refused, and the
     * key stays unlimited */
    static const char *const bad_limits[][2] = {
        { "--rate NaN", "Invalid rate" }, { "--rate Infinity", "Invalid rate" },
        { "--rate 0.0000001", "Invalid rate" }, { "--rate 0", "Invalid rate" },
        { "--rate 5 --burst 0", "Invalid burst" }, { "--rate 5 --brust 10", "unknown option --brust" },
        { "--rate --burst 5", "--rate lacks its value" }, { "--unlimited --burst 5", "usage" },
    };
    for (size_t i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++) {
        out = fl(&own, it_fmt("key limit --family leads --public-id '%s' %s", pub, bad_limits[i][0]), &st);
        IT_CHECK(st != 0 && strstr(out, bad_limits[i][1]) != NULL, "key limit %s: %d %s", bad_limits[i][0], st, out);
    }
    IT_STREQ(fl_out(&own, it_fmt("psql -XAtc \"SELECT rate_per_sec IS NULL FROM credentials WHERE family = 'leads' "
                                 "AND public_id = '%s'\"", pub), &st), "t\n");
    /* tenant names: no control characters, no space at either end */
    out = fl(&own, "tenant add \"$(printf 'acme\\tco')\"", &st);
    IT_CHECK(st != 0 && strstr(out, "Invalid tenant name") != NULL, "a tenant name with a tab: %d %s", st, out);
    out = fl(&own, "tenant add 'acme '", &st);
    IT_CHECK(st != 0 && strstr(out, "Invalid tenant name") != NULL, "a tenant name ending in a space: %d %s", st, out);
    out = fl(&own, it_fmt("key revoke --family leads --public-id '%s'", pub), &st);
    IT_CHECK(st == 0 && strcmp(out, "revoked\n") == 0, "key revoke: %d %s", st, out);
    IT_CHECK(status_until(l, "GET", "/deal_status/none", NULL, 401, 6.0), "the revoked key works 6 s after key revoke");
    out = fl(&own, it_fmt("key revoke --family leads --public-id '%s'", pub), &st);
    IT_CHECK(st != 0, "a second key revoke of the same key: %d %s", st, out);
}

/* What became of the delivery of the client.upserted event for client key ck to url:
 * "connect" (refused connection), "secret" (the signing secret did not open), else its error. */
static const char *delivery_error_sql(const char *url, const char *ck)
{
    return it_fmt("SELECT CASE WHEN d.last_error ILIKE '%%connect%%' THEN 'connect' "
                  "WHEN d.last_error LIKE '%%secret cannot be decrypted%%' THEN 'secret' "
                  "ELSE coalesce(d.last_error, '(none)') END FROM webhook_deliveries d JOIN events e "
                  "ON e.id = d.event_id WHERE d.url = '%s' AND e.payload->>'ClientKey' = '%s'", url, ck);
}

/* The id of the key client ck's FedTaxNum is sealed with, as psql prints it. */
static const char *sealed_key_id(const char *ck)
{
    return fl_out(&own, it_fmt("psql -XAtc \"SELECT split_part(fed_tax_num_enc, ':', 2) FROM clients "
                               "WHERE client_key = '%s'\"", ck), NULL);
}

/* Rotating the data key through the running stack (docs/operations.md, Security): the old key
 * file listed in FL_DATA_KEY_OLD_FILES opens what it sealed, in the posting workers
 * (FedTaxNum) and in the webhook worker (signing secrets); new values take the new key. Without
 * the old file, an old FedTaxNum is answered null and the worker logs which key it lacks, and
 * the old subscription's deliveries fail with the reason. */
static void test_data_key_rotation(void)
{
    int st;
    const char *name = it_uniq("opsD"), *hook = it_fmt("http://127.0.0.1:9/%s", it_uniq("rot"));
    fl_out(&own, it_fmt("tenant add %s", name), &st);
    const it_cred *c = it_cred_parse(fl_out(&own, it_fmt("key add --tenant %s --family posting", name), &st));
    IT_CHECK(c != NULL, "key add for %s failed", name);
    if (c == NULL)
        return;
    fl_out(&own, it_fmt("webhook add --tenant %s --family posting --url %s --events client.upserted", name, hook), &st);
    IT_CHECK(st == 0, "webhook add failed");
    const char *ck1 = it_uniq("ROT1"), *ck2 = it_uniq("ROT2"), *ck3 = it_uniq("ROT3");
    IT_STATUS(it_post(c, "/api_factor/create-client/",
                      it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\",\"FedTaxNum\":\"11-1111111\"}", ck1)), 201);
    /* the subscription's secret opens: the delivery fails on the refused connection */
    IT_CHECK(psql_until(&own, delivery_error_sql(hook, ck1), "connect", 10.0),
             "the delivery for %s did not fail on the connection", ck1);
    const char *k1 = sealed_key_id(ck1);

    /* rotate: the old key file aside and listed, a new data.key made by up */
    const char *oldkey = it_fmt("%s/keys/data-rotated.key", own.var);
    it_run(it_fmt("mv '%s/keys/data.key' '%s'", own.var, oldkey), &st);
    IT_CHECK(st == 0, "moving the data key aside failed");
    /* the key id as docs/operations.md computes it from the file */
    const char *fid = it_run(it_fmt("perl -ne 'print pack(\"H*\", $1) if /([0-9a-f]{64})/' '%s' | sha256sum | cut -c1-8",
                                    oldkey), NULL);
    IT_STREQ(fid, k1);
    stack rot = own;
    rot.env = it_fmt("%s FL_DATA_KEY_OLD_FILES='%s'", own.env, oldkey);
    const char *out = fl(&rot, "up", &st);
    IT_CHECK(st == 0 && file_exists(it_fmt("%s/keys/data.key", own.var)), "up with the old key listed: %d %s", st, out);
    it_resp *r = it_get(c, it_fmt("/api_factor/get-client/?clientkey=%s", ck1));
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "FedTaxNum", "11-1111111");
    IT_STATUS(it_post(c, "/api_factor/create-client/",
                      it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\",\"FedTaxNum\":\"22-2222222\"}", ck2)), 201);
    const char *k2 = sealed_key_id(ck2);
    IT_CHECK(strlen(k1) == 9 && strlen(k2) == 9 && strcmp(k1, k2) != 0,
             "key ids before and after the rotation: '%s' '%s'", k1, k2);
    IT_JSTR(it_get(c, it_fmt("/api_factor/get-client/?clientkey=%s", ck2))->json, "FedTaxNum", "22-2222222");
    IT_CHECK(psql_until(&own, delivery_error_sql(hook, ck2), "connect", 10.0),
             "the delivery for %s did not fail on the connection (old key listed)", ck2);

    /* the old file no longer listed: answered null, logged; the secret cannot be opened */
    out = fl(&own, "up", &st);
    IT_CHECK(st == 0, "up without the old key: %d %s", st, out);
    r = it_get(c, it_fmt("/api_factor/get-client/?clientkey=%s", ck1));
    IT_STATUS(r, 200);
    IT_CHECK(it_jhas(r->json, "FedTaxNum") && it_jstr(r->json, "FedTaxNum") == NULL,
             "FedTaxNum sealed with a key not loaded: %s", r->body);
    IT_JSTR(r->json, "Name", "n");
    const char *rid = it_header_get(r, "X-Request-Id");
    it_run(it_fmt("grep -F '\"request_id\":\"%s\"' '%s/log/posting.log' | grep -F 'FedTaxNum cannot be decrypted' "
                  "| grep -qF 'key %.8s'", rid ? rid : "-", own.var, k1), &st);
    IT_CHECK(st == 0, "no log line names key %.8s for request %s", k1, rid ? rid : "(none)");
    IT_JSTR(it_get(c, it_fmt("/api_factor/get-client/?clientkey=%s", ck2))->json, "FedTaxNum", "22-2222222");
    IT_STATUS(it_post(c, "/api_factor/create-client/", it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\"}", ck3)), 201);
    IT_CHECK(psql_until(&own, delivery_error_sql(hook, ck3), "secret", 10.0),
             "the delivery for %s did not fail on its secret", ck3);
}

/* FL_BODY_MAX, FL_STATEMENT_TIMEOUT_MS and FL_WEBHOOK_ALLOW_PRIVATE=0 given to up reach every
 * pool's workers (README, settings); up without them brings the defaults back. */
static void test_settings(void)
{
    stack s = own;
    s.env = it_fmt("%s FL_BODY_MAX=4096 FL_STATEMENT_TIMEOUT_MS=300 FL_WEBHOOK_ALLOW_PRIVATE=0", own.env);
    int st;
    const char *out = fl(&s, "up", &st);
    IT_CHECK(st == 0, "up with FL_BODY_MAX and FL_STATEMENT_TIMEOUT_MS failed (%d): %s", st, out);
    const it_cred *p = demo_cred(&own, "posting"), *l = demo_cred(&own, "leads");
    IT_CHECK(p != NULL && l != NULL, "no posting or leads credential in credentials.json");
    if (p == NULL || l == NULL)
        return;
    char pad[4200];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    /* TestValue takes 255 characters; the rest is a member test-post ignores */
    const char *over = it_fmt("{\"TestValue\":\"big\",\"Note\":\"%s\"}", pad);         /* 4,229 bytes */
    const char *under = it_fmt("{\"TestValue\":\"big\",\"Note\":\"%.4000s\"}", pad);   /* 4,030 bytes */
    it_resp *r = it_post(p, "/api_factor/test-post/", over);
    IT_STATUS(r, 413);
    IT_JSTR(r->json, "message", "413 Payload Too Large");
    IT_STATUS(it_post(p, "/api_factor/test-post/", under), 201);
    r = it_post(l, "/lead", over);
    IT_STATUS(r, 413);
    IT_JSTR(r->json, "message", "Request body too large: the limit is 4096 bytes");
    /* the SSRF guard on in the leads pool: a partner's private URL refused at registration */
    static const char *const hooks[] = { "http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]/x" };
    for (int i = 0; i < 3; i++) {
        r = it_post(l, "/webhook", it_fmt("{\"webhook_url\":\"%s\"}", hooks[i]));
        IT_STATUS(r, 422);
        IT_BODY(r, "{\"errors\":{\"webhook_url\":[\"is not a valid URL\"]}}");
    }
    r = it_post(l, "/trigger_webhook", "{\"lead_id\":\"x\",\"webhook_url\":\"http://127.0.0.1:9/t\",\"event_type\":\"t\"}");
    IT_STATUS(r, 422);
    IT_BODY(r, "{\"errors\":{\"webhook_url\":[\"is not a valid URL\"]}}");
    /* a statement waiting on a lock is cancelled after 300 ms: 503 while the lock is held 3 s */
    IT_CHECK(hold_clients(&own, 3), "the session holding clients did not get its lock");
    r = it_get(p, "/api_factor/get-client/?clientkey=DEMO");
    IT_STATUS(r, 503);
    release_clients(&own);

    out = fl(&own, "up", &st);
    IT_CHECK(st == 0, "up without the settings failed (%d): %s", st, out);
    IT_STATUS(it_post(p, "/api_factor/test-post/", over), 201);
    r = it_post(l, "/lead", over);
    /* the default cap again: the body is read, and refused as a lead, not as too large */
    IT_CHECK(r->status == 422 || r->status == 400, "leads answered %ld to a 4 kB body that is no lead", r->status);
    IT_STATUS(it_post(l, "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/x\"}"), 200);   /* up's default: allowed */
    IT_CHECK(hold_clients(&own, 3), "the session holding clients did not get its lock");
    IT_STATUS(it_get(p, "/api_factor/get-client/?clientkey=DEMO"), 200);      /* waited the 3 s out */
    release_clients(&own);
}

/* migrate: idempotent, and a migration changed after it was applied is refused. */
static void test_migrate(void)
{
    int st;
    const char *out = fl(&own, "migrate", &st);
    IT_CHECK(st == 0 && strstr(out, "migrated") != NULL, "migrate on a migrated database: %d %s", st, out);
    const char *files = it_run(it_fmt("ls '%s/sql/migrations' | grep -c '^[0-9].*\\.sql$'", it_env("FL_TEST_ROOT")),
                               NULL);
    const char *applied = fl_out(&own, "psql -XAtc 'SELECT count(*) FROM schema_migrations'", &st);
    IT_CHECK(atoi(files) > 0 && atoi(applied) == atoi(files), "%d migrations recorded, %d files", atoi(applied),
             atoi(files));

    fl_out(&own, "psql -XAtc \"UPDATE schema_migrations SET checksum = 'edited' WHERE filename = '0002_posting.sql'\"",
           &st);
    IT_CHECK(st == 0, "could not edit the recorded checksum");
    out = fl(&own, "migrate", &st);
    IT_CHECK(st != 0 && strstr(out, "migration 0002_posting.sql was changed after it was applied") != NULL,
             "migrate with a changed migration: %d %s", st, out);
    fl_out(&own, it_fmt("psql -XAtc \"UPDATE schema_migrations SET checksum = '%s' WHERE filename = "
                        "'0002_posting.sql'\"",
                        it_run(it_fmt("sha256sum '%s/sql/migrations/0002_posting.sql' | cut -c1-64 | tr -d '\\n'",
                                      it_env("FL_TEST_ROOT")), NULL)), &st);
    out = fl(&own, "migrate", &st);
    IT_CHECK(st == 0, "migrate after the checksum was put back: %d %s", st, out);

    /* a database migrated by a newer tree: refused before anything is applied */
    fl_out(&own, "psql -XAtc \"INSERT INTO schema_migrations (filename, checksum) VALUES ('9999_future.sql', 'x')\"",
           &st);
    IT_CHECK(st == 0, "could not record a future migration");
    out = fl(&own, "migrate", &st);
    IT_CHECK(st != 0 && strstr(out, "applied migrations not in sql/migrations: 9999_future.sql") != NULL,
             "migrate on a database of a newer tree: %d %s", st, out);
    fl_out(&own, "psql -XAtc \"DELETE FROM schema_migrations WHERE filename = '9999_future.sql'\"", &st);
    out = fl(&own, "migrate", &st);
    IT_CHECK(st == 0, "migrate after the future migration was taken out: %d %s", st, out);
    IT_CHECK(test_post(demo_cred(&own, "posting")) == 201, "the stack stopped answering after migrate");

    /* 0019 on rows stored before it: a short FedTaxNum's last four (the whole value, kept
     * by the earlier code; put back here by hand) go from the client and from its events, a
     * long one's stay. Its values are sealed by the running workers, as a real row's were. */
    const it_cred *c = demo_cred(&own, "posting");
    const char *cs = it_uniq("M19S"), *cl = it_uniq("M19L");
    IT_STATUS(it_post(c, "/api_factor/create-client/", it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\",\"FedTaxNum\":\"Q9Zq\"}", cs)),
              201);
    IT_STATUS(it_post(c, "/api_factor/create-client/",
                      it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\",\"FedTaxNum\":\"12-3456789\"}", cl)), 201);
    fl_out(&own, it_fmt("psql -XAtc \"UPDATE clients SET fed_tax_num_last4 = 'Q9Zq' WHERE client_key = '%s'; "
                        "UPDATE events SET payload = jsonb_set(payload, '{FedTaxNumLast4}', '\\\"Q9Zq\\\"') "
                        "WHERE type = 'client.upserted' AND payload->>'ClientKey' = '%s'; "
                        "DELETE FROM schema_migrations WHERE filename LIKE '0019_%%'\"", cs, cs), &st);
    IT_CHECK(st == 0, "could not set the rows back to before 0019");
    const char *q = it_fmt("psql -XAtc \"SELECT string_agg(coalesce(c.fed_tax_num_last4, 'null') || '/' || "
                           "coalesce(e.payload->>'FedTaxNumLast4', 'null'), ' ' ORDER BY c.client_key DESC) "
                           "FROM clients c JOIN events e ON e.tenant_id = c.tenant_id AND e.type = 'client.upserted' "
                           "AND e.payload->>'ClientKey' = c.client_key WHERE c.client_key IN ('%s', '%s')\"", cs, cl);
    out = fl_out(&own, q, &st);
    IT_CHECK(strcmp(out, "Q9Zq/Q9Zq 6789/6789\n") == 0, "before 0019: %s", out);
    out = fl(&own, "migrate", &st);
    IT_CHECK(st == 0, "migrate to apply 0019 again: %d %s", st, out);
    out = fl_out(&own, "psql -XAtc \"SELECT count(*) FROM schema_migrations WHERE filename LIKE '0019_%'\"", &st);
    IT_CHECK(strcmp(out, "1\n") == 0, "0019 not recorded again: %s", out);
    out = fl_out(&own, q, &st);
    IT_CHECK(strcmp(out, "null/null 6789/6789\n") == 0, "after 0019: %s", out);

    /* 0020: an attachment URL stored with credentials (accepted until the twenty-third
     * session) loses them; one without keeps its @ in the path */
    const char *ref = it_uniq("M20");
    fl_out(&own, it_fmt("psql -XAtc \"WITH c AS (SELECT id, tenant_id FROM credentials WHERE family = 'leads' LIMIT 1), "
                        "l AS (INSERT INTO leads (tenant_id, credential_id, public_id, reference_id, business_name) "
                        "SELECT tenant_id, id, '%s', '%s', 'Acme' FROM c RETURNING id, tenant_id, credential_id) "
                        "INSERT INTO lead_attachments (tenant_id, lead_id, credential_id, filename, source_url, state, error) "
                        "SELECT tenant_id, id, credential_id, 'a.pdf', u, 'failed', 'refused' FROM l, "
                        "unnest(ARRAY['https://user:s3cret@files.example/a.pdf', 'http://files.example/p@q.pdf']) u; "
                        "DELETE FROM schema_migrations WHERE filename LIKE '0020_%%'\"", ref, ref), &st);
    IT_CHECK(st == 0, "could not store the attachments of before 0020");
    out = fl(&own, "migrate", &st);
    IT_CHECK(st == 0, "migrate to apply 0020 again: %d %s", st, out);
    out = fl_out(&own, it_fmt("psql -XAtc \"SELECT string_agg(a.source_url, ' ' ORDER BY a.source_url) FROM lead_attachments a "
                              "JOIN leads l ON l.id = a.lead_id WHERE l.public_id = '%s'\"", ref), &st);
    IT_CHECK(strcmp(out, "http://files.example/p@q.pdf https://files.example/a.pdf\n") == 0, "after 0020: %s", out);

    /* 0022 on leads of the shape before it, in a scratch database (its old tables are gone
     * from this one): every part moved into its column, a second prior loan or a lead without
     * an account refused with nothing changed */
    out = it_run(it_fmt("sh '%s/tests/integration/migration_0022.sh' '%s' '%s' 2>&1", it_env("FL_TEST_ROOT"),
                        it_env("FL_TEST_PGHOST"), it_env("FL_TEST_ROOT")), &st);
    IT_CHECK(st == 0, "tests/integration/migration_0022.sh: %d %s", st, out);
    IT_CHECK(strcmp(out,
                    "m22-1|LLC|Pied Piper|2015-01-01|Pied Piper LLC|6176781000|a@b.c|https://pp|v1:0000000a:f|6789|"
                    "Low|Tech|36 Bromfield St|Floor 2|Boston|MA|00112|t|f|Debt|50000.00|56.00|9.00|great|Wells|25.00|"
                    "15000.23\n"
                    "m22-2|Hooli\n"
                    "9001|1|Erlich|v1:0000000a:s|1 Home Rd|Palo Alto|CA|94301\n"
                    "9002|2|Jared\n"
                    "9003|1|Gavin|2 Campus Dr|Mountain View|CA|94043\n"
                    "tables left: 0\n"
                    "two prior loans: refused: lead m22-1 has two prior loans, two business addresses or a contact "
                    "with two addresses\n"
                    "prior loans kept: 2\n"
                    "no account: refused: column \"business_name\" of relation \"leads\" contains null values\n") == 0,
             "0022 on the old shape:\n%s", out);
}

/* A worker whose session is read-only (a standby after a failover; here fl_api's sessions made
 * read-only, and the posting worker's connection cut so that it opens one): a write is 503
 * with Retry-After, not 500, and the session is dropped, so that once the database takes
 * writes again the next request connects anew and succeeds (docs/operations.md). Until the
 * twenty-third session it answered 500 for as long as that connection lived. */
static void test_read_only_session(void)
{
    const it_cred *c = demo_cred(&own, "posting");
    int st;
    IT_CHECK(c != NULL, "no posting credential");
    if (c == NULL)
        return;
    fl_out(&own, "psql -XAtc \"ALTER ROLE fl_api SET default_transaction_read_only = on\"", &st);
    IT_CHECK(st == 0, "could not make fl_api's sessions read-only");
    fl_out(&own, "psql -XAtc \"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE application_name = 'fl-posting'\"", &st);
    const char *ck = it_uniq("RO");
    const char *body = it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\"}", ck);
    for (int i = 0; i < 3; i++) {
        it_resp *r = it_post(c, "/api_factor/create-client/", body);
        IT_STATUS(r, 503);
        IT_STREQ(it_header_get(r, "Retry-After"), "5");
    }
    const char *log = it_run(it_fmt("grep -c 'create.*25006' '%s/log/posting.log'", own.var), NULL);
    IT_CHECK(atoi(log) >= 2, "the read-only refusals are not in the log: %s", log);
    fl_out(&own, "psql -XAtc \"ALTER ROLE fl_api RESET default_transaction_read_only\"", &st);
    IT_CHECK(st == 0, "could not reset fl_api's sessions");
    IT_STATUS(it_post(c, "/api_factor/create-client/", body), 201);
    IT_STREQ(fl_out(&own, it_fmt("psql -XAtc \"SELECT count(*) FROM clients WHERE client_key = '%s'\"", ck), &st),
             "1\n");
}

static void test_down(void)
{
    pid_t before[NPIDFILES];
    stack_pids(&own, before);
    const char *pg = file_text(it_fmt("%s/pg/data/postmaster.pid", own.var));
    pid_t pgpid = (pid_t) atol(pg);
    int st;

    /* A request in flight when down begins is answered (docs/operations.md: nginx stops
     * gracefully first, then the pools, then PostgreSQL). It is held in flight by a session
     * that locks clients; down starts while the worker waits for that lock, and the lock is
     * let go only once nginx is shutting down (it has taken QUIT). */
    const it_cred *p = demo_cred(&own, "posting");
    IT_CHECK(p != NULL, "no posting credential in credentials.json");
    IT_CHECK(hold_clients(&own, 60), "the session holding clients did not get its lock");
    it_async child = { -1, -1 };
    if (p != NULL)
        child = it_async_start(p, "GET", "/api_factor/get-client/?clientkey=DEMO", NULL);
    IT_CHECK(child.pid > 0 && psql_until(&own, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                               "'fl-posting' AND wait_event_type = 'Lock'", "1", 2.0),
             "the get-client did not wait for the lock: the test proves nothing");
    /* a leads worker that cannot stop (SIGSTOP): down kills it with its supervisor after 10 s */
    pid_t lw[16];
    int nlw = it_supervised(it_fmt("%s/run/leads.pid", own.var), lw, 16);
    IT_CHECK(nlw >= 1 && kill(lw[0], SIGSTOP) == 0, "no leads worker to stop");
    const char *down_out = it_fmt("%s/down.out", own.var);
    unlink(down_out);
    it_run(it_fmt("(%s >'%s' 2>&1; echo \"exit $?\" >>'%s') </dev/null >/dev/null 2>&1 &", fl_cmdline(&own, "down"),
                  down_out, down_out), NULL);
    /* nginx's workers take the title "worker process is shutting down" on QUIT */
    pid_t ngx = before[NPIDFILES - 1];
    int quitting = 0;
    for (int i = 0; i < 100 && !quitting; i++) {
        int st2;
        it_run(it_fmt("pgrep -P %d -f 'worker process is shutting down' >/dev/null", (int) ngx), &st2);
        quitting = st2 == 0;
        if (!quitting)
            it_sleep(0.05);
    }
    IT_CHECK(quitting, "nginx (%d) did not begin a graceful stop within 5 s of down", (int) ngx);
    double quit_at = it_now();
    fl_out(&own, "psql -XAtc \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()\"", NULL);
    if (child.pid > 0) {
        double done_at = 0;
        char rid[64] = "";
        const char *answer;
        long status = it_async_collect(child, &done_at, rid, &answer);
        IT_CHECK(status == 200, "the request in flight when down began was answered %ld <%.200s>, not 200", status,
                 answer);
        IT_CHECK(done_at > quit_at, "it was answered before nginx took QUIT: the test proves nothing");
    }
    const char *out = "";
    for (int i = 0; i < 300 && strstr(out, "exit ") == NULL; i++) {      /* the command ended, its lock free */
        out = file_text(down_out);
        if (strstr(out, "exit ") == NULL)
            it_sleep(0.1);
    }
    IT_CHECK(strstr(out, "factorline: down") != NULL && strstr(out, "exit 0") != NULL,
             "down did not finish within 30 s: %s", out);
    for (int i = 0; i < NPIDFILES; i++)
        IT_CHECK(gone(before[i]), "%s: process %d still running after down", pidfiles[i], (int) before[i]);
    IT_CHECK(pgpid > 0 && gone(pgpid), "PostgreSQL (%d) still running after down", (int) pgpid);
    IT_CHECK(nlw < 1 || gone(lw[0]), "the stopped leads worker %d outlived down", nlw >= 1 ? (int) lw[0] : 0);
    out = fl(&own, "status", &st);
    IT_CHECK(strstr(out, "postgresql  stopped") && strstr(out, "posting  stopped") && strstr(out, "leads  stopped")
             && strstr(out, "webhooks  stopped") && strstr(out, "nginx  stopped"), "status after down: %s", out);
    it_resp *r = it_request("GET", it_fmt("%s/healthz", https_base()), NULL, 0, NULL, 0);
    IT_CHECK(r->status == 0, "nginx still answers after down (%ld)", r->status);
    out = fl(&own, "down", &st);
    IT_CHECK(st == 0, "down on a stopped stack failed (%d): %s", st, out);
}

/* -------------------------------------------- DATABASE_URL (external server) --- */

static void test_external_up_down(void)
{
    int st;
    IT_Q0(it_fmt("CREATE DATABASE %s", ext.db));
    it_run(it_fmt("rm -rf '%s'", ext.var), NULL);
    const char *out = fl(&ext, "up", &st);
    IT_CHECK(st == 0, "up with DATABASE_URL failed (%d): %s", st, out);
    IT_CHECK(!file_exists(it_fmt("%s/pg", ext.var)), "up with DATABASE_URL created a cluster under %s/pg", ext.var);
    out = fl(&ext, "status", &st);
    IT_CHECK(strstr(out, "postgresql  external (DATABASE_URL)") != NULL && strstr(out, "posting  running")
             && strstr(out, "nginx  running"), "status: %s", out);
    IT_CHECK(test_post(demo_cred(&ext, "posting")) == 201, "the demo credential does not work on DATABASE_URL");
    IT_STATUS(it_get(demo_cred(&ext, "leads"), "/deal_status/none"), 404);
    /* migrated in that database, seeded there, and the workers connect as fl_api */
    const char *n = fl_out(&ext, "psql -XAtc \"SELECT count(*) FROM schema_migrations\"", &st);
    const char *files = it_run(it_fmt("ls '%s/sql/migrations' | grep -c '^[0-9].*\\.sql$'", it_env("FL_TEST_ROOT")),
                               NULL);
    IT_CHECK(atoi(n) == atoi(files), "%d migrations recorded in %s, %d files", atoi(n), ext.db, atoi(files));
    const char *users = IT_Q("SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity "
                             "WHERE datname = $1 AND application_name IN ('fl-posting', 'fl-leads')", ext.db);
    IT_STREQ(users, "fl_api");
    users = IT_Q("SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity "
                 "WHERE datname = $1 AND application_name = 'fl-worker'", ext.db);
    IT_STREQ(users, "fl_worker");
    /* DATABASE_URL carries the owner's password (and PGPASSWORD is set): no worker's
     * environment holds it, not even in the URL it connects with (README, DATABASE_URL) */
    static const char *const pools[] = { "posting", "leads", "webhooks" };
    for (int i = 0; i < 3; i++) {
        pid_t w[16];
        int nw = it_supervised(it_fmt("%s/run/%s.pid", ext.var, pools[i]), w, 16);
        IT_CHECK(nw >= 1, "no %s worker on the DATABASE_URL stack", pools[i]);
        for (int j = 0; j < nw; j++) {
            IT_CHECK(environ_has(w[j], "ownersecret") == 0, "the %s worker %d has the owner's password in its "
                     "environment", pools[i], (int) w[j]);
            IT_CHECK(environ_has(w[j], "FL_ADMIN_DATABASE_URL=") == 0, "the %s worker %d has FL_ADMIN_DATABASE_URL",
                     pools[i], (int) w[j]);
        }
    }

    /* nor does any process's command line: psql as the owner gets the URL without the
     * password, and the password in its environment (until the twenty-third session the whole
     * URL was psql's argument, readable by every local user) */
    fl_run(&ext, "psql -XAtc 'SELECT pg_sleep(2)' >/dev/null", "2>&1 &", &st);
    const char *seen = "";
    for (double t0 = it_now(); it_now() - t0 < 3.0 && !*seen; it_sleep(0.05))
        seen = it_run("ps -eo args | grep '/[p]sql .*pg_sleep(2)' | head -n 1", NULL);
    IT_CHECK(*seen != '\0', "the owner's psql was not seen running: the check proves nothing");
    IT_CHECK(strstr(seen, "ownersecret") == NULL && strstr(seen, ext.db) != NULL, "psql's arguments: %s", seen);
    const char *leak = it_run("ps -eo args | grep -c '[o]wnersecret1'", NULL);
    IT_CHECK(atoi(leak) == 0, "a process has the owner's password in its arguments (%s)", leak);

    /* an owner that row-level security would blind (no superuser, no BYPASSRLS): refused,
     * with the reason, and the error's DETAIL is not filtered out */
    const char *weak = it_fmt("fl_ops_weak_%d", (int) getpid());
    IT_Q0(it_fmt("CREATE ROLE %s LOGIN", weak));
    stack w = ext;
    w.env = it_fmt("DATABASE_URL='%s dbname=%s user=%s'", it_env("FL_ADMIN_DATABASE_URL"), ext.db, weak);
    out = fl(&w, "migrate", &st);
    IT_CHECK(st != 0 && strstr(out, it_fmt("the schema owner %s must be a superuser or have BYPASSRLS", weak)) != NULL,
             "migrate as %s: %d %s", weak, st, out);
    IT_Q0(it_fmt("DROP ROLE %s", weak));

    /* a stack directory under one closed to other users (as /root is): up says so before
     * initdb's permission error or nginx's 502 (as root only: the users who must pass are
     * postgres and nobody) */
    if (getuid() == 0) {
        const char *closed = ops_var("closed");
        it_run(it_fmt("rm -rf '%s' && mkdir -p '%s' && chmod 0700 '%s'", closed, closed, closed), &st);
        stack c = own;
        c.var = it_fmt("%s/var", closed);
        out = fl(&c, "up", &st);
        IT_CHECK(st != 0 && strstr(out, "cannot be reached by the postgres user: a directory above it is closed to "
                                        "other users") != NULL, "up under a 0700 directory: %d %s", st, out);
        it_run(it_fmt("rm -rf '%s'", closed), NULL);
    }

    /* a webhook worker that cannot connect: up fails, naming it and its log, instead of
     * reporting a stack that sends no webhook as up (until the twenty-third session it did) */
    stack bad = ext;
    bad.env = it_fmt("%s FL_WORKER_DATABASE_URL='host=/nonexistent-fl-dir dbname=x user=fl_worker'", ext.env);
    out = fl(&bad, "up", &st);
    IT_CHECK(st != 0 && strstr(out, "workers that did not connect to PostgreSQL within 20 s: webhooks (0 of 1 "
                                    "connected; see ") != NULL,
             "up with a webhook worker that cannot connect: %d %s", st, out);

    out = fl(&ext, "down", &st);
    IT_CHECK(st == 0, "down with DATABASE_URL failed (%d): %s", st, out);
    out = fl(&ext, "status", &st);
    IT_CHECK(strstr(out, "posting  stopped") && strstr(out, "nginx  stopped"), "status after down: %s", out);
    /* the external server is not ours to stop */
    IT_STREQ(IT_Q("SELECT count(*)::text FROM tenants WHERE name = $1", "itest-a"), "1");
    IT_Q0(it_fmt("DROP DATABASE %s WITH (FORCE)", ext.db));
    ext.db = NULL;
}

/* ------------------------------------------------ nginx/production.conf.example --- */

/* The production example, run for real on ports of its own: listen, certificate and log paths
 * made local; posting's upstream is the test stack's posting pool, leads' a closed port (every
 * leads request over HTTPS then takes the 503 path). */
static void test_production_example(void)
{
    const char *dir = it_fmt("%s/prod", it_env("FL_TEST_OPS_VAR"));
    const char *run = it_env("FL_TEST_RUN");
    int http = atoi(it_env("FL_TEST_OPS_HTTP_PORT")) + 1, https = atoi(it_env("FL_TEST_OPS_HTTPS_PORT")) + 1;
    int st;
    it_run(it_fmt("rm -rf '%s' && mkdir -p '%s/tmp' && { [ \"$(id -u)\" != 0 ] || chown nobody '%s/tmp'; }", dir,
                  dir, dir), &st);
    IT_CHECK(st == 0, "cannot make %s", dir);
    it_run(it_fmt("sed -e 's|listen 80;|listen 127.0.0.1:%d;|' -e 's|listen 443 ssl http2;|listen 127.0.0.1:%d ssl http2;|' "
                  "-e 's|/etc/ssl/factorline/fullchain.pem|%s/../tls/server.crt|' "
                  "-e 's|/etc/ssl/factorline/privkey.pem|%s/../tls/server.key|' "
                  "-e 's|/var/log/nginx/|%s/|' "
                  "-e 's|server 10\\.0\\.1\\.1[12]:9101 .*;|server unix:%s/posting.sock;|' "
                  "-e 's|server 10\\.0\\.1\\.1[12]:9102 .*;|server 127.0.0.1:1;|' "
                  "'%s/nginx/production.conf.example' > '%s/production.conf'",
                  http, https, run, run, dir, run, it_env("FL_TEST_ROOT"), dir), &st);
    IT_CHECK(st == 0, "cannot rewrite the production example");
    const char *grep = it_run(it_fmt("grep -c '10\\.0\\.1\\.\\|/etc/ssl\\|/var/log' '%s/production.conf'", dir),
                              NULL);
    IT_CHECK(atoi(grep) == 0, "the rewritten example still names production paths or hosts");
    FILE *f = fopen(it_fmt("%s/nginx.conf", dir), "w");
    IT_CHECK(f != NULL, "cannot write %s/nginx.conf", dir);
    if (f == NULL)
        return;
    fprintf(f, "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n%s\nevents { worker_connections 64; }\n"
               "http {\n    client_body_temp_path %s/tmp/body;\n    fastcgi_temp_path %s/tmp/fastcgi;\n"
               "    proxy_temp_path %s/tmp/proxy;\n    uwsgi_temp_path %s/tmp/uwsgi;\n"
               "    scgi_temp_path %s/tmp/scgi;\n    include %s/production.conf;\n}\n",
            dir, dir, getuid() == 0 ? "user nobody nogroup;" : "", dir, dir, dir, dir, dir, dir);
    fclose(f);
    const char *nginx = it_fmt("nginx -c '%s/nginx.conf' -p '%s' -e '%s/error.log'", dir, dir, dir);
    const char *out = it_run(it_fmt("%s -t 2>&1", nginx), &st);
    IT_CHECK(st == 0, "nginx -t refuses the production example: %s", out);
    out = it_run(it_fmt("%s 2>&1", nginx), &st);
    IT_CHECK(st == 0, "nginx does not start with the production example: %s", out);
    if (st != 0)
        return;
    const char *h = it_fmt("http://127.0.0.1:%d", http), *hs = it_fmt("https://127.0.0.1:%d", https);
    for (int i = 0; i < 50 && it_request("GET", it_fmt("%s/healthz", hs), NULL, 0, NULL, 0)->status == 0; i++)
        it_sleep(0.1);

    /* port 80: leads is 403 (a large upload too, not nginx's 413), the rest moves to HTTPS */
    it_resp *r = it_request("GET", it_fmt("%s/leads/v1/deal_status/x", h), NULL, 0, NULL, 0);
    IT_STATUS(r, 403);
    IT_MESSAGE(r, "HTTPS is required");
    IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "no X-Request-Id on the plain-HTTP 403");
    size_t big = 26u << 20;
    char *body = it_alloc(big);
    memset(body, 'a', big);
    const it_header bin[] = { { "Content-Type", "application/octet-stream" } };
    IT_STATUS(it_request("POST", it_fmt("%s/leads/attachment?filename=a.bin&lead_id=x", h), bin, 1, body, big), 403);
    /* posting too: its credentials are not to travel in clear (until the twenty-fourth
     * session a 301, which a client followed after sending them) */
    r = it_request("POST", it_fmt("%s/posting/api_factor/test-post/", h), NULL, 0, "{}", 2);
    IT_STATUS(r, 403);
    IT_MESSAGE(r, "403 Forbidden HTTPS is required");
    IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "no X-Request-Id on posting's plain-HTTP 403");
    r = it_request("GET", it_fmt("%s/elsewhere", h), NULL, 0, NULL, 0);
    IT_STATUS(r, 301);
    IT_STREQ(it_header_get(r, "Location"), "https://127.0.0.1/elsewhere");
    IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "no X-Request-Id on the redirect");
    r = it_request("TRACE", it_fmt("%s/posting/x", h), NULL, 0, NULL, 0);
    IT_STATUS(r, 405);
    IT_MESSAGE(r, "405 Method Not Allowed");

    /* HTTPS: posting through the example to the test stack's pool */
    const it_cred *a = it_cred_get("a", "posting");
    it_header hd[8];
    for (size_t i = 0; i < a->nheaders && i < 8; i++)
        hd[i] = a->headers[i];
    r = it_request("POST", it_fmt("%s/posting/api_factor/test-post/", hs), hd, a->nheaders,
                   "{\"TestValue\":\"production\"}", 26);
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "TestValue", "production");
    IT_CHECK(it_header_get(r, "X-Request-Id") && it_header_get(r, "Strict-Transport-Security"),
             "X-Request-Id or HSTS missing on the answer");
    r = it_request("POST", it_fmt("%s/posting/api_factor/post-payments/", hs), hd, a->nheaders, body, 11u << 20);
    IT_STATUS(r, 413);
    IT_MESSAGE(r, "413 Payload Too Large");
    IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "no X-Request-Id on the 413");
    /* leads' pool unreachable: the family's 503, with Retry-After and the request id */
    r = it_request("GET", it_fmt("%s/leads/v1/deal_status/x", hs), NULL, 0, NULL, 0);
    IT_STATUS(r, 503);
    IT_MESSAGE(r, "Service Unavailable");
    IT_STREQ(it_header_get(r, "Retry-After"), "5");
    IT_CHECK(it_header_get(r, "X-Request-Id") && it_header_get(r, "Strict-Transport-Security"),
             "X-Request-Id or HSTS missing on the 503");
    r = it_request("GET", it_fmt("%s/nope", hs), NULL, 0, NULL, 0);
    IT_STATUS(r, 404);
    IT_MESSAGE(r, "404 Not Found");
    r = it_request("TRACE", it_fmt("%s/leads/v1/lead", hs), NULL, 0, NULL, 0);
    IT_STATUS(r, 405);
    IT_MESSAGE(r, "405 Method Not Allowed");
    IT_CHECK(it_header_get(r, "X-Request-Id") && it_header_get(r, "Strict-Transport-Security"),
             "X-Request-Id or HSTS missing on nginx's 405");
    /* nginx's own refusals: JSON */
    char *longq = it_alloc(9001);
    memset(longq, 'q', 9000);
    longq[9000] = '\0';
    r = it_request("GET", it_fmt("%s/posting/api_factor/get-client/?clientkey=%s", hs, longq), NULL, 0, NULL, 0);
    IT_STATUS(r, 414);
    IT_MESSAGE(r, "414 Request-URI Too Large");

    it_run(it_fmt("%s -s quit 2>&1", nginx), &st);
    IT_CHECK(st == 0, "nginx -s quit failed");
}

int main(void)
{
    it_init();
    signal(SIGPIPE, SIG_IGN);
    own = (stack) { "own", ops_var("own"), "", NULL };
    const char *db = it_fmt("fl_ops_%d", (int) getpid());
    ext = (stack) { "ext", ops_var("ext"),
                    it_fmt("DATABASE_URL='%s dbname=%s password=ownersecret1' PGPASSWORD=ownersecret2",
                           it_env("FL_ADMIN_DATABASE_URL"), db), db };
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("factorline script, own PostgreSQL", NULL, NULL);
    CU_add_test(s, "up on a fresh var/: cluster, credentials, demo data", test_up_fresh);
    CU_add_test(s, "status: every process, pool sizes", test_status_running);
    CU_add_test(s, "up again: every process restarted, credentials kept", test_up_again);
    CU_add_test(s, "one command at a time: a down and an up during an up refused, naming it", test_one_command_at_a_time);
    CU_add_test(s, "a blank in the stack's path: refused at once, nothing made", test_blank_in_path);
    CU_add_test(s, "tenant add, key add", test_tenant_and_key);
    CU_add_test(s, "webhook add, webhooks", test_webhook_commands);
    CU_add_test(s, "key rotate, limit, revoke", test_key_commands);
    CU_add_test(s, "FL_BODY_MAX and FL_STATEMENT_TIMEOUT_MS reach the workers", test_settings);
    CU_add_test(s, "the data key rotated through running workers", test_data_key_rotation);
    CU_add_test(s, "migrate: idempotent, a changed migration refused", test_migrate);
    CU_add_test(s, "a read-only session (a standby): 503, then connected anew", test_read_only_session);
    CU_add_test(s, "down: a request in flight answered, everything stopped, twice", test_down);
    s = CU_add_suite("factorline script, DATABASE_URL", NULL, NULL);
    CU_add_test(s, "up, status, down on an existing server", test_external_up_down);
    s = CU_add_suite("nginx/production.conf.example", NULL, NULL);
    CU_add_test(s, "run for real: 403 on port 80, posting over HTTPS, 413, 503, 404, 414", test_production_example);
    CU_add_test(s, "every response carried X-Request-Id", it_test_request_ids);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    stack_stop(&own);
    stack_stop(&ext);
    it_run(it_fmt("nginx -c '%s/prod/nginx.conf' -p '%s/prod' -s quit >/dev/null 2>&1", it_env("FL_TEST_OPS_VAR"),
                  it_env("FL_TEST_OPS_VAR")), NULL);
    if (ext.db != NULL)
        IT_Q0(it_fmt("DROP DATABASE IF EXISTS %s WITH (FORCE)", ext.db));
    it_cleanup();
    return failures > 0 ? 1 : 0;
}
