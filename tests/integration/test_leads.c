/* Integration tests of the leads family (Forward Financing Partner API)
 * through real nginx over TLS, against the test stack's PostgreSQL.
 *
 * Credentials ($FL_TEST_CREDENTIALS): a.leads, a.leads2 (another partner of
 * the same tenant), b.leads (another tenant) are unlimited; a.leads_limited
 * keeps 1 request/s with a burst of 5.  Webhook and trigger tests make
 * partners of their own (fl-admin key add) so that their subscriptions and
 * deliveries are theirs alone.  Stage changes go through
 * `fl-admin lead stage` ($FL_TEST_ADMIN), as `./factorline lead stage` does.
 * The DB checks (PII at rest, attachments, events) read as the owner
 * ($FL_ADMIN_DATABASE_URL). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "itest.h"

/* ------------------------------------------------------------ documents --- */

/* The document's example lead, exactly as the vendor shows it. */
static const char *const EXAMPLE =
    "{\n\"lead\": {\n\"contacts_attributes\": [\n{\n\"first_name\": \"Erlich\",\n\"last_name\": \"Bachman\",\n"
    "\"email\": \"erlich@piedpiper.com\",\n\"title\": \"COO and Spiritual Advisor\",\n\"born_on\": \"2015-01-01\",\n"
    "\"home_phone\": \"6176781000\",\n\"cell_phone\": \"6176781000\",\n\"ssn\": \"234345566\",\n"
    "\"ownership_date\": \"2015-01-01\",\n\"current_address_attributes\": {\n\"street1\": \"36 Bromfield St\",\n"
    "\"street2\": \"Second Floor\",\n\"city\": \"Boston\",\n\"state\": \"MA\",\n\"zip\": \"00112\"\n}\n}\n],\n"
    "\"account_attributes\": {\n\"entity_type\": \"Limited Liability Company (LLC)\",\n\"name\": \"Pied Piper\",\n"
    "\"started_on\": \"2015-01-01\",\n\"legal_name\": \"Pied Piper LLC\",\n\"phone\": \"6176781000\",\n"
    "\"email\": \"support@piedpiper.com\",\n\"website\": \"https://www.piedpiper.com/\",\n\"fein\": \"000000000\",\n"
    "\"monthly_revenue\": \"Less than $5,000\",\n\"industry_name\": \"Compression Algorithms\",\n"
    "\"current_address_attributes\": {\n\"street1\": \"36 Bromfield St\",\n\"street2\": \"Second Floor\",\n"
    "\"city\": \"Boston\",\n\"state\": \"MA\",\n\"zip\": \"00112\"\n}\n},\n\"loan_attributes\": {\n"
    "\"company_name\": \"Wells Fargo\",\n\"daily_payment_amount\": 25,\n\"balance\": 15000.23\n},\n"
    "\"application_attributes\": {\n\"has_current_loan\": true,\n\"applicant_is_owner\": true,\n"
    "\"loan_use\": \"Debt Refinancing\",\n\"capital_needed\": \"50000\",\n\"owner_1_percent_ownership\": 56,\n"
    "\"owner_2_percent_ownership\": 9,\n\"reference_id\": \"ANYTHING_YOUWANT_AS_A_STRING\",\n"
    "\"notes\": \"We think this is a great deal!\"\n}\n}\n}";

/* A copy of the example (pool-owned) with a fresh reference_id. */
static json_object *lead_doc(void)
{
    json_object *o = it_json(EXAMPLE);
    json_object *app = it_jget(o, "lead.application_attributes");
    json_object_object_add(app, "reference_id", json_object_new_string(it_uniq("REF")));
    return o;
}

/* Sets (value JSON text) or removes (value NULL) the member at path, such as
 * "lead.contacts_attributes[0].ssn". */
static void jset(json_object *root, const char *path, const char *value)
{
    const char *dot = strrchr(path, '.');
    json_object *parent = it_jget(root, it_fmt("%.*s", (int) (dot - path), path));
    IT_CHECK(parent != NULL, "jset: no parent for %s", path);
    if (parent == NULL)
        return;
    if (value == NULL) {
        json_object_object_del(parent, dot + 1);
        return;
    }
    json_object *v = json_tokener_parse(value);         /* NULL for JSON null, too */
    IT_CHECK(v != NULL || strcmp(value, "null") == 0, "jset: %s is not JSON", value);
    json_object_object_add(parent, dot + 1, v);
}

static const char *jtext(json_object *o)
{
    return it_fmt("%s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

/* errors[attr] holds msg (attr is a literal key such as "contacts_attributes[0].ssn"). */
static int err_has(const it_resp *r, const char *attr, const char *msg)
{
    json_object *errors, *arr;
    if (r->json == NULL || !json_object_object_get_ex(r->json, "errors", &errors)
        || !json_object_object_get_ex(errors, attr, &arr) || !json_object_is_type(arr, json_type_array))
        return 0;
    for (size_t i = 0; i < json_object_array_length(arr); i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), msg) == 0)
            return 1;
    return 0;
}

#define ERR_HAS(r, attr, msg) \
    IT_CHECK(err_has((r), (attr), (msg)), "errors[\"%s\"] lacks \"%s\": %s", (attr), (msg), (r)->body)

/* The body equals want as JSON (member order aside). */
#define JSON_IS(r, want) \
    IT_CHECK((r)->json != NULL && json_object_equal((r)->json, it_json(want)), \
             "body %s, expected %s", (r)->body, (want))

/* The body, byte for byte (member order included). */
#define BODY_IS(r, want) IT_STREQ((r)->body, (want))

static int is_json_ct(const it_resp *r)
{
    const char *ct = it_header_get(r, "Content-Type");
    return ct != NULL && strncmp(ct, "application/json", 16) == 0;
}

/* ---------------------------------------------------------------- fixtures --- */

#define A() it_cred_get("a", "leads")
#define A2() it_cred_get("a", "leads2")
#define B() it_cred_get("b", "leads")
#define LIM() it_cred_get("a", "leads_limited")

/* A copy of c talking to base (FL_TEST_HTTPS or FL_TEST_HTTP) + rest instead. */
static const it_cred *cred_at(const it_cred *c, const char *base, const char *rest)
{
    it_cred *o = (it_cred *) it_alloc(sizeof(*o));
    *o = *c;
    o->base_url = it_fmt("%s%s", base, rest);
    return o;
}

/* A new partner of tenant itest-a, unlimited: its own subscription and events. */
static const it_cred *new_partner(void)
{
    int st;
    const char *out = it_run(it_fmt("'%s' key add --tenant itest-a --family leads --base-url '%s/leads' 2>&1",
                                    it_env("FL_TEST_ADMIN"), it_env("FL_TEST_HTTPS")), &st);
    IT_CHECK(st == 0, "fl-admin key add: exit %d: %s", st, out);
    const it_cred *c = it_cred_parse(out);
    IT_CHECK(c != NULL, "fl-admin key add printed %s", out);
    if (c == NULL)
        return A();
    const char *pub = it_leads_public_id(c);
    /* the exit status of key limit has a test of its own (test_key_limit) */
    it_run(it_fmt("'%s' key limit --family leads --public-id '%s' --unlimited >/dev/null 2>&1", it_env("FL_TEST_ADMIN"), pub),
           &st);
    IT_STREQ(IT_Q("SELECT (rate_per_sec IS NULL)::text FROM credentials WHERE family = 'leads' AND public_id = $1", pub),
             "true");
    return c;
}

/* POSTs a lead (doc NULL: a fresh copy of the example); its id, or NULL. */
static const char *create_lead(const it_cred *c, json_object *doc)
{
    it_resp *r = it_post(c, "/lead", jtext(doc ? doc : lead_doc()));
    IT_STATUS(r, 201);
    return it_jstr(r->json, "id");
}

/* `fl-admin lead stage ID STAGE opts`; exit status in *st, output (stdout + stderr). */
static const char *stage(const char *id, const char *stage_name, const char *opts, int *st)
{
    return it_run(it_fmt("'%s' lead stage '%s' '%s' %s 2>&1", it_env("FL_TEST_ADMIN"), id, stage_name, opts), st);
}

static void stage_ok(const char *id, const char *stage_name, const char *opts)
{
    int st;
    const char *out = stage(id, stage_name, opts, &st);
    IT_CHECK(st == 0, "lead stage %s %s: exit %d: %s", id, stage_name, st, out);
}

static const char *sha256_hex(const void *p, size_t n)
{
    unsigned char h[32];
    char *hex = it_alloc(64);
    SHA256(p, n, h);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    return hex;
}

/* Waits (bounded) for an attachment of the lead to leave pending/fetching; its state. */
static const char *wait_attachment(const char *lead, const char *filename, double timeout)
{
    double end = it_now() + timeout;
    const char *s;
    for (;;) {
        s = IT_Q("SELECT a.state FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                 "WHERE l.public_id = $1 AND a.filename = $2", lead, filename);
        if (s == NULL || (strcmp(s, "pending") != 0 && strcmp(s, "fetching") != 0) || it_now() >= end)
            return s;
        it_sleep(0.1);
    }
}

/* ---------------------------------------------------------------- receiver --- */

/* Waits up to timeout s for a request whose body has lead_id and event_type. */
static json_object *rcv_wait_event(const it_rcv *r, const char *lead, const char *event, double timeout)
{
    json_object *lines[64];
    double end = it_now() + timeout;
    do {
        int n = it_rcv_read(r, lines, 64);
        for (int i = 0; i < n; i++) {
            json_object *b = it_json(it_jstr(lines[i], "body"));
            if (b && it_jstr(b, "lead_id") && strcmp(it_jstr(b, "lead_id"), lead) == 0
                && it_jstr(b, "event_type") && strcmp(it_jstr(b, "event_type"), event) == 0)
                return lines[i];
        }
        it_sleep(0.05);
    } while (it_now() < end);
    return NULL;
}

/* ------------------------------------------------------------------- tests --- */

static const char *example_id;      /* the example lead, partner a.leads */

/* The document's example, sent as is, is accepted; the id is opaque. */
static void test_example_lead(void)
{
    it_resp *r = it_post(A(), "/lead", EXAMPLE);
    IT_STATUS(r, 201);
    IT_CHECK(is_json_ct(r), "Content-Type %s", it_header_get(r, "Content-Type"));
    IT_MESSAGE(r, "Your lead was successfully created.");
    example_id = it_jstr(r->json, "id");
    IT_CHECK(example_id != NULL && strlen(example_id) == 32 && strspn(example_id, "0123456789abcdef") == 32,
             "id %s is not 32 random hex digits", example_id ? example_id : "(none)");
    IT_CHECK(json_object_object_length(r->json) == 2, "extra members: %s", r->body);
    if (example_id == NULL)
        return;
    /* the id is not the row's key, and nothing else about the row */
    IT_STREQ(IT_Q("SELECT (id::text <> public_id)::text FROM leads WHERE public_id = $1", example_id), "true");
    IT_STREQ(IT_Q("SELECT reference_id FROM leads WHERE public_id = $1", example_id), "ANYTHING_YOUWANT_AS_A_STRING");
    /* every part of the document was stored */
    IT_STREQ(IT_Q("SELECT concat_ws('|', l.entity_type, l.business_name, l.started_on, l.legal_name, l.business_phone, "
                  "l.business_email, l.website, l.fein_last4, l.monthly_revenue, l.industry_name, l.business_street1, "
                  "l.business_street2, l.business_city, l.business_state, l.business_zip, l.has_current_loan, l.applicant_is_owner, l.loan_use, l.capital_needed, "
                  "l.owner_1_percent_ownership, l.owner_2_percent_ownership, l.notes, l.prior_loan_company, "
                  "l.prior_loan_daily_payment, l.prior_loan_balance) FROM leads l WHERE l.public_id = $1", example_id),
             "Limited Liability Company (LLC)|Pied Piper|2015-01-01|Pied Piper LLC|6176781000|support@piedpiper.com|"
             "https://www.piedpiper.com/|0000|Less than $5,000|Compression Algorithms|36 Bromfield St|Second Floor|"
             "Boston|MA|00112|t|t|Debt Refinancing|50000.00|56.00|9.00|We think this is a great deal!|"
             "Wells Fargo|25.00|15000.23");
    IT_STREQ(IT_Q("SELECT concat_ws('|', c.position, c.first_name, c.last_name, c.email, c.title, c.home_phone, "
                  "c.cell_phone, c.ssn_last4, c.ownership_date, c.street1, c.street2, c.city, c.state, c.zip) "
                  "FROM leads l JOIN lead_contacts c ON c.lead_id = l.id WHERE l.public_id = $1", example_id),
             "1|Erlich|Bachman|erlich@piedpiper.com|COO and Spiritual Advisor|6176781000|6176781000|5566|"
             "2015-01-01|36 Bromfield St|Second Floor|Boston|MA|00112");
    /* two leads never get the same id */
    const char *other = create_lead(A(), NULL);
    IT_CHECK(other && strcmp(other, example_id) != 0, "two leads with id %s", example_id);
}

/* A reused reference_id: 422 with the document's message; another partner may use it. */
static void test_reference_not_unique(void)
{
    json_object *d = lead_doc();
    jset(d, "lead.application_attributes.reference_id", "\"THIS_ISNT_UNIQUE\"");
    IT_STATUS(it_post(A(), "/lead", jtext(d)), 201);
    it_resp *r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    JSON_IS(r, "{\"message\":\"Reference ID is not unique.\"}");
    /* the example's reference, sent again by the same partner */
    r = it_post(A(), "/v1/lead", EXAMPLE);
    IT_STATUS(r, 422);
    JSON_IS(r, "{\"message\":\"Reference ID is not unique.\"}");
    /* uniqueness is per partner: another partner's own reference */
    IT_STATUS(it_post(A2(), "/lead", jtext(d)), 201);
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = 'THIS_ISNT_UNIQUE'"), "2");
}

/* The document's "Missing Info" example: no address on the contact. */
static void test_missing_address(void)
{
    json_object *d = lead_doc();
    jset(d, "lead.contacts_attributes[0].current_address_attributes", NULL);
    it_resp *r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    IT_CHECK(is_json_ct(r), "Content-Type %s", it_header_get(r, "Content-Type"));
    JSON_IS(r, "{\"errors\":{\"contacts_attributes\":[\"Must provide address\"]}}");

    /* an address without its street is no address either */
    d = lead_doc();
    jset(d, "lead.contacts_attributes[0].current_address_attributes.street1", NULL);
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "contacts_attributes", "Must provide address");

    /* one contact with an address is enough */
    d = lead_doc();
    json_object *contacts = it_jget(d, "lead.contacts_attributes");
    json_object_array_add(contacts, json_tokener_parse("{\"first_name\":\"Jared\",\"last_name\":\"Dunn\"}"));
    IT_STATUS(it_post(A(), "/lead", jtext(d)), 201);
}

