/* Integration tests of the posting family (FactorCloud api_factor) through
 * real nginx, the FastCGI pool and PostgreSQL.  Run by ./factorline test,
 * which starts the private stack and exports FL_TEST_*.
 *
 * Tenants a and b come from $FL_TEST_CREDENTIALS.  Keys are made unique per
 * run with it_uniq(); the document's own example uses its literal values, so
 * the suite expects a fresh stack (./factorline test always starts one). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CUnit/Basic.h>
#include "itest.h"

#define OK_201 "201 Created - v2.01.00"
#define OK_200 "200 OK - v2.01.00"
#define E401 "{\"message\":\"401 Unauthorized\"}"
#define E404 "{\"message\":\"404 Not Found\"}"
#define E405 "{\"message\":\"405 Method Not Allowed\"}"
#define E413 "{\"message\":\"413 Payload Too Large\"}"
#define E503 "{\"message\":\"503 Service Unavailable\"}"

static const it_cred *A, *B;

/* JSON with single quotes for readability: J("{'a':'%s'}", v).  Values must
 * not contain a single quote. */
static char *J(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *J(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = it_alloc((size_t) n);
    va_start(ap, fmt);
    vsnprintf(s, (size_t) n + 1, fmt, ap);
    va_end(ap);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    return s;
}

static int expect_prefix(const char *got, const char *prefix, unsigned line)
{
    return it_check(got != NULL && strncmp(got, prefix, strlen(prefix)) == 0, line, __FILE__,
                    "got \"%s\", expected a prefix \"%s\"", got ? got : "(null)", prefix);
}
#define IT_PREFIX(got, prefix) expect_prefix((got), (prefix), __LINE__)

/* ------------------------------------------------------------ fixtures --- */

static void mk_client(const it_cred *c, const char *key)
{
    it_resp *r = it_post(c, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'Client %s'}", key, key));
    IT_STATUS(r, 201);
}

static void mk_debtor(const it_cred *c, const char *client, const char *debtor, const char *name)
{
    it_resp *r = it_post(c, "/api_factor/create-debtor/",
                         J("{'ClientKey':'%s','DebtorKey':'%s','Name':'%s','Country':'USA'}", client, debtor, name));
    IT_STATUS(r, 201);
}

static void mk_vendor(const it_cred *c, const char *client, const char *vendor)
{
    it_resp *r = it_post(c, "/api_factor/create-vendor/",
                         J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Vendor %s'}", client, vendor, vendor));
    IT_STATUS(r, 201);
}

static const char *inv(const char *debtor, const char *number, const char *amount, const char *iid)
{
    return J("{'DebtorKey':'%s','InvoiceNumber':'%s','InvoiceAr':'%s','InvoiceIntegrationId':'%s',"
             "'InvoiceDate':'2021-03-01','DueDate':'2021-03-31'}", debtor, number, amount, iid);
}

static it_resp *sched(const it_cred *c, const char *client, const char *batch, const char *amount,
                      const char *invoices)
{
    return it_post(c, "/api_factor/create-sched/",
                   J("{'ClientKey':'%s','Amount':'%s','IntegrationBatchId':'%s','PaymentMethod':'A',"
                     "'InvoiceArray':[%s]}", client, amount, batch, invoices));
}

/* One client, one debtor, one schedule with one invoice of amount; returns the
 * invoice integration id; *number gets the invoice number (letters/digits). */
static const char *mk_invoice(const it_cred *c, const char *amount, const char **number)
{
    const char *ck = it_uniq("CL"), *dk = it_uniq("DB"), *iid = it_uniq("IID");
    const char *num = it_uniq("N");
    mk_client(c, ck);
    mk_debtor(c, ck, dk, it_fmt("Debtor %s", dk));
    it_resp *r = sched(c, ck, it_uniq("SB"), amount, inv(dk, num, amount, iid));
    IT_STATUS(r, 201);
    if (number)
        *number = num;
    return iid;
}

static it_resp *get_invoice(const it_cred *c, const char *iid)
{
    return it_get(c, it_fmt("/api_factor/get-invoice/?invoiceintegrationid=%s", iid));
}

/* The invoice's open balance, or "(none)". */
static const char *balance(const it_cred *c, const char *iid)
{
    it_resp *r = get_invoice(c, iid);
    const char *b = it_jstr(r->json, "OpenBalance");
    return r->status == 200 && b ? b : "(none)";
}

/* A payment line; NULL fields are left out. */
static const char *line(const char *amount, const char *ref, const char *memo, const char *client_code,
                        const char *account, const char *remitter)
{
    char *s = J("{'PaymentDate':'03-31-21','PaymentType':'ACH','Amount':'%s','TransactionNumber':'%s'",
                amount, it_uniq("T"));
    if (ref) s = J("%s,'InvoiceRefNumber':'%s'", s, ref);
    if (memo) s = J("%s,'MemoLine':'%s'", s, memo);
    if (client_code) s = J("%s,'ClientCode':'%s'", s, client_code);
    if (account) s = J("%s,'AccountNumber':'%s'", s, account);
    if (remitter) s = J("%s,'RemitterName':'%s'", s, remitter);
    return J("%s}", s);
}

static const char *batch(const char *ref, const char *total, const char *lines)
{
    return J("{'BatchReference':'%s','BatchTotal':'%s','AccountNumber':'861495268','PaymentDetails':[%s]}",
             ref, total, lines);
}

static it_resp *pay(const it_cred *c, const char *body)
{
    return it_post(c, "/api_factor/post-payments/", body);
}

/* post-payments in a child process (it_async_collect waits for it). */
static it_async pay_start(const it_cred *c, const char *body)
{
    return it_async_start(c, "POST", "/api_factor/post-payments/", body);
}

/* Waits up to 4 s for one posting worker's statement to wait for a lock (the test's own
 * session holds it); whether it did. */
static int worker_waits_for_lock(void)
{
    double w0 = it_now();
    for (;;) {
        /* pg_stat_activity is read once per transaction unless its snapshot is cleared */
        IT_Q0("SELECT pg_stat_clear_snapshot()");
        const char *waiting = IT_Q("SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fl-posting' "
                                   "AND wait_event_type = 'Lock'");
        if (waiting != NULL && strcmp(waiting, "1") == 0)
            return 1;
        if (waiting == NULL || it_now() - w0 >= 4.0)
            return 0;
        it_sleep(0.02);
    }
}

/* Every route, with a body that passes validation where one is needed. */
typedef struct route { const char *method, *path; } route;
static const route ROUTES[] = {
    { "POST", "/api_factor/test-post/" },
    { "POST", "/api_factor/create-client/" },
    { "GET", "/api_factor/get-client/?clientkey=X" },
    { "POST", "/api_factor/create-debtor/" },
    { "GET", "/api_factor/get-client-debtor/?clientkey=X&debtorkey=Y" },
    { "GET", "/api_factor/get-debtor-master/?debtorkey=Y" },
    { "POST", "/api_factor/create-vendor/" },
    { "POST", "/api_factor/create-sched/" },
    { "GET", "/api_factor/get-sched/?integrationbatchid=Z" },
    { "POST", "/api_factor/create-sched-broker/" },
    { "GET", "/api_factor/get-broker-sched/?integrationbatchid=Z" },
    { "GET", "/api_factor/get-invoice/?invoiceintegrationid=Z" },
    { "POST", "/api_factor/post-payments/" },
};
#define NROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))

/* ------------------------------------------------------ document example --- */

static void test_document_example(void)
{
    const char *ck = it_uniq("DOC"), *dk = it_uniq("XYZ");
    const char *i31 = it_uniq("DOC31x"), *i32 = it_uniq("DOC32x");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "XYZ");
    it_resp *r = sched(A, ck, it_uniq("DOCB"), "1500.00",
                       J("%s,%s", inv(dk, "20212131", "1000.00", i31), inv(dk, "20212132", "500.00", i32)));
    IT_STATUS(r, 201);

    /* the document's curl: its header spellings, curl's default content type, its body */
    const char *body =
        "{\"BatchReference\":\"mmm-111\",\"BatchTotal\":\"1500.00\",\"AccountNumber\":\"861495268\","
        "\"PaymentDetails\":[{\"PaymentDate\":\"03-31-21\",\"BankBatchItem\":\"\",\"PaymentType\":\"ACH\","
        "\"Amount\":\"1000.00\",\"BankRefNumber\":\"111-222\",\"AccountNumber\":\"861495268\","
        "\"TransactionNumber\":\"861495268-1\",\"RemitterName\":\"XYZ\",\"MemoLine\":\"abc\","
        "\"InvoiceRefNumber\":\"20212131\",\"ClientCode\":\"\",\"FinancialDocs\":\"\"},"
        "{\"PaymentDate\":\"03-31-21\",\"BankBatchItem\":\"\",\"PaymentType\":\"ACH\",\"Amount\":\"500.00\","
        "\"BankRefNumber\":\"111-223\",\"AccountNumber\":\"861495268\",\"TransactionNumber\":\"861495268-2\","
        "\"RemitterName\":\"XYZ\",\"MemoLine\":\"abc\",\"InvoiceRefNumber\":\"20212132\",\"ClientCode\":\"\","
        "\"FinancialDocs\":\"\"}]}";
    it_header h[] = {
        { "Auth-FactorId", it_cred_header(A, "Auth-FactorID") },
        { "Auth-SystemKey", it_cred_header(A, "Auth-SystemKey") },
        { "Auth-ApiKey", it_cred_header(A, "Auth-APIKey") },
        { "Content-Type", "application/x-www-form-urlencoded" },
    };
    r = it_request("POST", it_fmt("%s/api_factor/post-payments/", A->base_url), h, 4, body, strlen(body));
    IT_STATUS(r, 201);
    IT_MESSAGE(r, OK_201);
    IT_JSTR(r->json, "BatchReference", "mmm-111");
    IT_JSTR(r->json, "BatchTotal", "1500.00");
    IT_JSTR(r->json, "AccountNumber", "861495268");
    IT_CHECK(it_jlen(r->json, "PaymentDetails") == 2, "two payment lines echoed: %s", r->body);
    IT_JSTR(r->json, "PaymentDetails[0].PaymentDate", "2021-03-31");
    IT_JSTR(r->json, "PaymentDetails[0].PaymentType", "ACH");
    IT_JSTR(r->json, "PaymentDetails[0].Amount", "1000.00");
    IT_JSTR(r->json, "PaymentDetails[0].TransactionNumber", "861495268-1");
    IT_JSTR(r->json, "PaymentDetails[0].InvoiceRefNumber", "20212131");
    IT_JSTR(r->json, "PaymentDetails[0].Status", "applied");
    IT_JSTR(r->json, "PaymentDetails[0].Applications[0].InvoiceIntegrationId", i31);
    IT_JSTR(r->json, "PaymentDetails[1].Amount", "500.00");
    IT_JSTR(r->json, "PaymentDetails[1].Status", "applied");
    IT_JSTR(r->json, "PaymentDetails[1].Applications[0].InvoiceIntegrationId", i32);
    /* the members sent as "" are stored as NULL and echoed as null */
    static const char *const blank[] = { "BankBatchItem", "ClientCode", "FinancialDocs" };
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++) {
            const char *path = it_fmt("PaymentDetails[%d].%s", i, blank[k]);
            IT_CHECK(it_jhas(r->json, path) && it_jstr(r->json, path) == NULL, "%s echoed as %s", path,
                     it_jstr(r->json, path) ? it_jstr(r->json, path) : "(absent)");
        }

    const char *iids[2] = { i31, i32 }, *amounts[2] = { "1000.00", "500.00" };
    for (int i = 0; i < 2; i++) {
        r = get_invoice(A, iids[i]);
        IT_STATUS(r, 200);
        IT_MESSAGE(r, OK_200);
        IT_JSTR(r->json, "PaidInFull", "true");
        IT_JSTR(r->json, "PaymentMade", amounts[i]);
        IT_JSTR(r->json, "InvoiceAmount", amounts[i]);
        IT_JSTR(r->json, "OpenBalance", "0.00");
        IT_JSTR(r->json, "LastPaymentMadeOn", "2021-03-31");
        IT_JSTR(r->json, "PaidInFullOn", "2021-03-31");
    }
}

/* ------------------------------------------------------------------ auth --- */

static const char *valid_body(const char *path)
{
    if (strstr(path, "test-post")) return "{\"TestValue\":\"x\"}";
    if (strstr(path, "create-client")) return J("{'ClientKey':'%s','Name':'n'}", it_uniq("AU"));
    return "{}";
}

static void test_auth_missing_headers(void)
{
    for (size_t i = 0; i < NROUTES; i++) {
        const char *b = strcmp(ROUTES[i].method, "POST") == 0 ? valid_body(ROUTES[i].path) : NULL;
        it_resp *r = it_call_ex(NULL, ROUTES[i].method, ROUTES[i].path, NULL, 0, b, b ? strlen(b) : 0);
        IT_CHECK(r->status == 401, "%s %s without auth: %ld %s", ROUTES[i].method, ROUTES[i].path,
                 r->status, r->body);
        IT_BODY(r, E401);
    }
    /* each header alone missing */
    const char *names[] = { "Auth-FactorID", "Auth-SystemKey", "Auth-APIKey" };
    for (int i = 0; i < 3; i++) {
        it_resp *r = it_post(it_cred_with(A, names[i], NULL), "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
        IT_CHECK(r->status == 401, "without %s: %ld %s", names[i], r->status, r->body);
        IT_BODY(r, E401);
        r = it_post(it_cred_with(A, names[i], ""), "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
        IT_CHECK(r->status == 401, "empty %s: %ld %s", names[i], r->status, r->body);
    }
}

static void test_auth_wrong_values(void)
{
    const char *key = it_cred_header(A, "Auth-APIKey");
    char *bad = it_fmt("%s", key);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
    const it_cred *wrong[] = {
        it_cred_with(A, "Auth-APIKey", bad),                                   /* wrong APIKey */
        it_cred_with(A, "Auth-APIKey", it_cred_header(B, "Auth-APIKey")),      /* b's secret, a's id */
        it_cred_with(A, "Auth-FactorID", it_cred_header(B, "Auth-FactorID")), /* b's factor */
        it_cred_with(A, "Auth-FactorID", "NOSUCHFACTOR"),
        it_cred_with(A, "Auth-SystemKey", "000000000000000000000000"),
        it_cred_with(A, "Auth-FactorID", it_fmt("%s0", it_cred_header(A, "Auth-FactorID"))),
        it_cred_with(A, "Auth-FactorID", it_fmt("%.*s", (int) strlen(it_cred_header(A, "Auth-FactorID")) - 1,
                                                it_cred_header(A, "Auth-FactorID"))),
        /* bytes that are not UTF-8: an unknown credential, not a database error */
        it_cred_with(A, "Auth-FactorID", it_fmt("%s\xE9", it_cred_header(A, "Auth-FactorID"))),
        it_cred_with(A, "Auth-SystemKey", "\xFF\xFE\xC3\x28"),
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        it_resp *r = it_post(wrong[i], "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
        IT_CHECK(r->status == 401, "wrong credential #%zu: %ld %s", i, r->status, r->body);
        IT_BODY(r, E401);
    }
    /* a refused create stores nothing */
    const char *ck = it_uniq("AUTHX");
    it_resp *r = it_post(wrong[0], "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'n'}", ck));
    IT_STATUS(r, 401);
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    IT_STATUS(r, 404);
    /* a's secret with a's factor works (the control) */
    r = it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
    IT_STATUS(r, 201);
}

static void test_auth_header_case(void)
{
    const it_cred *c = it_cred_rename(A, "Auth-FactorID", "Auth-FactorId");
    c = it_cred_rename(c, "Auth-APIKey", "Auth-ApiKey");
    it_resp *r = it_post(c, "/api_factor/test-post/", "{\"TestValue\":\"case\"}");
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "TestValue", "case");
    c = it_cred_rename(A, "Auth-FactorID", "auth-factorid");
    c = it_cred_rename(c, "Auth-SystemKey", "AUTH-SYSTEMKEY");
    c = it_cred_rename(c, "Auth-APIKey", "auth-apikey");
    r = it_get(c, "/api_factor/get-client/?clientkey=nothing-here");
    IT_STATUS(r, 404);
}

/* -------------------------------------------------------------- protocol --- */

static void test_unknown_path(void)
{
    it_resp *r = it_get(A, "/api_factor/nope/");
    IT_STATUS(r, 404);
    IT_BODY(r, E404);
    r = it_post(A, "/api_factor/post-payment/", "{}");
    IT_STATUS(r, 404);
    IT_BODY(r, E404);
    r = it_get(NULL, "/api_factor/get-everything/");
    IT_STATUS(r, 404);
    IT_BODY(r, E404);
    r = it_request("GET", it_fmt("%s/no/such/family", it_env("FL_TEST_HTTPS")), NULL, 0, NULL, 0);
    IT_STATUS(r, 404);
    IT_BODY(r, E404);

    /* an unknown path is the client's: its log line keeps 256 bytes of it, escapes bytes
     * that are not UTF-8, and stays one JSON document (a 6 kB path of %FF was 24 kB of raw
     * bytes, written in pieces that other workers' lines could split) */
    const char *junk = "/api_factor/";
    for (int i = 0; i < 2000; i++)
        junk = it_fmt("%s%s", junk, "%FF");
    r = it_get(A, junk);
    IT_STATUS(r, 404);
    const char *rid = it_header_get(r, "X-Request-Id");
    IT_CHECK(rid != NULL, "no X-Request-Id");
    if (rid == NULL)
        return;
    const char *line = "";
    for (int i = 0; i < 20 && *line == '\0'; i++) {
        line = it_run(it_fmt("grep -h '\"request_id\":\"%s\"' '%s/../log/posting.log' | head -n 1 | tr -d '\n'",
                             rid, it_env("FL_TEST_RUN")), NULL);
        if (*line == '\0')
            it_sleep(0.1);
    }
    json_object *j = json_tokener_parse(line);
    IT_CHECK(j != NULL, "the log line is not JSON: %.300s", line);
    const char *logged = j ? it_jstr(j, "route") : NULL;
    /* "/api_factor/" and 244 bytes 0xFF, each logged as \u00ff (read back as U+00FF, 2 bytes) */
    IT_CHECK(logged != NULL && strlen(logged) == 12 + 244 * 2 + 3 && strncmp(logged, "/api_factor/\xc3\xbf", 14) == 0
             && strcmp(logged + strlen(logged) - 3, "...") == 0,
             "route in the log line: %.120s (%zu bytes)", logged ? logged : "(none)", logged ? strlen(logged) : 0);
    IT_CHECK(strlen(line) < 2048, "log line of %zu bytes", strlen(line));
    json_object_put(j);
}

static void test_wrong_method(void)
{
    for (size_t i = 0; i < NROUTES; i++) {
        int post = strcmp(ROUTES[i].method, "POST") == 0;
        const char *other = post ? "GET" : "POST";
        it_resp *r = it_call_ex(A, other, ROUTES[i].path, NULL, 0, post ? NULL : "{}", post ? 0 : 2);
        IT_CHECK(r->status == 405, "%s %s: %ld %s", other, ROUTES[i].path, r->status, r->body);
        IT_BODY(r, E405);
        IT_STREQ(it_header_get(r, "Allow"), ROUTES[i].method);
    }
    it_resp *r = it_call_ex(A, "PUT", "/api_factor/post-payments/", NULL, 0, "{}", 2);
    IT_STATUS(r, 405);
    IT_STREQ(it_header_get(r, "Allow"), "POST");
    r = it_call_ex(A, "DELETE", "/api_factor/get-invoice/?invoiceintegrationid=x", NULL, 0, NULL, 0);
    IT_STATUS(r, 405);
    IT_STREQ(it_header_get(r, "Allow"), "GET");
}

static void test_malformed_json(void)
{
    const char *bad[] = { "{\"ClientKey\":", "not json", "{\"a\":1,}", "{'single':'quotes'}", "" };
    for (size_t i = 0; i < NROUTES; i++) {
        if (strcmp(ROUTES[i].method, "POST") != 0)
            continue;
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            it_resp *r = it_post(A, ROUTES[i].path, bad[k]);
            IT_CHECK(r->status == 400, "%s with <%s>: %ld %s", ROUTES[i].path, bad[k], r->status, r->body);
            IT_MESSAGE(r, "400 Bad Request Malformed JSON");
        }
    }
    /* strict: a trailing comma is refused and nothing is stored */
    const char *ck = it_uniq("MAL");
    it_resp *r = it_post(A, "/api_factor/create-client/", it_fmt("{\"ClientKey\":\"%s\",\"Name\":\"n\",}", ck));
    IT_STATUS(r, 400);
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    IT_STATUS(r, 404);
    /* a NUL character, escaped, in a value or a key: malformed (it would end the text
     * there: "12.00\u0000junk" read as 12.00), and nothing is stored */
    const char *nref = it_uniq("NUL");
    const char *nul[] = {
        it_fmt("{\"BatchReference\":\"%s\",\"BatchTotal\":\"12.00\",\"PaymentDetails\":[{\"PaymentDate\":"
               "\"2024-01-05\",\"PaymentType\":\"ACH\",\"Amount\":\"12.00\\u0000junk\"}]}", nref),
        it_fmt("{\"BatchReference\":\"%s\",\"BatchTotal\":\"12.00\",\"PaymentDetails\":[{\"PaymentDate\":"
               "\"2024-01-05\",\"PaymentType\":\"ACH\",\"Amount\\u0000x\":\"12.00\"}]}", nref),
    };
    for (size_t k = 0; k < 2; k++) {
        r = it_post(A, "/api_factor/post-payments/", nul[k]);
        IT_STATUS(r, 400);
        IT_MESSAGE(r, "400 Bad Request Malformed JSON");
    }
    IT_STREQ(IT_Q("SELECT count(*)::text FROM payment_batches WHERE batch_reference = $1", nref), "0");
    /* a number json-c cannot hold, in a text field: 400, not stored as its limit */
    r = it_post(A, "/api_factor/post-payments/",
                it_fmt("{\"BatchReference\":\"%s\",\"BatchTotal\":\"12.00\",\"AccountNumber\":\"1\","
                       "\"PaymentDetails\":[{\"PaymentDate\":\"2024-01-05\",\"PaymentType\":\"ACH\",\"Amount\":\"12.00\","
                       "\"TransactionNumber\":123456789012345678901234}]}", nref));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid PaymentDetails[0].TransactionNumber");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM payment_batches WHERE batch_reference = $1", nref), "0");
    /* a document past the core's bounds on values (180 kB of [{},{},...]: 60,000 objects, which
     * json-c would hold in ~45 MB; 10 MB of them took 2.6 GB) is 413 before it is parsed */
    r = it_post(A, "/api_factor/post-payments/", it_empty_objects(60000));
    IT_STATUS(r, 413);
    IT_MESSAGE(r, "413 Payload Too Large JSON document with more than 400000 values or 50000 objects and arrays");
    /* JSON that is not an object */
    r = it_post(A, "/api_factor/create-client/", "[{\"ClientKey\":\"x\",\"Name\":\"y\"}]");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid body");
    r = it_post(A, "/api_factor/post-payments/", "42");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid body");
}

