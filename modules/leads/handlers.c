/* leads handlers: TLS only, api_key, a shared rate limit per partner, every
 * validation error at once in {"errors": {"<attribute>": ["..."]}}, and the
 * PII sealed before it reaches the database. */
#include "leads.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const fl_field address_spec[] = {
    { "street1", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "street2", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "city", FT_STR, 0, 100, 0, 0, NULL, NULL },
    { "state", FT_STATE, 0, 0, 0, 0, NULL, NULL },
    { "zip", FT_ZIP, 0, 0, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field contact_spec[] = {
    { "first_name", FT_STR, F_REQ, 100, 0, 0, NULL, NULL },
    { "last_name", FT_STR, F_REQ, 100, 0, 0, NULL, NULL },
    { "email", FT_EMAIL, 0, 200, 0, 0, NULL, NULL },
    { "title", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "born_on", FT_DATE, F_PAST | F_ISO, 0, 0, 0, NULL, NULL },
    { "home_phone", FT_DIGITS, F_PHONE, 10, 0, 0, NULL, NULL },
    { "cell_phone", FT_DIGITS, F_PHONE, 10, 0, 0, NULL, NULL },
    { "ssn", FT_DIGITS, 0, 9, 0, 0, NULL, NULL },
    { "ownership_date", FT_DATE, F_PAST | F_ISO, 0, 0, 0, NULL, NULL },
    { "current_address_attributes", FT_OBJECT, 0, 0, 0, 0, NULL, address_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field account_spec[] = {
    { "entity_type", FT_STR, 0, 100, 0, 0, NULL, NULL },
    { "name", FT_STR, F_REQ, 200, 0, 0, NULL, NULL },
    { "started_on", FT_DATE, F_PAST | F_ISO, 0, 0, 0, NULL, NULL },
    { "legal_name", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "phone", FT_DIGITS, F_PHONE, 10, 0, 0, NULL, NULL },
    { "email", FT_EMAIL, 0, 200, 0, 0, NULL, NULL },
    { "website", FT_STR, 0, 500, 0, 0, NULL, NULL },
    { "fein", FT_DIGITS, 0, 9, 0, 0, NULL, NULL },
    { "monthly_revenue", FT_STR, 0, 100, 0, 0, NULL, NULL },
    { "industry_name", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "current_address_attributes", FT_OBJECT, 0, 0, 0, 0, NULL, address_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field loan_spec[] = {
    { "company_name", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "daily_payment_amount", FT_MONEY0, 0, 0, 0, 0, NULL, NULL },
    { "balance", FT_MONEY0, 0, 0, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field application_spec[] = {
    { "has_current_loan", FT_BOOL, 0, 0, 0, 0, NULL, NULL },
    { "applicant_is_owner", FT_BOOL, 0, 0, 0, 0, NULL, NULL },
    { "loan_use", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "capital_needed", FT_MONEY, 0, 0, 0, 0, NULL, NULL },
    { "owner_1_percent_ownership", FT_PERCENT, 0, 0, 0, 0, NULL, NULL },
    { "owner_2_percent_ownership", FT_PERCENT, 0, 0, 0, 0, NULL, NULL },
    { "reference_id", FT_STR, F_REQ, 255, 0, 0, NULL, NULL },
    { "notes", FT_STR, 0, 5000, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field lead_spec[] = {
    { "contacts_attributes", FT_ARRAY, F_REQ, 0, 1, 10, NULL, contact_spec },
    { "account_attributes", FT_OBJECT, F_REQ, 0, 0, 0, NULL, account_spec },
    { "loan_attributes", FT_OBJECT, 0, 0, 0, 0, NULL, loan_spec },
    { "application_attributes", FT_OBJECT, F_REQ, 0, 0, 0, NULL, application_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field url_attachment_spec[] = {
    { "attachment_url", FT_URL, F_REQ, 2048, 0, 0, NULL, NULL },
    /* sanitised as the raw upload's (mime_filename), not refused; longer than 255
     * before that for the path components and control characters it loses */
    { "filename", FT_STR, F_REQ | F_CNTRL, 4096, 0, 0, NULL, NULL },
    /* no lead has a longer id, but a longer one is an unknown lead (404), as in the raw upload */
    { "lead_id", FT_STR, F_REQ, 4096, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field webhook_spec[] = {
    { "webhook_url", FT_URL, F_REQ, 2048, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field trigger_spec[] = {
    { "webhook_url", FT_URL, F_REQ, 2048, 0, 0, NULL, NULL },
    /* as in the attachment's URL form: a longer id is an unknown lead (404) */
    { "lead_id", FT_STR, F_REQ, 4096, 0, 0, NULL, NULL },
    { "event_type", FT_STR, F_REQ, 100, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_stmt st_create = DB_FN_CRED(leads_create, 0);
static const fl_stmt st_status = DB_FN_CRED(leads_deal_status, 1);
static const fl_stmt st_attach_url = DB_FN_CRED(leads_attachment_url, 0);
static const fl_stmt st_webhook = DB_FN_CRED(leads_webhook_register, 0);
static const fl_stmt st_trigger = DB_FN_CRED(leads_trigger_webhook, 0);
static const fl_stmt st_attach = {
    "leads_attachment_add",
    "SELECT leads_attachment_add($1::uuid, $2::uuid, $3, $4, $5::bytea, $6, $7)::text", 7, 0
};

int leads_auth(fl_req *r)
{
    fl_cred cred;
    char pub[129];

    const char *key = req_header(r, "api_key");
    const char *dot = key ? strchr(key, '.') : NULL;
    if (dot == NULL || (size_t) (dot - key) >= sizeof(pub))
        return -401;
    memcpy(pub, key, (size_t) (dot - key));
    pub[dot - key] = '\0';
    int rc = auth_check(r, "leads", pub, dot + 1, &cred);
    if (rc < 0)
        return rc;
    rc = auth_rate_take(r, &cred);
    if (rc == -429) {
        /* when the next token comes: 1 s at the default rate, longer for a slower one (a
         * partner that waits the header out then finds a token) */
        long wait = 1;
        if (cred.rate_per_sec > 0 && cred.rate_per_sec < 1) {
            double w = 1.0 / cred.rate_per_sec;
            wait = w > 3600 ? 3600 : (long) w + ((double) (long) w < w);
        }
        resp_header(r->resp, "Retry-After", arena_printf(r->arena, "%ld", wait));
    }
    return rc;
}

void leads_error(fl_req *r, int status, const char *reason)
{
    fl_buf b;
    const char *msg = reason;
    if (msg == NULL || *msg == '\0') {
        switch (status) {
        case 401: msg = "Unauthorized"; break;
        case 403: msg = "HTTPS is required"; break;
        case 429: msg = "Rate limit exceeded"; break;
        case 413: {
            /* the cap in force: 25 MB, the attachment limit, unless FL_BODY_MAX is set */
            size_t max = serve_body_max();
            msg = max % (1024 * 1024) == 0
                  ? arena_printf(r->arena, "Request body too large: the limit is %zu MB", max / (1024 * 1024))
                  : arena_printf(r->arena, "Request body too large: the limit is %zu bytes", max);
            break;
        }
        default: msg = resp_reason(status);
        }
    }
    buf_init(&b, r->arena, 128);
    buf_puts(&b, "{\"message\":");
    buf_json_str(&b, msg);
    buf_puts(&b, "}");
    resp_json(r->resp, status, b.data);
}

/* Adds message to errors[field], keeping the order fields first failed in. */
static void add_error(json_object *errors, const char *field, const char *message)
{
    json_object *arr;
    if (!json_object_object_get_ex(errors, field, &arr)) {
        arr = json_object_new_array();
        json_object_object_add(errors, field, arr);
    }
    json_object_array_add(arr, json_object_new_string(message));
}

static int answer_errors(fl_req *r, json_object *errors)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "errors", json_object_get(errors));
    resp_json(r->resp, 422, arena_strdup(r->arena, json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN)));
    json_object_put(root);
    r->err_status = 422;
    return -422;
}

static const char *str_field(json_object *o, const char *name)
{
    json_object *v;
    return json_object_object_get_ex(o, name, &v) ? json_object_get_string(v) : NULL;
}

/* Replaces a PII field with its sealed form (and its last four digits when
 * last4 names where to put them).  0 or -1 when the data key is missing. */
static int seal(fl_req *r, json_object *o, const char *name, const char *last4)
{
    const char *plain = str_field(o, name);
    if (plain == NULL)
        return 0;
    char *sealed = crypto_pii_encrypt(r->arena, plain);
    if (sealed == NULL)
        return -1;
    size_t n = strlen(plain);
    if (last4 != NULL)
        json_object_object_add(o, last4, json_object_new_string(n >= 4 ? plain + n - 4 : plain));
    json_object_object_add(o, name, json_object_new_string(sealed));
    return 0;
}

static long hundredths(const char *norm)
{
    const char *dot = norm ? strchr(norm, '.') : NULL;
    return dot ? atol(norm) * 100 + atol(dot + 1) : 0;
}

/* Rules across fields, after each field is valid on its own. */
static void cross_checks(json_object *lead, json_object *errors)
{
    json_object *contacts, *app, *addr;
    int with_address = 0;
    if (json_object_object_get_ex(lead, "contacts_attributes", &contacts)) {
        for (size_t i = 0; i < json_object_array_length(contacts); i++) {
            json_object *c = json_object_array_get_idx(contacts, i);
            if (json_object_object_get_ex(c, "current_address_attributes", &addr)
                && str_field(addr, "street1") && str_field(addr, "city") && str_field(addr, "state")
                && str_field(addr, "zip"))
                with_address = 1;
        }
        if (!with_address)
            add_error(errors, "contacts_attributes", "Must provide address");
    }
    if (json_object_object_get_ex(lead, "application_attributes", &app)) {
        const char *o1 = str_field(app, "owner_1_percent_ownership");
        const char *o2 = str_field(app, "owner_2_percent_ownership");
        /* both are normalised to "N.NN": compare in hundredths, exactly */
        long h1 = hundredths(o1), h2 = hundredths(o2);
        if (h1 + h2 > 10000)
            add_error(errors, "application_attributes",
                      "owner percentages of ownership must add up to at most 100");
    }
}

int leads_create(fl_req *r, const fl_route *route)
{
    json_object *in = NULL, *doc = NULL, *errors = json_object_new_object(), *lead, *contacts, *acct;
    fl_ferrs ferrs;
    char *out, id[33];
    int rc;

    (void) route;
    r->resp->status = 422;
    if ((rc = serve_json_body(r, &in)) == -413)
        goto out;
    if (rc < 0 || !json_object_is_type(in, json_type_object)) {
        add_error(errors, "base", "is not valid JSON");
        rc = answer_errors(r, errors);
        goto out;
    }
    lead = json_get_ci(in, "lead");
    if (lead == NULL || !json_object_is_type(lead, json_type_object)) {
        add_error(errors, "lead", "can't be blank");
        rc = answer_errors(r, errors);
        goto out;
    }
    json_validate(r->arena, lead, lead_spec, &doc, &ferrs);
    for (size_t i = 0; i < ferrs.n; i++)
        add_error(errors, ferrs.e[i].field, ferrs.e[i].message);
    cross_checks(doc, errors);
    if (json_object_object_length(errors) > 0) {
        rc = answer_errors(r, errors);
        goto out;
    }

    if (json_object_object_get_ex(doc, "contacts_attributes", &contacts))
        for (size_t i = 0; i < json_object_array_length(contacts); i++) {
            json_object *c = json_object_array_get_idx(contacts, i);
            if (seal(r, c, "ssn", "ssn_last4") < 0 || seal(r, c, "born_on", NULL) < 0)
                goto nokey;
        }
    if (json_object_object_get_ex(doc, "account_attributes", &acct) && seal(r, acct, "fein", "fein_last4") < 0)
        goto nokey;
    if (crypto_random_hex(id, 16) < 0) {
        rc = serve_fail(r, 500, NULL);
        goto out;
    }
    json_object_object_add(doc, "public_id", json_object_new_string(id));
    rc = db_call(r, &st_create, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN), &out);
    if (rc < 0) {
        rc = serve_fail_pending(r);
        goto out;
    }
    {
        fl_buf b;
        buf_init(&b, r->arena, 128);
        buf_puts(&b, "{\"message\":\"Your lead was successfully created.\",\"id\":");
        buf_json_str(&b, id);
        buf_puts(&b, "}");
        resp_json(r->resp, 201, b.data);
    }
    rc = 0;
    goto out;
nokey:
    log_msg("error", r->request_id, "PII encryption unavailable (data key not loaded)");
    rc = serve_fail(r, 500, NULL);
out:
    json_object_put(in);
    json_object_put(doc);
    json_object_put(errors);
    return rc;
}

/* POST /attachment with {attachment_url, filename, lead_id}: the worker fetches it. */
static int attachment_url(fl_req *r)
{
    json_object *in = NULL, *doc = NULL;
    fl_ferrs ferrs;
    char *out;
    int rc;
    const char *need = "Please provide attachment_url, filename and lead_id";

    if ((rc = serve_json_body(r, &in)) < 0) {
        if (rc != -413)
            rc = serve_fail(r, 400, need);
        goto out;
    }
    if (json_validate(r->arena, in, url_attachment_spec, &doc, &ferrs) < 0) {
        rc = serve_fail(r, 400, strcmp(ferrs.e[0].field, "attachment_url") == 0
                        && strcmp(ferrs.e[0].code, "missing") != 0
                        ? "attachment_url must be an http or https URL" : need);
        goto out;
    }
    /* credentials in the URL (user:password@host) would be stored in clear, where reporting
     * reads source_url: refused, as /webhook refuses them */
    if (net_url_has_credentials(str_field(doc, "attachment_url"))) {
        rc = serve_fail(r, 400, "attachment_url must be an http or https URL without credentials");
        goto out;
    }
    char *name = mime_filename(r->arena, str_field(doc, "filename"));
    if (name == NULL) {
        rc = serve_fail(r, 400, "Invalid filename");
        goto out;
    }
    json_object_object_add(doc, "filename", json_object_new_string(name));
    rc = db_call(r, &st_attach_url, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN), &out);
    if (rc < 0) {
        rc = serve_fail_pending(r);
        goto out;
    }
    resp_json(r->resp, 202, "{\"message\":\"Your attachment was received and is being processed\"}");
out:
    json_object_put(in);
    json_object_put(doc);
    return rc;
}

int leads_attachment(fl_req *r, const fl_route *route)
{
    const char *filename = req_query(r, "filename");
    const char *lead_id = req_query(r, "lead_id");
    const char *encoded = req_query(r, "encoded");
    unsigned char *content = (unsigned char *) r->body;
    size_t len = r->body_len;
    char sha[65];

    (void) route;
    r->resp->status = 400;
    if (filename == NULL && lead_id == NULL && req_query(r, "encoded") == NULL) {
        /* a JSON object is the URL form; anything else is a file sent without its query */
        size_t i = 0;
        while (i < r->body_len && (r->body[i] == ' ' || r->body[i] == '\t' || r->body[i] == '\r' || r->body[i] == '\n'))
            i++;
        if (i < r->body_len && r->body[i] == '{')
            return attachment_url(r);
        return serve_fail(r, 400, "Please provide filename and lead_id");
    }
    if (filename == NULL || *filename == '\0' || lead_id == NULL || *lead_id == '\0')
        return serve_fail(r, 400, "Please provide filename and lead_id");
    /* the document's boolean: true/false in any case, or 1/0; empty (a URI template's
     * unset variable) is the default, a raw upload */
    int base64;
    if (encoded == NULL || *encoded == '\0' || strcasecmp(encoded, "false") == 0 || strcmp(encoded, "0") == 0)
        base64 = 0;
    else if (strcasecmp(encoded, "true") == 0 || strcmp(encoded, "1") == 0)
        base64 = 1;
    else
        return serve_fail(r, 400, "encoded must be true or false");
    char *name = mime_filename(r->arena, filename);
    if (name == NULL)
        return serve_fail(r, 400, "Invalid filename");
    if (base64) {
        size_t dlen;
        if (len == 0)                     /* nothing to decode: empty, as a raw upload is */
            return serve_fail(r, 400, "The attachment is empty");
        if (json_base64_valid(r->body, &dlen) < 0 || strlen(r->body) != len)
            return serve_fail(r, 400, "The attachment is not valid strict Base64");
        content = arena_alloc(r->arena, len / 4 * 3 + 1);
        if (content == NULL || EVP_DecodeBlock(content, (const unsigned char *) r->body, (int) len) < 0)
            return serve_fail(r, 400, "The attachment is not valid strict Base64");
        len = dlen;
    }
    if (len == 0)
        return serve_fail(r, 400, "The attachment is empty");
    crypto_sha256_hex(content, len, sha);

    PGresult *res;
    char lenbuf[24];
    snprintf(lenbuf, sizeof(lenbuf), "%zu", len);
    const char *params[7] = { r->tenant_id, r->credential_id, lead_id, name, (const char *) content,
                              sha, mime_sniff(content, len) };
    int lengths[7] = { 0, 0, 0, 0, (int) len, 0, 0 };
    int formats[7] = { 0, 0, 0, 0, 1, 0, 0 };
    if (db_exec_bin(r, &st_attach, params, lengths, formats, &res) < 0)
        return serve_fail_pending(r);
    PQclear(res);
    resp_json(r->resp, 202, "{\"message\":\"Your attachment was received and is being processed\"}");
    return 0;
}

int leads_deal_status(fl_req *r, const fl_route *route)
{
    fl_buf doc;
    char *out;
    (void) route;
    r->resp->status = 400;
    const char *id = req_path_param(r, "lead_id");
    if (id == NULL || strlen(id) > 100)
        return serve_fail(r, 404, "Lead not found");
    buf_init(&doc, r->arena, 128);
    buf_puts(&doc, "{\"lead_id\":");
    buf_json_str(&doc, id);
    buf_puts(&doc, "}");
    if (db_call(r, &st_status, doc.data, &out) < 0)
        return serve_fail_pending(r);
    resp_json(r->resp, 200, out);
    return 0;
}

/* Calls st with doc plus a new signing secret, sealed ("secret_enc"), for the
 * subscription the call may create; *plain gets the clear secret, *out the
 * function's answer.  0, or a negative status already answered. */
static int call_with_secret(fl_req *r, const fl_stmt *st, json_object *doc, char **plain, char **out)
{
    char *s = arena_alloc(r->arena, 65);
    char *sealed = s != NULL && crypto_random_hex(s, 32) == 0 ? crypto_pii_encrypt(r->arena, s) : NULL;
    if (sealed == NULL)
        return serve_fail(r, 500, NULL);
    json_object_object_add(doc, "secret_enc", json_object_new_string(sealed));
    *plain = s;
    if (db_call(r, st, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN), out) < 0)
        return serve_fail_pending(r);
    return 0;
}

/* A callback URL must also pass the SSRF guard's checks that need no lookup (an
 * address in it must be public); the worker checks the address of each delivery's
 * connection.  Nothing here waits for a partner's DNS. */
static int url_allowed(const char *url)
{
    static int allow_private = -1;      /* read as the worker reads it, once */
    if (allow_private < 0)
        allow_private = (int) env_long("FL_WEBHOOK_ALLOW_PRIVATE", 0, 0, 1);
    fl_url u;
    char err[160];
    return net_url_check(url, allow_private, &u, err, sizeof(err)) == 0;
}

int leads_webhook(fl_req *r, const fl_route *route)
{
    json_object *in = NULL, *doc = NULL, *errors = json_object_new_object(), *res = NULL, *v;
    fl_ferrs ferrs;
    char *out, *secret = NULL;
    int rc;

    (void) route;
    r->resp->status = 422;
    if ((rc = serve_json_body(r, &in)) == -413)
        goto out;
    if (rc < 0 || json_validate(r->arena, in, webhook_spec, &doc, &ferrs) < 0
        || !url_allowed(str_field(doc, "webhook_url"))) {
        add_error(errors, "webhook_url", "is not a valid URL");
        rc = answer_errors(r, errors);
        goto out;
    }
    rc = call_with_secret(r, &st_webhook, doc, &secret, &out);
    if (rc < 0)
        goto out;
    /* The signing secret is shown once, when the subscription is made, in a header: the body
     * is the document's, exactly. */
    if (json_parse_strict(out, strlen(out), &res) == 0 && json_object_object_get_ex(res, "created", &v)
        && json_object_get_boolean(v)) {
        /* made earlier by trigger_webhook: its own secret, shown now for the first time */
        const char *kept = str_field(res, "secret_enc");
        if (kept != NULL && (secret = crypto_pii_decrypt(r->arena, kept)) == NULL) {
            rc = serve_fail(r, 500, NULL);
            goto out;
        }
        resp_header(r->resp, "Factorline-Signing-Secret", secret);
    }
    resp_json(r->resp, 200, "{\"success\":true}");
out:
    json_object_put(in);
    json_object_put(doc);
    json_object_put(res);
    json_object_put(errors);
    return rc;
}

int leads_trigger_webhook(fl_req *r, const fl_route *route)
{
    json_object *in = NULL, *doc = NULL, *errors = json_object_new_object();
    fl_ferrs ferrs;
    char *out, *secret;
    int rc;

    (void) route;
    r->resp->status = 400;
    if ((rc = serve_json_body(r, &in)) < 0) {
        if (rc != -413)
            rc = serve_fail(r, 400, "Please provide lead_id, webhook_url and event_type");
        goto out;
    }
    if (json_validate(r->arena, in, trigger_spec, &doc, &ferrs) < 0) {
        /* a body that is not an object has none of the three either */
        int missing = !json_object_is_type(in, json_type_object);
        for (size_t i = 0; i < ferrs.n; i++)
            if (strcmp(ferrs.e[i].code, "missing") == 0)
                missing = 1;
        if (missing) {
            rc = serve_fail(r, 400, "Please provide lead_id, webhook_url and event_type");
            goto out;
        }
        for (size_t i = 0; i < ferrs.n; i++)
            add_error(errors, ferrs.e[i].field, ferrs.e[i].message);
        rc = answer_errors(r, errors);
        goto out;
    }
    if (!url_allowed(str_field(doc, "webhook_url"))) {
        add_error(errors, "webhook_url", "is not a valid URL");
        rc = answer_errors(r, errors);
        goto out;
    }
    rc = call_with_secret(r, &st_trigger, doc, &secret, &out);
    if (rc < 0)
        goto out;
    resp_json(r->resp, 200, "{\"message\":\"Webhook trigger successful\"}");
out:
    json_object_put(in);
    json_object_put(doc);
    json_object_put(errors);
    return rc;
}