/* Required members: reference_id, a contact's names, the account's name. */
static void test_required(void)
{
    const char *before = IT_Q0("SELECT count(*)::text FROM leads");
    json_object *d = lead_doc();
    jset(d, "lead.application_attributes.reference_id", NULL);
    jset(d, "lead.contacts_attributes[0].first_name", NULL);
    jset(d, "lead.contacts_attributes[0].last_name", "\"  \"");
    jset(d, "lead.account_attributes.name", "null");
    it_resp *r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "application_attributes.reference_id", "can't be blank");
    ERR_HAS(r, "contacts_attributes[0].first_name", "can't be blank");
    ERR_HAS(r, "contacts_attributes[0].last_name", "can't be blank");
    ERR_HAS(r, "account_attributes.name", "can't be blank");
    IT_CHECK(json_object_object_length(it_jget(r->json, "errors")) == 4,
             "expected exactly 4 attributes in error: %s", r->body);

    /* no contact at all, no account, no application */
    d = lead_doc();
    jset(d, "lead.contacts_attributes", "[]");
    jset(d, "lead.account_attributes", NULL);
    jset(d, "lead.application_attributes", NULL);
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    IT_CHECK(json_object_object_get_ex(it_jget(r->json, "errors"), "contacts_attributes", NULL),
             "empty contacts_attributes not reported: %s", r->body);
    ERR_HAS(r, "account_attributes", "can't be blank");
    ERR_HAS(r, "application_attributes", "can't be blank");
    /* neither refused document stored anything */
    IT_STREQ(IT_Q0("SELECT count(*)::text FROM leads"), before ? before : "?");
}

/* Every invalid field reported at once, under its attribute name. */
/* Leads' dates are YYYY-MM-DD only (posting's other forms would read 07/15/80 as 2080);
 * percentages have at most 2 decimals; booleans may be the strings "true"/"false"; what is
 * refused stores nothing, what is accepted is stored as sent. */
static void test_dates_and_percentages(void)
{
    static const struct { const char *path, *value, *attr, *msg; } bad[] = {
        { "lead.contacts_attributes[0].born_on", "\"07/15/1980\"", "contacts_attributes[0].born_on", "is not a valid date" },
        { "lead.contacts_attributes[0].born_on", "\"07/15/80\"", "contacts_attributes[0].born_on", "is not a valid date" },
        { "lead.contacts_attributes[0].ownership_date", "\"07-15-2015\"", "contacts_attributes[0].ownership_date",
          "is not a valid date" },
        { "lead.account_attributes.started_on", "\"2015/01/01\"", "account_attributes.started_on", "is not a valid date" },
        { "lead.application_attributes.owner_1_percent_ownership", "33.333",
          "application_attributes.owner_1_percent_ownership", "must be between 0 and 100, with at most 2 decimals" },
        { "lead.application_attributes.owner_2_percent_ownership", "\"33.333\"",
          "application_attributes.owner_2_percent_ownership", "must be between 0 and 100, with at most 2 decimals" },
        { "lead.application_attributes.has_current_loan", "\"yes\"", "application_attributes.has_current_loan",
          "must be true or false" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_object *d = lead_doc();
        const char *ref = it_uniq("fmt");
        jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
        jset(d, bad[i].path, bad[i].value);
        it_resp *r = it_post(A(), "/lead", jtext(d));
        IT_STATUS(r, 422);
        ERR_HAS(r, bad[i].attr, bad[i].msg);
        IT_CHECK(json_object_object_length(it_jget(r->json, "errors")) == 1, "%s %s: %s", bad[i].path, bad[i].value, r->body);
        IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1", ref), "0");
    }
    json_object *d = lead_doc();
    const char *ref = it_uniq("fmt");
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    jset(d, "lead.contacts_attributes[0].ownership_date", "\"2015-07-15\"");
    jset(d, "lead.application_attributes.owner_1_percent_ownership", "33.33");
    jset(d, "lead.application_attributes.owner_2_percent_ownership", "\"66.67\"");
    jset(d, "lead.application_attributes.has_current_loan", "\"False\"");
    jset(d, "lead.application_attributes.applicant_is_owner", "\"true\"");
    IT_STATUS(it_post(A(), "/lead", jtext(d)), 201);
    IT_STREQ(IT_Q("SELECT c.ownership_date::text || ' ' || l.owner_1_percent_ownership || ' ' || "
                  "l.owner_2_percent_ownership || ' ' || l.has_current_loan || ' ' || l.applicant_is_owner "
                  "FROM leads l JOIN lead_contacts c ON c.lead_id = l.id AND c.position = 1 "
                  "WHERE l.reference_id = $1", ref),
             "2015-07-15 33.33 66.67 false true");
}

static void test_validation_all_at_once(void)
{
    json_object *d = lead_doc();
    jset(d, "lead.contacts_attributes[0].email", "\"not-an-email\"");
    jset(d, "lead.contacts_attributes[0].home_phone", "\"617678100\"");
    jset(d, "lead.contacts_attributes[0].cell_phone", "\"61767810001\"");
    jset(d, "lead.contacts_attributes[0].ssn", "\"234-34-5566\"");
    jset(d, "lead.contacts_attributes[0].born_on", "\"2015-02-30\"");
    jset(d, "lead.contacts_attributes[0].ownership_date", "\"2999-01-01\"");
    jset(d, "lead.contacts_attributes[0].current_address_attributes.state", "\"ZZ\"");
    jset(d, "lead.contacts_attributes[0].current_address_attributes.zip", "\"0011\"");
    jset(d, "lead.account_attributes.fein", "\"12345678\"");
    jset(d, "lead.account_attributes.email", "\"support@\"");
    jset(d, "lead.account_attributes.phone", "\"phone\"");
    jset(d, "lead.account_attributes.started_on", "\"yesterday\"");
    jset(d, "lead.account_attributes.current_address_attributes.zip", "\"001123\"");
    jset(d, "lead.application_attributes.capital_needed", "\"-5\"");
    jset(d, "lead.application_attributes.owner_1_percent_ownership", "101");
    jset(d, "lead.application_attributes.owner_2_percent_ownership", "-1");
    it_resp *r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "contacts_attributes[0].email", "is not a valid email");
    ERR_HAS(r, "contacts_attributes[0].home_phone", "must be 10 digits");
    ERR_HAS(r, "contacts_attributes[0].cell_phone", "must be 10 digits");
    ERR_HAS(r, "contacts_attributes[0].ssn", "must be 9 digits");
    ERR_HAS(r, "contacts_attributes[0].born_on", "is not a valid date");
    ERR_HAS(r, "contacts_attributes[0].ownership_date", "can't be in the future");
    ERR_HAS(r, "contacts_attributes[0].current_address_attributes.state", "is not a valid state");
    ERR_HAS(r, "contacts_attributes[0].current_address_attributes.zip", "is not a valid zip code");
    ERR_HAS(r, "account_attributes.fein", "must be 9 digits");
    ERR_HAS(r, "account_attributes.email", "is not a valid email");
    ERR_HAS(r, "account_attributes.phone", "must be 10 digits");
    ERR_HAS(r, "account_attributes.started_on", "is not a valid date");
    ERR_HAS(r, "account_attributes.current_address_attributes.zip", "is not a valid zip code");
    ERR_HAS(r, "application_attributes.capital_needed", "must be a positive number with at most 2 decimals");
    ERR_HAS(r, "application_attributes.owner_1_percent_ownership", "must be between 0 and 100, with at most 2 decimals");
    ERR_HAS(r, "application_attributes.owner_2_percent_ownership", "must be between 0 and 100, with at most 2 decimals");
    /* the contact's only address is invalid: it does not count as an address */
    ERR_HAS(r, "contacts_attributes", "Must provide address");
    IT_CHECK(json_object_object_length(it_jget(r->json, "errors")) == 17, "expected 17 attributes: %s", r->body);

    /* the second contact's errors carry its index */
    d = lead_doc();
    json_object_array_add(it_jget(d, "lead.contacts_attributes"),
                          json_tokener_parse("{\"first_name\":\"J\",\"last_name\":\"D\",\"ssn\":\"12345678\","
                                             "\"born_on\":\"2999-12-31\"}"));
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "contacts_attributes[1].ssn", "must be 9 digits");
    ERR_HAS(r, "contacts_attributes[1].born_on", "can't be in the future");
    IT_CHECK(json_object_object_length(it_jget(r->json, "errors")) == 2, "the valid contact was reported: %s", r->body);

    /* percentages that are each valid but sum over 100; capital_needed zero and not a number */
    d = lead_doc();
    jset(d, "lead.application_attributes.owner_1_percent_ownership", "60");
    jset(d, "lead.application_attributes.owner_2_percent_ownership", "\"40.01\"");
    jset(d, "lead.application_attributes.capital_needed", "\"0\"");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "application_attributes", "owner percentages of ownership must add up to at most 100");
    ERR_HAS(r, "application_attributes.capital_needed", "must be a positive number with at most 2 decimals");
    d = lead_doc();
    jset(d, "lead.application_attributes.capital_needed", "\"fifty thousand\"");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "application_attributes.capital_needed", "must be a positive number with at most 2 decimals");
    /* text: a control character other than a tab or a line end; a length in characters */
    d = lead_doc();
    jset(d, "lead.application_attributes.notes", "\"ring \\u0007 the bell\"");
    char name[2 + 60 * 2 + 1] = "\"";                 /* 60 characters, 120 bytes: under first_name's 100 */
    for (int i = 0; i < 60; i++)
        strcat(name, "\xc3\xa9");
    strcat(name, "\"");
    jset(d, "lead.contacts_attributes[0].first_name", name);
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "application_attributes.notes", "contains control characters");
    IT_CHECK(json_object_object_length(it_jget(r->json, "errors")) == 1, "60 two-byte characters are not too long: %s", r->body);

    /* the edges that are valid: 100 in total, formatted phones, ZIP+4, lower-case state, a decimal,
     * notes over several lines (a CRM's text box) */
    d = lead_doc();
    jset(d, "lead.application_attributes.owner_1_percent_ownership", "60");
    jset(d, "lead.application_attributes.owner_2_percent_ownership", "\"40.00\"");
    jset(d, "lead.application_attributes.capital_needed", "\"50000.50\"");
    jset(d, "lead.contacts_attributes[0].home_phone", "\"(617) 678-1000\"");
    jset(d, "lead.contacts_attributes[0].cell_phone", "\"1-617-678-1000\"");
    jset(d, "lead.contacts_attributes[0].current_address_attributes.zip", "\"00112-1234\"");
    jset(d, "lead.contacts_attributes[0].current_address_attributes.state", "\"ma\"");
    jset(d, "lead.contacts_attributes[0].born_on", "\"1996-02-29\"");
    jset(d, "lead.application_attributes.notes", "\"Strong deal.\\r\\nSee:\\tstatements\\n\"");
    const char *id = create_lead(A(), d);
    IT_STREQ(IT_Q("SELECT c.home_phone || '|' || c.cell_phone || '|' || c.state || '|' || c.zip || '|' || l.capital_needed "
                  "|| '|' || l.notes FROM leads l JOIN lead_contacts c ON c.lead_id = l.id "
                  "WHERE l.public_id = $1", id ? id : ""),
             "6176781000|6176781000|MA|00112-1234|50000.50|Strong deal.\r\nSee:\tstatements");
}

/* docs/leads.md, "Member names", "Text fields take numbers", "A byte order mark": names in any
 * case, members the document does not name ignored, a number for a text field kept as its text,
 * a BOM refused. */
static void test_member_names(void)
{
    const it_cred *p = new_partner();
    json_object *d = lead_doc();
    jset(d, "lead.favourite_color", "\"blue\"");
    jset(d, "lead.account_attributes.address_attributes", "{\"street1\":\"1 Lost St\"}");
    jset(d, "lead.application_attributes.reference_id", "42");
    const char *text = jtext(d);
    /* the wrapper, an *_attributes and a field in other cases */
    text = it_fmt("{\"Lead\"%s", strstr(text, ":"));
    char *k = strstr(text, "\"account_attributes\"");
    IT_CHECK(k != NULL, "no account_attributes in %s", text);
    if (k != NULL)
        memcpy(k, "\"Account_Attributes\"", 20);
    k = strstr(text, "\"first_name\"");
    if (k != NULL)
        memcpy(k, "\"FIRST_NAME\"", 12);
    it_resp *r = it_post(p, "/lead", text);
    IT_STATUS(r, 201);
    const char *id = it_jstr(r->json, "id");
    IT_STREQ(IT_Q("SELECT l.reference_id || '|' || l.business_name || '|' || c.first_name FROM leads l "
                  "JOIN lead_contacts c ON c.lead_id = l.id "
                  "WHERE l.public_id = $1 ORDER BY c.id LIMIT 1", id ? id : ""),
             it_fmt("42|%s|%s", it_jstr(it_json(EXAMPLE), "lead.account_attributes.name"),
                    it_jstr(it_json(EXAMPLE), "lead.contacts_attributes[0].first_name")));
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads l LEFT JOIN lead_contacts c ON c.lead_id = l.id "
                  "WHERE l.public_id = $1 AND '1 Lost St' IN (l.business_street1, c.street1)", id ? id : ""), "0");
    /* a byte order mark before the document */
    d = lead_doc();
    r = it_post(p, "/lead", it_fmt("\xEF\xBB\xBF%s", jtext(d)));
    IT_STATUS(r, 422);
    ERR_HAS(r, "base", "is not valid JSON");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1",
                  it_jstr(d, "lead.application_attributes.reference_id")), "0");
}

/* The shapes of a lead document (docs/leads.md, "Errors"): each message as documented, and
 * nothing stored for any of them. */
static void test_validation_shapes(void)
{
    const char *ref = it_uniq("shape");
    it_resp *r = it_post(A(), "/lead", "{}");
    IT_STATUS(r, 422);
    ERR_HAS(r, "lead", "can't be blank");
    r = it_post(A(), "/lead", "{\"lead\": []}");
    IT_STATUS(r, 422);
    ERR_HAS(r, "lead", "can't be blank");
    r = it_post(A(), "/lead", "[]");
    IT_STATUS(r, 422);
    ERR_HAS(r, "base", "is not valid JSON");

    /* contacts: none, eleven, not an array */
    json_object *d = lead_doc();
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    jset(d, "lead.contacts_attributes", "[]");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "contacts_attributes", "has a wrong number of items");
    d = lead_doc();
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    json_object *one = it_jget(d, "lead.contacts_attributes[0]");
    json_object *eleven = json_object_new_array();
    for (int i = 0; i < 11; i++) {
        json_object *c = NULL;
        json_object_deep_copy(one, &c, NULL);
        json_object_array_add(eleven, c);
    }
    json_object_object_add(it_jget(d, "lead"), "contacts_attributes", eleven);
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "contacts_attributes", "has a wrong number of items");
    d = lead_doc();
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    jset(d, "lead.contacts_attributes", "{\"first_name\":\"J\"}");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "contacts_attributes", "must be an array");

    /* a name of 101 characters; objects that are not objects; a loan's amounts (zero allowed,
     * a negative one not); an object where text is expected */
    d = lead_doc();
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    char name[1 + 101 + 2] = "\"";
    memset(name + 1, 'x', 101);
    strcpy(name + 102, "\"");
    jset(d, "lead.contacts_attributes[0].last_name", name);
    jset(d, "lead.account_attributes", "\"Acme\"");
    jset(d, "lead.loan_attributes", "{\"daily_payment_amount\":\"-1\",\"balance\":\"12.345\"}");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "contacts_attributes[0].last_name", "is too long (maximum is 100 characters)");
    ERR_HAS(r, "account_attributes", "must be an object");
    ERR_HAS(r, "loan_attributes.daily_payment_amount", "must be a positive number with at most 2 decimals");
    ERR_HAS(r, "loan_attributes.balance", "must be a positive number with at most 2 decimals");
    d = lead_doc();
    jset(d, "lead.application_attributes", "[1]");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "application_attributes", "must be an object");
    d = lead_doc();
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    jset(d, "lead.application_attributes.loan_use", "{\"working\":\"capital\"}");
    jset(d, "lead.loan_attributes", "{\"daily_payment_amount\":0,\"balance\":\"0.00\"}");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "application_attributes.loan_use", "is invalid");
    IT_CHECK(json_object_object_length(it_jget(r->json, "errors")) == 1, "a loan of zero was refused: %s", r->body);
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1", ref), "0");
}