/* A GET's query: a value over 100 characters, a bad % escape, bytes that are not UTF-8
 * (docs/posting.md, "Other 400 bodies"); the credentials are checked first. */
static void test_bad_query(void)
{
    char longkey[102];
    memset(longkey, 'k', 101);
    longkey[101] = '\0';
    it_resp *r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", longkey));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid clientkey");
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", longkey + 1));
    IT_STATUS(r, 404);
    /* characters, not bytes: 100 "é" (200 bytes) is a key to look up, 101 is too long */
    char accents[101 * 6 + 1] = "";
    for (int i = 0; i < 100; i++)
        strcat(accents, "%C3%A9");
    IT_STATUS(it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", accents)), 404);
    strcat(accents, "%C3%A9");
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", accents));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid clientkey");
    static const char *const bad[] = { "clientkey=%zz", "clientkey=%", "clientkey=%C3%28" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = it_get(A, it_fmt("/api_factor/get-client/?%s", bad[i]));
        IT_CHECK(r->status == 400, "?%s: %ld %s", bad[i], r->status, r->body);
        IT_MESSAGE(r, "400 Bad Request malformed query string");
        r = it_get(NULL, it_fmt("/api_factor/get-client/?%s", bad[i]));
        IT_CHECK(r->status == 401, "?%s without credentials: %ld %s", bad[i], r->status, r->body);
    }
}

static void test_text_plain_accepted(void)
{
    const char *ck = it_uniq("TXT");
    it_header ct = { "Content-Type", "text/plain" };
    const char *body = J("{'ClientKey':'%s','Name':'Plain Text Inc'}", ck);
    it_resp *r = it_call_ex(A, "POST", "/api_factor/create-client/", &ct, 1, body, strlen(body));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "ClientKey", ck);
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "Name", "Plain Text Inc");
    it_header ct2 = { "Content-Type", "text/plain; charset=utf-8" };
    body = "{\"TestValue\":\"plain\"}";
    r = it_call_ex(A, "POST", "/api_factor/test-post/", &ct2, 1, body, strlen(body));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "TestValue", "plain");
}

static char *big_body(size_t size)
{
    char *b = it_alloc(size);
    const char *head = "{\"TestValue\":\"";
    memcpy(b, head, strlen(head));
    memset(b + strlen(head), 'a', size - strlen(head) - 2);
    memcpy(b + size - 2, "\"}", 2);
    return b;
}

/* A worker that answers before it has read the body (refused credentials, unknown path)
 * leaves input unread: it must close with libfcgi's lingering close, or the connection could
 * be reset under the answer.  A request read to its end is closed at once (serve.c): the next
 * requests, big and small, are answered whole. */
static void test_answer_before_body(void)
{
    const char *key = it_cred_header(A, "Auth-APIKey");
    char *bad = it_fmt("%s", key);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
    const it_cred *wrong = it_cred_with(A, "Auth-APIKey", bad);
    size_t size = 4 * 1024 * 1024;
    char *b = big_body(size);
    for (int i = 0; i < 10; i++) {
        it_resp *r = it_call_ex(wrong, "POST", "/api_factor/post-payments/", NULL, 0, b, size);
        IT_CHECK(r->status == 401, "round %d: refused credential with 4 MB unread: %ld %s", i, r->status, r->body);
        IT_BODY(r, E401);
        r = it_call_ex(A, "POST", "/api_factor/no-such-endpoint/", NULL, 0, b, size);
        IT_CHECK(r->status == 404, "round %d: unknown path with 4 MB unread: %ld %s", i, r->status, r->body);
        r = it_call_ex(A, "POST", "/api_factor/test-post/", NULL, 0, b, size);
        IT_CHECK(r->status == 400, "round %d: 4 MB read whole: %ld %s", i, r->status, r->body);
        IT_MESSAGE(r, "400 Bad Request Invalid TestValue");
        r = it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
        IT_CHECK(r->status == 201, "round %d: a small request after them: %ld %s", i, r->status, r->body);
    }
}

static void test_payload_too_large(void)
{
    size_t over = 10 * 1024 * 1024 + 4096;
    char *b = big_body(over);
    it_resp *r = it_call_ex(A, "POST", "/api_factor/post-payments/", NULL, 0, b, over);
    IT_STATUS(r, 413);
    IT_BODY(r, E413);
    IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "413 carries X-Request-Id");
    /* under the cap the worker reads it all and judges the content */
    size_t under = 9 * 1024 * 1024;
    b = big_body(under);
    r = it_call_ex(A, "POST", "/api_factor/test-post/", NULL, 0, b, under);
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid TestValue");
}

/* req sent whole to the stack's plain-HTTP port; the answer (up to 4 kB) until nginx closes. */
static const char *raw_http(const char *req)
{
    int port = atoi(strrchr(it_env("FL_TEST_HTTP"), ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char out[4096];
    size_t got = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0
        && send(fd, req, strlen(req), 0) == (ssize_t) strlen(req)) {
        ssize_t k;
        while (got < sizeof(out) - 1 && (k = recv(fd, out + got, sizeof(out) - 1 - got, 0)) > 0)
            got += (size_t) k;
    }
    if (fd >= 0)
        close(fd);
    out[got] = '\0';
    return it_fmt("%s", out);
}

/* nginx's own refusals, before any family's location: JSON with the request id, not nginx's
 * HTML page (a request line over 8 kB, a header over 8 kB) */
static void test_nginx_refusals(void)
{
    char *longq = it_alloc(9001);
    memset(longq, 'q', 9000);
    longq[9000] = '\0';
    it_resp *r = it_request("GET", it_fmt("%s/posting/api_factor/get-client/?clientkey=%s", it_env("FL_TEST_HTTPS"),
                                          longq), NULL, 0, NULL, 0);
    IT_STATUS(r, 414);
    IT_BODY(r, "{\"message\":\"414 Request-URI Too Large\"}");
    const char *ct = it_header_get(r, "Content-Type");
    IT_CHECK(ct && strstr(ct, "application/json") != NULL, "414 Content-Type %s", ct ? ct : "(none)");
    it_header big = { "X-Big", longq };
    r = it_request("GET", it_fmt("%s/leads/v1/deal_status/x", it_env("FL_TEST_HTTPS")), &big, 1, NULL, 0);
    IT_STATUS(r, 400);
    IT_BODY(r, "{\"message\":\"400 Bad Request\"}");
    /* a 400 found inside a family's location, while nginx reads the body (a chunk size that
     * is not hexadecimal): JSON too (until the twenty-third session nginx's HTML page, the
     * family locations having error pages of their own). Raw, as no client library sends it. */
    static const char *const paths[] = { "/posting/api_factor/test-post/", "/leads/v1/lead" };
    for (size_t i = 0; i < 2; i++) {
        const char *out = raw_http(it_fmt("POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                          "Connection: close\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", paths[i]));
        const char *body = strstr(out, "\r\n\r\n");
        IT_CHECK(strncmp(out, "HTTP/1.1 400 ", 13) == 0 && strstr(out, "Content-Type: application/json") != NULL
                     && strstr(out, "X-Request-Id: ") != NULL && body != NULL
                     && strcmp(body + 4, "{\"message\":\"400 Bad Request\"}") == 0,
                 "a malformed chunked body to %s: <%.400s>", paths[i], out);
    }
    /* what else nginx refuses itself: TRACE (405), a Transfer-Encoding other than chunked
     * (501), an HTTP version it does not speak (505): JSON too (until the twenty-fourth session
     * nginx's HTML pages) */
    static const struct { const char *req, *status, *body; } more[] = {
        { "TRACE /posting/api_factor/test-post/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          "HTTP/1.1 405 ", "{\"message\":\"405 Method Not Allowed\"}" },
        { "POST /leads/v1/lead HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nabc",
          "HTTP/1.1 501 ", "{\"message\":\"501 Not Implemented\"}" },
        { "GET /posting/api_factor/test-post/ HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n",
          "HTTP/1.1 505 ", "{\"message\":\"505 HTTP Version Not Supported\"}" },
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        const char *out = raw_http(more[i].req), *body = strstr(out, "\r\n\r\n");
        IT_CHECK(strncmp(out, more[i].status, strlen(more[i].status)) == 0
                     && strstr(out, "Content-Type: application/json") != NULL && strstr(out, "X-Request-Id: ") != NULL
                     && body != NULL && strcmp(body + 4, more[i].body) == 0,
                 "%.40s...: <%.400s>", more[i].req, out);
    }
}

static void test_request_id_everywhere(void)
{
    it_resp *rs[] = {
        it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"x\"}"),
        it_post(A, "/api_factor/test-post/", "{}"),
        it_post(NULL, "/api_factor/test-post/", "{\"TestValue\":\"x\"}"),
        it_get(A, "/api_factor/nope/"),
        it_get(A, "/api_factor/test-post/"),
        it_get(A, "/api_factor/get-client/?clientkey=none"),
        it_request("GET", it_fmt("%s/elsewhere", it_env("FL_TEST_HTTPS")), NULL, 0, NULL, 0),
    };
    long want[] = { 201, 400, 401, 404, 405, 404, 404 };
    for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
        IT_CHECK(rs[i]->status == want[i], "request %zu: %ld, expected %ld", i, rs[i]->status, want[i]);
        const char *id = it_header_get(rs[i], "X-Request-Id");
        IT_CHECK(id != NULL && strlen(id) >= 16, "request %zu has an X-Request-Id (%s)", i, id ? id : "none");
        for (size_t k = 0; id && k < i; k++) {
            const char *other = it_header_get(rs[k], "X-Request-Id");
            IT_CHECK(other == NULL || strcmp(id, other) != 0, "request ids %zu and %zu differ", k, i);
        }
    }
}

/* ------------------------------------------------------------- test-post --- */

static void test_test_post(void)
{
    it_resp *r = it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"hello\",\"TestLabel\":\"greeting\"}");
    IT_STATUS(r, 201);
    IT_MESSAGE(r, OK_201);
    IT_JSTR(r->json, "TestValue", "hello");
    IT_JSTR(r->json, "TestLabel", "greeting");
    r = it_post(A, "/api_factor/test-post/", "{\"TestLabel\":\"no value\"}");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing TestValue");
    r = it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"\"}");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing TestValue");
    char *longv = it_alloc(300);
    memset(longv, 'v', 256);
    r = it_post(A, "/api_factor/test-post/", J("{'TestValue':'%s'}", longv));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid TestValue");
}

/* --------------------------------------------------------------- clients --- */