/* Malformed JSON and bodies that are not a lead document: 422. */
static void test_malformed(void)
{
    static const char *const bodies[] = { "{\"lead\": {", "not json", "[]", "{}", "{\"lead\": []}", "" };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        it_resp *r = it_post(A(), "/lead", bodies[i]);
        IT_STATUS(r, 422);
        IT_CHECK(is_json_ct(r) && it_jget(r->json, "errors") != NULL
                 && json_object_object_length(it_jget(r->json, "errors")) > 0,
                 "body %s answered %s", bodies[i], r->body);
    }
    it_resp *r = it_post(A(), "/lead", "{\"lead\": {");
    ERR_HAS(r, "base", "is not valid JSON");
    /* bytes that are not UTF-8 (Latin-1 "é" in a name): malformed JSON, nothing stored */
    json_object *d = lead_doc();
    const char *ref = it_uniq("latin1");
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    jset(d, "lead.contacts_attributes[0].first_name", "\"Ren@\"");
    char *text = it_fmt("%s", json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    char *at = strstr(text, "Ren@");
    at[3] = (char) 0xE9;
    r = it_post(A(), "/lead", text);
    IT_STATUS(r, 422);
    ERR_HAS(r, "base", "is not valid JSON");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1", ref), "0");
    /* a document past the core's bounds on values: 413 before it is parsed */
    r = it_post(A(), "/lead", it_empty_objects(60000));
    IT_STATUS(r, 413);
    JSON_IS(r, "{\"message\":\"JSON document with more than 400000 values or 50000 objects and arrays\"}");
    /* and on the other JSON endpoints: /webhook, /trigger_webhook, the attachment's URL form */
    static const char *const json_paths[] = { "/webhook", "/trigger_webhook", "/attachment" };
    const char *huge = it_fmt("{\"webhook_url\":%s}", it_empty_objects(60000));
    for (size_t i = 0; i < sizeof(json_paths) / sizeof(json_paths[0]); i++) {
        r = it_post(A(), json_paths[i], huge);
        IT_CHECK(r->status == 413, "%s: %ld %s", json_paths[i], r->status, r->body);
        JSON_IS(r, "{\"message\":\"JSON document with more than 400000 values or 50000 objects and arrays\"}");
    }
    /* a NUL character (\u0000) in a value: malformed, not a name cut short */
    d = lead_doc();
    ref = it_uniq("nul");
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    jset(d, "lead.contacts_attributes[0].first_name", "\"Ren\\u0000e\"");
    r = it_post(A(), "/lead", jtext(d));
    IT_STATUS(r, 422);
    ERR_HAS(r, "base", "is not valid JSON");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1", ref), "0");
}

/* Every endpoint, with and without /v1. */
static void test_v1_and_plain_paths(void)
{
    static const char *const pre[] = { "", "/v1" };
    it_rcv rc = it_rcv_start(0, "");
    for (int i = 0; i < 2; i++) {
        json_object *d = lead_doc();
        it_resp *r = it_post(A(), it_fmt("%s/lead", pre[i]), jtext(d));
        IT_STATUS(r, 201);
        const char *id = it_jstr(r->json, "id");
        if (id == NULL)
            continue;
        r = it_get(A(), it_fmt("%s/deal_status/%s", pre[i], id));
        IT_STATUS(r, 200);
        JSON_IS(r, "{\"stage\":\"Working\"}");
        r = it_call_ex(A(), "POST", it_fmt("%s/attachment?filename=a.txt&lead_id=%s", pre[i], id), NULL, 0,
                       "hello", 5);
        IT_STATUS(r, 202);
        r = it_post(A(), it_fmt("%s/attachment", pre[i]),
                    it_fmt("{\"attachment_url\":\"http://127.0.0.1:%d/a.pdf\",\"filename\":\"a.pdf\",\"lead_id\":\"%s\"}",
                           rc.port, id));
        IT_STATUS(r, 202);
        r = it_post(A2(), it_fmt("%s/webhook", pre[i]), it_fmt("{\"webhook_url\":\"%s\"}", rc.url));
        IT_STATUS(r, 200);
        IT_STREQ(it_jstr(r->json, "success"), "true");
        r = it_post(A(), it_fmt("%s/trigger_webhook", pre[i]),
                    it_fmt("{\"webhook_url\":\"%s\",\"lead_id\":\"%s\",\"event_type\":\"Approved\"}", rc.url, id));
        IT_STATUS(r, 200);
        IT_CHECK(rcv_wait_event(&rc, id, "Approved", 15) != NULL, "trigger via %s/trigger_webhook not delivered", pre[i]);
        IT_STREQ(wait_attachment(id, "a.pdf", 15), "received");
    }
    it_rcv_stop(&rc);
    /* the both-prefix spelling is not a path of the API */
    it_resp *r = it_get(A(), "/v1/v1/deal_status/x");
    IT_STATUS(r, 404);
    r = it_get(A(), "/nope");
    IT_STATUS(r, 404);
    IT_CHECK(is_json_ct(r) && it_jstr(r->json, "message") != NULL, "404 body %s", r->body);
    r = it_get(A(), "/lead");
    IT_STATUS(r, 405);
}

/* The five endpoints, as (method, path, body) with a lead id filled in. */
typedef struct call {
    const char *method, *path, *body;
} call;

static int calls(call *out, const char *id)
{
    out[0] = (call){ "POST", "/lead", jtext(lead_doc()) };
    out[1] = (call){ "POST", it_fmt("/attachment?filename=x.txt&lead_id=%s", id), "data" };
    out[2] = (call){ "POST", "/attachment",
                     it_fmt("{\"attachment_url\":\"http://127.0.0.1:9/x\",\"filename\":\"x\",\"lead_id\":\"%s\"}", id) };
    out[3] = (call){ "GET", it_fmt("/deal_status/%s", id), NULL };
    out[4] = (call){ "POST", "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/h\"}" };
    out[5] = (call){ "POST", "/trigger_webhook",
                     it_fmt("{\"webhook_url\":\"http://127.0.0.1:9/h\",\"lead_id\":\"%s\",\"event_type\":\"x\"}", id) };
    return 6;
}

static it_resp *do_call(const it_cred *c, const call *k)
{
    return it_call_ex(c, k->method, k->path, NULL, 0, k->body, k->body ? strlen(k->body) : 0);
}

/* api_key missing, wrong, unknown, malformed: 401 on every endpoint. */
static void test_auth_401(void)
{
    const char *id = example_id ? example_id : "x";
    const char *key = it_cred_header(A(), "api_key");
    const char *pub = it_leads_public_id(A());
    const it_cred *bad[] = {
        it_cred_with(A(), "api_key", NULL),
        it_cred_with(A(), "api_key", it_fmt("%s.%064x", pub, 0)),
        it_cred_with(A(), "api_key", it_fmt("%s", strchr(key, '.') + 1)),
        it_cred_with(A(), "api_key", it_fmt("ffffffffffffffffffffffff%s", strchr(key, '.'))),
        it_cred_with(A(), "api_key", ""),
        it_cred_with(A(), "api_key", it_fmt("%s.", pub)),
    };
    call k[8];
    int n = calls(k, id);
    json_object *d = lead_doc();
    const char *ref = it_uniq("auth");
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    k[0].body = jtext(d);
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
        for (int i = 0; i < n; i++) {
            it_resp *r = do_call(bad[b], &k[i]);
            IT_CHECK(r->status == 401, "credential %zu, %s %s: %ld %s", b, k[i].method, k[i].path, r->status, r->body);
            IT_CHECK(is_json_ct(r) && it_jstr(r->json, "message") != NULL, "401 body %s", r->body);
        }
    it_resp *r = do_call(bad[0], &k[3]);
    JSON_IS(r, "{\"message\":\"Unauthorized\"}");
    /* another partner's key is the wrong key for nothing: header name case does not matter */
    r = do_call(it_cred_rename(A(), "api_key", "API_KEY"), &k[3]);
    IT_STATUS(r, 200);
    /* the route comes before the key: an unknown path or a wrong method, without a key or with
     * a wrong one, is 404 or 405, as with the right key */
    for (int b = 0; b < 2; b++) {
        r = it_call_ex(bad[b], "GET", "/no-such-path", NULL, 0, NULL, 0);
        IT_STATUS(r, 404);
        JSON_IS(r, "{\"message\":\"Not Found\"}");
        r = it_call_ex(bad[b], "GET", "/v1/lead", NULL, 0, NULL, 0);
        IT_STATUS(r, 405);
        IT_STREQ(it_header_get(r, "Allow"), "POST");
    }
    /* nothing was written with a bad key */
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1", ref), "0");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename IN ('x.txt', 'x')", id), "0");
}

/* Plain HTTP: 403 on every endpoint, with or without a key, with or without /v1. */
static void test_plain_http_403(void)
{
    const char *id = example_id ? example_id : "x";
    const char *http = it_env("FL_TEST_HTTP");
    const it_cred *plain[] = { cred_at(A(), http, "/leads"), cred_at(A(), http, "/leads/v1"),
                               it_cred_with(cred_at(A(), http, "/leads"), "api_key", NULL) };
    call k[8];
    int n = calls(k, id);
    json_object *d = lead_doc();
    const char *ref = it_uniq("plain");
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    k[0].body = jtext(d);
    for (size_t p = 0; p < sizeof(plain) / sizeof(plain[0]); p++)
        for (int i = 0; i < n; i++) {
            it_resp *r = do_call(plain[p], &k[i]);
            IT_CHECK(r->status == 403, "plain %zu, %s %s: %ld %s", p, k[i].method, k[i].path, r->status, r->body);
            IT_CHECK(is_json_ct(r) && it_jstr(r->json, "message") != NULL, "403 body %s", r->body);
        }
    JSON_IS(do_call(plain[0], &k[3]), "{\"message\":\"HTTPS is required\"}");
    /* every request: an unknown path or a wrong method too (over TLS: 404 and 405) */
    static const char *const odd[][2] = { { "GET", "/no-such-path" }, { "GET", "/lead" }, { "DELETE", "/webhook" } };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        it_resp *r = it_call_ex(plain[0], odd[i][0], odd[i][1], NULL, 0, NULL, 0);
        IT_CHECK(r->status == 403, "plain %s %s: %ld %s", odd[i][0], odd[i][1], r->status, r->body);
        JSON_IS(r, "{\"message\":\"HTTPS is required\"}");
        r = it_call_ex(A(), odd[i][0], odd[i][1], NULL, 0, NULL, 0);
        IT_CHECK(r->status == (i == 0 ? 404 : 405), "TLS %s %s: %ld %s", odd[i][0], odd[i][1], r->status, r->body);
    }
    /* the TLS check and the key come before the query string is looked at */
    static const char *const badq[] = { "/attachment?filename=%zz&lead_id=x", "/attachment?filename=%E9.pdf&lead_id=x" };
    for (size_t i = 0; i < sizeof(badq) / sizeof(badq[0]); i++) {
        it_resp *r = it_call_ex(plain[0], "POST", badq[i], NULL, 0, "x", 1);
        IT_STATUS(r, 403);
        JSON_IS(r, "{\"message\":\"HTTPS is required\"}");
        r = it_call_ex(it_cred_with(A(), "api_key", NULL), "POST", badq[i], NULL, 0, "x", 1);
        IT_STATUS(r, 401);
        r = it_call_ex(A(), "POST", badq[i], NULL, 0, "x", 1);
        IT_STATUS(r, 400);
        JSON_IS(r, "{\"message\":\"malformed query string\"}");
    }
    /* a lead id that is not UTF-8 names no lead */
    it_resp *r = it_get(A(), "/deal_status/%E9t%E9");
    IT_STATUS(r, 404);
    /* the path is decoded once (by nginx): the id with its last character sent as "%25XX",
     * which is the text "%XX", names no lead, where decoding twice found it */
    IT_CHECK(example_id != NULL, "no lead from the example test");
    if (example_id != NULL) {
        int head = (int) strlen(id) - 1;
        unsigned char last = (unsigned char) id[head];
        IT_STATUS(it_get(A(), it_fmt("/deal_status/%.*s%%25%02X", head, id, last)), 404);
        IT_STATUS(it_get(A(), it_fmt("/deal_status/%.*s%%%02X", head, id, last)), 200);
    }
    /* nothing was written over HTTP */
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1", ref), "0");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename = 'x.txt'", id), "0");
}

/* The worker process that served each request of a burst (0: not found in the pool's log). */
static void burst_pids(it_resp **first, it_resp *r6, it_resp *r7, pid_t pids[7])
{
    const char *ids[7];
    for (int i = 0; i < 5; i++)
        ids[i] = it_header_get(first[i], "X-Request-Id");
    ids[5] = it_header_get(r6, "X-Request-Id");
    ids[6] = it_header_get(r7, "X-Request-Id");
    it_sleep(0.3);
    for (int i = 0; i < 7; i++) {
        pids[i] = 0;
        if (ids[i] == NULL)
            continue;
        const char *line = it_run(it_fmt("grep -h '\"request_id\":\"%s\"' '%s/leads.log' | head -1", ids[i], it_logdir()), NULL);
        const char *p = strstr(line, "\"pid\":");
        pids[i] = p ? (pid_t) atol(p + 6) : 0;
    }
}

/* Over 1 request/s with burst 5: 7 quick requests, the first 5 pass, then 429;
 * the bucket is in PostgreSQL, shared by the workers of the pool. */
static void test_rate_limit(void)
{
    it_resp *first[5], *r6, *r7;
    const char *path = "/deal_status/no-such-lead";
    const char *pub = it_leads_public_id(LIM());
    IT_CHECK(*pub != '\0', "leads_limited has no api_key of the form public.secret");
    if (*pub == '\0')
        return;
    /* Shared, not one bucket per worker: a burst whose 429 no worker's own bucket could have
     * given, because no worker served 6 of its 7 requests. Which worker accepts a connection
     * is the scheduler's choice: up to three bursts, each on a fresh bucket. */
    int shown = 0, most = 0, npids = 0;
    for (int round = 0; round < 3 && !shown; round++) {
        IT_Q("DELETE FROM rate_buckets WHERE credential_id = "
             "(SELECT id FROM credentials WHERE family = 'leads' AND public_id = $1)", pub);
        double t0 = it_now();
        it_parallel(first, 5, LIM(), "GET", path, NULL);
        r6 = it_get(LIM(), path);
        r7 = it_get(LIM(), path);
        double took = it_now() - t0;
        for (int i = 0; i < 5; i++)
            IT_CHECK(first[i]->status == 404, "request %d of the burst: %ld %s", i + 1, first[i]->status, first[i]->body);
        /* r6 passes only if sent 1 s after the burst began, r7 only 2 s after: under 2 s, one is 429 */
        IT_CHECK(took < 2.0, "the 7 requests took %.2f s: not a burst", took);
        IT_CHECK(r6->status == 429 || r7->status == 429, "no 429 after the burst: %ld, %ld", r6->status, r7->status);
        it_resp *t = r7->status == 429 ? r7 : r6;
        JSON_IS(t, "{\"message\":\"Rate limit exceeded\"}");
        IT_STREQ(it_header_get(t, "Retry-After"), "1");
        pid_t pids[7];
        burst_pids(first, r6, r7, pids);
        most = 0;
        npids = 0;
        for (int i = 0; i < 7; i++) {
            int same = 0, before = 0;
            for (int j = 0; j < 7; j++) {
                same += pids[j] == pids[i];
                before += j < i && pids[j] == pids[i];
            }
            most = same > most ? same : most;
            npids += pids[i] > 0 && before == 0;
        }
        shown = (r6->status == 429 || r7->status == 429) && npids >= 2 && most <= 5 && pids[0] && pids[1] &&
                pids[2] && pids[3] && pids[4] && pids[5] && pids[6];
    }
    IT_CHECK(shown, "three bursts, none spread so that only a shared bucket explains its 429 (the last: %d "
                    "worker processes, one served %d of 7)", npids, most);

    /* other credentials are not throttled by this one */
    IT_STATUS(it_get(A(), path), 404);
    /* the bucket refills at 1 token/s: from empty (it has been refilling since the burst,
     * and the checks above take their time) */
    IT_STREQ(IT_Q("UPDATE rate_buckets SET tokens = 0, updated_at = clock_timestamp() WHERE credential_id = "
                  "(SELECT id FROM credentials WHERE family = 'leads' AND public_id = $1) RETURNING 1", pub), "1");
    it_sleep(1.2);
    IT_STATUS(it_get(LIM(), path), 404);
    r6 = it_get(LIM(), path);
    r7 = it_get(LIM(), path);
    IT_CHECK(r6->status == 429 || r7->status == 429, "no 429 after one refilled token: %ld, %ld", r6->status, r7->status);
}

/* deal_status: the fields by stage, exactly as the document shows them, in its order (compact). */
static void test_deal_status_by_stage(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    const char *path = it_fmt("/v1/deal_status/%s", id);
    BODY_IS(it_get(A(), path), "{\"stage\":\"Working\"}");

    stage_ok(id, "File Missing Info", "--missing-info \"We're going to need more recent bank statements please!\"");
    BODY_IS(it_get(A(), path),
            "{\"stage\":\"File Missing Info\",\"missing_info\":\"We're going to need more recent bank statements please!\"}");

    stage_ok(id, "Waiting on ISO", "");
    BODY_IS(it_get(A(), path), "{\"stage\":\"Waiting on ISO\"}");

    stage_ok(id, "Approval Sent", "--max-approval 10000 --max-payments 20 --offer-link offer.com "
                                  "--stipulation 'Voided Check'");
    it_resp *r = it_get(A(), path);
    IT_STATUS(r, 200);
    BODY_IS(r, "{\"stage\":\"Approval Sent\",\"required_stipulations\":[{\"type\":\"Voided Check\"}],"
               "\"max_approval\":10000,\"max_payments\":20,\"offer_link\":\"offer.com\"}");
    IT_CHECK(json_object_is_type(it_jget(r->json, "max_approval"), json_type_int), "max_approval is not a number: %s",
             r->body);

    stage_ok(id, "Declined", "--decline-driver 'Default history' --decline-driver 'Excessive liens or judgements' "
                             "--decline-notes 'This merchant does not look credible'");
    BODY_IS(it_get(A(), path), "{\"stage\":\"Declined\",\"decline_drivers\":\"Default history;Excessive liens or "
                               "judgements\",\"decline_notes\":\"This merchant does not look credible\"}");

    /* the optional fields the underwriter left out: present, null */
    const char *id2 = create_lead(A(), NULL);
    if (id2 != NULL) {
        const char *path2 = it_fmt("/deal_status/%s", id2);
        stage_ok(id2, "Approval Sent", "--max-approval 500 --max-payments 5");
        BODY_IS(it_get(A(), path2), "{\"stage\":\"Approval Sent\",\"required_stipulations\":[],"
                                    "\"max_approval\":500,\"max_payments\":5,\"offer_link\":null}");
        stage_ok(id2, "Declined", "--decline-driver Fraud");
        BODY_IS(it_get(A(), path2), "{\"stage\":\"Declined\",\"decline_drivers\":\"Fraud\",\"decline_notes\":null}");
    }

    /* Declined is final */
    int st;
    const char *out = stage(id, "Working", "", &st);
    IT_CHECK(st != 0 && strstr(out, "cannot move from Declined to Working") != NULL,
             "Declined -> Working: exit %d: %s", st, out);
    out = stage(id, "Approval Sent", "--max-approval 1 --max-payments 1", &st);
    IT_CHECK(st != 0, "Declined -> Approval Sent accepted: %s", out);
    BODY_IS(it_get(A(), path), "{\"stage\":\"Declined\",\"decline_drivers\":\"Default history;Excessive liens or "
                               "judgements\",\"decline_notes\":\"This merchant does not look credible\"}");
    IT_STREQ(IT_Q("SELECT string_agg(coalesce(from_stage, '-') || '>' || to_stage, ',' ORDER BY h.id) "
                  "FROM lead_stage_history h JOIN leads l ON l.id = h.lead_id WHERE l.public_id = $1", id),
             "->Working,Working>File Missing Info,File Missing Info>Waiting on ISO,Waiting on ISO>Approval Sent,"
             "Approval Sent>Declined");
}

/* set_stage's refusals through the command line. */
static void test_stage_errors(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    int st;
    const char *out = stage(id, "Funded", "", &st);
    IT_CHECK(st != 0 && strstr(out, "Unknown stage Funded") != NULL, "unknown stage: exit %d: %s", st, out);
    out = stage(id, "Approval Sent", "--max-payments 20", &st);
    IT_CHECK(st != 0 && strstr(out, "max_approval") != NULL, "Approval Sent without max_approval: exit %d: %s", st, out);
    out = stage(id, "Declined", "", &st);
    IT_CHECK(st != 0 && strstr(out, "decline driver") != NULL, "Declined without a driver: exit %d: %s", st, out);
    out = stage(id, "Declined", "--decline-driver 'Bad vibes'", &st);
    IT_CHECK(st != 0 && strstr(out, "Unknown decline driver Bad vibes") != NULL, "unknown driver: exit %d: %s", st, out);
    out = stage(id, "File Missing Info", "", &st);
    IT_CHECK(st != 0 && strstr(out, "missing_info") != NULL, "File Missing Info without text: exit %d: %s", st, out);
    out = stage(id, "Working", "", &st);
    IT_CHECK(st != 0 && strstr(out, "cannot move from Working to Working") != NULL, "Working -> Working: exit %d: %s",
             st, out);
    out = stage("no-such-lead", "Working", "", &st);
    IT_CHECK(st != 0 && strstr(out, "Lead not found") != NULL, "unknown lead: exit %d: %s", st, out);
    /* nothing changed, no event */
    JSON_IS(it_get(A(), it_fmt("/deal_status/%s", id)), "{\"stage\":\"Working\"}");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM events WHERE family = 'leads' AND payload->>'lead_id' = $1", id), "0");
}

/* A lead is visible only to the partner that submitted it. */
static void test_isolation_404(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    const it_cred *others[] = { A2(), B() };
    for (int i = 0; i < 2; i++) {
        it_resp *r = it_get(others[i], it_fmt("/deal_status/%s", id));
        IT_STATUS(r, 404);
        JSON_IS(r, "{\"message\":\"Lead not found\"}");
        r = it_call_ex(others[i], "POST", it_fmt("/attachment?filename=x.pdf&lead_id=%s", id), NULL, 0, "%PDF-", 5);
        IT_STATUS(r, 404);
        JSON_IS(r, "{\"message\":\"Lead not found\"}");
        r = it_post(others[i], "/attachment",
                    it_fmt("{\"attachment_url\":\"http://127.0.0.1:9/x\",\"filename\":\"x\",\"lead_id\":\"%s\"}", id));
        IT_STATUS(r, 404);
        r = it_post(others[i], "/trigger_webhook",
                    it_fmt("{\"webhook_url\":\"http://127.0.0.1:9/h\",\"lead_id\":\"%s\",\"event_type\":\"Approved\"}", id));
        IT_STATUS(r, 404);
    }
    IT_STREQ(IT_Q("SELECT count(*)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1",
                  id), "0");
    /* unknown ids, and the row's internal key */
    IT_STATUS(it_get(A(), "/deal_status/0123456789abcdef0123456789abcdef"), 404);
    const char *key = IT_Q("SELECT id::text FROM leads WHERE public_id = $1", id);
    IT_STATUS(it_get(A(), it_fmt("/deal_status/%s", key ? key : "x")), 404);
    IT_STATUS(it_get(A(), it_fmt("/deal_status/%s", id)), 200);
}

/* POST /attachment with the file as the body, raw or strict Base64. */
static void test_attachment_upload(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    static const char pdf[] = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n\x00\x01\x02trailer\n";
    size_t n = sizeof(pdf) - 1;
    it_header oct[] = { { "Content-Type", "application/octet-stream" } };
    it_resp *r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=bank_statement.pdf&lead_id=%s", id), oct, 1, pdf, n);
    IT_STATUS(r, 202);
    JSON_IS(r, "{\"message\":\"Your attachment was received and is being processed\"}");
    IT_STREQ(IT_Q("SELECT a.state || '|' || a.size || '|' || a.sha256 || '|' || a.content_type || '|' || "
                  "(encode(sha256(a.content), 'hex') = a.sha256)::text FROM lead_attachments a "
                  "JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1 AND a.filename = $2", id, "bank_statement.pdf"),
             it_fmt("received|%zu|%s|application/pdf|true", n, sha256_hex(pdf, n)));

    /* strict Base64 (encoded=true): a PNG header */
    static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R' };
    char b64[64];
    EVP_EncodeBlock((unsigned char *) b64, png, sizeof(png));
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=logo.png&lead_id=%s&encoded=true", id), NULL, 0, b64,
                   strlen(b64));
    IT_STATUS(r, 202);
    IT_STREQ(IT_Q("SELECT a.size || '|' || a.sha256 || '|' || a.content_type FROM lead_attachments a "
                  "JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1 AND a.filename = 'logo.png'", id),
             it_fmt("%zu|%s|image/png", sizeof(png), sha256_hex(png, sizeof(png))));

    /* encoded=false is the raw body */
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=notes.txt&lead_id=%s&encoded=false", id), NULL, 0,
                   "aGVsbG8=", 8);
    IT_STATUS(r, 202);
    IT_STREQ(IT_Q("SELECT a.size || '|' || a.content_type FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename = 'notes.txt'", id), "8|text/plain");
    /* the boolean's other spellings: an empty value is the default (raw), 1 and TRUE are true */
    static const struct { const char *v, *name, *want; } enc[] = {
        { "", "e-empty.txt", "8" }, { "0", "e-zero.txt", "8" }, { "1", "e-one.txt", "5" }, { "TRUE", "e-upper.txt", "5" },
    };
    for (size_t i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
        r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=%s&lead_id=%s&encoded=%s", enc[i].name, id, enc[i].v),
                       NULL, 0, "aGVsbG8=", 8);
        IT_CHECK(r->status == 202, "encoded=%s: %ld %s", enc[i].v, r->status, r->body);
        IT_STREQ(IT_Q("SELECT a.size::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                      "WHERE l.public_id = $1 AND a.filename = $2", id, enc[i].name), enc[i].want);
    }

    /* not strict Base64: line breaks, bad characters, bad padding, only padding; empty */
    static const char *const bad[] = { "aGVs\nbG8=", "aGVsbG8", "aGVs*G8=", "aGVsbG8=\n", "====", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=b%zu.txt&lead_id=%s&encoded=true", i, id), NULL, 0,
                       bad[i], strlen(bad[i]));
        IT_CHECK(r->status == 400, "Base64 %zu (%s): %ld %s", i, bad[i], r->status, r->body);
        IT_CHECK(is_json_ct(r), "400 body %s", r->body);
        IT_JSTR(r->json, "message", *bad[i] ? "The attachment is not valid strict Base64" : "The attachment is empty");
    }
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=b.txt&lead_id=%s&encoded=true", id), NULL, 0, "aGVs\nbG8=", 9);
    JSON_IS(r, "{\"message\":\"The attachment is not valid strict Base64\"}");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename LIKE 'b_.txt'", id), "0");

    /* filenames are sanitised: no directories, no control characters */
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=..%%2F..%%2Fetc%%2Fpasswd&lead_id=%s", id), NULL, 0, "x", 1);
    IT_STATUS(r, 202);
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=C:%%5Cdocs%%5Cq1%%0d%%0a.pdf&lead_id=%s", id), NULL, 0, "x", 1);
    IT_STATUS(r, 202);
    IT_STREQ(IT_Q("SELECT string_agg(a.filename, ',' ORDER BY a.filename) FROM lead_attachments a JOIN leads l "
                  "ON l.id = a.lead_id WHERE l.public_id = $1 AND a.size = 1", id), "passwd,q1.pdf");
    /* nor characters that change how the name is shown without being seen: a right-to-left
     * override (shown as "invoiceexe.pdf"), a zero-width space, a C1 control, a BOM */
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=%%EF%%BB%%BFinv%%E2%%80%%8Boice%%C2%%85"
                                       "%%E2%%80%%AEfdp.exe&lead_id=%s", id), NULL, 0, "xy", 2);
    IT_STATUS(r, 202);
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=r%%C3%%A9sum%%C3%%A9%%E2%%81%%A7.pdf&lead_id=%s", id),
                   NULL, 0, "xy", 2);
    IT_STATUS(r, 202);
    IT_STREQ(IT_Q("SELECT string_agg(a.filename, ',' ORDER BY a.filename) FROM lead_attachments a JOIN leads l "
                  "ON l.id = a.lead_id WHERE l.public_id = $1 AND a.size = 2", id), "invoicefdp.exe,r\xc3\xa9sum\xc3\xa9.pdf");
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=%%E2%%80%%AE%%E2%%80%%8B&lead_id=%s", id), NULL, 0, "x", 1);
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Invalid filename\"}");
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=..&lead_id=%s", id), NULL, 0, "x", 1);
    IT_STATUS(r, 400);
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=dir%%2F&lead_id=%s", id), NULL, 0, "x", 1);
    IT_STATUS(r, 400);
}