static void test_client_create_get(void)
{
    const char *ck = it_uniq("CLI");
    it_resp *r = it_post(A, "/api_factor/create-client/",
        J("{'ClientKey':'%s','Name':'Acme Hauling LLC','CompCode':'acme1','Address1':'1 Main St',"
          "'City':'Austin','State':'tx','ZipCode':'73301','Country':'usa','Phone':'555-0100',"
          "'Email':'ops@acme.example','UccDate':'03-31-21','UccSignedDate':'2021-04-01','Type':1,"
          "'Industry':'5','AltName':'Acme DBA','EdiID':'E1','FedTaxNum':'12-3456789'}", ck));
    IT_STATUS(r, 201);
    IT_MESSAGE(r, OK_201);
    IT_JSTR(r->json, "ClientKey", ck);
    IT_JSTR(r->json, "Name", "Acme Hauling LLC");
    IT_JSTR(r->json, "CompCode", "ACME1");
    IT_JSTR(r->json, "State", "TX");
    IT_JSTR(r->json, "Country", "USA");
    IT_JSTR(r->json, "UccDate", "2021-03-31");
    IT_JSTR(r->json, "UccSignedDate", "2021-04-01");
    IT_JSTR(r->json, "Type", "1");
    IT_JSTR(r->json, "Industry", "5");
    IT_JSTR(r->json, "AltName", "Acme DBA");
    IT_JSTR(r->json, "FedTaxNum", "12-3456789");
    IT_CHECK(it_jstr(r->json, "UUID") && strlen(it_jstr(r->json, "UUID")) == 36, "UUID: %s", r->body);
    const char *uuid = it_jstr(r->json, "UUID");
    IT_CHECK(!it_jhas(r->json, "FedTaxNumLast4"), "the answer carries FedTaxNumLast4: %s", r->body);
    /* FedTaxNum is stored sealed (key id, then the ciphertext), its last four in clear; the
     * event carries the last four only (docs/posting.md) */
    IT_STREQ(IT_Q("SELECT (fed_tax_num_enc ~ '^v1:') || '|' || (strpos(fed_tax_num_enc, '3456789') = 0) || '|' "
                  "|| (strpos(fed_tax_num_enc, '12-34') = 0) || '|' || fed_tax_num_last4 "
                  "FROM clients WHERE client_key = $1", ck), "true|true|true|6789");
    IT_STREQ(IT_Q("SELECT (payload ? 'FedTaxNum') || '|' || (payload->>'FedTaxNumLast4') || '|' "
                  "|| (strpos(payload::text, '3456789') = 0) FROM events WHERE type = 'client.upserted' "
                  "AND payload->>'ClientKey' = $1 ORDER BY id DESC LIMIT 1", ck), "false|6789|true");
    /* four characters, not bytes: a value ending in two-byte characters */
    const char *ck8 = it_uniq("CU");
    IT_STATUS(it_post(A, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'Utf','FedTaxNum':'ABCD\u00e9\u00e9\u00e9\u00e9'}", ck8)),
              201);
    IT_STREQ(IT_Q("SELECT fed_tax_num_last4 FROM clients WHERE client_key = $1", ck8), "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    /* a value under eight characters (seven here, in eleven bytes) keeps no last four: they
     * would be most of it; a value replaced by a short one loses the old last four */
    IT_STATUS(it_post(A, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'Utf','FedTaxNum':'ABC\u00e9\u00e9\u00e9\u00e9'}", ck8)),
              201);
    IT_STREQ(IT_Q("SELECT coalesce(fed_tax_num_last4, 'null') || '|' || (fed_tax_num_enc ~ '^v1:') "
                  "FROM clients WHERE client_key = $1", ck8), "null|true");
    const char *ck4 = it_uniq("CS");
    r = it_post(A, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'Short','FedTaxNum':'Q9Zq'}", ck4));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "FedTaxNum", "Q9Zq");
    IT_JSTR(it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck4))->json, "FedTaxNum", "Q9Zq");
    IT_STREQ(IT_Q("SELECT coalesce(fed_tax_num_last4, 'null') || '|' || (strpos(fed_tax_num_enc, 'Q9Zq') = 0) "
                  "FROM clients WHERE client_key = $1", ck4), "null|true");
    IT_STREQ(IT_Q("SELECT jsonb_typeof(payload->'FedTaxNumLast4') || '|' || (strpos(payload::text, 'Q9Zq') = 0) "
                  "FROM events WHERE type = 'client.upserted' AND payload->>'ClientKey' = $1 "
                  "ORDER BY id DESC LIMIT 1", ck4), "null|true");

    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    IT_STATUS(r, 200);
    IT_MESSAGE(r, OK_200);
    IT_JSTR(r->json, "UUID", uuid);
    IT_JSTR(r->json, "Email", "ops@acme.example");
    IT_JSTR(r->json, "City", "Austin");
    IT_JSTR(r->json, "FedTaxNum", "12-3456789");
    const char *extra[] = { "DunsNum", "MCNumber", "DOTNumber", "CreditLimit" };
    for (int i = 0; i < 4; i++)
        IT_CHECK(it_jhas(r->json, extra[i]), "get-client carries %s", extra[i]);
    /* the query parameter name is case-insensitive */
    r = it_get(A, it_fmt("/api_factor/get-client/?ClientKey=%s", ck));
    IT_STATUS(r, 200);

    /* upsert on ClientKey: present fields replace, absent fields stay */
    r = it_post(A, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'Acme Renamed','City':'Dallas'}", ck));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "UUID", uuid);
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    IT_JSTR(r->json, "Name", "Acme Renamed");
    IT_JSTR(r->json, "City", "Dallas");
    IT_JSTR(r->json, "Email", "ops@acme.example");
    IT_JSTR(r->json, "FedTaxNum", "12-3456789");
    /* a field sent empty or null clears it (a field left out stays) */
    r = it_post(A, "/api_factor/create-client/",
                J("{'ClientKey':'%s','Name':'Acme Renamed','Email':'','FedTaxNum':null,'AltName':'  ','Type':null}", ck));
    IT_STATUS(r, 201);
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    static const char *const cleared[] = { "Email", "FedTaxNum", "AltName", "Type" };
    for (int i = 0; i < 4; i++)
        IT_CHECK(it_jhas(r->json, cleared[i]) && it_jstr(r->json, cleared[i]) == NULL, "%s not cleared: %s",
                 cleared[i], r->body);
    IT_JSTR(r->json, "City", "Dallas");
    IT_JSTR(r->json, "Industry", "5");
    IT_STREQ(IT_Q("SELECT coalesce(fed_tax_num_enc, 'null') || '|' || coalesce(fed_tax_num_last4, 'null') "
                  "FROM clients WHERE client_key = $1", ck), "null|null");
}

static void test_client_errors(void)
{
    struct { const char *body, *msg; } cases[] = {
        { "{'Name':'No Key'}", "400 Bad Request Missing ClientKey" },
        { "{'ClientKey':'%s'}", "400 Bad Request Missing Name" },
        { "{'ClientKey':'%s','Name':''}", "400 Bad Request Missing Name" },
        { "{'ClientKey':'%s','Name':'n','Email':'not-an-email'}", "400 Bad Request Invalid Email" },
        { "{'ClientKey':'%s','Name':'n','Industry':6}", "400 Bad Request Invalid Industry" },
        { "{'ClientKey':'%s','Name':'n','Type':2}", "400 Bad Request Invalid Type" },
        { "{'ClientKey':'%s','Name':'n','UccDate':'13-45-21'}", "400 Bad Request Invalid UccDate" },
        { "{'ClientKey':'%s','Name':'n','State':'Texas'}", "400 Bad Request Invalid State" },
        { "{'ClientKey':'%s','Name':{'x':1}}", "400 Bad Request Invalid Name" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *ck = it_uniq("CE");
        it_resp *r = it_post(A, "/api_factor/create-client/", J(cases[i].body, ck));
        IT_CHECK(r->status == 400, "case %zu: %ld %s", i, r->status, r->body);
        IT_MESSAGE(r, cases[i].msg);
        r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
        IT_CHECK(r->status == 404, "case %zu stored nothing: %ld %s", i, r->status, r->body);
    }
    it_resp *r = it_get(A, "/api_factor/get-client/");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing clientkey");
    r = it_get(A, "/api_factor/get-client/?clientkey=");
    IT_STATUS(r, 400);
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", it_uniq("NOPE")));
    IT_STATUS(r, 404);
    IT_PREFIX(it_jstr(r->json, "message"), "404 Not Found");
}

/* --------------------------------------------------------------- debtors --- */

static void test_debtor_create_get(void)
{
    const char *c1 = it_uniq("DC"), *c2 = it_uniq("DC"), *dk = it_uniq("DD");
    mk_client(A, c1);
    mk_client(A, c2);
    it_resp *r = it_post(A, "/api_factor/create-debtor/",
        J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Big Box Stores','Address1':'9 Elm',"
          "'City':'Reno','State':'nv','Zipcode':'89501','Country':'usa','Phone':'555-0199',"
          "'Email':'ap@bigbox.example','McNumber':'MC123','DOTNumber':'DOT9','Notes':'net 30'}", c1, dk));
    IT_STATUS(r, 201);
    IT_MESSAGE(r, OK_201);
    IT_JSTR(r->json, "ClientKey", c1);
    IT_JSTR(r->json, "DebtorKey", dk);
    IT_JSTR(r->json, "Name", "Big Box Stores");
    IT_JSTR(r->json, "State", "NV");
    IT_JSTR(r->json, "ZipCode", "89501");
    IT_JSTR(r->json, "Country", "USA");
    IT_JSTR(r->json, "MCNumber", "MC123");
    IT_JSTR(r->json, "Notes", "net 30");
    const char *comp = it_jstr(r->json, "CompCode");
    IT_CHECK(comp != NULL && *comp, "a CompCode is generated: %s", r->body);

    r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", c1, dk));
    IT_STATUS(r, 200);
    IT_MESSAGE(r, OK_200);
    IT_JSTR(r->json, "ClientKey", c1);
    IT_JSTR(r->json, "DebtorKey", dk);
    IT_JSTR(r->json, "Email", "ap@bigbox.example");
    IT_JSTR(r->json, "BuyStatus", "false");
    IT_CHECK(it_jhas(r->json, "CreditLimit"), "CreditLimit present");

    r = it_get(A, it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", dk));
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "DebtorKey", dk);
    IT_JSTR(r->json, "Name", "Big Box Stores");
    IT_JSTR(r->json, "ClientKey", NULL);

    /* the same master linked to a second client (sub-debtor); the first link stays */
    r = it_post(A, "/api_factor/create-debtor/", J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Big Box Stores'}", c2, dk));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "ClientKey", c2);
    r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", c2, dk));
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "City", "Reno");
    r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", c1, dk));
    IT_STATUS(r, 200);
    /* fields sent empty or null are cleared, on the master and on the link; CompCode stays */
    r = it_post(A, "/api_factor/create-debtor/",
                J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Big Box Stores','Email':null,'Notes':'','McNumber':' '}",
                  c1, dk));
    IT_STATUS(r, 201);
    r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", c1, dk));
    IT_JSTR(r->json, "Email", NULL);
    IT_JSTR(r->json, "Notes", NULL);
    IT_JSTR(r->json, "MCNumber", NULL);
    IT_JSTR(r->json, "City", "Reno");
    IT_JSTR(r->json, "CompCode", comp);
    /* CompCode sent null or "" is kept (docs/sql.md); the other spellings ZipCode and MCNumber */
    r = it_post(A, "/api_factor/create-debtor/",
                J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Big Box Stores','CompCode':null,'ZipCode':'89502',"
                  "'MCNumber':'MC7'}", c1, dk));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "CompCode", comp);
    IT_JSTR(r->json, "ZipCode", "89502");
    IT_JSTR(r->json, "MCNumber", "MC7");
    r = it_post(A, "/api_factor/create-debtor/",
                J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Big Box Stores','CompCode':''}", c1, dk));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "CompCode", comp);
    r = it_get(A, it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", dk));
    IT_JSTR(r->json, "ZipCode", "89502");

    /* a requested CompCode already taken at this client is replaced by a generated one */
    const char *d2 = it_uniq("DD"), *d3 = it_uniq("DD");
    r = it_post(A, "/api_factor/create-debtor/", J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Two','CompCode':'same1'}", c1, d2));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "CompCode", "SAME1");
    r = it_post(A, "/api_factor/create-debtor/", J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Three','CompCode':'SAME1'}", c1, d3));
    IT_STATUS(r, 201);
    const char *c3 = it_jstr(r->json, "CompCode");
    IT_CHECK(c3 != NULL && *c3 && strcmp(c3, "SAME1") != 0, "taken CompCode regenerated: %s", r->body);

    /* each upsert wrote a debtor.upserted event in its transaction: the echo, and the relation */
    IT_STREQ(IT_Q("SELECT string_agg((e.payload->>'ClientKey') || ' ' || (e.payload->>'Relation') || ' ' || "
                  "coalesce(e.payload->>'Email', '-'), ',' ORDER BY e.id) FROM events e "
                  "JOIN tenants t ON t.id = e.tenant_id WHERE t.name = 'itest-a' AND e.family = 'posting' "
                  "AND e.type = 'debtor.upserted' AND e.payload->>'DebtorKey' = $1", dk),
             it_fmt("%s debtor ap@bigbox.example,%s debtor ap@bigbox.example,%s debtor -,%s debtor -,%s debtor -",
                    c1, c2, c1, c1, c1));
    /* a refused one wrote none */
    const char *d4 = it_uniq("DD");
    IT_STATUS(it_post(A, "/api_factor/create-debtor/", J("{'ClientKey':'%s','DebtorKey':'%s','Name':'n','Email':'@'}", c1, d4)),
              400);
    IT_STREQ(IT_Q("SELECT count(*)::text FROM events WHERE type = 'debtor.upserted' AND payload->>'DebtorKey' = $1", d4),
             "0");
}

static void test_debtor_errors(void)
{
    const char *ck = it_uniq("DE");
    mk_client(A, ck);
    struct { const char *body, *msg; } cases[] = {
        { "{'DebtorKey':'%2$s','Name':'n'}", "400 Bad Request Missing ClientKey" },
        { "{'ClientKey':'%1$s','Name':'n'}", "400 Bad Request Missing DebtorKey" },
        { "{'ClientKey':'%1$s','DebtorKey':'%2$s'}", "400 Bad Request Missing Name" },
        { "{'ClientKey':'%1$s','DebtorKey':'%2$s','Name':'n','Country':'GER'}", "400 Bad Request Invalid Country" },
        { "{'ClientKey':'%1$s','DebtorKey':'%2$s','Name':'n','Email':'@x'}", "400 Bad Request Invalid Email" },
        { "{'ClientKey':'NOCLIENT%2$s','DebtorKey':'%2$s','Name':'n'}", "400 Bad Request Invalid ClientKey" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *dk = it_uniq("DX");
        /* every positional argument referenced (%n$.0s prints nothing) */
        it_resp *r = it_post(A, "/api_factor/create-debtor/",
                             J(it_fmt("%s%s", "%1$.0s%2$.0s", cases[i].body), ck, dk));
        IT_CHECK(r->status == 400, "case %zu: %ld %s", i, r->status, r->body);
        IT_MESSAGE(r, cases[i].msg);
        r = it_get(A, it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", dk));
        IT_CHECK(r->status == 404, "case %zu stored no debtor: %ld %s", i, r->status, r->body);
    }
    const char *dk = it_uniq("DX");
    mk_debtor(A, ck, dk, "Known");
    it_resp *r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", ck, it_uniq("NO")));
    IT_STATUS(r, 404);
    IT_MESSAGE(r, "404 Not Found Debtor not found");
    /* an unknown client is named as such (until the twenty-third session "Debtor not found") */
    r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", it_uniq("NO"), dk));
    IT_STATUS(r, 404);
    IT_MESSAGE(r, "404 Not Found Client not found");
    r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s", ck));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing debtorkey");
    r = it_get(A, it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", it_uniq("NO")));
    IT_STATUS(r, 404);
    IT_PREFIX(it_jstr(r->json, "message"), "404 Not Found");
    r = it_get(A, "/api_factor/get-debtor-master/");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing debtorkey");
}

/* --------------------------------------------------------------- vendors --- */

static void test_vendor(void)
{
    const char *ck = it_uniq("VC"), *vk = it_uniq("VV");
    mk_client(A, ck);
    it_resp *r = it_post(A, "/api_factor/create-vendor/",
                         J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Carrier Co','Country':'CAN','McNumber':'MC77'}", ck, vk));
    IT_STATUS(r, 201);
    IT_MESSAGE(r, OK_201);
    IT_JSTR(r->json, "ClientKey", ck);
    IT_JSTR(r->json, "DebtorKey", vk);
    IT_JSTR(r->json, "Name", "Carrier Co");
    IT_JSTR(r->json, "Country", "CAN");
    IT_JSTR(r->json, "MCNumber", "MC77");

    r = it_post(A, "/api_factor/create-vendor/", J("{'ClientKey':'%s','Name':'x'}", ck));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing DebtorKey");
    const char *vk2 = it_uniq("VV");
    r = it_post(A, "/api_factor/create-vendor/", J("{'ClientKey':'%s','DebtorKey':'%s','Name':'x'}", it_uniq("NOCL"), vk2));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid ClientKey");
    r = it_get(A, it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", vk2));
    IT_STATUS(r, 404);

    /* a vendor is not a debtor of the client: a standard schedule cannot bill it */
    const char *sb = it_uniq("SV");
    r = sched(A, ck, sb, "10.00", inv(vk, it_uniq("N"), "10.00", it_uniq("IID")));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, it_fmt("400 Bad Request Invalid DebtorKey %s", vk));

    /* one master record per DebtorKey (docs/posting.md): a debtor of another client made a
     * vendor here with a new name and address renames it for both clients */
    const char *ck2 = it_uniq("VC"), *dk = it_uniq("VD");
    mk_client(A, ck2);
    mk_debtor(A, ck2, dk, "Shared Freight");
    r = it_post(A, "/api_factor/create-vendor/",
                J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Shared Freight LLC','City':'Tulsa'}", ck, dk));
    IT_STATUS(r, 201);
    r = it_get(A, it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", ck2, dk));
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "Name", "Shared Freight LLC");
    IT_JSTR(r->json, "City", "Tulsa");
    r = it_get(A, it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", dk));
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "Name", "Shared Freight LLC");
    /* still a debtor of the first client (a schedule bills it), a vendor of this one */
    IT_STATUS(sched(A, ck2, it_uniq("SV"), "10.00", inv(dk, it_uniq("N"), "10.00", it_uniq("IID"))), 201);
    r = sched(A, ck, it_uniq("SV"), "10.00", inv(dk, it_uniq("N"), "10.00", it_uniq("IID")));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, it_fmt("400 Bad Request Invalid DebtorKey %s", dk));
}

/* ------------------------------------------------------------- schedules --- */

static void test_sched_create_get(void)
{
    const char *ck = it_uniq("SC"), *dk = it_uniq("SD"), *sb = it_uniq("SB");
    const char *i1 = it_uniq("IID"), *i2 = it_uniq("IID"), *n1 = it_uniq("N"), *n2 = it_uniq("N");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Sched Debtor");
    const char *body = J(
        "{'ClientKey':'%s','Amount':1234.5,'IntegrationBatchId':'%s','Label':'Week 12','Notes':'rush',"
        "'PaymentMethod':'w','InvoiceArray':["
        "{'DebtorKey':'%s','InvoiceNumber':'%s','InvoiceAr':'1000.00','InvoiceIntegrationId':'%s',"
        "'InvoiceDate':'03-01-21','DueDate':'03/31/2021','RefNum':'BOL-1','DocBase64':'aGVsbG8='},"
        "{'DebtorKey':'%s','InvoiceNumber':'%s','InvoiceAr':234.5,'InvoiceIntegrationId':'%s'}]}",
        ck, sb, dk, n1, i1, dk, n2, i2);
    it_resp *r = it_post(A, "/api_factor/create-sched/", body);
    IT_STATUS(r, 201);
    IT_MESSAGE(r, OK_201);
    IT_JSTR(r->json, "IntegrationBatchId", sb);
    IT_JSTR(r->json, "ClientKey", ck);
    IT_JSTR(r->json, "Amount", "1234.50");
    IT_JSTR(r->json, "Label", "Week 12");
    IT_JSTR(r->json, "PaymentMethod", "W");
    IT_CHECK(it_jlen(r->json, "InvoiceArray") == 2, "two invoices: %s", r->body);
    IT_JSTR(r->json, "InvoiceArray[0].InvoiceIntegrationId", i1);
    IT_JSTR(r->json, "InvoiceArray[0].InvoiceNumber", n1);
    IT_JSTR(r->json, "InvoiceArray[0].DebtorKey", dk);
    IT_JSTR(r->json, "InvoiceArray[0].ClientKey", ck);
    IT_JSTR(r->json, "InvoiceArray[0].InvoiceAmount", "1000.00");
    IT_JSTR(r->json, "InvoiceArray[0].InvoiceDate", "2021-03-01");
    IT_JSTR(r->json, "InvoiceArray[0].InvoiceDueDate", "2021-03-31");
    IT_JSTR(r->json, "InvoiceArray[0].RefNumber", "BOL-1");
    IT_JSTR(r->json, "InvoiceArray[0].InvoiceStatus", "P");
    IT_JSTR(r->json, "InvoiceArray[0].DocBase64", "8");      /* the base64 text's length, as the vendor echoes it */
    IT_JSTR(r->json, "InvoiceArray[0].DocLength", "5");      /* and the document's bytes */
    IT_CHECK(it_jhas(r->json, "InvoiceArray[1].DocBase64") && it_jstr(r->json, "InvoiceArray[1].DocBase64") == NULL,
             "no document: DocBase64 null: %s", r->body);
    IT_JSTR(r->json, "InvoiceArray[1].InvoiceAmount", "234.50");
    IT_CHECK(it_jstr(r->json, "InvoiceArray[1].InvoiceDate") != NULL, "InvoiceDate defaults to today");
    const char *keys[] = { "InvoicePurchaseDate", "InvoiceFundDate", "EscrowReserveAmount" };
    for (int i = 0; i < 3; i++)
        IT_CHECK(it_jhas(r->json, it_fmt("InvoiceArray[0].%s", keys[i])), "invoice carries %s", keys[i]);

    /* get-sched: the same document */
    it_resp *g = it_get(A, it_fmt("/api_factor/get-sched/?integrationbatchid=%s", sb));
    IT_STATUS(g, 200);
    IT_MESSAGE(g, OK_200);
    IT_CHECK(json_object_equal(it_jwithout(r->json, "message", NULL), it_jwithout(g->json, "message", NULL)),
             "get-sched equals the create echo:\n%s\n%s", r->body, g->body);

    /* the same body again replays the first answer byte for byte and stores nothing */
    it_resp *again = it_post(A, "/api_factor/create-sched/", body);
    IT_STATUS(again, 201);
    IT_CHECK(again->body_len == r->body_len && memcmp(again->body, r->body, r->body_len) == 0,
             "replay is byte-identical:\n%s\n%s", r->body, again->body);

    /* the same IntegrationBatchId with another body: 409, the stored schedule unchanged */
    const char *i3 = it_uniq("IID");
    it_resp *dup = sched(A, ck, sb, "50.00", inv(dk, it_uniq("N"), "50.00", i3));
    IT_STATUS(dup, 409);
    IT_MESSAGE(dup, "409 Conflict Duplicate IntegrationBatchId");
    g = it_get(A, it_fmt("/api_factor/get-sched/?integrationbatchid=%s", sb));
    IT_JSTR(g->json, "Amount", "1234.50");
    IT_CHECK(it_jlen(g->json, "InvoiceArray") == 2, "still two invoices");
    IT_STATUS(get_invoice(A, i3), 404);

    /* an InvoiceIntegrationId already stored: 409, nothing of the new schedule stored */
    const char *sb2 = it_uniq("SB"), *i4 = it_uniq("IID");
    dup = sched(A, ck, sb2, "60.00", J("%s,%s", inv(dk, it_uniq("N"), "10.00", i4), inv(dk, it_uniq("N"), "50.00", i1)));
    IT_STATUS(dup, 409);
    IT_MESSAGE(dup, it_fmt("409 Conflict Duplicate InvoiceIntegrationId %s", i1));
    IT_STATUS(it_get(A, it_fmt("/api_factor/get-sched/?integrationbatchid=%s", sb2)), 404);
    IT_STATUS(get_invoice(A, i4), 404);
    IT_JSTR(get_invoice(A, i1)->json, "InvoiceAmount", "1000.00");

    /* a standard schedule is not a broker schedule */
    IT_STATUS(it_get(A, it_fmt("/api_factor/get-broker-sched/?integrationbatchid=%s", sb)), 404);
}

static void test_sched_errors(void)
{
    const char *ck = it_uniq("SE"), *dk = it_uniq("SED");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Err Debtor");
    const char *I = "{'DebtorKey':'%1$s','InvoiceNumber':'N1','InvoiceAr':'10.00','InvoiceIntegrationId':'%2$s'}";
    struct { const char *body, *msg; } cases[] = {
        { "{'ClientKey':'%1$s','Amount':'10.00','InvoiceArray':[" "%4$s" "]}", "400 Bad Request Missing IntegrationBatchId" },
        { "{'Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[%4$s]}", "400 Bad Request Missing ClientKey" },
        { "{'ClientKey':'%1$s','IntegrationBatchId':'%5$s','InvoiceArray':[%4$s]}", "400 Bad Request Missing Amount" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s'}", "400 Bad Request Missing InvoiceArray" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[]}", "400 Bad Request Invalid InvoiceArray" },
        { "{'ClientKey':'%1$s','Amount':'-10.00','IntegrationBatchId':'%5$s','InvoiceArray':[%4$s]}", "400 Bad Request Invalid Amount" },
        { "{'ClientKey':'%1$s','Amount':'10.001','IntegrationBatchId':'%5$s','InvoiceArray':[%4$s]}", "400 Bad Request Invalid Amount" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','PaymentMethod':'Z','InvoiceArray':[%4$s]}", "400 Bad Request Invalid PaymentMethod" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'DebtorKey':'%2$s','InvoiceNumber':'N1','InvoiceIntegrationId':'%3$s'}]}",
          "400 Bad Request Missing InvoiceArray[0].InvoiceAr" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'DebtorKey':'%2$s','InvoiceNumber':'N1','InvoiceAr':'10.00'}]}",
          "400 Bad Request Missing InvoiceArray[0].InvoiceIntegrationId" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'InvoiceNumber':'N1','InvoiceAr':'10.00','InvoiceIntegrationId':'%3$s'}]}",
          "400 Bad Request Missing InvoiceArray[0].DebtorKey" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'DebtorKey':'%2$s','InvoiceAr':'10.00','InvoiceIntegrationId':'%3$s'}]}",
          "400 Bad Request Missing InvoiceArray[0].InvoiceNumber" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'DebtorKey':'%2$s','InvoiceNumber':'N1','InvoiceAr':'0','InvoiceIntegrationId':'%3$s'}]}",
          "400 Bad Request Invalid InvoiceArray[0].InvoiceAr" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'DebtorKey':'%2$s','InvoiceNumber':'N1','InvoiceAr':'10.00','InvoiceIntegrationId':'%3$s','InvoiceDate':'02-30-21'}]}",
          "400 Bad Request Invalid InvoiceArray[0].InvoiceDate" },
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'DebtorKey':'%2$s','InvoiceNumber':'N1','InvoiceAr':'10.00','InvoiceIntegrationId':'%3$s','DocBase64':'not base64!'}]}",
          "400 Bad Request Invalid InvoiceArray[0].DocBase64" },
        /* Amount is not the sum of InvoiceAr */
        { "{'ClientKey':'%1$s','Amount':'10.01','IntegrationBatchId':'%5$s','InvoiceArray':[%4$s]}", "400 Bad Request Invalid Amount" },
        /* unknown client */
        { "{'ClientKey':'NO%5$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[%4$s]}", "400 Bad Request Invalid ClientKey" },
        /* unknown debtor */
        { "{'ClientKey':'%1$s','Amount':'10.00','IntegrationBatchId':'%5$s','InvoiceArray':[{'DebtorKey':'UNKNOWNDEBTOR','InvoiceNumber':'N1','InvoiceAr':'10.00','InvoiceIntegrationId':'%3$s'}]}",
          "400 Bad Request Invalid DebtorKey UNKNOWNDEBTOR" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *iid = it_uniq("IID"), *sb = it_uniq("SBE");
        const char *one = J(I, dk, iid);
        it_resp *r = it_post(A, "/api_factor/create-sched/",
                             J(it_fmt("%s%s", "%1$.0s%2$.0s%3$.0s%4$.0s%5$.0s", cases[i].body), ck, dk, iid, one, sb));
        IT_CHECK(r->status == 400, "case %zu: %ld %s", i, r->status, r->body);
        IT_MESSAGE(r, cases[i].msg);
        r = it_get(A, it_fmt("/api_factor/get-sched/?integrationbatchid=%s", sb));
        IT_CHECK(r->status == 404, "case %zu stored no schedule: %ld", i, r->status);
        r = get_invoice(A, iid);
        IT_CHECK(r->status == 404, "case %zu stored no invoice: %ld", i, r->status);
    }
    it_resp *r = it_get(A, "/api_factor/get-sched/");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing integrationbatchid");
    r = it_get(A, it_fmt("/api_factor/get-sched/?integrationbatchid=%s", it_uniq("NONE")));
    IT_STATUS(r, 404);
    IT_PREFIX(it_jstr(r->json, "message"), "404 Not Found");
}

/* ---------------------------------------------------------------- broker --- */

static const char *binv(const char *dk, const char *vk, const char *ar, const char *adv, const char *iid)
{
    return J("{'DebtorKey':'%s','VendorKey':'%s','InvoiceNumber':'%s','InvoiceAr':'%s','AdvanceAmount':'%s',"
             "'InvoiceIntegrationId':'%s','VendorInvoiceNumber':'V-%s'}", dk, vk, it_uniq("BN"), ar, adv, iid, iid);
}

static it_resp *bsched(const char *ck, const char *sb, const char *amount, const char *invoices)
{
    return it_post(A, "/api_factor/create-sched-broker/",
                   J("{'ClientKey':'%s','Amount':'%s','IntegrationBatchId':'%s','InvoiceArray':[%s]}",
                     ck, amount, sb, invoices));
}

static void test_broker_sched(void)
{
    const char *ck = it_uniq("BC"), *dk = it_uniq("BD"), *vk = it_uniq("BV"), *sb = it_uniq("BS");
    const char *i1 = it_uniq("IID"), *i2 = it_uniq("IID");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Shipper");
    mk_vendor(A, ck, vk);
    /* the default advance rate is 90 %: exactly 90 % and 0 are accepted */
    const char *body_inv = J("%s,%s", binv(dk, vk, "1000.00", "900.00", i1), binv(dk, vk, "200.00", "0", i2));
    it_resp *r = bsched(ck, sb, "1200.00", body_inv);
    IT_STATUS(r, 201);
    IT_MESSAGE(r, OK_201);
    IT_JSTR(r->json, "Amount", "1200.00");
    IT_JSTR(r->json, "InvoiceArray[0].VendorKey", vk);
    IT_JSTR(r->json, "InvoiceArray[0].AdvanceAmount", "900.00");
    IT_JSTR(r->json, "InvoiceArray[0].VendorInvoiceNumber", it_fmt("V-%s", i1));
    IT_JSTR(r->json, "InvoiceArray[1].AdvanceAmount", "0.00");
    IT_JSTR(r->json, "InvoiceArray[0].DebtorKey", dk);

    it_resp *g = it_get(A, it_fmt("/api_factor/get-broker-sched/?integrationbatchid=%s", sb));
    IT_STATUS(g, 200);
    IT_CHECK(json_object_equal(it_jwithout(r->json, "message", NULL), it_jwithout(g->json, "message", NULL)),
             "get-broker-sched equals the create echo:\n%s\n%s", r->body, g->body);
    IT_STATUS(it_get(A, it_fmt("/api_factor/get-sched/?integrationbatchid=%s", sb)), 404);
    g = get_invoice(A, i1);
    IT_STATUS(g, 200);
    IT_JSTR(g->json, "VendorKey", vk);
    IT_JSTR(g->json, "AdvanceAmount", "900.00");

    /* replay and conflict */
    it_resp *again = bsched(ck, sb, "1200.00", body_inv);
    IT_STATUS(again, 201);
    IT_CHECK(again->body_len == r->body_len && memcmp(again->body, r->body, r->body_len) == 0,
             "broker replay is byte-identical");
    const char *i3 = it_uniq("IID");
    it_resp *dup = bsched(ck, sb, "10.00", binv(dk, vk, "10.00", "1.00", i3));
    IT_STATUS(dup, 409);
    IT_MESSAGE(dup, "409 Conflict Duplicate IntegrationBatchId");
    g = it_get(A, it_fmt("/api_factor/get-broker-sched/?integrationbatchid=%s", sb));
    IT_CHECK(json_object_equal(it_jwithout(r->json, "message", NULL), it_jwithout(g->json, "message", NULL)),
             "the 409 changed the broker schedule:\n%s\n%s", r->body, g->body);
    IT_STATUS(get_invoice(A, i3), 404);

    /* errors: nothing stored */
    struct { const char *amount, *invoices, *msg; } cases[] = {
        { "1000.00", binv(dk, vk, "1000.00", "900.01", "%s"), "400 Bad Request Invalid AdvanceAmount" },
        { "1000.00", binv(dk, "NOVENDOR", "1000.00", "10.00", "%s"), "400 Bad Request Invalid VendorKey NOVENDOR" },
        { "1000.00", binv(dk, dk, "1000.00", "10.00", "%s"), it_fmt("400 Bad Request Invalid VendorKey %s", dk) },
        { "999.00", binv(dk, vk, "1000.00", "10.00", "%s"), "400 Bad Request Invalid Amount" },
        { "1000.00", "{'DebtorKey':'" "%s" "','InvoiceNumber':'X1','InvoiceAr':'1000.00','AdvanceAmount':'1','InvoiceIntegrationId':'%%s'}",
          "400 Bad Request Missing InvoiceArray[0].VendorKey" },
        { "1000.00", "{'DebtorKey':'" "%s" "','VendorKey':'V','InvoiceNumber':'X1','InvoiceAr':'1000.00','InvoiceIntegrationId':'%%s'}",
          "400 Bad Request Missing InvoiceArray[0].AdvanceAmount" },
    };
    cases[4].invoices = J(cases[4].invoices, dk);
    cases[5].invoices = J(cases[5].invoices, dk);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *iid = it_uniq("IID"), *sbx = it_uniq("BSE");
        /* the invoice templates carry "%s" where the integration id goes */
        char *invs = it_fmt("%s", cases[i].invoices);
        char *at = strstr(invs, "%s");
        const char *withid = at ? it_fmt("%.*s%s%s", (int) (at - invs), invs, iid, at + 2) : invs;
        it_resp *e = bsched(ck, sbx, cases[i].amount, withid);
        IT_CHECK(e->status == 400, "broker case %zu: %ld %s", i, e->status, e->body);
        IT_MESSAGE(e, cases[i].msg);
        IT_STATUS(it_get(A, it_fmt("/api_factor/get-broker-sched/?integrationbatchid=%s", sbx)), 404);
        IT_STATUS(get_invoice(A, iid), 404);
    }
    IT_STATUS(it_get(A, it_fmt("/api_factor/get-broker-sched/?integrationbatchid=%s", it_uniq("NONE"))), 404);
    r = it_get(A, "/api_factor/get-broker-sched/?integrationbatchid=");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing integrationbatchid");
}

/* -------------------------------------------------------------- invoices --- */

static void test_get_invoice(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "321.09", &num);
    it_resp *r = get_invoice(A, iid);
    IT_STATUS(r, 200);
    IT_MESSAGE(r, OK_200);
    IT_JSTR(r->json, "InvoiceIntegrationId", iid);
    IT_JSTR(r->json, "InvoiceNumber", num);
    IT_JSTR(r->json, "InvoiceAmount", "321.09");
    IT_JSTR(r->json, "InvoiceStatus", "P");
    IT_JSTR(r->json, "PaymentMade", "0.00");
    IT_JSTR(r->json, "PaidInFull", "false");
    IT_JSTR(r->json, "PaidInFullOn", NULL);
    IT_JSTR(r->json, "LastPaymentMadeOn", NULL);
    const char *keys[] = { "ClientKey", "DebtorKey", "InvoiceDate", "InvoiceDueDate", "RefNumber",
                           "InvoicePurchaseDate", "InvoiceFundDate", "EscrowReserveAmount" };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        IT_CHECK(it_jhas(r->json, keys[i]), "get-invoice carries %s", keys[i]);
    r = get_invoice(A, it_uniq("NOINV"));
    IT_STATUS(r, 404);
    IT_BODY(r, "{\"message\":\"404 Not Found Invoice not found\"}");
    r = it_get(A, "/api_factor/get-invoice/");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing invoiceintegrationid");
    /* the value is trimmed as every read's is: blanks around it are no part of the id, and
     * blanks alone are a missing value (until the twenty-second session 404 for both) */
    r = it_get(A, it_fmt("/api_factor/get-invoice/?invoiceintegrationid=%%20%s%%09", iid));
    IT_STATUS(r, 200);
    IT_JSTR(r->json, "InvoiceIntegrationId", iid);
    r = it_get(A, "/api_factor/get-invoice/?invoiceintegrationid=%20%20");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing invoiceintegrationid");
    r = it_get(A, "/api_factor/get-client/?clientkey=%20");
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Missing clientkey");
}

/* -------------------------------------------------------------- payments --- */