static void test_attachment_errors(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    it_resp *r = it_call_ex(A(), "POST", it_fmt("/attachment?lead_id=%s", id), NULL, 0, "x", 1);
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Please provide filename and lead_id\"}");
    r = it_call_ex(A(), "POST", "/attachment?filename=a.pdf", NULL, 0, "x", 1);
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Please provide filename and lead_id\"}");
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=&lead_id=%s", id), NULL, 0, "x", 1);
    IT_STATUS(r, 400);
    r = it_call_ex(A(), "POST", "/attachment?encoded=true", NULL, 0, "eA==", 4);
    IT_STATUS(r, 400);
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=a.pdf&lead_id=%s&encoded=yes", id), NULL, 0, "x", 1);
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"encoded must be true or false\"}");
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=a.pdf&lead_id=%s", id), NULL, 0, "", 0);
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"The attachment is empty\"}");
    r = it_call_ex(A(), "POST", "/attachment?filename=a.pdf&lead_id=no-such-lead", NULL, 0, "x", 1);
    IT_STATUS(r, 404);
    JSON_IS(r, "{\"message\":\"Lead not found\"}");
    /* a file without its query string: the raw upload's message, not the URL form's */
    r = it_call_ex(A(), "POST", "/attachment", NULL, 0, "%PDF-1.4 x", 10);
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Please provide filename and lead_id\"}");

    /* by URL: the three members, an http(s) URL, a known lead */
    r = it_post(A(), "/attachment", it_fmt("{\"attachment_url\":\"http://127.0.0.1:9/x\",\"lead_id\":\"%s\"}", id));
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Please provide attachment_url, filename and lead_id\"}");
    r = it_post(A(), "/attachment", "{\"filename\":\"x\",\"attachment_url\":\"http://127.0.0.1:9/x\"}");
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Please provide attachment_url, filename and lead_id\"}");
    r = it_post(A(), "/attachment", "{\"attachment_url\":");
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Please provide attachment_url, filename and lead_id\"}");
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"ftp://example.com/x\",\"filename\":\"x\",\"lead_id\":\"%s\"}", id));
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"attachment_url must be an http or https URL\"}");
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"file:///etc/passwd\",\"filename\":\"x\",\"lead_id\":\"%s\"}", id));
    IT_STATUS(r, 400);
    /* credentials in the URL would be stored in clear (source_url, which reporting reads) */
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"https://user:s3cret@files.example/x.pdf\",\"filename\":\"x\","
                       "\"lead_id\":\"%s\"}", id));
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"attachment_url must be an http or https URL without credentials\"}");
    /* an @ after the host (in the path or the query) is no credential */
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"http://127.0.0.1:9/files/a@b.pdf?by=x@y\",\"filename\":\"x\","
                       "\"lead_id\":\"%s\"}", id));
    IT_STATUS(r, 202);
    r = it_post(A(), "/attachment", "{\"attachment_url\":\"http://127.0.0.1:9/x\",\"filename\":\"x\",\"lead_id\":\"nope\"}");
    IT_STATUS(r, 404);
    /* longer than any lead's id: unknown, as in the raw upload */
    r = it_post(A(), "/attachment", it_fmt("{\"attachment_url\":\"http://127.0.0.1:9/x\",\"filename\":\"x\",\"lead_id\":\"%0200d\"}", 7));
    IT_STATUS(r, 404);
    IT_STREQ(IT_Q("SELECT count(*)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1",
                  id), "1");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM lead_attachments WHERE source_url LIKE '%s3cret%'"), "0");
}

/* Up to 25 MB is accepted; one byte more is 413 in the family's JSON. */
static void test_attachment_size(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    size_t max = 25u * 1024 * 1024;
    char *big = it_alloc(max + 1);
    memset(big, 'A', max + 1);
    memcpy(big, "%PDF-", 5);
    it_header oct[] = { { "Content-Type", "application/octet-stream" } };
    it_resp *r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=big.pdf&lead_id=%s", id), oct, 1, big, max + 1);
    IT_STATUS(r, 413);
    IT_CHECK(is_json_ct(r), "413 Content-Type %s", it_header_get(r, "Content-Type"));
    JSON_IS(r, "{\"message\":\"Request body too large: the limit is 25 MB\"}");
    IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "413 without X-Request-Id");
    /* the same cap and answer on every path (a lead's JSON included) */
    r = it_call_ex(A(), "POST", "/lead", NULL, 0, big, max + 1);
    IT_STATUS(r, 413);
    JSON_IS(r, "{\"message\":\"Request body too large: the limit is 25 MB\"}");
    /* Base64 counts as sent: the cap is on the request body */
    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=big.pdf&lead_id=%s&encoded=true", id), oct, 1, big, max + 1);
    IT_STATUS(r, 413);

    r = it_call_ex(A(), "POST", it_fmt("/attachment?filename=max.pdf&lead_id=%s", id), oct, 1, big, max);
    IT_STATUS(r, 202);
    IT_STREQ(IT_Q("SELECT a.size || '|' || a.sha256 || '|' || a.content_type FROM lead_attachments a "
                  "JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1 AND a.filename = 'max.pdf'", id),
             it_fmt("%zu|%s|application/pdf", max, sha256_hex(big, max)));
    IT_STREQ(IT_Q("SELECT count(*)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename = 'big.pdf'", id), "0");
}

/* An attachment by URL, fetched by the supervised worker from fl-receiver
 * (which answers GET with {"ok":true}); one the server refuses ends failed. */
static void test_attachment_url_fetched(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    it_rcv rc = it_rcv_start(0, "");
    const char *url = it_fmt("http://127.0.0.1:%d/files/statement.pdf", rc.port);
    it_resp *r = it_post(A(), "/attachment",
                         it_fmt("{\"attachment_url\":\"%s\",\"filename\":\"statement.pdf\",\"lead_id\":\"%s\"}", url, id));
    IT_STATUS(r, 202);
    JSON_IS(r, "{\"message\":\"Your attachment was received and is being processed\"}");
    IT_STREQ(wait_attachment(id, "statement.pdf", 15), "received");
    /* the name is sanitised as an upload's is: path components and control characters go */
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"%s\",\"filename\":\"../tmp/bank\\tstate\\u0001ment.pdf\",\"lead_id\":\"%s\"}",
                       url, id));
    IT_STATUS(r, 202);
    IT_STREQ(wait_attachment(id, "bankstatement.pdf", 15), "received");
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"%s\",\"filename\":\"state\\u202Efdp.exe\",\"lead_id\":\"%s\"}",
                       url, id));
    IT_STATUS(r, 202);
    IT_STREQ(wait_attachment(id, "statefdp.exe", 15), "received");
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"%s\",\"filename\":\"a/b/..\",\"lead_id\":\"%s\"}", url, id));
    IT_STATUS(r, 400);
    JSON_IS(r, "{\"message\":\"Invalid filename\"}");
    const char *body = "{\"ok\":true}";
    IT_STREQ(IT_Q("SELECT a.source_url || '|' || a.size || '|' || a.sha256 || '|' || a.content_type || '|' || "
                  "convert_from(a.content, 'UTF8') || '|' || a.attempts || '|' || (a.error IS NULL)::text "
                  "FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename = 'statement.pdf'", id),
             it_fmt("%s|%zu|%s|text/plain|%s|1|true", url, strlen(body), sha256_hex(body, strlen(body)), body));
    json_object *lines[8];
    int n = it_rcv_read(&rc, lines, 8);
    IT_CHECK(n == 3, "%d requests at the file server, expected 3", n);
    if (n >= 1) {
        IT_JSTR(lines[0], "method", "GET");
        IT_JSTR(lines[0], "path", "/files/statement.pdf");
    }
    it_rcv_stop(&rc);

    /* the server answers 404: failed at once, with the error recorded */
    it_rcv nf = it_rcv_start(0, "--status-seq 404");
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"http://127.0.0.1:%d/gone.pdf\",\"filename\":\"gone.pdf\",\"lead_id\":\"%s\"}",
                       nf.port, id));
    IT_STATUS(r, 202);
    IT_STREQ(wait_attachment(id, "gone.pdf", 15), "failed");
    IT_STREQ(IT_Q("SELECT a.error || '|' || (a.content IS NULL)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename = 'gone.pdf'", id), "HTTP 404|true");
    it_rcv_stop(&nf);
}

/* The fetch of an attachment by URL (supervised workers): up to 3 redirects are followed, each
 * hop checked again (a Location that is not http(s) is refused); a 4th redirect, or a document
 * over 25 MB, ends failed with nothing stored. */