static void test_payment_errors(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "100.00", &num);
    const char *L = line("100.00", num, NULL, NULL, it_uniq("ACC"), NULL);
    struct { const char *body, *msg; } cases[] = {
        { J("{'BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Missing BatchReference" },
        { J("{'BatchReference':'%%s','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Missing BatchTotal" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','PaymentDetails':[%s]}", L), "400 Bad Request Missing AccountNumber" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1'}"), "400 Bad Request Missing PaymentDetails" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[]}"), "400 Bad Request Invalid PaymentDetails" },
        { J("{'BatchReference':'%%s','BatchTotal':'0','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Invalid batchTotal" },
        { J("{'BatchReference':'%%s','BatchTotal':'abc','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Invalid batchTotal" },
        { J("{'BatchReference':'%%s','BatchTotal':'-5.00','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Invalid batchTotal" },
        { J("{'BatchReference':'%%s','BatchTotal':'1.001','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Invalid batchTotal" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'03-31-21','PaymentType':'ACH','Amount':'100.00','InvoiceRefNumber':'%s'}]}", num),
          "400 Bad Request Missing PaymentDetails[0].TransactionNumber" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentType':'ACH','Amount':'100.00','TransactionNumber':'t','InvoiceRefNumber':'%s'}]}", num),
          "400 Bad Request Missing PaymentDetails[0].PaymentDate" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'03-31-21','Amount':'100.00','TransactionNumber':'t','InvoiceRefNumber':'%s'}]}", num),
          "400 Bad Request Missing PaymentDetails[0].PaymentType" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'03-31-21','PaymentType':'CASH','Amount':'100.00','TransactionNumber':'t','InvoiceRefNumber':'%s'}]}", num),
          "400 Bad Request Invalid PaymentDetails[0].PaymentType" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'31-03-2021','PaymentType':'ACH','Amount':'100.00','TransactionNumber':'t','InvoiceRefNumber':'%s'}]}", num),
          "400 Bad Request Invalid PaymentDetails[0].PaymentDate" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'03-31-21','PaymentType':'ACH','TransactionNumber':'t','InvoiceRefNumber':'%s'}]}", num),
          "400 Bad Request Missing PaymentDetails[0].Amount" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'03-31-21','PaymentType':'ACH','Amount':'1e2','TransactionNumber':'t','InvoiceRefNumber':'%s'}]}", num),
          "400 Bad Request Invalid PaymentDetails[0].Amount" },
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'03-31-21','PaymentType':'ACH','Amount':'100.00','TransactionNumber':'t','InvoiceRefNumber':'%s','FinancialDocs':'***'}]}", num),
          "400 Bad Request Invalid PaymentDetails[0].FinancialDocs" },
        /* a control character other than a tab or a line end */
        { J("{'BatchReference':'%%s','BatchTotal':'100.00','AccountNumber':'1','PaymentDetails':[{'PaymentDate':'03-31-21','PaymentType':'ACH','Amount':'100.00','TransactionNumber':'t','InvoiceRefNumber':'%s','MemoLine':'inv\\u0007'}]}", num),
          "400 Bad Request Invalid PaymentDetails[0].MemoLine" },
        /* BatchTotal not the exact sum of the lines */
        { J("{'BatchReference':'%%s','BatchTotal':'100.01','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Invalid batchTotal" },
        { J("{'BatchReference':'%%s','BatchTotal':'99.99','AccountNumber':'1','PaymentDetails':[%s]}", L), "400 Bad Request Invalid batchTotal" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *ref = it_uniq("PE");
        const char *body = strstr(cases[i].body, "%s") ? it_fmt(cases[i].body, ref) : cases[i].body;
        it_resp *r = pay(A, body);
        IT_CHECK(r->status == 400, "payment case %zu: %ld %s", i, r->status, r->body);
        IT_MESSAGE(r, cases[i].msg);
        IT_CHECK(strcmp(balance(A, iid), "100.00") == 0, "payment case %zu applied nothing (balance %s)",
                 i, balance(A, iid));
    }
    /* the refused BatchReference was not stored: a correct batch under it is accepted */
    const char *ref = it_uniq("PE");
    it_resp *r = pay(A, batch(ref, "100.01", L));
    IT_STATUS(r, 400);
    r = pay(A, batch(ref, "100.00", L));
    IT_STATUS(r, 201);
    IT_STREQ(balance(A, iid), "0.00");
}

static void test_payment_replay_and_conflict(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "500.00", &num);
    const char *ref = it_uniq("PR");
    const char *body = batch(ref, "200.00", line("200.00", num, NULL, NULL, it_uniq("ACC"), NULL));
    it_resp *first = pay(A, body);
    IT_STATUS(first, 201);
    IT_MESSAGE(first, OK_201);
    IT_STREQ(balance(A, iid), "300.00");

    it_resp *again = pay(A, body);
    IT_STATUS(again, 201);
    IT_CHECK(again->body_len == first->body_len && memcmp(again->body, first->body, first->body_len) == 0,
             "replay is byte-identical:\n%s\n%s", first->body, again->body);
    IT_STREQ(balance(A, iid), "300.00");

    /* same BatchReference, another body: 409 and nothing applied */
    it_resp *dup = pay(A, batch(ref, "300.00", line("300.00", num, NULL, NULL, it_uniq("ACC"), NULL)));
    IT_STATUS(dup, 409);
    IT_MESSAGE(dup, "409 Conflict Duplicate BatchReference");
    IT_STREQ(balance(A, iid), "300.00");
    /* a byte of difference (whitespace) is another body too */
    dup = pay(A, it_fmt("%s ", body));
    IT_STATUS(dup, 409);
    IT_STREQ(balance(A, iid), "300.00");
}

/* A client retrying while its first attempt is still running must get the
 * same answer as a retry after it: the replay, not a conflict. */
static void test_concurrent_retries(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "1000.00", &num);
    const char *acc = it_uniq("ACC");
    enum { ROUNDS = 6, N = 4 };
    for (int round = 0; round < ROUNDS; round++) {
        it_resp *rs[N];
        const char *body = batch(it_uniq("CR"), "10.00", line("10.00", num, NULL, NULL, acc, NULL));
        it_parallel(rs, N, A, "POST", "/api_factor/post-payments/", body);
        for (int i = 0; i < N; i++) {
            IT_CHECK(rs[i]->status == 201, "post-payments round %d attempt %d: %ld %s", round, i,
                     rs[i]->status, rs[i]->body);
            IT_CHECK(rs[i]->body_len == rs[0]->body_len && memcmp(rs[i]->body, rs[0]->body, rs[0]->body_len) == 0,
                     "post-payments round %d attempt %d is the same answer:\n%s\n%s", round, i, rs[0]->body, rs[i]->body);
        }
    }
    /* each batch applied once */
    IT_STREQ(balance(A, iid), it_fmt("%d.00", 1000 - ROUNDS * 10));

    const char *ck = it_uniq("CRC"), *dk = it_uniq("CRD");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Retry Debtor");
    for (int round = 0; round < ROUNDS; round++) {
        it_resp *rs[N];
        const char *sb = it_uniq("CRS");
        const char *body = J("{'ClientKey':'%s','Amount':'5.00','IntegrationBatchId':'%s','InvoiceArray':[%s]}",
                             ck, sb, inv(dk, it_uniq("N"), "5.00", it_uniq("IID")));
        it_parallel(rs, N, A, "POST", "/api_factor/create-sched/", body);
        for (int i = 0; i < N; i++) {
            IT_CHECK(rs[i]->status == 201, "create-sched round %d attempt %d: %ld %s", round, i,
                     rs[i]->status, rs[i]->body);
            IT_CHECK(rs[i]->body_len == rs[0]->body_len && memcmp(rs[i]->body, rs[0]->body, rs[0]->body_len) == 0,
                     "create-sched round %d attempt %d is the same answer", round, i);
        }
    }
}

/* Calls fn (a posting function, as fl_api, for tenant with doc) in the test's own session and
 * leaves its transaction open; POSTs body to path meanwhile, and once a posting worker waits
 * for that transaction's locks, commits it. The POST's status; *answer its body. */
static long post_against_held(const char *fn, const char *tenant, const char *doc, const char *path,
                              const char *body, const char **answer)
{
    IT_Q0("BEGIN");
    IT_Q0("SET LOCAL ROLE fl_api");
    IT_Q(it_fmt("SELECT %s($1::uuid, $2::jsonb) IS NOT NULL", fn), tenant, doc);
    IT_Q0("RESET ROLE");
    it_async p = it_async_start(A, "POST", path, body);
    IT_CHECK(worker_waits_for_lock(), "%s did not wait for the open %s: the test proves nothing", path, fn);
    IT_Q0("COMMIT");
    double done_at = 0;
    char rid[64] = "";
    return it_async_collect(p, &done_at, rid, answer);
}

/* Two debtors of one name created for one client at once: the second waits for the first's
 * link (the client's row lock), then takes the next CompCode (not the same one, and no 409). */
static void test_concurrent_debtor_compcodes(void)
{
    const char *ck = it_uniq("RC"), *d1 = it_uniq("RD"), *d2 = it_uniq("RD"), *answer;
    mk_client(A, ck);
    long status = post_against_held(
        "posting_create_debtor", IT_Q("SELECT tenant_id::text FROM clients WHERE client_key = $1", ck),
        J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Racing Freight','Country':'USA'}", ck, d1),
        "/api_factor/create-debtor/", J("{'ClientKey':'%s','DebtorKey':'%s','Name':'Racing Freight','Country':'USA'}", ck, d2),
        &answer);
    IT_CHECK(status == 201, "the second create-debtor was answered %ld (%.200s)", status, answer);
    IT_JSTR(it_json(answer), "CompCode", "RACING2");
    IT_STREQ(IT_Q("SELECT string_agg(d.debtor_key || ' ' || cd.comp_code, ' ' ORDER BY cd.comp_code) "
                  "FROM client_debtors cd JOIN clients c ON c.id = cd.client_id JOIN debtors d ON d.id = cd.debtor_id "
                  "WHERE c.client_key = $1", ck), it_fmt("%s RACING1 %s RACING2", d1, d2));
}

/* Two schedules naming one InvoiceIntegrationId at once: the second waits for the first's
 * invoice, then answers the documented 409 Duplicate InvoiceIntegrationId <id>, nothing stored. */
static void test_concurrent_sched_same_invoice(void)
{
    const char *ck = it_uniq("RS"), *dk = it_uniq("RSD"), *iid = it_uniq("IID");
    const char *s1 = it_uniq("RSB"), *s2 = it_uniq("RSB"), *answer;
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Race Payer");
    long status = post_against_held(
        "posting_create_sched", IT_Q("SELECT tenant_id::text FROM clients WHERE client_key = $1", ck),
        J("{'ClientKey':'%s','Amount':'10.00','IntegrationBatchId':'%s','PaymentMethod':'A','InvoiceArray':[%s]}",
          ck, s1, inv(dk, it_uniq("N"), "10.00", iid)),
        "/api_factor/create-sched/",
        J("{'ClientKey':'%s','Amount':'20.00','IntegrationBatchId':'%s','PaymentMethod':'A','InvoiceArray':[%s,%s]}",
          ck, s2, inv(dk, it_uniq("N"), "10.00", it_uniq("IID")), inv(dk, it_uniq("N"), "10.00", iid)),
        &answer);
    IT_CHECK(status == 409, "the second create-sched was answered %ld (%.200s)", status, answer);
    IT_JSTR(it_json(answer), "message", it_fmt("409 Conflict Duplicate InvoiceIntegrationId %s", iid));
    IT_STREQ(IT_Q("SELECT count(*)::text FROM schedules WHERE integration_batch_id IN ($1, $2)", s1, s2), "1");
}

static void test_money_exact(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "0.60", &num);
    const char *acc = it_uniq("ACC");
    /* 0.10 + 0.20 is 0.30 exactly (not 0.30000000000000004) */
    it_resp *r = pay(A, batch(it_uniq("ME"), "0.30",
                              J("%s,%s", line("0.10", num, NULL, NULL, acc, NULL), line("0.20", num, NULL, NULL, acc, NULL))));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "BatchTotal", "0.30");
    IT_STREQ(balance(A, iid), "0.30");
    /* a JSON number, not a string */
    r = pay(A, J("{'BatchReference':'%s','BatchTotal':0.3,'AccountNumber':'1','PaymentDetails':["
                 "{'PaymentDate':'2021-04-02','PaymentType':'wire','Amount':0.30,'TransactionNumber':'t1',"
                 "'InvoiceRefNumber':'%s'}]}", it_uniq("ME"), num));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].Amount", "0.30");
    IT_JSTR(r->json, "PaymentDetails[0].PaymentType", "WIRE");
    r = get_invoice(A, iid);
    IT_JSTR(r->json, "OpenBalance", "0.00");
    IT_JSTR(r->json, "PaymentMade", "0.60");
    IT_JSTR(r->json, "PaidInFull", "true");
    IT_JSTR(r->json, "PaidInFullOn", "2021-04-02");
    IT_JSTR(r->json, "LastPaymentMadeOn", "2021-04-02");
}

/* FinancialDocs (Base64) is echoed as sent; the text members as stored. */
static void test_payment_echo(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "10.00", &num);
    const char *docs = "JVBERi0xLjQKJcOkw7zDtsOf";
    it_resp *r = pay(A, J("{'BatchReference':'%s','BatchTotal':'10.00','AccountNumber':'1','PaymentDetails':["
                          "{'PaymentDate':'2021-04-02','PaymentType':'check','Amount':'10','TransactionNumber':'t1',"
                          "'InvoiceRefNumber':'%s','BankBatchItem':'7','ClientCode':'','MemoLine':'  paid  ',"
                          "'FinancialDocs':'%s'}]}", it_uniq("EC"), num, docs));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].FinancialDocs", docs);
    IT_JSTR(r->json, "PaymentDetails[0].BankBatchItem", "7");
    IT_JSTR(r->json, "PaymentDetails[0].Amount", "10.00");
    IT_JSTR(r->json, "PaymentDetails[0].PaymentType", "CHECK");
    IT_CHECK(it_jhas(r->json, "PaymentDetails[0].ClientCode") && it_jstr(r->json, "PaymentDetails[0].ClientCode") == NULL,
             "ClientCode \"\" echoed as %s", r->body);
    IT_JSTR(r->json, "PaymentDetails[0].Status", "applied");
    IT_STREQ(balance(A, iid), "0.00");
}

/* The first answer to a batch is written by the worker from its document and each line's
 * results; a retry's is the stored batch read back (fl_batch_echo). Text that JSON escapes,
 * UTF-8, numbers sent for text, the date and amount spellings the parser normalises, members
 * left out or blank, and every kind of result: the three texts are equal byte for byte. */
static void test_payment_echo_is_stored(void)
{
    const char *n1, *n2, *n3, *n4;
    mk_invoice(A, "10.00", &n1);
    mk_invoice(A, "20.00", &n2);
    mk_invoice(A, "20.00", &n3);
    mk_invoice(A, "5.00", &n4);
    const char *ref = it_uniq("ES");
    const char *body = it_fmt(
        "{\"BatchReference\":\" %s \",\"BatchTotal\":72.5,\"AccountNumber\":\"A\\/1 \\\"q\\\"\",\"PaymentDetails\":["
        /* pays n1 in full; text with quotes, a backslash, a slash, \u escapes and raw UTF-8 */
        "{\"PaymentDate\":\"03-31-21\",\"PaymentType\":\"ach\",\"Amount\":\"10\",\"TransactionNumber\":12345,"
        "\"InvoiceRefNumber\":\"%s\",\"RemitterName\":\"Caf\\u00e9 \\\"Quote\\\" Ltd \\/ back\\\\slash \xf0\x9f\x98\x80\","
        "\"BankBatchItem\":7,\"ClientCode\":\"\",\"FinancialDocs\":\"JVBERi0xLjQKJcOkw7zDtsOf\"},"
        /* n1 again: the first line paid it */
        "{\"PaymentDate\":\"04/02/2021\",\"PaymentType\":\"Check\",\"Amount\":5,\"TransactionNumber\":\"t2\","
        "\"InvoiceRefNumber\":\"%s\",\"MemoLine\":\"tab\\there\\nnew line\\r\\nend\"},"
        /* two invoices named in the memo: n2 in full, n3 in part */
        "{\"PaymentDate\":\"2021-04-03\",\"PaymentType\":\"WIRE\",\"Amount\":\"30.0\",\"TransactionNumber\":\"t3\","
        "\"MemoLine\":\"inv %s and %s\",\"BankRefNumber\":\"  padded  \",\"AccountNumber\":\"\\u00fc\"},"
        /* more than n4's balance: the rest unapplied */
        "{\"PaymentDate\":\"2021-04-04\",\"PaymentType\":\"ACH\",\"Amount\":\"7.50\",\"TransactionNumber\":\"t4\","
        "\"InvoiceRefNumber\":\"%s\"},"
        /* nothing to match */
        "{\"PaymentDate\":\"2021-04-05\",\"PaymentType\":\"ACH\",\"Amount\":\"20.00\",\"TransactionNumber\":\"t5\","
        "\"InvoiceRefNumber\":\"%s\"}]}", ref, n1, n1, n2, n3, n4, it_uniq("NOSUCH"));
    it_resp *first = pay(A, body);
    IT_STATUS(first, 201);
    IT_JSTR(first->json, "BatchReference", ref);
    IT_JSTR(first->json, "BatchTotal", "72.50");
    IT_JSTR(first->json, "AccountNumber", "A/1 \"q\"");
    IT_JSTR(first->json, "PaymentDetails[0].PaymentDate", "2021-03-31");
    IT_JSTR(first->json, "PaymentDetails[0].PaymentType", "ACH");
    IT_JSTR(first->json, "PaymentDetails[0].Amount", "10.00");
    IT_JSTR(first->json, "PaymentDetails[0].TransactionNumber", "12345");
    IT_JSTR(first->json, "PaymentDetails[0].RemitterName", "Caf\xc3\xa9 \"Quote\" Ltd / back\\slash \xf0\x9f\x98\x80");
    IT_JSTR(first->json, "PaymentDetails[0].Status", "applied");
    IT_CHECK(it_jhas(first->json, "PaymentDetails[0].ClientCode")
             && it_jstr(first->json, "PaymentDetails[0].ClientCode") == NULL, "ClientCode \"\" is null: %s", first->body);
    IT_JSTR(first->json, "PaymentDetails[1].PaymentDate", "2021-04-02");
    IT_JSTR(first->json, "PaymentDetails[1].MemoLine", "tab\there\nnew line\r\nend");
    IT_JSTR(first->json, "PaymentDetails[1].AppliedAmount", "0.00");
    IT_JSTR(first->json, "PaymentDetails[2].Amount", "30.00");
    IT_JSTR(first->json, "PaymentDetails[2].BankRefNumber", "padded");
    IT_CHECK(it_jlen(first->json, "PaymentDetails[2].Applications") == 2, "the memo's two invoices: %s", first->body);
    IT_JSTR(first->json, "PaymentDetails[2].AppliedAmount", "30.00");
    IT_JSTR(first->json, "PaymentDetails[3].AppliedAmount", "5.00");
    IT_JSTR(first->json, "PaymentDetails[3].UnappliedAmount", "2.50");
    IT_JSTR(first->json, "PaymentDetails[4].UnappliedAmount", "20.00");
    IT_CHECK(it_jlen(first->json, "PaymentDetails[4].Applications") == 0, "no applications: %s", first->body);
    IT_CHECK(strstr(first->body, "\"Status\":null") == NULL, "every line has a status: %s", first->body);

    const char *stored = IT_Q("SELECT '{\"message\":\"201 Created - v2.01.00\",' || substr(fl_batch_echo(id), 2) "
                              "FROM payment_batches WHERE batch_reference = $1", ref);
    IT_CHECK(stored != NULL && strcmp(first->body, stored) == 0,
             "the first answer is the stored batch read back:\n%s\n%s", first->body, stored ? stored : "(none)");
    it_resp *again = pay(A, body);
    IT_STATUS(again, 201);
    IT_CHECK(again->body_len == first->body_len && memcmp(again->body, first->body, first->body_len) == 0,
             "the retry's answer is the first, byte for byte:\n%s\n%s", first->body, again->body);
}

/* The text of n items made by item(i) joined with commas (pool-owned). */
static const char *joined(int n, const char *(*item)(int, const void *), const void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? "," : "", item(i, arg));
    fclose(f);
    const char *out = it_fmt("%s", buf);
    free(buf);
    return out;
}

static const char *cap_invoice(int i, const void *arg)
{
    const char *const *kd = arg;        /* debtor key, id prefix */
    return J("{'DebtorKey':'%s','InvoiceNumber':'%s-%d','InvoiceAr':'1.00','InvoiceIntegrationId':'%s-%d'}", kd[0],
             kd[1], i, kd[1], i);
}

static const char *cap_line(int i, const void *arg)
{
    return J("{'PaymentDate':'03-31-21','PaymentType':'ACH','Amount':'0.01','TransactionNumber':'%s-%d',"
             "'AccountNumber':'NOSUCHACCOUNT'}", (const char *) arg, i);
}

/* At most 5,000 invoices in a schedule and 10,000 lines in a batch: at the cap accepted, one
 * more 400 and nothing stored. */
static void test_caps(void)
{
    const char *ck = it_uniq("CAP"), *dk = it_uniq("CAPD");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Cap Debtor");
    const char *over[2] = { dk, it_uniq("CO") }, *at[2] = { dk, it_uniq("CA") };
    const char *sb = it_uniq("CAPS");
    it_resp *r = sched(A, ck, sb, "5001.00", joined(5001, cap_invoice, over));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid InvoiceArray");
    IT_STATUS(it_get(A, it_fmt("/api_factor/get-sched/?integrationbatchid=%s", sb)), 404);
    IT_STATUS(get_invoice(A, it_fmt("%s-0", over[1])), 404);
    r = sched(A, ck, sb, "5000.00", joined(5000, cap_invoice, at));
    IT_STATUS(r, 201);
    IT_CHECK(it_jlen(r->json, "InvoiceArray") == 5000, "5,000 invoices echoed: %zu", it_jlen(r->json, "InvoiceArray"));
    IT_STATUS(get_invoice(A, it_fmt("%s-4999", at[1])), 200);

    const char *ref = it_uniq("CAPB"), *tn = it_uniq("CT");
    r = pay(A, batch(ref, "100.01", joined(10001, cap_line, tn)));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid PaymentDetails");
    r = pay(A, batch(ref, "100.00", joined(10000, cap_line, tn)));
    IT_STATUS(r, 201);
    IT_CHECK(it_jlen(r->json, "PaymentDetails") == 10000, "10,000 lines echoed: %zu", it_jlen(r->json, "PaymentDetails"));
    IT_JSTR(r->json, "PaymentDetails[9999].UnappliedAmount", "0.01");
}

/* -------------------------------------------------------- reconciliation --- */

static void test_reconcile_partial(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "100.00", &num);
    it_resp *r = pay(A, batch(it_uniq("RP"), "40.00", line("40.00", num, NULL, NULL, it_uniq("ACC"), NULL)));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].AppliedAmount", "40.00");
    IT_JSTR(r->json, "PaymentDetails[0].UnappliedAmount", "0.00");
    IT_JSTR(r->json, "PaymentDetails[0].Status", "applied");
    IT_JSTR(r->json, "PaymentDetails[0].Applications[0].InvoiceIntegrationId", iid);
    IT_JSTR(r->json, "PaymentDetails[0].Applications[0].Amount", "40.00");
    r = get_invoice(A, iid);
    IT_JSTR(r->json, "OpenBalance", "60.00");
    IT_JSTR(r->json, "PaymentMade", "40.00");
    IT_JSTR(r->json, "PaidInFull", "false");
    IT_JSTR(r->json, "LastPaymentMadeOn", "2021-03-31");
    IT_JSTR(r->json, "PaidInFullOn", NULL);
}

static void test_reconcile_overpayment(void)
{
    const char *num;
    const char *iid = mk_invoice(A, "100.00", &num);
    it_resp *r = pay(A, batch(it_uniq("RO"), "150.00", line("150.00", num, NULL, NULL, it_uniq("ACC"), NULL)));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].AppliedAmount", "100.00");
    IT_JSTR(r->json, "PaymentDetails[0].UnappliedAmount", "50.00");
    IT_JSTR(r->json, "PaymentDetails[0].Status", "partial");
    r = get_invoice(A, iid);
    IT_JSTR(r->json, "OpenBalance", "0.00");
    IT_JSTR(r->json, "PaidInFull", "true");
    /* a second payment naming the paid invoice is not applied anywhere */
    r = pay(A, batch(it_uniq("RO"), "5.00", line("5.00", num, NULL, NULL, it_uniq("ACC"), NULL)));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].AppliedAmount", "0.00");
    IT_JSTR(r->json, "PaymentDetails[0].Status", "exception");
    IT_JSTR(r->json, "PaymentDetails[0].ExceptionReason", it_fmt("Invoice %s not open", num));
    IT_STREQ(balance(A, iid), "0.00");
    /* an unknown number stays unapplied */
    r = pay(A, batch(it_uniq("RO"), "7.00", line("7.00", it_uniq("UNKNOWN"), NULL, NULL, it_uniq("ACC"), it_uniq("Nobody"))));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].Status", "unapplied");
    IT_JSTR(r->json, "PaymentDetails[0].UnappliedAmount", "7.00");
}

static void test_reconcile_memo_two_invoices(void)
{
    const char *ck = it_uniq("RM"), *dk = it_uniq("RMD");
    const char *n1 = it_uniq("M"), *n2 = it_uniq("M"), *i1 = it_uniq("IID"), *i2 = it_uniq("IID");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Memo Payer");
    it_resp *r = sched(A, ck, it_uniq("SB"), "300.00", J("%s,%s", inv(dk, n1, "100.00", i1), inv(dk, n2, "200.00", i2)));
    IT_STATUS(r, 201);
    /* a memo over two lines (bank memos keep their line ends) */
    r = pay(A, batch(it_uniq("RM"), "300.00",
                     line("300.00", NULL, it_fmt("Payment for inv %s\\r\\nand %s,\\tthanks", n1, n2), NULL, it_uniq("ACC"), NULL)));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].MemoLine", it_fmt("Payment for inv %s\r\nand %s,\tthanks", n1, n2));
    IT_JSTR(r->json, "PaymentDetails[0].Status", "applied");
    IT_JSTR(r->json, "PaymentDetails[0].AppliedAmount", "300.00");
    IT_CHECK(it_jlen(r->json, "PaymentDetails[0].Applications") == 2, "two applications: %s", r->body);
    IT_JSTR(r->json, "PaymentDetails[0].Applications[0].InvoiceIntegrationId", i1);
    IT_JSTR(r->json, "PaymentDetails[0].Applications[0].Amount", "100.00");
    IT_JSTR(r->json, "PaymentDetails[0].Applications[1].InvoiceIntegrationId", i2);
    IT_JSTR(r->json, "PaymentDetails[0].Applications[1].Amount", "200.00");
    IT_STREQ(balance(A, i1), "0.00");
    IT_STREQ(balance(A, i2), "0.00");
}

static void test_reconcile_ambiguous(void)
{
    const char *c1 = it_uniq("RA"), *c2 = it_uniq("RA"), *d1 = it_uniq("RAD"), *d2 = it_uniq("RAD");
    const char *num = it_uniq("AMB"), *i1 = it_uniq("IID"), *i2 = it_uniq("IID");
    mk_client(A, c1);
    mk_client(A, c2);
    mk_debtor(A, c1, d1, it_fmt("Payer %s", d1));
    mk_debtor(A, c2, d2, it_fmt("Payer %s", d2));
    IT_STATUS(sched(A, c1, it_uniq("SB"), "80.00", inv(d1, num, "80.00", i1)), 201);
    IT_STATUS(sched(A, c2, it_uniq("SB"), "90.00", inv(d2, num, "90.00", i2)), 201);

    it_resp *r = pay(A, batch(it_uniq("RA"), "50.00", line("50.00", num, NULL, NULL, it_uniq("ACC"), it_uniq("Stranger"))));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].Status", "exception");
    IT_JSTR(r->json, "PaymentDetails[0].ExceptionReason", it_fmt("Ambiguous invoice %s", num));
    IT_JSTR(r->json, "PaymentDetails[0].AppliedAmount", "0.00");
    IT_JSTR(r->json, "PaymentDetails[0].UnappliedAmount", "50.00");
    IT_CHECK(it_jlen(r->json, "PaymentDetails[0].Applications") == 0, "no application: %s", r->body);
    IT_STREQ(balance(A, i1), "80.00");
    IT_STREQ(balance(A, i2), "90.00");

    /* ClientCode resolves it */
    r = pay(A, batch(it_uniq("RA"), "50.00", line("50.00", num, NULL, c2, it_uniq("ACC"), it_uniq("Stranger"))));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].Status", "applied");
    IT_JSTR(r->json, "PaymentDetails[0].Applications[0].InvoiceIntegrationId", i2);
    IT_JSTR(r->json, "PaymentDetails[0].Applications[0].ClientKey", c2);
    IT_STREQ(balance(A, i1), "80.00");
    IT_STREQ(balance(A, i2), "40.00");
}

/* A batch paying invoices that another transaction is paying at the same time, held open for
 * hold seconds: the batch waits for it and applies on the balances it leaves, never on the ones
 * read before. n1 stays well covered after the other payment; n2 does not (100.00, the other
 * pays 70.00, this line 50.00: it gets 30.00); n4 is paid off by the other (this line finds it
 * not open). A long hold outlasts the unlocked attempt's lock_timeout (it gives up, and the
 * batch is applied locked); a short one ends while it waits (the invoices it missed are
 * checked and updated after the others, or the batch is applied locked). */
static void concurrent_round(double hold)
{
    const char *ck = it_uniq("RC"), *dk = it_uniq("RCD");
    const char *n1 = it_uniq("C"), *n2 = it_uniq("C"), *n3 = it_uniq("C"), *n4 = it_uniq("C");
    const char *i1 = it_uniq("IID"), *i2 = it_uniq("IID"), *i3 = it_uniq("IID"), *i4 = it_uniq("IID");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, it_fmt("Payer %s", dk));
    IT_STATUS(sched(A, ck, it_uniq("SB"), "1700.00",
                    J("%s,%s,%s,%s", inv(dk, n1, "1000.00", i1), inv(dk, n2, "100.00", i2), inv(dk, n3, "500.00", i3),
                      inv(dk, n4, "100.00", i4))), 201);
    const char *tenant = IT_Q("SELECT tenant_id::text FROM invoices WHERE invoice_integration_id = $1", i1);
    const char *mine = batch(it_uniq("RC"), "85.00",
                             J("%s,%s,%s,%s", line("5.00", n1, NULL, NULL, NULL, NULL), line("50.00", n2, NULL, NULL, NULL, NULL),
                               line("20.00", n3, NULL, NULL, NULL, NULL), line("10.00", n4, NULL, NULL, NULL, NULL)));

    /* the other batch, as fl_api, left uncommitted: n1, n2 and n4 are locked and paid in it */
    IT_Q0("BEGIN");
    IT_Q0("SET LOCAL ROLE fl_api");
    IT_Q("SELECT posting_post_payments($1::uuid, $2::jsonb) IS NOT NULL", tenant,
         batch(it_uniq("RC"), "180.00", J("%s,%s,%s", line("10.00", n1, NULL, NULL, NULL, NULL),
                                           line("70.00", n2, NULL, NULL, NULL, NULL),
                                           line("100.00", n4, NULL, NULL, NULL, NULL))));
    it_async p = pay_start(A, mine);
    it_sleep(hold);
    if (hold >= 0.3)
        IT_CHECK(waitpid(p.pid, NULL, WNOHANG) == 0, "the batch waits for the transaction paying the same invoices");
    IT_Q0("COMMIT");
    double done_at = 0;
    char rid[64] = "";
    const char *body;
    long status = it_async_collect(p, &done_at, rid, &body);
    IT_CHECK(status == 201, "201 after the other transaction committed: %ld %s", status, body);
    json_object *j = it_json(body);
    IT_JSTR(j, "PaymentDetails[0].Status", "applied");
    IT_JSTR(j, "PaymentDetails[0].AppliedAmount", "5.00");
    IT_JSTR(j, "PaymentDetails[1].Status", "partial");
    IT_JSTR(j, "PaymentDetails[1].AppliedAmount", "30.00");
    IT_JSTR(j, "PaymentDetails[1].UnappliedAmount", "20.00");
    IT_JSTR(j, "PaymentDetails[2].Status", "applied");
    IT_JSTR(j, "PaymentDetails[2].AppliedAmount", "20.00");
    IT_JSTR(j, "PaymentDetails[3].Status", "exception");
    IT_JSTR(j, "PaymentDetails[3].ExceptionReason", it_fmt("Invoice %s not open", n4));
    IT_STREQ(balance(A, i1), "985.00");
    IT_STREQ(balance(A, i2), "0.00");
    IT_STREQ(balance(A, i3), "480.00");
    IT_STREQ(balance(A, i4), "0.00");
    /* what is stored is what was answered: the replay reads it back */
    it_resp *r = pay(A, mine);
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[1].AppliedAmount", "30.00");
    IT_JSTR(r->json, "PaymentDetails[1].Applications[0].Amount", "30.00");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM invoices i WHERE i.invoice_integration_id = ANY ($1::text[]) "
                  "AND i.amount <> i.open_balance + (SELECT coalesce(sum(a.amount), 0) FROM payment_applications a "
                  "WHERE a.invoice_id = i.id)", it_fmt("{%s,%s,%s,%s}", i1, i2, i3, i4)), "0");
}

/* A deadlock between a batch and a DBA's transaction: the batch waits (locked path) for the
 * second of its invoices, which the DBA holds, and the DBA then updates the first. PostgreSQL
 * cancels the batch's statement (40P01; its wait came first, so its check finds the cycle):
 * the client gets 503, nothing of the batch is stored, and the same batch sent again once the
 * DBA's transaction has ended is applied (docs/operations.md, SQLSTATE table). */
static void test_reconcile_deadlock(void)
{
    const char *ck = it_uniq("DL"), *dk = it_uniq("DLD"), *n1 = it_uniq("D"), *n2 = it_uniq("D");
    const char *i1 = it_uniq("IID"), *i2 = it_uniq("IID"), *ref = it_uniq("DLB");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, it_fmt("Payer %s", dk));
    IT_STATUS(sched(A, ck, it_uniq("SB"), "300.00",
                    J("%s,%s", inv(dk, n1, "100.00", i1), inv(dk, n2, "200.00", i2))), 201);
    /* the batch locks its invoices in id order */
    const char *first = IT_Q("SELECT id::text FROM invoices WHERE invoice_integration_id = ANY ($1::text[]) "
                             "ORDER BY id LIMIT 1", it_fmt("{%s,%s}", i1, i2));
    const char *second = IT_Q("SELECT id::text FROM invoices WHERE invoice_integration_id = ANY ($1::text[]) "
                              "ORDER BY id DESC LIMIT 1", it_fmt("{%s,%s}", i1, i2));
    const char *body = batch(ref, "30.00", J("%s,%s", line("10.00", n1, NULL, NULL, NULL, NULL),
                                              line("20.00", n2, NULL, NULL, NULL, NULL)));
    IT_Q0("BEGIN");
    IT_Q("UPDATE invoices SET open_balance = open_balance WHERE id = $1::uuid RETURNING 1", second);
    it_async p = pay_start(A, body);
    /* past the unlocked attempt (it gives up a lock after 50 ms) and waiting in the locked one */
    int waits = worker_waits_for_lock();
    it_sleep(0.3);
    waits = waits && worker_waits_for_lock();
    IT_CHECK(waits, "the batch does not wait for the held invoice: the test proves nothing");
    /* the DBA's side of the cycle: returns once PostgreSQL has cancelled the batch */
    IT_Q("UPDATE invoices SET open_balance = open_balance WHERE id = $1::uuid RETURNING 1", first);
    IT_Q0("ROLLBACK");
    double done_at = 0;
    char rid[64] = "";
    const char *answer;
    long status = it_async_collect(p, &done_at, rid, &answer);
    IT_CHECK(status == 503, "the batch cancelled by the deadlock check: %ld %s", status, answer);
    IT_CHECK(strcmp(answer, "{\"message\":\"503 Service Unavailable\"}") == 0, "503 body: %s", answer);
    const char *logged = it_run(it_fmt("grep -h '\"request_id\":\"%s\"' '%s/../log/posting.log' | grep -c 40P01",
                                       rid, it_logdir()), NULL);
    IT_CHECK(atoi(logged) >= 1, "40P01 not logged for request %s: %s", rid, logged);
    IT_STREQ(IT_Q("SELECT count(*)::text FROM payment_batches WHERE batch_reference = $1", ref), "0");
    IT_STREQ(balance(A, i1), "100.00");
    IT_STREQ(balance(A, i2), "200.00");
    it_resp *r = pay(A, body);
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].Status", "applied");
    IT_JSTR(r->json, "PaymentDetails[1].Status", "applied");
    IT_STREQ(balance(A, i1), "90.00");
    IT_STREQ(balance(A, i2), "180.00");
}

/* Two batches learning the same payer's account at once: the second does not wait for the
 * first's uncommitted row (fl_learn_lock), so batches paying by number never wait for each
 * other there (two that learned two new accounts in opposite orders deadlocked: 40P01). The
 * test's own transaction plays the first batch: it holds the two pairs' learn locks and has
 * inserted their rows, uncommitted. Line 1 learns on the fast path, line 2 (by its memo) on
 * the line-by-line one. */