static void test_attachment_url_redirects_and_cap(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    static const struct {
        const char *opts, *file, *state, *error;
        int requests;
    } cases[] = {
        { "--status-seq 302,302,302,200 --location /files/moved.pdf", "three-redirects.pdf", "received", NULL, 4 },
        { "--status-seq 302 --location /files/again.pdf", "four-redirects.pdf", "failed", "more than 3 redirects",
          4 },
        { "--status-seq 302 --location file:///etc/passwd", "file-scheme.pdf", "failed", "refused: ", 1 },
        { "--answer-bytes 26214401", "too-large.pdf", "failed", "larger than 25 MB", 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        it_rcv rc = it_rcv_start(0, cases[i].opts);
        it_resp *r = it_post(A(), "/attachment",
                             it_fmt("{\"attachment_url\":\"http://127.0.0.1:%d/start.pdf\",\"filename\":\"%s\","
                                    "\"lead_id\":\"%s\"}", rc.port, cases[i].file, id));
        IT_STATUS(r, 202);
        IT_STREQ(wait_attachment(id, cases[i].file, 20), cases[i].state);
        const char *row = IT_Q("SELECT coalesce(a.error, '') || '|' || (a.content IS NULL)::text || '|' || "
                               "coalesce(a.size::text, '') FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                               "WHERE l.public_id = $1 AND a.filename = $2", id, cases[i].file);
        if (cases[i].error == NULL) {
            IT_STREQ(row, "|false|11");       /* {"ok":true}, from the last hop */
        } else {
            IT_CHECK(row && strncmp(row, cases[i].error, strlen(cases[i].error)) == 0 && strstr(row, "|true|"),
                     "%s: %s, expected error %s... and no content", cases[i].file, row ? row : "(null)",
                     cases[i].error);
        }
        json_object *lines[8];
        int n = it_rcv_read(&rc, lines, 8);
        IT_CHECK(n == cases[i].requests, "%s: %d requests at the server, expected %d", cases[i].file, n,
                 cases[i].requests);
        if (n >= 2)
            IT_JSTR(lines[1], "path", strstr(cases[i].opts, "again") ? "/files/again.pdf" : "/files/moved.pdf");
        it_rcv_stop(&rc);
    }
}

/* Waits (bounded) for an attachment to have made n attempts and left fetching; its
 * "state|attempts|error|seconds until the next attempt, rounded". */
static const char *wait_attempts(const char *lead, const char *filename, int n, double timeout)
{
    double end = it_now() + timeout;
    const char *s;
    for (;;) {
        s = IT_Q("SELECT a.state || '|' || a.attempts || '|' || coalesce(a.error, '') || '|' || "
                 "round(extract(epoch FROM a.next_attempt_at - now())) FROM lead_attachments a "
                 "JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1 AND a.filename = $2 "
                 "AND a.state <> 'fetching' AND a.attempts >= $3::int", lead, filename, it_fmt("%d", n));
        if ((s != NULL && *s) || it_now() >= end)
            return s;
        it_sleep(0.1);
    }
}

/* "state|attempts|error" of s (wait_attempts), and whether its next attempt is lo..hi s away. */
static void check_attempt(const char *s, const char *want, int lo, int hi)
{
    const char *bar = s ? strrchr(s, '|') : NULL;
    IT_CHECK(bar != NULL && strncmp(s, want, strlen(want)) == 0 && (size_t) (bar - s) == strlen(want),
             "attachment %s, expected %s|...", s ? s : "(none)", want);
    if (bar != NULL && hi > 0)
        IT_CHECK(atoi(bar + 1) >= lo && atoi(bar + 1) <= hi, "next attempt in %s s, expected %d-%d", bar + 1, lo,
                 hi);
}

/* Posts an attachment by URL (file at rc) and walks it through three fetches, moving each
 * retry's time forward: after the first and the second it waits, pending, with the error e1
 * then e2 and the next attempt 30 s then 60 s away. Returns the state after the third. */
static const char *three_fetches(const char *id, const it_rcv *rc, const char *file, const char *e1, const char *e2)
{
    const char *due = "UPDATE lead_attachments a SET next_attempt_at = now() FROM leads l WHERE l.id = a.lead_id "
                      "AND l.public_id = $1 AND a.filename = $2 AND a.state = 'pending' RETURNING 1";
    it_resp *r = it_post(A(), "/attachment",
                         it_fmt("{\"attachment_url\":\"http://127.0.0.1:%d/%s\",\"filename\":\"%s\",\"lead_id\":\"%s\"}",
                                rc->port, file, file, id));
    IT_STATUS(r, 202);
    check_attempt(wait_attempts(id, file, 1, 15), it_fmt("pending|1|%s", e1), 25, 30);
    IT_STREQ(IT_Q("SELECT (a.content IS NULL)::text FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                  "WHERE l.public_id = $1 AND a.filename = $2", id, file), "true");
    it_sleep(1.0);
    json_object *lines[8];
    IT_CHECK(it_rcv_read(rc, lines, 8) == 1, "%s: the retry did not wait for its time", file);
    IT_STREQ(IT_Q(due, id, file), "1");
    check_attempt(wait_attempts(id, file, 2, 15), it_fmt("pending|2|%s", e2), 55, 60);
    IT_STREQ(IT_Q(due, id, file), "1");
    const char *state = wait_attachment(id, file, 15);
    IT_CHECK(it_rcv_read(rc, lines, 8) == 3, "%s: the server got other than 3 requests", file);
    return state;
}

/* A fetch answered 5xx or 429 is tried again, 30 s × attempts later (the test moves the time
 * forward), and succeeds when the server recovers; three such answers end failed. Nothing is
 * stored until a fetch succeeds. A host name that does not resolve is tried again as well. */
static void test_attachment_url_retried(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    it_rcv rc = it_rcv_start(0, "--status-seq 503,429,200");
    IT_STREQ(three_fetches(id, &rc, "busy.pdf", "HTTP 503", "HTTP 429"), "received");
    IT_STREQ(IT_Q("SELECT a.attempts || '|' || (a.error IS NULL)::text || '|' || a.size FROM lead_attachments a "
                  "JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1 AND a.filename = 'busy.pdf'", id),
             "3|true|11");
    it_rcv_stop(&rc);

    /* a server that stays down: the third answer ends it */
    it_rcv down = it_rcv_start(0, "--status-seq 502");
    IT_STREQ(three_fetches(id, &down, "down.pdf", "HTTP 502", "HTTP 502"), "failed");
    IT_STREQ(IT_Q("SELECT a.attempts || '|' || a.error || '|' || (a.content IS NULL)::text FROM lead_attachments a "
                  "JOIN leads l ON l.id = a.lead_id WHERE l.public_id = $1 AND a.filename = 'down.pdf'", id),
             "3|HTTP 502|true");
    it_rcv_stop(&down);

    /* a name that does not resolve (now) is tried again too, as a webhook delivery is */
    IT_STATUS(it_post(A(), "/attachment", it_fmt("{\"attachment_url\":\"http://nowhere.invalid/x.pdf\","
                                                 "\"filename\":\"nodns.pdf\",\"lead_id\":\"%s\"}", id)), 202);
    check_attempt(wait_attempts(id, "nodns.pdf", 1, 15), "pending|1|refused: the host does not resolve", 25, 30);
}

/* The SSRF guard: a private address ends failed when the worker runs with
 * FL_WEBHOOK_ALLOW_PRIVATE=0 (the supervised workers, which allow private
 * addresses for the tests, are paused meanwhile). */
static void test_attachment_url_ssrf(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    it_rcv rc = it_rcv_start(0, "");
    it_signal_supervised("webhooks.pid", SIGSTOP);
    static const char *const urls[] = { "http://127.0.0.1:%d/private.pdf", "http://10.0.0.1:%d/private.pdf",
                                        "http://169.254.169.254:%d/latest/meta-data", "http://[::1]:%d/x.pdf",
                                        "http://localhost:%d/x.pdf" };
    int nurls = (int) (sizeof(urls) / sizeof(urls[0]));
    for (int i = 0; i < nurls; i++) {
        const char *u = it_fmt(urls[i], rc.port);
        it_resp *r = it_post(A(), "/attachment",
                             it_fmt("{\"attachment_url\":\"%s\",\"filename\":\"ssrf%d.pdf\",\"lead_id\":\"%s\"}", u, i, id));
        IT_STATUS(r, 202);
    }
    int st;
    const char *out = it_run(it_fmt("FL_WEBHOOK_ALLOW_PRIVATE=0 FL_WORKER_DATABASE_URL='%s' FL_DATA_KEY_FILE='%s' "
                                    "'%s' --once 2>&1", it_env("FL_TEST_WORKER_DATABASE_URL"),
                                    it_env("FL_TEST_DATA_KEY"), it_env("FL_TEST_WORKER")), &st);
    IT_CHECK(st == 0, "fl-worker --once: exit %d: %s", st, out);
    it_signal_supervised("webhooks.pid", SIGCONT);
    for (int i = 0; i < nurls; i++) {
        const char *f = it_fmt("ssrf%d.pdf", i);
        IT_CHECK(wait_attachment(id, f, 0) && strcmp(wait_attachment(id, f, 0), "failed") == 0,
                 "%s (%s) is %s, expected failed", f, urls[i], wait_attachment(id, f, 0));
        const char *err = IT_Q("SELECT a.error FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                               "WHERE l.public_id = $1 AND a.filename = $2", id, f);
        IT_CHECK(err && strncmp(err, "refused: ", 9) == 0, "%s: error %s", f, err ? err : "(null)");
    }
    json_object *lines[4];
    IT_CHECK(it_rcv_read(&rc, lines, 4) == 0, "the private address was fetched");
    it_rcv_stop(&rc);
}

/* The fetch's time limit covers all its hops: FL_FETCH_TIMEOUT_MS, 30 s by
 * default (what the stack's workers say when they start), 4 s for an
 * fl-worker --once here (the supervised workers are paused meanwhile).  A
 * document that never comes, and one whose first hop redirects after 2.5 s to
 * a second that would answer 2.5 s later: both are leased for 34 s while they
 * are fetched, and end at 4 s in all, "timed out after 4 s", to be tried
 * again 30 s later. */
static void test_attachment_url_timeout(void)
{
    const char *id = create_lead(A(), NULL);
    if (id == NULL)
        return;
    it_rcv hang = it_rcv_start(0, "--delay-ms 60000");
    it_rcv hop = it_rcv_start(0, "--status-seq 302,200 --location /files/second.pdf --delay-ms 2500");
    it_signal_supervised("webhooks.pid", SIGSTOP);
    it_resp *r = it_post(A(), "/attachment",
                         it_fmt("{\"attachment_url\":\"http://127.0.0.1:%d/never.pdf\",\"filename\":\"never.pdf\","
                                "\"lead_id\":\"%s\"}", hang.port, id));
    IT_STATUS(r, 202);
    r = it_post(A(), "/attachment",
                it_fmt("{\"attachment_url\":\"http://127.0.0.1:%d/first.pdf\",\"filename\":\"two-hops.pdf\","
                       "\"lead_id\":\"%s\"}", hop.port, id));
    IT_STATUS(r, 202);
    /* the worker in the background, so that its claims can be looked at while it fetches;
     * both documents are the same partner's, fetched together (FL_FETCH_PER_PARTNER=2: the
     * default, 1, would take them one after the other) */
    const char *wlog = it_fmt("%s/worker-once-%s.log", it_logdir(), it_uniq("t"));
    double t0 = it_now();
    it_run(it_fmt("(FL_FETCH_TIMEOUT_MS=4000 FL_FETCH_PER_PARTNER=2 FL_WEBHOOK_ALLOW_PRIVATE=1 FL_WORKER_DATABASE_URL='%s' "
                  "FL_DATA_KEY_FILE='%s' '%s' --once >'%s' 2>&1; echo $? >'%s.rc') </dev/null >/dev/null 2>&1 &",
                  it_env("FL_TEST_WORKER_DATABASE_URL"), it_env("FL_TEST_DATA_KEY"), it_env("FL_TEST_WORKER"), wlog,
                  wlog), NULL);
    /* both claimed, each leased for the limit and 30 s more */
    const char *leased = NULL;
    while (it_now() - t0 < 3.0) {
        leased = IT_Q("SELECT count(*) FILTER (WHERE a.state = 'fetching') || ' ' || "
                      "count(*) FILTER (WHERE a.next_attempt_at BETWEEN now() + interval '30 s' "
                      "AND now() + interval '34.5 s') FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                      "WHERE l.public_id = $1 AND a.filename IN ('never.pdf', 'two-hops.pdf')", id);
        if (leased == NULL || strcmp(leased, "2 2") == 0)
            break;
        it_sleep(0.05);
    }
    IT_STREQ(leased, "2 2");
    const char *rc = "";
    while (*(rc = it_run(it_fmt("cat '%s.rc' 2>/dev/null", wlog), NULL)) == '\0' && it_now() - t0 < 25)
        it_sleep(0.05);
    double took = it_now() - t0;
    it_signal_supervised("webhooks.pid", SIGCONT);
    const char *out = it_run(it_fmt("cat '%s'", wlog), NULL);
    IT_CHECK(atoi(rc) == 0 && *rc, "fl-worker --once: exit <%s>: %s", rc, out);
    IT_CHECK(took >= 3.9 && took < 20, "fl-worker --once took %.1f s, expected 4 s and a little", took);
    IT_CHECK(strstr(out, "attachment fetches 4 s, 2 a partner") != NULL, "fl-worker did not report its limits: %s", out);
    /* the stack's own workers run with the default */
    pid_t sup[16];
    int nsup = it_supervised("webhooks.pid", sup, 16);
    IT_CHECK(nsup >= 1, "no supervised webhook workers");
    for (int i = 0; i < nsup; i++) {
        int gst;
        it_run(it_fmt("grep -q '\"pid\":%d,.*attachment fetches 30 s, 1 a partner' '%s/worker.log'", (int) sup[i],
                      it_logdir()), &gst);
        IT_CHECK(gst == 0, "worker %d does not report a 30 s limit in %s/worker.log", (int) sup[i], it_logdir());
    }
    static const char *const files[] = { "never.pdf", "two-hops.pdf" };
    for (int i = 0; i < 2; i++) {
        IT_STREQ(IT_Q("SELECT a.state || '|' || coalesce(a.error, '') || '|' || a.attempts || '|' || "
                      "(a.content IS NULL)::text || '|' || (a.next_attempt_at > now() + interval '20 s')::text "
                      "FROM lead_attachments a JOIN leads l ON l.id = a.lead_id "
                      "WHERE l.public_id = $1 AND a.filename = $2", id, files[i]),
                 "pending|timed out after 4 s|1|true|true");
    }
    json_object *lines[4];
    IT_CHECK(it_rcv_read(&hang, lines, 4) == 1, "the hanging server got other than one request");
    int n = it_rcv_read(&hop, lines, 4);
    IT_CHECK(n == 2, "two-hops: %d requests at the server, expected 2", n);
    if (n == 2) {
        IT_JSTR(lines[1], "path", "/files/second.pdf");
        long gap = atol(it_jstr(lines[1], "t_ms")) - atol(it_jstr(lines[0], "t_ms"));
        IT_CHECK(gap >= 2400 && gap < 4000, "the second hop came %ld ms after the first", gap);
    }
    it_rcv_stop(&hang);
    it_rcv_stop(&hop);
}

/* POST /webhook: 200 {"success":true} exactly (the first time with the signing secret in a
 * header); 422 for a bad URL. */
static void test_webhook_register(void)
{
    const it_cred *p = new_partner();
    static const char *const bad[] = { "{\"webhook_url\":\"ftp://example.com/x\"}", "{\"webhook_url\":\"example.com\"}",
                                       "{\"webhook_url\":\"\"}", "{}", "{\"webhook_url\":\"https://\"}",
                                       "{\"webhook_url\":", "{\"webhook_url\":42}",
                                       /* credentials, a backslash, a space (docs/leads.md) */
                                       "{\"webhook_url\":\"https://user:pass@example.com/hook\"}",
                                       "{\"webhook_url\":\"http://example.com\\\\@10.0.0.1/\"}",
                                       "{\"webhook_url\":\"http://example.com/a b\"}" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        it_resp *r = it_post(p, "/webhook", bad[i]);
        IT_STATUS(r, 422);
        JSON_IS(r, "{\"errors\":{\"webhook_url\":[\"is not a valid URL\"]}}");
    }
    /* 2,048 characters at most */
    char longurl[2050];
    strcpy(longurl, "https://example.com/");
    memset(longurl + 20, 'a', 2049 - 20);
    longurl[2049] = '\0';
    it_resp *lr = it_post(p, "/webhook", it_fmt("{\"webhook_url\":\"%s\"}", longurl));
    IT_STATUS(lr, 422);
    JSON_IS(lr, "{\"errors\":{\"webhook_url\":[\"is not a valid URL\"]}}");
    IT_STREQ(IT_Q("SELECT count(*)::text FROM webhook_subscriptions s JOIN credentials c ON c.id = s.credential_id "
                  "WHERE c.public_id = $1", it_leads_public_id(p)), "0");
    it_resp *r = it_post(p, "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/some-path\"}");
    IT_STATUS(r, 200);
    JSON_IS(r, "{\"success\":true}");
    const char *secret = it_header_get(r, "Factorline-Signing-Secret");
    IT_CHECK(secret && strlen(secret) == 64, "first registration without Factorline-Signing-Secret: %s", r->body);
    r = it_post(p, "/v1/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/other\"}");
    IT_STATUS(r, 200);
    JSON_IS(r, "{\"success\":true}");
    IT_CHECK(it_header_get(r, "Factorline-Signing-Secret") == NULL, "the signing secret was shown twice");
    const char *pub = it_leads_public_id(p);
    IT_STREQ(IT_Q("SELECT s.url || '|' || s.active || '|' || count(*) OVER () || '|' || (s.secret_enc LIKE 'v1:%') "
                  "|| '|' || (strpos(s.secret_enc, $2) = 0) FROM webhook_subscriptions s "
                  "JOIN credentials c ON c.id = s.credential_id WHERE c.public_id = $1", pub, secret ? secret : "x"),
             "http://127.0.0.1:9/other|true|1|true|true");
    /* a name is not looked up when registered (the worker checks each delivery's address): one
     * that does not resolve is taken, and a request never waits for a partner's DNS */
    r = it_post(p, "/webhook", "{\"webhook_url\":\"https://nowhere.invalid/hook\"}");
    IT_STATUS(r, 200);
    JSON_IS(r, "{\"success\":true}");
    IT_STREQ(IT_Q("SELECT s.url FROM webhook_subscriptions s JOIN credentials c ON c.id = s.credential_id "
                  "WHERE c.public_id = $1", pub), "https://nowhere.invalid/hook");
    /* a refused URL once one is registered: 422, and the registered one stays */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        IT_STATUS(it_post(p, "/webhook", bad[i]), 422);
    IT_STREQ(IT_Q("SELECT s.url || '|' || s.active || '|' || count(*) OVER () FROM webhook_subscriptions s "
                  "JOIN credentials c ON c.id = s.credential_id WHERE c.public_id = $1", pub),
             "https://nowhere.invalid/hook|true|1");
}

/* A partner's first POST /webhook, sent eight times at once (and a trigger): one
 * subscription, one signing secret handed out, every answer 200. */
static void test_webhook_register_concurrent(void)
{
    const it_cred *p = new_partner();
    enum { N = 8 };
    it_resp *out[N];
    it_parallel(out, N, p, "POST", "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/same\"}");
    int secrets = 0;
    for (int i = 0; i < N; i++) {
        IT_STATUS(out[i], 200);
        JSON_IS(out[i], "{\"success\":true}");
        if (it_header_get(out[i], "Factorline-Signing-Secret") != NULL)
            secrets++;
    }
    IT_CHECK(secrets == 1, "%d answers gave a signing secret, expected 1", secrets);
    const char *pub = it_leads_public_id(p);
    IT_STREQ(IT_Q("SELECT count(*)::text FROM webhook_subscriptions s JOIN credentials c ON c.id = s.credential_id "
                  "WHERE c.public_id = $1", pub), "1");
    /* a second partner: triggers at once, then registration: still one */
    const it_cred *q = new_partner();
    const char *id = create_lead(q, NULL);
    if (id == NULL)
        return;
    it_parallel(out, N, q, "POST", "/trigger_webhook",
                it_fmt("{\"webhook_url\":\"http://127.0.0.1:9/t\",\"lead_id\":\"%s\",\"event_type\":\"x\"}", id));
    for (int i = 0; i < N; i++)
        IT_STATUS(out[i], 200);
    IT_STATUS(it_post(q, "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/q\"}"), 200);
    pub = it_leads_public_id(q);
    IT_STREQ(IT_Q("SELECT count(*) || '|' || bool_and(s.active) FROM webhook_subscriptions s "
                  "JOIN credentials c ON c.id = s.credential_id WHERE c.public_id = $1", pub), "1|true");
}

/* A stage change reaches the partner's registered URL, signed. */
static void test_webhook_on_stage_change(void)
{
    const it_cred *p = new_partner();
    it_rcv rc = it_rcv_start(0, "");
    it_resp *r = it_post(p, "/webhook", it_fmt("{\"webhook_url\":\"%s\"}", rc.url));
    IT_STATUS(r, 200);
    const char *secret = it_header_get(r, "Factorline-Signing-Secret");
    IT_CHECK(secret != NULL, "no Factorline-Signing-Secret: %s", r->body);
    const char *id = create_lead(p, NULL), *id2 = create_lead(p, NULL);
    if (id == NULL || id2 == NULL) {
        it_rcv_stop(&rc);
        return;
    }
    /* another partner's deal moving does not reach this partner */
    const char *foreign = create_lead(A(), NULL);
    if (foreign)
        stage_ok(foreign, "Approval Sent", "--max-approval 500 --max-payments 5");

    stage_ok(id, "Approval Sent", "--max-approval 10000 --max-payments 20 --offer-link offer.com");
    json_object *line = rcv_wait_event(&rc, id, "Approved", 15);
    IT_CHECK(line != NULL, "no Approved webhook for %s within 15 s", id);
    if (line) {
        const char *body = it_jstr(line, "body");
        IT_JSTR(line, "method", "POST");
        IT_JSTR(line, "path", strchr(rc.url + 7, '/'));
        IT_CHECK(json_object_equal(it_json(body), it_json(it_fmt("{\"lead_id\":\"%s\",\"event_type\":\"Approved\"}", id))),
                 "body %s", body);
        IT_CHECK(it_sig_ok("factorline", secret, it_jstr(line, "fl_sig"), body, NULL), "Factorline-Signature %s does not verify",
                 it_jstr(line, "fl_sig"));
        IT_CHECK(!it_sig_ok("factorline", "0000000000000000000000000000000000000000000000000000000000000000",
                            it_jstr(line, "fl_sig"), body, NULL),
                 "the signature verifies with any secret");
    }
    stage_ok(id, "Declined", "--decline-driver Fraud");
    IT_CHECK(rcv_wait_event(&rc, id, "Declined", 15) != NULL, "no Declined webhook");
    stage_ok(id2, "File Missing Info", "--missing-info 'bank statements'");
    stage_ok(id2, "Waiting on ISO", "");
    line = rcv_wait_event(&rc, id2, "Waiting on ISO", 15);
    IT_CHECK(line != NULL, "no Waiting on ISO webhook");
    if (line)
        IT_CHECK(it_sig_ok("factorline", secret, it_jstr(line, "fl_sig"), it_jstr(line, "body"), NULL),
                 "Waiting on ISO signature");
    it_sleep(0.5);
    json_object *lines[16];
    int n = it_rcv_read(&rc, lines, 16);
    IT_CHECK(n == 3, "%d deliveries, expected 3 (Approved, Declined, Waiting on ISO; none for File Missing Info or "
                     "another partner's deal)", n);
    IT_STREQ(IT_Q("SELECT string_agg(type || ':' || (audience IS NOT NULL)::text, ',' ORDER BY id) FROM events "
                  "WHERE family = 'leads' AND payload->>'lead_id' = $1", id2), "Waiting on ISO:true");
    it_rcv_stop(&rc);
}

/* A partner whose endpoint is down registers another: the events owed to the old URL go to
 * the new one at once, not on the old one's retry schedule. */
static void test_webhook_new_url_takes_pending(void)
{
    const it_cred *p = new_partner();
    IT_STATUS(it_post(p, "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/down\"}"), 200);
    const char *id = create_lead(p, NULL);
    if (id == NULL)
        return;
    stage_ok(id, "Approval Sent", "--max-approval 1000 --max-payments 10");
    const char *q = "SELECT d.attempts::text FROM webhook_deliveries d JOIN events e ON e.id = d.event_id "
                    "WHERE e.payload->>'lead_id' = $1 AND e.type = 'Approved'";
    double end = it_now() + 15;
    const char *att;
    while ((att = IT_Q(q, id)) != NULL && atoi(att) < 1 && it_now() < end)
        it_sleep(0.1);
    IT_CHECK(att != NULL && atoi(att) >= 1, "no failed attempt to the old URL: attempts %s", att ? att : "(none)");
    it_rcv rc = it_rcv_start(0, "");
    IT_STATUS(it_post(p, "/webhook", it_fmt("{\"webhook_url\":\"%s\"}", rc.url)), 200);
    IT_CHECK(rcv_wait_event(&rc, id, "Approved", 15) != NULL, "the owed Approved event did not reach the new URL");
    /* the receiver logs the request before it answers; the worker records the answer after */
    const char *want = it_fmt("delivered %s", rc.url), *got;
    end = it_now() + 5;
    while ((got = IT_Q("SELECT d.state || ' ' || d.url FROM webhook_deliveries d JOIN events e ON e.id = d.event_id "
                       "WHERE e.payload->>'lead_id' = $1 AND e.type = 'Approved'", id)) != NULL &&
           strcmp(got, want) != 0 && it_now() < end)
        it_sleep(0.05);
    IT_STREQ(got, want);
    it_rcv_stop(&rc);
}

/* `key rotate`: a new secret for the same partner. The old one stops within the 5 s auth
 * cache; the new one reaches the partner's deals and keeps its webhook subscription. */
static void test_key_rotate(void)
{
    const it_cred *p = new_partner();
    IT_STATUS(it_post(p, "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/rot\"}"), 200);
    const char *id = create_lead(p, NULL);
    if (id == NULL)
        return;
    const char *key = it_cred_header(p, "api_key");
    const char *pub = it_leads_public_id(p);
    int st;
    const char *out = it_run(it_fmt("'%s' key rotate --family leads --public-id '%s' --base-url '%s/leads' 2>&1",
                                    it_env("FL_TEST_ADMIN"), pub, it_env("FL_TEST_HTTPS")), &st);
    IT_CHECK(st == 0, "fl-admin key rotate: exit %d: %s", st, out);
    const it_cred *q = it_cred_parse(out);
    IT_CHECK(q != NULL, "key rotate printed %s", out);
    if (q == NULL)
        return;
    const char *nkey = it_cred_header(q, "api_key");
    IT_CHECK(strncmp(nkey, key, strlen(pub) + 1) == 0 && strcmp(nkey, key) != 0,
             "same public id, new secret: %s -> %s", key, nkey);
    /* the new secret works at once, on every worker (a cached old entry is looked up again) */
    for (int i = 0; i < 4; i++) {
        it_resp *r = it_get(q, it_fmt("/deal_status/%s", id));
        IT_CHECK(r->status == 200, "new secret, request %d: %ld %s", i, r->status, r->body);
        JSON_IS(r, "{\"stage\":\"Working\"}");
    }
    it_sleep(5.5);
    it_resp *r = it_get(p, it_fmt("/deal_status/%s", id));
    IT_STATUS(r, 401);
    IT_STATUS(it_post(q, "/webhook", "{\"webhook_url\":\"http://127.0.0.1:9/rot2\"}"), 200);
    IT_STREQ(IT_Q("SELECT count(*) || ' ' || max(s.url) FROM webhook_subscriptions s JOIN credentials c "
                  "ON c.id = s.credential_id WHERE c.public_id = $1", pub), "1 http://127.0.0.1:9/rot2");
    /* an unknown or revoked key: refused, nothing printed to use */
    out = it_run(it_fmt("'%s' key rotate --family leads --public-id no-such-key 2>&1", it_env("FL_TEST_ADMIN")), &st);
    IT_CHECK(st != 0 && strstr(out, "no such active key") != NULL, "rotate of an unknown key: exit %d: %s", st, out);
}

/* POST /trigger_webhook: one signed delivery of {lead_id, event_type} to the given URL. */
static void test_trigger_webhook(void)
{
    const it_cred *p = new_partner();
    it_rcv reg = it_rcv_start(0, ""), rc = it_rcv_start(0, "");
    it_resp *r = it_post(p, "/webhook", it_fmt("{\"webhook_url\":\"%s\"}", reg.url));
    IT_STATUS(r, 200);
    const char *secret = it_header_get(r, "Factorline-Signing-Secret");
    const char *id = create_lead(p, NULL);
    if (id == NULL) {
        it_rcv_stop(&reg);
        it_rcv_stop(&rc);
        return;
    }
    r = it_post(p, "/trigger_webhook",
                it_fmt("{\"webhook_url\":\"%s\",\"lead_id\":\"%s\",\"event_type\":\"Declined\"}", rc.url, id));
    IT_STATUS(r, 200);
    JSON_IS(r, "{\"message\":\"Webhook trigger successful\"}");
    json_object *line = rcv_wait_event(&rc, id, "Declined", 15);
    IT_CHECK(line != NULL, "the triggered webhook did not arrive");
    if (line) {
        const char *body = it_jstr(line, "body");
        IT_CHECK(json_object_equal(it_json(body), it_json(it_fmt("{\"lead_id\":\"%s\",\"event_type\":\"Declined\"}", id))),
                 "body %s", body);
        IT_CHECK(it_sig_ok("factorline", secret, it_jstr(line, "fl_sig"), body, NULL),
                 "the trigger's signature does not verify with the secret");
        /* the header names the outbox event, a test, whatever event_type the partner chose */
        IT_JSTR(line, "event_type", "trigger_webhook");
    }
    /* only to the given URL: the registered one gets nothing, the stage did not change */
    json_object *lines[4];
    IT_CHECK(it_rcv_read(&reg, lines, 4) == 0, "the trigger was delivered to the registered URL too");
    JSON_IS(it_get(p, it_fmt("/deal_status/%s", id)), "{\"stage\":\"Working\"}");

    /* any of the three missing: 400 with the document's message */
    static const char *const missing[] = {
        "{\"lead_id\":\"%2$s\",\"event_type\":\"Approved\"}", "{\"webhook_url\":\"%1$s\",\"event_type\":\"Approved\"}",
        "{\"webhook_url\":\"%1$s\",\"lead_id\":\"%2$s\"}", "{}", "{\"webhook_url\":\"%1$s\",\"lead_id\":\"%2$s\","
        "\"event_type\":\"\"}", "not json", "[]", "\"x\"", "null", "42" };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        r = it_post(p, "/trigger_webhook", it_fmt(missing[i], rc.url, id));
        IT_STATUS(r, 400);
        JSON_IS(r, "{\"message\":\"Please provide lead_id, webhook_url and event_type\"}");
    }
    r = it_post(p, "/trigger_webhook", it_fmt("{\"webhook_url\":\"ftp://x/y\",\"lead_id\":\"%s\",\"event_type\":\"A\"}", id));
    IT_STATUS(r, 422);
    JSON_IS(r, "{\"errors\":{\"webhook_url\":[\"is not a valid URL\"]}}");
    r = it_post(p, "/trigger_webhook", it_fmt("{\"webhook_url\":\"%s\",\"lead_id\":\"nope\",\"event_type\":\"A\"}", rc.url));
    IT_STATUS(r, 404);
    JSON_IS(r, "{\"message\":\"Lead not found\"}");
    /* a lead id longer than any lead's is an unknown lead too, as in the attachment's URL form */
    char longid[300];
    memset(longid, 'z', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    r = it_post(p, "/trigger_webhook",
                it_fmt("{\"webhook_url\":\"%s\",\"lead_id\":\"%s\",\"event_type\":\"A\"}", rc.url, longid));
    IT_STATUS(r, 404);
    JSON_IS(r, "{\"message\":\"Lead not found\"}");
    /* event_type: at most 100 characters, no control characters */
    r = it_post(p, "/trigger_webhook",
                it_fmt("{\"webhook_url\":\"%s\",\"lead_id\":\"%s\",\"event_type\":\"%s\"}", rc.url, id, longid + 198));
    IT_STATUS(r, 422);
    JSON_IS(r, "{\"errors\":{\"event_type\":[\"is too long (maximum is 100 characters)\"]}}");
    r = it_post(p, "/trigger_webhook",
                it_fmt("{\"webhook_url\":\"%s\",\"lead_id\":\"%s\",\"event_type\":\"A\\u0007\"}", rc.url, id));
    IT_STATUS(r, 422);
    JSON_IS(r, "{\"errors\":{\"event_type\":[\"contains control characters\"]}}");
    it_sleep(0.5);
    IT_CHECK(it_rcv_read(&rc, lines, 4) == 1, "refused triggers were delivered");
    it_rcv_stop(&reg);
    it_rcv_stop(&rc);
}

/* A partner that triggers before registering: the trigger is delivered, and
 * its later first registration still gives the signing secret that signs it. */
static void test_trigger_before_register(void)
{
    const it_cred *p = new_partner();
    it_rcv rc = it_rcv_start(0, "");
    const char *id = create_lead(p, NULL);
    if (id == NULL) {
        it_rcv_stop(&rc);
        return;
    }
    it_resp *r = it_post(p, "/trigger_webhook",
                         it_fmt("{\"webhook_url\":\"%s\",\"lead_id\":\"%s\",\"event_type\":\"Approved\"}", rc.url, id));
    IT_STATUS(r, 200);
    json_object *line = rcv_wait_event(&rc, id, "Approved", 15);
    IT_CHECK(line != NULL, "the triggered webhook did not arrive");
    r = it_post(p, "/webhook", it_fmt("{\"webhook_url\":\"%s\"}", rc.url));
    IT_STATUS(r, 200);
    const char *secret = it_header_get(r, "Factorline-Signing-Secret");
    IT_CHECK(secret != NULL, "the partner's first POST /webhook (after a trigger) gave no Factorline-Signing-Secret: %s",
             r->body);
    if (line && secret)
        IT_CHECK(it_sig_ok("factorline", secret, it_jstr(line, "fl_sig"), it_jstr(line, "body"), NULL),
                 "the trigger's signature does not verify with the secret given later");
    /* and the registration is active: a stage change is delivered */
    stage_ok(id, "Waiting on ISO", "");
    IT_CHECK(rcv_wait_event(&rc, id, "Waiting on ISO", 15) != NULL, "no webhook after registering");
    it_rcv_stop(&rc);
}

/* ssn, fein and born_on never reach the database in clear. */
static void test_pii_at_rest(void)
{
    json_object *d = lead_doc();
    jset(d, "lead.contacts_attributes[0].ssn", "\"987654321\"");
    jset(d, "lead.contacts_attributes[0].born_on", "\"1980-07-15\"");
    jset(d, "lead.account_attributes.fein", "\"123456789\"");
    const char *id = create_lead(A(), d);
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", it_uniq("PII")));
    const char *id2 = create_lead(A(), d);
    if (id == NULL || id2 == NULL)
        return;
    static const char *const cols[] = { "c.ssn_enc", "c.born_on_enc", "l.fein_enc" };
    for (int i = 0; i < 3; i++) {
        const char *v = IT_Q(it_fmt("SELECT %s FROM leads l JOIN lead_contacts c ON c.lead_id = l.id "
                                    "WHERE l.public_id = $1", cols[i]), id);
        IT_CHECK(v != NULL && strlen(v) > 12 && strncmp(v, "v1:", 3) == 0 && strspn(v + 3, "0123456789abcdef") == 8
                 && v[11] == ':', "%s = %s: not v1:<8 hex key id>:...", cols[i], v ? v : "(null)");
        IT_CHECK(v && !strstr(v, "987654321") && !strstr(v, "123456789") && !strstr(v, "1980-07-15")
                 && !strstr(v, "19800715"), "%s holds clear text: %s", cols[i], v ? v : "");
        /* the same value sealed twice gives two ciphertexts */
        const char *v2 = IT_Q(it_fmt("SELECT %s FROM leads l JOIN lead_contacts c ON c.lead_id = l.id "
                                     "WHERE l.public_id = $1", cols[i]), id2);
        IT_CHECK(v && v2 && strcmp(v, v2) != 0, "%s: same ciphertext twice", cols[i]);
    }
    /* no column of any lead table, no event, no history row holds the clear values */
    IT_STREQ(IT_Q("SELECT (SELECT count(*) FROM lead_contacts x WHERE x::text ~ '987654321|1980-07-15') + "
                  "(SELECT count(*) FROM leads x WHERE x::text ~ '987654321|123456789|1980-07-15') + "
                  "(SELECT count(*) FROM lead_stage_history x WHERE x::text ~ '987654321|123456789|1980-07-15') + "
                  "(SELECT count(*) FROM events x WHERE x::text ~ '987654321|123456789|1980-07-15')"), "0");
    IT_STREQ(IT_Q("SELECT c.ssn_last4 || '|' || l.fein_last4 FROM leads l JOIN lead_contacts c ON c.lead_id = l.id "
                  "WHERE l.public_id = $1", id), "4321|6789");
    /* the DBA view: the last four only */
    IT_STREQ(IT_Q("SELECT ssn || '|' || fein || '|' || born_on FROM lead_contacts_masked WHERE lead_id = $1", id),
             "***-**-4321|**-***6789|****-**-**");
    /* and the key id is the one key of the stack, the same for all three */
    IT_STREQ(IT_Q("SELECT count(DISTINCT split_part(v, ':', 2))::text FROM (SELECT c.ssn_enc AS v FROM lead_contacts c "
                  "UNION ALL SELECT c.born_on_enc FROM lead_contacts c UNION ALL SELECT l.fein_enc FROM leads l) s "
                  "WHERE v IS NOT NULL"), "1");
    /* fl_report cannot read the sealed columns */
    IT_STREQ(IT_Q("SELECT (has_column_privilege('fl_report', 'lead_contacts', 'ssn_enc', 'SELECT') OR "
                  "has_column_privilege('fl_report', 'lead_contacts', 'born_on_enc', 'SELECT') OR "
                  "has_column_privilege('fl_report', 'leads', 'fein_enc', 'SELECT'))::text"), "false");
}

/* A partner limited below 1 request/s is told when its next token comes: Retry-After is
 * ceil(1 / rate) (until the twenty-third session always 1, so a partner that followed it was
 * refused again nine times in ten at 0.1/s). */
static void test_retry_after_rate(void)
{
    const it_cred *c = new_partner();
    const char *pub = it_leads_public_id(c);
    int st;
    const char *out = it_run(it_fmt("'%s' key limit --family leads --public-id '%s' --rate 0.15 --burst 1 2>&1",
                                    it_env("FL_TEST_ADMIN"), pub), &st);
    IT_CHECK(st == 0, "key limit --rate 0.15: %d %s", st, out);
    IT_STATUS(it_get(c, "/deal_status/no-such-lead"), 404);
    it_resp *r = it_get(c, "/deal_status/no-such-lead");
    IT_STATUS(r, 429);
    IT_STREQ(it_header_get(r, "Retry-After"), "7");
}

/* `key limit` on a partner's key: 0 and "limited", whether the key was used yet or not. */
static void test_key_limit(void)
{
    int st;
    const char *out = it_run(it_fmt("'%s' key add --tenant itest-a --family leads 2>&1", it_env("FL_TEST_ADMIN")), &st);
    const it_cred *c = it_cred_parse(out);
    IT_CHECK(st == 0 && c != NULL, "fl-admin key add: exit %d: %s", st, out);
    if (c == NULL)
        return;
    const char *pub = it_leads_public_id(c);
    const char *admin = it_env("FL_TEST_ADMIN");
    out = it_run(it_fmt("'%s' key limit --family leads --public-id '%s' --rate 2 --burst 3 2>&1", admin, pub), &st);
    IT_CHECK(st == 0 && strcmp(out, "limited\n") == 0, "key limit on a key never used: exit %d: %s", st, out);
    IT_STREQ(IT_Q("SELECT rate_per_sec || ' ' || burst FROM credentials WHERE family = 'leads' AND public_id = $1", pub), "2 3");
    out = it_run(it_fmt("'%s' key limit --family leads --public-id nope --unlimited 2>&1", admin), &st);
    IT_CHECK(st != 0, "key limit of an unknown key: exit %d: %s", st, out);
    out = it_run(it_fmt("'%s' key limit --family leads --public-id '%s' 2>&1", admin, pub), &st);
    IT_CHECK(st != 0 && strstr(out, "usage") != NULL, "key limit without --rate or --unlimited: exit %d: %s", st, out);
}

/* The DBA views count this run's deals. */
static void test_views(void)
{
    const it_cred *p = new_partner();
    const char *ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = create_lead(p, NULL);
    if (!ids[0] || !ids[1] || !ids[2] || !ids[3])
        return;
    stage_ok(ids[0], "Approval Sent", "--max-approval 1000 --max-payments 10");
    stage_ok(ids[1], "Declined", "--decline-driver Fraud --decline-driver 'Sub 500 FICO'");
    stage_ok(ids[2], "Declined", "--decline-driver Fraud");
    const char *pub = it_leads_public_id(p);
    IT_STREQ(IT_Q("SELECT string_agg(stage || ':' || deals || ':' || capital_needed, ',' ORDER BY stage) FROM lead_pipeline "
                  "WHERE partner = $1", pub), "Approval Sent:1:50000.00,Declined:2:100000.00,Working:1:50000.00");
    IT_STREQ(IT_Q("SELECT deals || ':' || approved || ':' || declined || ':' || approval_rate FROM lead_approval_rate "
                  "WHERE partner = $1", pub), "4:1:2:0.3333");
    IT_STREQ(IT_Q("SELECT tenant FROM lead_pipeline WHERE partner = $1 LIMIT 1", pub), "itest-a");
    const char *fraud = IT_Q("SELECT deals::text FROM lead_decline_driver_counts WHERE tenant = 'itest-a' AND driver = 'Fraud'");
    IT_CHECK(fraud && atol(fraud) >= 2, "Fraud declines: %s", fraud ? fraud : "(null)");
}

/* Pool sizes are per family: ./factorline test starts the leads pool with FL_WORKERS_LEADS
 * workers (one more than FL_WORKERS) and the others with FL_WORKERS. */
static void test_pool_size_per_family(void)
{
    int want_leads = atoi(it_env("FL_TEST_LEADS_WORKERS"));
    int want_default = atoi(it_env("FL_TEST_WORKERS"));
    IT_CHECK(want_leads > 0 && want_default > 0 && want_leads != want_default,
             "the test stack sizes leads (%d) apart from the rest (%d)", want_leads, want_default);
    int leads = it_wait_supervised("leads.pid", want_leads, 10);
    int posting = it_wait_supervised("posting.pid", want_default, 10);
    IT_CHECK(leads == want_leads, "leads pool: %d workers, expected %d", leads, want_leads);
    IT_CHECK(posting == want_default, "posting pool: %d workers, expected %d", posting, want_default);
}

/* PostgreSQL down: every endpoint answers 503 {"message":"Service Unavailable"} with
 * Retry-After, a key no worker has seen included (it cannot be checked: 503, not 401); TLS and
 * the route are checked without the database. Nothing is stored; once PostgreSQL is back the
 * pool serves again and the background worker fetches again. */
static void test_database_down(void)
{
    const char *id = create_lead(A(), NULL);
    const it_cred *fresh = new_partner();       /* made by fl-admin: in no worker's cache */
    if (id == NULL)
        return;
    json_object *d = lead_doc();
    const char *ref = it_uniq("pgdown");
    jset(d, "lead.application_attributes.reference_id", it_fmt("\"%s\"", ref));
    int st;
    const char *out = it_run(it_env("FL_TEST_PG_STOP"), &st);
    IT_CHECK(st == 0, "PostgreSQL stopped (status %d): %s", st, out);

    call k[8];
    int n = calls(k, id);
    k[0].body = jtext(d);
    for (int i = 0; i < n; i++) {
        it_resp *r = do_call(A(), &k[i]);
        IT_CHECK(r->status == 503, "database down, %s %s: %ld %s", k[i].method, k[i].path, r->status, r->body);
        JSON_IS(r, "{\"message\":\"Service Unavailable\"}");
        IT_STREQ(it_header_get(r, "Retry-After"), "5");
        IT_CHECK(it_header_get(r, "X-Request-Id") != NULL, "503 without X-Request-Id");
    }
    IT_STATUS(do_call(fresh, &k[3]), 503);
    IT_STATUS(do_call(cred_at(A(), it_env("FL_TEST_HTTP"), "/leads"), &k[3]), 403);
    IT_STATUS(it_get(A(), "/no-such-path"), 404);

    out = it_run(it_env("FL_TEST_PG_START"), &st);
    IT_CHECK(st == 0, "PostgreSQL started (status %d): %s", st, out);
    double t0 = it_now();
    long last = 0;
    while (it_now() - t0 < 10.0) {
        last = do_call(A(), &k[3])->status;
        if (last == 200)
            break;
        it_sleep(0.2);
    }
    IT_CHECK(last == 200, "deal_status back within 10 s of PostgreSQL's start (last %ld after %.1f s)", last,
             it_now() - t0);
    IT_STREQ(IT_Q("SELECT count(*)::text FROM leads WHERE reference_id = $1", ref), "0");
    /* every worker reconnects; a write on a connection that broke is not retried: at most one
     * 503 per worker that served nothing since */
    int refused = 0, pool = atoi(it_env("FL_TEST_LEADS_WORKERS"));
    for (int i = 0; i < 6; i++) {
        it_resp *r = it_post(A(), "/lead", jtext(lead_doc()));
        while (r->status == 503 && refused < pool) {
            refused++;
            r = it_post(A(), "/lead", jtext(lead_doc()));
        }
        IT_CHECK(r->status == 201, "a lead after recovery (%d 503s so far, a pool of %d): %ld %s", refused, pool,
                 r->status, r->body);
    }
    IT_STATUS(do_call(fresh, &k[3]), 404);
    IT_STATUS(it_post(A(), "/lead", jtext(d)), 201);
    /* the background worker fetches again */
    it_rcv rc = it_rcv_start(0, "");
    it_resp *r = it_post(A(), "/attachment",
                         it_fmt("{\"attachment_url\":\"http://127.0.0.1:%d/after.pdf\",\"filename\":\"after.pdf\","
                                "\"lead_id\":\"%s\"}", rc.port, id));
    IT_STATUS(r, 202);
    IT_STREQ(wait_attachment(id, "after.pdf", 20), "received");
    it_rcv_stop(&rc);
}

int main(void)
{
    it_init();
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("leads", NULL, NULL);
    CU_add_test(s, "the document's example lead is created", test_example_lead);
    CU_add_test(s, "a reused reference_id is 422", test_reference_not_unique);
    CU_add_test(s, "a contact without address is 422 (document example)", test_missing_address);
    CU_add_test(s, "required members", test_required);
    CU_add_test(s, "every invalid field at once", test_validation_all_at_once);
    CU_add_test(s, "dates YYYY-MM-DD only, percentages with 2 decimals, booleans as strings", test_dates_and_percentages);
    CU_add_test(s, "the document's shapes: each message, nothing stored", test_validation_shapes);
    CU_add_test(s, "member names in any case, unknown ones ignored, numbers as text, a BOM refused", test_member_names);
    CU_add_test(s, "malformed JSON is 422", test_malformed);
    CU_add_test(s, "every endpoint with and without /v1", test_v1_and_plain_paths);
    CU_add_test(s, "401 without a valid api_key", test_auth_401);
    CU_add_test(s, "403 over plain HTTP", test_plain_http_403);
    CU_add_test(s, "worker pools sized per family", test_pool_size_per_family);
    CU_add_test(s, "429 over 1 request/s, shared by the workers", test_rate_limit);
    CU_add_test(s, "deal_status fields by stage; Declined is final", test_deal_status_by_stage);
    CU_add_test(s, "set_stage refusals", test_stage_errors);
    CU_add_test(s, "another partner or tenant gets 404", test_isolation_404);
    CU_add_test(s, "attachment upload, raw and Base64", test_attachment_upload);
    CU_add_test(s, "attachment errors", test_attachment_errors);
    CU_add_test(s, "attachment up to 25 MB, 413 beyond", test_attachment_size);
    CU_add_test(s, "attachment by URL fetched by the worker", test_attachment_url_fetched);
    CU_add_test(s, "attachment by URL: SSRF guard", test_attachment_url_ssrf);
    CU_add_test(s, "attachment by URL: redirects, scheme of each hop, 25 MB", test_attachment_url_redirects_and_cap);
    CU_add_test(s, "attachment by URL: the time limit covers every hop", test_attachment_url_timeout);
    CU_add_test(s, "attachment by URL: 5xx and 429 retried, three end it", test_attachment_url_retried);
    CU_add_test(s, "webhook registration", test_webhook_register);
    CU_add_test(s, "webhook registration: concurrent first calls make one subscription", test_webhook_register_concurrent);
    CU_add_test(s, "webhook delivered after a stage change", test_webhook_on_stage_change);
    CU_add_test(s, "a new webhook URL takes the deliveries the old one owes", test_webhook_new_url_takes_pending);
    CU_add_test(s, "key rotate: a new secret for the same partner", test_key_rotate);
    CU_add_test(s, "trigger_webhook", test_trigger_webhook);
    CU_add_test(s, "trigger_webhook before registering", test_trigger_before_register);
    CU_add_test(s, "PII encrypted at rest", test_pii_at_rest);
    CU_add_test(s, "DBA views", test_views);
    CU_add_test(s, "key limit exit status", test_key_limit);
    CU_add_test(s, "429 under a rate below 1/s: Retry-After until the next token", test_retry_after_rate);
    /* it stops PostgreSQL */
    CU_add_test(s, "PostgreSQL down: 503 + Retry-After, then back", test_database_down);
    CU_add_test(s, "every response carried X-Request-Id", it_test_request_ids);

    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    it_cleanup();
    return failures > 0 || run == 0 ? 1 : 0;
}