static void test_reconcile_learn_no_wait(void)
{
    const char *ck = it_uniq("LN"), *dk = it_uniq("LND"), *n1 = it_uniq("LNA"), *n2 = it_uniq("LNB");
    const char *i1 = it_uniq("IID"), *i2 = it_uniq("IID"), *ref = it_uniq("LNR");
    const char *acc1 = it_uniq("ACC"), *acc2 = it_uniq("ACC");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, it_fmt("Payer %s", dk));
    IT_STATUS(sched(A, ck, it_uniq("SB"), "300.00",
                    J("%s,%s", inv(dk, n1, "100.00", i1), inv(dk, n2, "200.00", i2))), 201);
    const char *tenant = IT_Q("SELECT tenant_id::text FROM clients WHERE client_key = $1", ck);
    const char *debtor = IT_Q("SELECT id::text FROM debtors WHERE debtor_key = $1", dk);
    const char *body = batch(ref, "30.00", J("%s,%s", line("10.00", n1, NULL, NULL, acc1, NULL),
                                              line("20.00", NULL, it_fmt("inv %s", n2), NULL, acc2, NULL)));
    IT_Q0("BEGIN");
    const char *acc[2] = { acc1, acc2 };
    for (int i = 0; i < 2; i++) {
        IT_STREQ(IT_Q("SELECT fl_learn_lock($1::uuid, $2::uuid, $3)::text", tenant, debtor, acc[i]), "true");
        IT_Q("INSERT INTO debtor_accounts (tenant_id, debtor_id, account_number) VALUES ($1::uuid, $2::uuid, $3) "
             "RETURNING 1", tenant, debtor, acc[i]);
    }
    it_async p = pay_start(A, body);
    int stored = 0, waited = 0;
    for (double t0 = it_now(); !stored && !waited && it_now() - t0 < 10.0; it_sleep(0.02)) {
        IT_Q0("SELECT pg_stat_clear_snapshot()");
        const char *nb = IT_Q("SELECT count(*)::text FROM payment_batches WHERE batch_reference = $1", ref);
        const char *nw = IT_Q("SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'fl-posting' "
                              "AND wait_event_type = 'Lock'");
        stored = nb != NULL && strcmp(nb, "1") == 0;
        waited = nw != NULL && strcmp(nw, "0") != 0;
    }
    IT_CHECK(stored && !waited, "the batch %s while another transaction learned its accounts",
             waited ? "waited" : "was not stored within 10 s");
    IT_Q0("COMMIT");
    double done_at = 0;
    char rid[64] = "";
    const char *answer;
    long status = it_async_collect(p, &done_at, rid, &answer);
    IT_CHECK(status == 201, "the batch: %ld %s", status, answer);
    IT_CHECK(strstr(answer, "\"Status\":\"partial\"") == NULL && strstr(answer, "\"Status\":\"exception\"") == NULL,
             "both lines applied: %s", answer);
    IT_STREQ(balance(A, i1), "90.00");
    IT_STREQ(balance(A, i2), "180.00");
    for (int i = 0; i < 2; i++)
        IT_STREQ(IT_Q("SELECT count(*)::text FROM debtor_accounts WHERE tenant_id = $1::uuid AND account_number = $2",
                      tenant, acc[i]), "1");
}

static void test_reconcile_concurrent(void)
{
    concurrent_round(0.5);
    concurrent_round(0.02);
    concurrent_round(0.005);
}

/* ---------------------------------------------------------------- tenants --- */

static void test_tenant_isolation(void)
{
    const char *ck = it_uniq("TI"), *dk = it_uniq("TID"), *sb = it_uniq("TIS"), *num = it_uniq("TIN");
    const char *iid = it_uniq("IID"), *vk = it_uniq("TIV"), *bsb = it_uniq("TIB"), *biid = it_uniq("IID");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, "Isolated Debtor");
    mk_vendor(A, ck, vk);
    IT_STATUS(sched(A, ck, sb, "250.00", inv(dk, num, "250.00", iid)), 201);
    IT_STATUS(bsched(ck, bsb, "100.00", binv(dk, vk, "100.00", "50.00", biid)), 201);

    const char *gets[] = {
        it_fmt("/api_factor/get-client/?clientkey=%s", ck),
        it_fmt("/api_factor/get-client-debtor/?clientkey=%s&debtorkey=%s", ck, dk),
        it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", dk),
        it_fmt("/api_factor/get-debtor-master/?debtorkey=%s", vk),
        it_fmt("/api_factor/get-sched/?integrationbatchid=%s", sb),
        it_fmt("/api_factor/get-broker-sched/?integrationbatchid=%s", bsb),
        it_fmt("/api_factor/get-invoice/?invoiceintegrationid=%s", iid),
        it_fmt("/api_factor/get-invoice/?invoiceintegrationid=%s", biid),
    };
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        IT_CHECK(it_get(A, gets[i])->status == 200, "a sees its own %s", gets[i]);
        it_resp *r = it_get(B, gets[i]);
        IT_CHECK(r->status == 404, "b must not see %s: %ld %s", gets[i], r->status, r->body);
    }

    /* b cannot hang a debtor on a's client */
    it_resp *r = it_post(B, "/api_factor/create-debtor/", J("{'ClientKey':'%s','DebtorKey':'%s','Name':'x'}", ck, it_uniq("X")));
    IT_STATUS(r, 400);
    IT_MESSAGE(r, "400 Bad Request Invalid ClientKey");

    /* b pays a's invoice number: nothing applied to a */
    r = pay(B, batch(it_uniq("TIP"), "250.00", line("250.00", num, it_fmt("inv %s", num), ck, NULL, "Isolated Debtor")));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "PaymentDetails[0].AppliedAmount", "0.00");
    IT_JSTR(r->json, "PaymentDetails[0].Status", "unapplied");
    r = get_invoice(A, iid);
    IT_JSTR(r->json, "OpenBalance", "250.00");
    IT_JSTR(r->json, "PaymentMade", "0.00");

    /* the same keys in b are b's own: no conflict with a */
    r = it_post(B, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'Tenant B Client'}", ck));
    IT_STATUS(r, 201);
    mk_debtor(B, ck, dk, "B Debtor");
    r = sched(B, ck, sb, "75.00", inv(dk, num, "75.00", iid));
    IT_STATUS(r, 201);
    IT_JSTR(r->json, "Amount", "75.00");
    r = it_get(B, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    IT_JSTR(r->json, "Name", "Tenant B Client");
    r = it_get(A, it_fmt("/api_factor/get-client/?clientkey=%s", ck));
    IT_JSTR(r->json, "Name", it_fmt("Client %s", ck));
    IT_STREQ(balance(B, iid), "75.00");
    IT_STREQ(balance(A, iid), "250.00");
    /* and b paying its own invoice touches only b's */
    r = pay(B, batch(it_uniq("TIP"), "75.00", line("75.00", num, NULL, NULL, NULL, NULL)));
    IT_STATUS(r, 201);
    IT_STREQ(balance(B, iid), "0.00");
    IT_STREQ(balance(A, iid), "250.00");
}

/* ------------------------------------------------------------ operations --- */

/* A tenant whose FactorID is longer than the 64 characters the workers compare (fl_tenant_add
 * refuses one; a DBA's INSERT can make it): refused whatever the header, and logged. Until the
 * twenty-third session the workers kept its first 64 characters, and a header of those passed. */
static void test_long_factor_id(void)
{
    const char *name = it_uniq("itest-long");
    char fid[71];
    memset(fid, 'L', 70);
    fid[70] = '\0';
    memcpy(fid, name, strlen(name) < 20 ? strlen(name) : 20);   /* unique among test runs */
    IT_Q("INSERT INTO tenants (name, factor_id) VALUES ($1, $2) RETURNING id::text", name, fid);
    int st;
    const char *out = it_run(it_fmt("'%s' key add --tenant '%s' --family posting --base-url x 2>&1",
                                    it_env("FL_TEST_ADMIN"), name), &st);
    const it_cred *k = st == 0 ? it_cred_parse(out) : NULL;
    IT_CHECK(k != NULL, "key add for the tenant: %d %s", st, out);
    if (k == NULL)
        return;
    it_cred *c = (it_cred *) it_alloc(sizeof(*c));
    *c = *k;
    c->base_url = A->base_url;
    char cut[65];
    memcpy(cut, fid, 64);
    cut[64] = '\0';
    for (int i = 0; i < 4; i++) {   /* both workers */
        it_resp *r = it_post(it_cred_with(c, "Auth-FactorID", cut), "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
        IT_STATUS(r, 401);
        IT_BODY(r, E401);
        IT_STATUS(it_post(it_cred_with(c, "Auth-FactorID", fid), "/api_factor/test-post/", "{\"TestValue\":\"x\"}"), 401);
    }
    const char *log = it_run(it_fmt("grep -c 'has a FactorID over 64 characters' '%s/../log/posting.log'", it_logdir()), NULL);
    IT_CHECK(atoi(log) >= 1, "the refusal is not in the log: %s", log);
}

static void test_revoked_key(void)
{
    int st;
    const char *admin = it_env("FL_TEST_ADMIN");
    const char *out = it_run(it_fmt("'%s' key add --tenant itest-a --family posting --base-url x", admin), &st);
    IT_CHECK(st == 0, "key add ran (status %d): %s", st, out);
    const it_cred *k = it_cred_parse(out);
    IT_CHECK(k != NULL, "key add printed a credential: %s", out);
    if (k == NULL)
        return;
    it_cred *c = (it_cred *) it_alloc(sizeof(*c));
    *c = *k;
    c->base_url = A->base_url;
    /* warm both workers' caches */
    for (int i = 0; i < 6; i++) {
        it_resp *r = it_post(c, "/api_factor/test-post/", "{\"TestValue\":\"fresh key\"}");
        IT_CHECK(r->status == 201, "the fresh key works: %ld %s", r->status, r->body);
    }
    out = it_run(it_fmt("'%s' key revoke --family posting --public-id '%s'", admin,
                        it_cred_header(c, "Auth-SystemKey")), &st);
    IT_CHECK(st == 0, "key revoke ran (status %d): %s", st, out);
    double t0 = it_now();
    while (it_now() - t0 < 5.0) {
        it_post(c, "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
        it_sleep(0.25);
    }
    for (int i = 0; i < 8; i++) {
        it_resp *r = it_post(c, "/api_factor/test-post/", "{\"TestValue\":\"x\"}");
        IT_CHECK(r->status == 401, "revoked key refused 5 s later (request %d: %ld %s)", i, r->status, r->body);
        IT_BODY(r, E401);
    }
    /* the shared key is untouched */
    IT_STATUS(it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"x\"}"), 201);
}

/* pids of the posting pool's workers (the supervisor's children, see
 * it_supervised), ascending, as a list of "pid " */
static const char *workers(int *count)
{
    pid_t p[64];
    int n = it_supervised("posting.pid", p, 64);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && p[j - 1] > p[j]; j--) {
            pid_t x = p[j];
            p[j] = p[j - 1];
            p[j - 1] = x;
        }
    const char *out = "";
    for (int i = 0; i < n; i++)
        out = it_fmt("%s%d ", out, (int) p[i]);
    *count = n;
    return out;
}

static void test_worker_killed(void)
{
    int n;
    const char *before = workers(&n);
    IT_CHECK(n >= 1, "the pool has workers: <%s>", before);
    if (n < 1)
        return;
    pid_t victim = (pid_t) atol(before);
    IT_CHECK(kill(victim, SIGKILL) == 0, "SIGKILL sent to worker %d", (int) victim);
    /* dead before the first request: a victim not yet scheduled could still take a
     * connection out of the queue as it leaves accept(), and die with it (nginx: 502) */
    for (double k0 = it_now(); it_now() - k0 < 5.0; it_sleep(0.01)) {
        pid_t live[16];
        int nl = it_supervised("posting.pid", live, 16), alive = 0;
        for (int i = 0; i < nl; i++)
            alive |= live[i] == victim;
        if (!alive)
            break;
    }
    /* requests keep succeeding while the supervisor replaces it */
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        it_resp *r = it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"after kill\"}");
        ok += r->status == 201;
        if (r->status != 201)
            fprintf(stderr, "after SIGKILL: %ld %s\n", r->status, r->body);
    }
    IT_CHECK(ok == 20, "20 requests after the SIGKILL all answered 201 (%d did)", ok);
    /* the supervisor restores the worker count with a new process */
    double t0 = it_now();
    int m = 0, gone = 0;
    const char *after = "";
    while (it_now() - t0 < 10.0) {
        after = workers(&m);
        gone = strstr(it_fmt(" %s", after), it_fmt(" %d ", (int) victim)) == NULL;
        if (m == n && gone)
            break;
        it_sleep(0.2);
    }
    IT_CHECK(m == n && gone, "workers restored: before <%s>, after <%s>", before, after);
    IT_STATUS(it_get(A, "/api_factor/get-client/?clientkey=whatever"), 404);
}

/* One slot's worker killed five times in a row, each soon after it started: replaced every
 * time (multiwatch's defaults give a slot up after 3 such deaths; docs/operations.md). */
static void test_worker_killed_repeatedly(void)
{
    pid_t prev[16];
    int n = it_supervised("posting.pid", prev, 16);
    IT_CHECK(n >= 1, "the pool has workers");
    if (n < 1)
        return;
    pid_t victim = prev[0];
    for (int round = 1; round <= 5; round++) {
        IT_CHECK(kill(victim, SIGKILL) == 0, "round %d: SIGKILL sent to %d", round, (int) victim);
        pid_t now[16], fresh = 0;
        int m = 0;
        for (double t0 = it_now(); fresh == 0 && it_now() - t0 < 5.0;) {
            m = it_supervised("posting.pid", now, 16);
            for (int j = 0; m == n && j < m && fresh == 0; j++) {
                int known = 0;
                for (int k = 0; k < n; k++)
                    known |= now[j] == prev[k];
                if (!known)
                    fresh = now[j];
            }
            if (fresh == 0)
                it_sleep(0.02);
        }
        IT_CHECK(fresh != 0, "round %d: the killed worker %d was not replaced (%d of %d workers)", round,
                 (int) victim, m, n);
        if (fresh == 0)
            return;
        memcpy(prev, now, sizeof(prev));
        victim = fresh;
    }
    for (int i = 0; i < 5; i++)
        IT_STATUS(it_post(A, "/api_factor/test-post/", "{\"TestValue\":\"after five kills\"}"), 201);
}

/* A stop signal (TERM, USR1 or INT) to every worker of the pool while one
 * serves a batch: that request is still answered 201 by the worker that got
 * the signal, which then exits; the supervisor replaces the workers.  The
 * batch is held in flight by another transaction paying the same invoice,
 * left open until the signal has been sent. */
static void worker_stop_graceful(int sig, const char *name)
{
    int n;
    const char *before = workers(&n);
    IT_CHECK(n >= 1, "the pool has workers: <%s>", before);
    if (n < 1)
        return;
    const char *ck = it_uniq("TC"), *dk = it_uniq("TCD"), *num = it_uniq("T"), *iid = it_uniq("IID");
    mk_client(A, ck);
    mk_debtor(A, ck, dk, it_fmt("Payer %s", dk));
    IT_STATUS(sched(A, ck, it_uniq("TS"), "100.00", inv(dk, num, "100.00", iid)), 201);
    const char *tenant = IT_Q("SELECT tenant_id::text FROM invoices WHERE invoice_integration_id = $1", iid);
    IT_Q0("BEGIN");
    IT_Q0("SET LOCAL ROLE fl_api");
    IT_Q("SELECT posting_post_payments($1::uuid, $2::jsonb) IS NOT NULL", tenant,
         batch(it_uniq(name), "10.00", line("10.00", num, NULL, NULL, NULL, NULL)));
    IT_Q0("RESET ROLE");
    it_async inflight = pay_start(A, batch(it_uniq(name), "20.00", line("20.00", num, NULL, NULL, NULL, NULL)));
    /* in flight: a posting worker's statement waits for the invoice's row lock */
    IT_CHECK(worker_waits_for_lock(), "the batch did not wait for the invoice's lock: the test proves nothing");
    double sent_at = it_now();
    for (const char *p = before; *p; ) {
        while (*p == ' ') p++;
        if (*p)
            kill((pid_t) atol(p), sig);
        while (*p && *p != ' ') p++;
    }
    it_sleep(0.2);
    IT_Q0("COMMIT");
    double done_at = 0;
    char rid[64] = "";
    const char *answer;
    long status = it_async_collect(inflight, &done_at, rid, &answer);
    IT_CHECK(status == 201, "the batch in flight was answered %ld (%.200s)", status, answer);
    IT_CHECK(done_at > sent_at, "the answer came before %s was sent: the test proves nothing", name);
    IT_JSTR(it_json(answer), "PaymentDetails[0].AppliedAmount", "20.00");
    IT_STREQ(balance(A, iid), "70.00");
    /* the request's log line was written by one of the workers that got the signal */
    const char *pid = it_run(it_fmt("grep -h '\"request_id\":\"%s\"' '%s/../log/posting.log' "
                                    "| sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p' | head -n 1 | tr -d '\\n'",
                                    rid, it_env("FL_TEST_RUN")), NULL);
    IT_CHECK(*pid && strstr(it_fmt(" %s ", before), it_fmt(" %s ", pid)) != NULL,
             "request %s was served by <%s>, not by a worker that got %s <%s>", rid, pid, name, before);
    /* every old worker is gone and the count is restored */
    double t0 = it_now();
    int m = 0, old_left = 1;
    const char *after = "";
    while (it_now() - t0 < 10.0) {
        after = workers(&m);
        old_left = 0;
        for (const char *p = before; *p; ) {
            while (*p == ' ') p++;
            if (*p && strstr(it_fmt(" %s", after), it_fmt(" %ld ", atol(p))) != NULL)
                old_left = 1;
            while (*p && *p != ' ') p++;
        }
        if (m == n && !old_left)
            break;
        it_sleep(0.2);
    }
    IT_CHECK(m == n && !old_left, "workers replaced: before <%s>, after <%s>", before, after);
    IT_STATUS(it_post(A, "/api_factor/test-post/", it_fmt("{\"TestValue\":\"after %s\"}", name)), 201);
}

/* ---- a stop signal while the worker reads a body: FastCGI driven by the test itself ---- */

static void fcgi_put(int fd, int type, const void *data, size_t len)
{
    unsigned char h[8] = { 1, (unsigned char) type, 0, 1, (unsigned char) (len >> 8), (unsigned char) len, 0, 0 };
    IT_CHECK(write(fd, h, 8) == 8 && (len == 0 || write(fd, data, len) == (ssize_t) len), "FastCGI record written");
}

static size_t fcgi_pair(unsigned char *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), k = 0;
    out[k++] = (unsigned char) nl;                          /* names and values under 128 bytes */
    out[k++] = (unsigned char) vl;
    memcpy(out + k, name, nl);
    memcpy(out + k + nl, value, vl);
    return k + nl + vl;
}

/* A worker of the test's own (FL_LISTEN on a TCP port) gets a test-post, and SIGTERM arrives
 * while it waits in read(): with before_params, right after it accepted the connection and
 * before anything was sent (it waits for the request's header); otherwise when half the body
 * was sent. The request is still answered 201, and then the worker exits (docs/operations.md,
 * "Graceful stop"). Until the twenty-first session the interrupted body read failed the
 * request (400); until the twenty-third an interrupted read of the header or parameters
 * dropped it (the connection closed without an answer). */
static void worker_stop_in_read(int before_params)
{
    /* a free port: bound to port 0, the kernel's choice read back, then let go for the worker */
    int port = 0, probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = { .sin_family = AF_INET };
    socklen_t alen = sizeof(any);
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (probe >= 0 && bind(probe, (struct sockaddr *) &any, sizeof(any)) == 0
        && getsockname(probe, (struct sockaddr *) &any, &alen) == 0)
        port = ntohs(any.sin_port);
    if (probe >= 0)
        close(probe);
    IT_CHECK(port > 0, "no free port");
    if (port <= 0)
        return;
    const char *bin = it_fmt("%s/var/build/asan/modules/posting/fl-posting", it_env("FL_TEST_ROOT"));
    const char *db = it_fmt("host=%s dbname=factorline user=fl_api", it_env("FL_TEST_PGHOST"));
    pid_t w = fork();
    if (w == 0) {
        setenv("FL_LISTEN", it_fmt("127.0.0.1:%d", port), 1);
        setenv("FL_DATABASE_URL", db, 1);
        setenv("FL_DATA_KEY_FILE", it_env("FL_TEST_DATA_KEY"), 1);
        setenv("PGAPPNAME", "fl-posting-by-hand", 1);
        int log = open(it_fmt("%s/posting-by-hand.log", it_logdir()), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        execl(bin, bin, (char *) NULL);
        _exit(127);
    }
    IT_CHECK(w > 0, "fork");
    if (w <= 0)
        return;
    int fd = -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (double t0 = it_now(); fd < 0 && it_now() - t0 < 10.0;) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
            close(fd);
            fd = -1;
            it_sleep(0.05);
        }
    }
    IT_CHECK(fd >= 0, "the worker did not listen on port %d", port);
    if (fd < 0) {
        kill(w, SIGKILL);
        waitpid(w, NULL, 0);
        return;
    }
    char pad[1500];
    memset(pad, 'h', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    const char *body = it_fmt("{\"TestValue\":\"half\",\"Note\":\"%s\"}", pad);   /* unknown members are ignored */
    size_t blen = strlen(body), half = blen / 2;
    unsigned char begin[8] = { 0, 1, 0, 0, 0, 0, 0, 0 }, params[2048];
    size_t k = 0;
    k += fcgi_pair(params + k, "REQUEST_METHOD", "POST");
    k += fcgi_pair(params + k, "FL_PATH", "/api_factor/test-post/");
    k += fcgi_pair(params + k, "CONTENT_TYPE", "application/json");
    k += fcgi_pair(params + k, "CONTENT_LENGTH", it_fmt("%zu", blen));
    k += fcgi_pair(params + k, "REQUEST_ID", "stop-during-body");
    for (size_t i = 0; i < A->nheaders; i++) {
        char name[64] = "HTTP_";
        size_t n = 5;
        for (const char *c = A->headers[i].name; *c && n < sizeof(name) - 1; c++)
            name[n++] = *c == '-' ? '_' : (char) toupper((unsigned char) *c);
        name[n] = '\0';
        k += fcgi_pair(params + k, name, A->headers[i].value);
    }
    if (before_params)
        half = 0;
    else {
        fcgi_put(fd, 1, begin, 8);              /* FCGI_BEGIN_REQUEST, responder */
        fcgi_put(fd, 4, params, k);             /* FCGI_PARAMS */
        fcgi_put(fd, 4, NULL, 0);
        fcgi_put(fd, 5, body, half);            /* FCGI_STDIN, the first half */
    }
    /* the worker waits in read(): for the header, or (authenticated) for the rest of the body
     * (/proc/PID/syscall begins with the number of the call it waits in) */
#if defined(__aarch64__)
    const char *nr_read = "63 ";
#else
    const char *nr_read = "0 ";                 /* x86_64 */
#endif
    const char *sc = "";
    for (double t0 = it_now(); it_now() - t0 < 5.0; it_sleep(0.02)) {
        sc = it_run(it_fmt("cat /proc/%d/syscall 2>/dev/null", (int) w), NULL);
        if (strncmp(sc, nr_read, strlen(nr_read)) == 0)
            break;
    }
    IT_CHECK(strncmp(sc, nr_read, strlen(nr_read)) == 0, "the worker is not waiting in read(): <%.40s>", sc);
    IT_CHECK(kill(w, SIGTERM) == 0, "SIGTERM sent");
    it_sleep(0.2);
    if (before_params) {
        fcgi_put(fd, 1, begin, 8);
        fcgi_put(fd, 4, params, k);
        fcgi_put(fd, 4, NULL, 0);
    }
    fcgi_put(fd, 5, body + half, blen - half);
    fcgi_put(fd, 5, NULL, 0);
    /* the answer: STDOUT records up to FCGI_END_REQUEST */
    char out[65536];
    size_t got = 0;
    for (;;) {
        unsigned char h[8];
        if (recv(fd, h, 8, MSG_WAITALL) != 8)
            break;
        size_t len = ((size_t) h[4] << 8 | h[5]) + h[6];
        char rec[65536 + 256];
        if (len > 0 && recv(fd, rec, len, MSG_WAITALL) != (ssize_t) len)
            break;
        if (h[1] == 6 && got + len < sizeof(out)) {     /* FCGI_STDOUT */
            memcpy(out + got, rec, len - h[6]);
            got += len - h[6];
        }
        if (h[1] == 3)                                   /* FCGI_END_REQUEST */
            break;
    }
    out[got] = '\0';
    close(fd);
    IT_CHECK(strncmp(out, "Status: 201", 11) == 0, "a test-post interrupted by SIGTERM %s: <%.200s>",
             before_params ? "before its header" : "in mid-body", out);
    int st = 0;
    pid_t done = 0;
    for (double t0 = it_now(); done == 0 && it_now() - t0 < 5.0; it_sleep(0.05))
        done = waitpid(w, &st, WNOHANG);
    IT_CHECK(done == w && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the worker did not exit after the request (%d, %d)",
             (int) done, st);
    if (done != w) {
        kill(w, SIGKILL);
        waitpid(w, NULL, 0);
    }
}

static void test_stop_during_body(void) { worker_stop_in_read(0); }
static void test_stop_before_params(void) { worker_stop_in_read(1); }
static void test_worker_sigterm_graceful(void) { worker_stop_graceful(SIGTERM, "TERM"); }
static void test_worker_sigusr1_graceful(void) { worker_stop_graceful(SIGUSR1, "USR1"); }
static void test_worker_sigint_graceful(void) { worker_stop_graceful(SIGINT, "INT"); }

/* A statement that waits past statement_timeout (5 s: a table locked by another session) is
 * cancelled: 503 with Retry-After, no SQL text in the body, the SQLSTATE in the log. */
static void test_statement_timeout(void)
{
    const char *ck = it_uniq("STO");
    mk_client(A, ck);
    const char *path = it_fmt("/api_factor/get-client/?clientkey=%s", ck);
    /* the lock is held until the test ends the session that holds it */
    const char *app = it_uniq("fl-lock-test");
    it_run(it_fmt("(PGAPPNAME='%s' psql '%s' -qc 'BEGIN; LOCK TABLE clients IN ACCESS EXCLUSIVE MODE; "
                  "SELECT pg_sleep(60); COMMIT') </dev/null >/dev/null 2>&1 &", app, it_env("FL_ADMIN_DATABASE_URL")),
           NULL);
    double t0 = it_now();
    const char *held = NULL;
    while (it_now() - t0 < 10.0) {
        held = IT_Q0("SELECT count(*)::text FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                     "WHERE c.relname = 'clients' AND l.mode = 'AccessExclusiveLock' AND l.granted");
        if (held != NULL && strcmp(held, "1") == 0)
            break;
        it_sleep(0.05);
    }
    IT_STREQ(held, "1");
    t0 = it_now();
    it_resp *r = it_get(A, path);
    double took = it_now() - t0;
    IT_STATUS(r, 503);
    IT_BODY(r, E503);
    IT_STREQ(it_header_get(r, "Retry-After"), "5");
    IT_CHECK(took >= 4.5 && took < 12, "answered after %.1f s, expected the 5 s statement timeout", took);
    const char *rid = it_header_get(r, "X-Request-Id");
    int st = 1;
    if (rid != NULL)
        it_run(it_fmt("grep '\"request_id\":\"%s\"' '%s/posting.log' | grep -q '57014'", rid, it_logdir()), &st);
    IT_CHECK(st == 0, "the log has no 57014 line for request %s", rid ? rid : "(none)");
    IT_STREQ(IT_Q("SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE application_name = $1",
                  app), "1");
    t0 = it_now();
    const char *left;
    while ((left = IT_Q0("SELECT count(*)::text FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                         "WHERE c.relname = 'clients' AND l.mode = 'AccessExclusiveLock'")) != NULL
           && strcmp(left, "0") != 0 && it_now() - t0 < 5)
        it_sleep(0.05);
    IT_STATUS(it_get(A, path), 200);
}

static void test_database_down(void)
{
    int st;
    const char *ck = it_uniq("PGD");
    mk_client(A, ck);
    const char *iid = mk_invoice(A, "10.00", NULL);
    const char *out = it_run(it_env("FL_TEST_PG_STOP"), &st);
    IT_CHECK(st == 0, "PostgreSQL stopped (status %d): %s", st, out);

    /* a stored-function call, and a read sent as a pipeline (get-invoice) */
    const char *paths[] = { it_fmt("/api_factor/get-client/?clientkey=%s", ck),
                            it_fmt("/api_factor/get-invoice/?invoiceintegrationid=%s", iid) };
    for (int i = 0; i < 4; i++) {
        it_resp *r = it_get(A, paths[i % 2]);
        IT_CHECK(r->status == 503, "database down: %ld %s", r->status, r->body);
        IT_BODY(r, E503);
        IT_STREQ(it_header_get(r, "Retry-After"), "5");
        IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "503 carries X-Request-Id");
    }
    it_resp *r = it_post(A, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'n'}", it_uniq("PGD")));
    IT_STATUS(r, 503);
    IT_BODY(r, E503);

    out = it_run(it_env("FL_TEST_PG_START"), &st);
    IT_CHECK(st == 0, "PostgreSQL started (status %d): %s", st, out);
    double t0 = it_now();
    long last = 0;
    while (it_now() - t0 < 10.0) {
        r = it_get(A, paths[0]);
        last = r->status;
        if (last == 200)
            break;
        it_sleep(0.2);
    }
    IT_CHECK(last == 200, "service back within 10 s of PostgreSQL's start (last %ld after %.1f s)",
             last, it_now() - t0);
    /* every worker reconnects: reads and writes succeed. A write on a connection that just
     * broke is not retried: 503 once per worker that served nothing during the outage, and
     * no more */
    int refused = 0, pool = atoi(it_env("FL_TEST_WORKERS"));
    for (int i = 0; i < 6; i++) {
        r = it_post(A, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'back'}", it_uniq("PGD")));
        while (r->status == 503 && refused < pool) {
            refused++;
            r = it_post(A, "/api_factor/create-client/", J("{'ClientKey':'%s','Name':'back'}", it_uniq("PGD")));
        }
        IT_CHECK(r->status == 201, "write after recovery (%d 503s so far, a pool of %d): %ld %s", refused, pool,
                 r->status, r->body);
        IT_STATUS(it_get(A, paths[0]), 200);
        IT_STATUS(it_get(A, paths[1]), 200);
    }
}

/* ------------------------------------------------------------------ main --- */

typedef struct test { const char *name; CU_TestFunc fn; } test;
typedef struct suite { const char *name; const test *tests; } suite;

static const test t_example[] = {
    { "post-payments: the document's curl example", test_document_example }, { NULL, NULL } };
static const test t_auth[] = {
    { "401 without headers, on every endpoint", test_auth_missing_headers },
    { "401 for wrong APIKey, FactorID, SystemKey", test_auth_wrong_values },
    { "header names in any letter case", test_auth_header_case }, { NULL, NULL } };
static const test t_protocol[] = {
    { "404 unknown path", test_unknown_path },
    { "405 wrong method with Allow", test_wrong_method },
    { "400 malformed JSON", test_malformed_json },
    { "400 bad query: too long, malformed; 401 first", test_bad_query },
    { "text/plain with a JSON body", test_text_plain_accepted },
    { "413 over the 10 MB cap", test_payload_too_large },
    { "nginx's own 414 and 400 (also inside a family's location): JSON", test_nginx_refusals },
    { "an answer before the body is read, and after it", test_answer_before_body },
    { "X-Request-Id on every kind of answer", test_request_id_everywhere }, { NULL, NULL } };
static const test t_endpoints[] = {
    { "test-post", test_test_post },
    { "create-client, get-client", test_client_create_get },
    { "create-client errors", test_client_errors },
    { "create-debtor, get-client-debtor, get-debtor-master", test_debtor_create_get },
    { "create-debtor errors", test_debtor_errors },
    { "create-vendor", test_vendor },
    { "create-sched, get-sched, replay, 409", test_sched_create_get },
    { "create-sched errors", test_sched_errors },
    { "create-sched-broker, get-broker-sched", test_broker_sched },
    { "get-invoice", test_get_invoice }, { NULL, NULL } };
static const test t_payments[] = {
    { "post-payments errors store nothing", test_payment_errors },
    { "post-payments replay and 409", test_payment_replay_and_conflict },
    { "post-payments: the first answer is the stored batch, byte for byte", test_payment_echo_is_stored },
    { "concurrent identical retries all get the replay", test_concurrent_retries },
    { "two debtors of one name at once: two CompCodes, no 409", test_concurrent_debtor_compcodes },
    { "two schedules naming one invoice at once: the documented 409", test_concurrent_sched_same_invoice },
    { "money is exact", test_money_exact },
    { "post-payments echo: FinancialDocs as sent, \"\" as null", test_payment_echo },
    { "at most 5,000 invoices and 10,000 lines", test_caps }, { NULL, NULL } };
static const test t_reconcile[] = {
    { "partial payment", test_reconcile_partial },
    { "overpayment leaves an unapplied remainder", test_reconcile_overpayment },
    { "memo line naming two invoices", test_reconcile_memo_two_invoices },
    { "ambiguous invoice number, resolved by ClientCode", test_reconcile_ambiguous },
    { "a batch paying invoices another transaction is paying", test_reconcile_concurrent },
    { "a batch in a deadlock with a DBA's transaction: 503, nothing stored, then applied", test_reconcile_deadlock },
    { "a batch learning an account another transaction is learning does not wait for it", test_reconcile_learn_no_wait }, { NULL, NULL } };
static const test t_tenants[] = {
    { "tenant b sees and touches nothing of a", test_tenant_isolation }, { NULL, NULL } };
static const test t_ops[] = {
    { "a revoked key stops within 5 s", test_revoked_key },
    { "a tenant whose FactorID is over 64 characters: refused, logged", test_long_factor_id },
    { "a worker killed with SIGKILL is replaced", test_worker_killed },
    { "a worker killed five times in a row is replaced each time", test_worker_killed_repeatedly },
    { "SIGTERM: the request in flight is answered, then the worker exits", test_worker_sigterm_graceful },
    { "SIGUSR1: the request in flight is answered, then the worker exits", test_worker_sigusr1_graceful },
    { "SIGINT: the request in flight is answered, then the worker exits", test_worker_sigint_graceful },
    { "SIGTERM while a body is half read: answered 201, then the worker exits", test_stop_during_body },
    { "SIGTERM just after accept, before the request is sent: answered 201, then the worker exits",
      test_stop_before_params },
    { "a statement past statement_timeout: 503, no SQL text", test_statement_timeout },
    /* it stops PostgreSQL */
    { "PostgreSQL down: 503 + Retry-After, then back", test_database_down },
    /* last: over every answer, the 503s above included */
    { "every response carried X-Request-Id", it_test_request_ids }, { NULL, NULL } };

static const suite SUITES[] = {
    { "posting: document example", t_example },
    { "posting: authentication", t_auth },
    { "posting: HTTP protocol", t_protocol },
    { "posting: endpoints", t_endpoints },
    { "posting: payments", t_payments },
    { "posting: reconciliation", t_reconcile },
    { "posting: tenant isolation", t_tenants },
    { "posting: operations", t_ops },
};

int main(void)
{
    it_init();
    A = it_cred_get("a", "posting");
    B = it_cred_get("b", "posting");
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    for (size_t i = 0; i < sizeof(SUITES) / sizeof(SUITES[0]); i++) {
        CU_pSuite s = CU_add_suite(SUITES[i].name, NULL, NULL);
        if (s == NULL)
            return 2;
        for (const test *t = SUITES[i].tests; t->name != NULL; t++)
            if (CU_add_test(s, t->name, t->fn) == NULL)
                return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    unsigned tests_failed = CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    it_cleanup();
    fprintf(stderr, "test_posting: %u failed asserts in %u tests\n", failures, tests_failed);
    return failures > 0 ? 1 : 0;
}
