/* posting handlers: validate with a field spec, call one stored function,
 * answer in FactorCloud's {"message": "..."} format. */
#include "posting.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const yes_countries[] = { "USA", "MEX", "CAN", NULL };
static const char *const pay_methods[] = { "A", "W", "C", NULL };
static const char *const pay_types[] = { "ACH", "CHECK", "WIRE", NULL };

#define ADDRESS_FIELDS \
    { "Address1", FT_STR, 0, 100, 0, 0, NULL, NULL }, \
    { "Address2", FT_STR, 0, 100, 0, 0, NULL, NULL }, \
    { "City", FT_STR, 0, 60, 0, 0, NULL, NULL }, \
    { "State", FT_STR, F_UPPER, 2, 0, 0, NULL, NULL }

static const fl_field client_spec[] = {
    { "ClientKey", FT_STR, F_REQ, 50, 0, 0, NULL, NULL },
    { "Name", FT_STR, F_REQ, 100, 0, 0, NULL, NULL },
    { "CompCode", FT_STR, F_UPPER, 20, 0, 0, NULL, NULL },
    ADDRESS_FIELDS,
    { "ZipCode", FT_STR, 0, 10, 0, 0, NULL, NULL },
    { "Country", FT_STR, F_UPPER, 3, 0, 0, NULL, NULL },
    { "Phone", FT_STR, 0, 30, 0, 0, NULL, NULL },
    { "PhoneAlt", FT_STR, 0, 30, 0, 0, NULL, NULL },
    { "Fax", FT_STR, 0, 30, 0, 0, NULL, NULL },
    { "Email", FT_EMAIL, 0, 120, 0, 0, NULL, NULL },
    { "UccDate", FT_DATE, 0, 0, 0, 0, NULL, NULL },
    { "UccDate2", FT_DATE, 0, 0, 0, 0, NULL, NULL },
    { "UccSignedDate", FT_DATE, 0, 0, 0, 0, NULL, NULL },
    { "Type", FT_INT, 0, 0, 0, 1, NULL, NULL },
    { "Industry", FT_INT, 0, 0, 1, 5, NULL, NULL },
    { "AltName", FT_STR, 0, 100, 0, 0, NULL, NULL },
    { "EdiID", FT_STR, 0, 50, 0, 0, NULL, NULL },
    { "FedTaxNum", FT_STR, 0, 20, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field debtor_spec[] = {
    { "ClientKey", FT_STR, F_REQ, 50, 0, 0, NULL, NULL },
    { "DebtorKey", FT_STR, F_REQ, 50, 0, 0, NULL, NULL },
    { "Name", FT_STR, F_REQ, 100, 0, 0, NULL, NULL },
    { "CompCode", FT_STR, F_UPPER, 20, 0, 0, NULL, NULL },
    ADDRESS_FIELDS,
    { "Zipcode", FT_STR, 0, 10, 0, 0, NULL, NULL },
    { "Country", FT_ENUM, 0, 0, 0, 0, yes_countries, NULL },
    { "Phone", FT_STR, 0, 30, 0, 0, NULL, NULL },
    { "Fax", FT_STR, 0, 30, 0, 0, NULL, NULL },
    { "Email", FT_EMAIL, 0, 120, 0, 0, NULL, NULL },
    { "McNumber", FT_STR, 0, 20, 0, 0, NULL, NULL },
    { "DOTNumber", FT_STR, 0, 20, 0, 0, NULL, NULL },
    { "Notes", FT_STR, 0, 2000, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

#define INVOICE_FIELDS \
    { "DebtorKey", FT_STR, F_REQ, 50, 0, 0, NULL, NULL }, \
    { "InvoiceNumber", FT_STR, F_REQ, 50, 0, 0, NULL, NULL }, \
    { "InvoiceAr", FT_MONEY, F_REQ, 0, 0, 0, NULL, NULL }, \
    { "InvoiceIntegrationId", FT_STR, F_REQ, 100, 0, 0, NULL, NULL }, \
    { "InvoiceDate", FT_DATE, 0, 0, 0, 0, NULL, NULL }, \
    { "DueDate", FT_DATE, 0, 0, 0, 0, NULL, NULL }, \
    { "RefNum", FT_STR, 0, 100, 0, 0, NULL, NULL }, \
    { "DocBase64", FT_BASE64, 0, 0, 0, 0, NULL, NULL }

static const fl_field invoice_spec[] = {
    INVOICE_FIELDS,
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field broker_invoice_spec[] = {
    INVOICE_FIELDS,
    { "VendorKey", FT_STR, F_REQ, 50, 0, 0, NULL, NULL },
    { "AdvanceAmount", FT_MONEY0, F_REQ, 0, 0, 0, NULL, NULL },
    { "VendorInvoiceNumber", FT_STR, 0, 50, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

#define SCHED_FIELDS \
    { "ClientKey", FT_STR, F_REQ, 50, 0, 0, NULL, NULL }, \
    { "Amount", FT_MONEY, F_REQ, 0, 0, 0, NULL, NULL }, \
    { "Label", FT_STR, 0, 100, 0, 0, NULL, NULL }, \
    { "Notes", FT_STR, 0, 2000, 0, 0, NULL, NULL }, \
    { "PaymentMethod", FT_ENUM, 0, 0, 0, 0, pay_methods, NULL }, \
    { "IntegrationBatchId", FT_STR, F_REQ, 100, 0, 0, NULL, NULL }

static const fl_field sched_spec[] = {
    SCHED_FIELDS,
    { "InvoiceArray", FT_ARRAY, F_REQ, 0, 1, 5000, NULL, invoice_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field broker_sched_spec[] = {
    SCHED_FIELDS,
    { "InvoiceArray", FT_ARRAY, F_REQ, 0, 1, 5000, NULL, broker_invoice_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field payment_spec[] = {
    { "PaymentDate", FT_DATE, F_REQ, 0, 0, 0, NULL, NULL },
    { "BankBatchItem", FT_STR, 0, 50, 0, 0, NULL, NULL },
    { "PaymentType", FT_ENUM, F_REQ, 0, 0, 0, pay_types, NULL },
    { "Amount", FT_MONEY, F_REQ, 0, 0, 0, NULL, NULL },
    { "BankRefNumber", FT_STR, 0, 50, 0, 0, NULL, NULL },
    { "AccountNumber", FT_STR, 0, 50, 0, 0, NULL, NULL },
    { "TransactionNumber", FT_STR, F_REQ, 100, 0, 0, NULL, NULL },
    { "RemitterName", FT_STR, 0, 200, 0, 0, NULL, NULL },
    { "MemoLine", FT_STR, 0, 500, 0, 0, NULL, NULL },
    { "InvoiceRefNumber", FT_STR, 0, 100, 0, 0, NULL, NULL },
    { "ClientCode", FT_STR, 0, 50, 0, 0, NULL, NULL },
    { "FinancialDocs", FT_BASE64, 0, 0, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field batch_spec[] = {
    { "BatchReference", FT_STR, F_REQ, 100, 0, 0, NULL, NULL },
    { "BatchTotal", FT_MONEY, F_REQ, 0, 0, 0, NULL, NULL },
    { "AccountNumber", FT_STR, F_REQ, 50, 0, 0, NULL, NULL },
    { "PaymentDetails", FT_ARRAY, F_REQ, 0, 1, 10000, NULL, payment_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_field test_spec[] = {
    { "TestValue", FT_STR, F_REQ, 255, 0, 0, NULL, NULL },
    { "TestLabel", FT_STR, 0, 255, 0, 0, NULL, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const posting_qparam q_client[] = { { "clientkey", "ClientKey" }, { NULL, NULL } };
static const posting_qparam q_client_debtor[] = {
    { "clientkey", "ClientKey" }, { "debtorkey", "DebtorKey" }, { NULL, NULL } };
static const posting_qparam q_debtor[] = { { "debtorkey", "DebtorKey" }, { NULL, NULL } };
static const posting_qparam q_sched[] = {
    { "integrationbatchid", "IntegrationBatchId" }, { NULL, NULL } };
static const posting_qparam q_invoice[] = {
    { "invoiceintegrationid", "InvoiceIntegrationId" }, { NULL, NULL } };

const posting_op op_create_client = { client_spec, NULL, DB_FN(posting_create_client, 0), OP_PII | OP_CLEARS, NULL };
const posting_op op_get_client = { NULL, q_client, DB_FN(posting_get_client, 1), OP_PII, NULL };
const posting_op op_create_debtor = { debtor_spec, NULL, DB_FN(posting_create_debtor, 0), OP_CLEARS, NULL };
const posting_op op_create_vendor = { debtor_spec, NULL, DB_FN(posting_create_vendor, 0), OP_CLEARS, NULL };
const posting_op op_get_client_debtor = { NULL, q_client_debtor, DB_FN(posting_get_client_debtor, 1), 0, NULL };
const posting_op op_get_debtor_master = { NULL, q_debtor, DB_FN(posting_get_debtor_master, 1), 0, NULL };
const posting_op op_create_sched = { sched_spec, NULL, DB_FN(posting_create_sched, 0), OP_HASH_BODY, NULL };
const posting_op op_create_sched_broker = { broker_sched_spec, NULL, DB_FN(posting_create_sched_broker, 0),
                                            OP_HASH_BODY, NULL };
const posting_op op_get_sched = { NULL, q_sched, DB_FN(posting_get_sched, 1), 0, NULL };
const posting_op op_get_broker_sched = { NULL, q_sched, DB_FN(posting_get_broker_sched, 1), 0, NULL };
const posting_op op_get_invoice = { NULL, q_invoice,
    { "posting_invoice_doc", "SELECT doc::text FROM posting_invoice_docs"
      " WHERE tenant_id = $1::uuid AND invoice_integration_id = $2", 2, 1 }, 0, "Invoice not found" };
/* one row per line, or a retry's replay: see posting_post_payments() below */
const posting_op op_post_payments = { batch_spec, NULL,
    { "posting_post_payments_lines", "SELECT * FROM posting_post_payments_lines($1::uuid, $2::jsonb)", 2, 0 },
    OP_HASH_BODY, NULL };

int posting_auth(fl_req *r)
{
    const char *factor = req_header(r, "Auth-FactorID");
    const char *system = req_header(r, "Auth-SystemKey");
    const char *key = req_header(r, "Auth-APIKey");
    fl_cred cred;

    int rc = auth_check(r, "posting", system, key, &cred);
    if (rc < 0)
        return rc;
    /* the factor id names the tenant; it must be the credential's own */
    size_t n = strlen(cred.factor_id);
    if (factor == NULL || strlen(factor) != n || !crypto_equal(factor, cred.factor_id, n)) {
        r->tenant_id = NULL;
        return -401;
    }
    return 0;
}

void posting_error(fl_req *r, int status, const char *reason)
{
    fl_buf b;
    buf_init(&b, r->arena, 128);
    const char *msg = reason && *reason
        ? arena_printf(r->arena, "%d %s %s", status, resp_reason(status), reason)
        : arena_printf(r->arena, "%d %s", status, resp_reason(status));
    buf_puts(&b, "{\"message\":");
    buf_json_str(&b, msg);
    buf_puts(&b, "}");
    resp_json(r->resp, status, b.data);
}

/* Starts an answer in b: {"message":"<status> <reason> - v2.01.00" (the object stays open). */
static int answer_open(fl_buf *b, int status)
{
    return buf_printf(b, "{\"message\":\"%d %s - " POSTING_VERSION "\"", status, resp_reason(status));
}

/* Answers status with {"message": "<status> <reason> - v2.01.00", ...fields of obj}. */
static void answer(fl_req *r, int status, const char *obj_json)
{
    fl_buf b;
    size_t n = strlen(obj_json);
    buf_init(&b, r->arena, n + 64);
    answer_open(&b, status);
    /* splice the object's members after ours: obj_json is "{...}" */
    const char *p = n >= 2 && obj_json[0] == '{' ? obj_json + 1 : "}";
    while (*p == ' ' || *p == '\n') p++;
    if (*p != '}') {
        buf_puts(&b, ",");
        buf_puts(&b, p);
    } else {
        buf_puts(&b, "}");
    }
    resp_json(r->resp, status, b.data);
}

static int first_error(fl_req *r, const fl_ferrs *errs)
{
    const fl_ferr *e = &errs->e[0];
    /* a bad BatchTotal of any kind is the document's own error, spelt as it spells it
     * (the same as for a total that is not the sum of the amounts) */
    if (strcmp(e->field, "BatchTotal") == 0 && strcmp(e->code, "missing") != 0)
        return serve_fail(r, 400, "Invalid batchTotal");
    const char *reason = strcmp(e->code, "missing") == 0
        ? arena_printf(r->arena, "Missing %s", e->field)
        : arena_printf(r->arena, "Invalid %s", e->field);
    return serve_fail(r, 400, reason);
}

int posting_test_post(fl_req *r, const fl_route *route)
{
    json_object *in = NULL, *doc = NULL;
    fl_ferrs errs;
    int rc;

    (void) route;
    r->resp->status = 400;
    if ((rc = serve_json_body(r, &in)) < 0) {
        if (rc != -413)
            rc = serve_fail(r, 400, "Malformed JSON");
        goto out;
    }
    if (json_validate(r->arena, in, test_spec, &doc, &errs) < 0) {
        rc = first_error(r, &errs);
        goto out;
    }
    answer(r, 201, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN));
    rc = 0;
out:
    json_object_put(in);
    json_object_put(doc);
    return rc;
}

/* FedTaxNum is PII: encrypted before it reaches the database. Its last four characters are
 * kept in clear for DBA views (and the client.upserted event) only when at least as many
 * characters stay hidden; migration 0019 applied the same rule to the rows stored before. */
enum { PII_LAST4_MIN_CHARS = 8 };

static int seal_pii(fl_req *r, json_object *doc)
{
    json_object *v;
    if (!json_object_object_get_ex(doc, "FedTaxNum", &v))
        return 0;
    if (v == NULL) {            /* cleared (OP_CLEARS): its last four digits go too */
        json_object_object_add(doc, "FedTaxNumLast4", NULL);
        return 0;
    }
    const char *plain = json_object_get_string(v);
    char *sealed = crypto_pii_encrypt(r->arena, plain);
    if (sealed == NULL)
        return -1;
    /* The last four characters (UTF-8, checked by the parser), not bytes: a cut inside a
     * character would be text PostgreSQL refuses. Only of a value of at least
     * PII_LAST4_MIN_CHARS characters: of a shorter one they would be most of it, or all. */
    size_t nchars = 0;
    for (const char *p = plain; *p; p++)
        nchars += ((unsigned char) *p & 0xC0) != 0x80;
    if (nchars < PII_LAST4_MIN_CHARS) {
        json_object_object_add(doc, "FedTaxNumLast4", NULL);
    } else {
        const char *t = plain + strlen(plain);
        for (int k = 0; k < 4 && t > plain; k++)
            do
                t--;
            while (t > plain && ((unsigned char) *t & 0xC0) == 0x80);
        json_object_object_add(doc, "FedTaxNumLast4", json_need(json_object_new_string(t)));
    }
    json_object_object_add(doc, "FedTaxNum", json_need(json_object_new_string(sealed)));
    return 0;
}

/* Replaces the stored ciphertext in an answer with the clear value. */
static const char *reveal_pii(fl_req *r, const char *text)
{
    json_object *o = NULL, *v;
    const char *out = text;
    if (json_parse_strict(text, strlen(text), &o) < 0)
        return text;
    if (json_object_object_get_ex(o, "FedTaxNum", &v) && json_object_is_type(v, json_type_string)) {
        const char *sealed = json_object_get_string(v);
        char *plain = crypto_pii_decrypt(r->arena, sealed);
        /* the rest of the client stays readable; the operator learns which key is missing */
        if (plain == NULL)
            log_msg("error", r->request_id, "FedTaxNum cannot be decrypted with the data keys loaded "
                    "(sealed with key %.8s; FL_DATA_KEY_FILE, FL_DATA_KEY_OLD_FILES): answered null",
                    strncmp(sealed, "v1:", 3) == 0 && strlen(sealed) >= 11 ? sealed + 3 : "?");
        json_object_object_add(o, "FedTaxNum", plain ? json_object_new_string(plain) : NULL);
    }
    /* the last four digits are for DBA views, not part of the FactorCloud shape */
    json_object_object_del(o, "FedTaxNumLast4");
    out = arena_strdup(r->arena, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return out;
}

/* The body of a create, validated against op's spec into the document its stored function
 * receives (*doc, and the parsed body *in: the caller puts both).  0, or the status already
 * answered (negative). */
static int create_doc(fl_req *r, const posting_op *op, json_object **in, json_object **doc)
{
    fl_ferrs errs;
    int rc;

    r->resp->status = 400;
    if ((rc = serve_json_body(r, in)) < 0)
        return rc == -413 ? rc : serve_fail(r, 400, "Malformed JSON");
    if (json_validate_ex(r->arena, *in, op->spec, doc, &errs, (op->opts & OP_CLEARS) ? JV_CLEARS : 0) < 0)
        return first_error(r, &errs);
    if (op->opts & OP_HASH_BODY) {
        char hash[65];
        crypto_sha256_hex(r->body, r->body_len, hash);
        json_object_object_add(*doc, "RequestHash", json_need(json_object_new_string(hash)));
    }
    if ((op->opts & OP_PII) && seal_pii(r, *doc) < 0) {
        log_msg("error", r->request_id, "PII encryption unavailable (data key not loaded)");
        return serve_fail(r, 500, NULL);
    }
    return 0;
}

int posting_create(fl_req *r, const fl_route *route)
{
    const posting_op *op = route->data;
    json_object *in = NULL, *doc = NULL;
    char *out;
    int rc;

    if ((rc = create_doc(r, op, &in, &doc)) < 0)
        goto out;
    rc = db_call(r, &op->stmt, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN), &out);
    if (rc < 0) {
        rc = serve_fail_pending(r);
        goto out;
    }
    answer(r, 201, (op->opts & OP_PII) ? reveal_pii(r, out) : out);
out:
    json_object_put(in);
    json_object_put(doc);
    return rc;
}

/* post-payments' answer: the batch's echo, written here from the validated document (its
 * values normalised as the database stores them) and the results of each line that
 * posting_post_payments_lines returns, so that the shared database does not spend ~6 % of
 * a batch's CPU formatting it (docs/benchmarks.md, twenty-ninth session).  Keys and formats are those of fl_batch_echo in
 * sql/functions/20_posting_json.sql, which answers a retry from the stored rows: the two
 * texts are equal byte for byte, and the integration tests hold them so. */
#define ECHO_FIELD(name) { name, ",\"" name "\":" }
static const struct echo_field {
    const char *name;           /* the document's member */
    const char *key;            /* ,"name": */
} echo_line_fields[] = {
    ECHO_FIELD("PaymentDate"), ECHO_FIELD("BankBatchItem"), ECHO_FIELD("PaymentType"), ECHO_FIELD("Amount"),
    ECHO_FIELD("BankRefNumber"), ECHO_FIELD("AccountNumber"), ECHO_FIELD("TransactionNumber"),
    ECHO_FIELD("RemitterName"), ECHO_FIELD("MemoLine"), ECHO_FIELD("InvoiceRefNumber"), ECHO_FIELD("ClientCode"),
    ECHO_FIELD("FinancialDocs"), { NULL, NULL }
};

/* The member's text as a JSON string, or null when the document leaves it out. */
static int echo_str(fl_buf *b, json_object *obj, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
        return buf_puts(b, "null");
    return buf_json_str(b, json_object_get_string(v));
}

/* A result column as a JSON string, or null. */
static int echo_col(fl_buf *b, const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? buf_puts(b, "null") : buf_json_str(b, PQgetvalue(res, row, col));
}

/* posting_post_payments_lines' columns */
enum { C_LINE, C_APPLIED, C_UNAPPLIED, C_STATUS, C_REASON, C_APPS, C_REPLAY, C_NCOLS };

static int echo_batch(fl_buf *b, json_object *doc, const PGresult *res)
{
    json_object *lines = json_object_object_get(doc, "PaymentDetails");
    size_t n = json_object_array_length(lines);
    int bad = 0;

    if ((size_t) PQntuples(res) != n)
        return -1;
    bad |= buf_puts(b, ",\"BatchReference\":");
    bad |= echo_str(b, doc, "BatchReference");
    bad |= buf_puts(b, ",\"BatchTotal\":");
    bad |= echo_str(b, doc, "BatchTotal");
    bad |= buf_puts(b, ",\"AccountNumber\":");
    bad |= echo_str(b, doc, "AccountNumber");
    bad |= buf_puts(b, ",\"PaymentDetails\":[");
    for (size_t i = 0; i < n && !bad; i++) {
        json_object *line = json_object_array_get_idx(lines, i);
        int row = (int) i;
        /* the rows come in line order, one per line */
        if (PQgetisnull(res, row, C_LINE) || strtol(PQgetvalue(res, row, C_LINE), NULL, 10) != (long) i + 1
            || PQgetisnull(res, row, C_APPS))
            return -1;
        bad |= buf_puts(b, i ? ",{" : "{");
        for (const struct echo_field *f = echo_line_fields; f->name != NULL; f++) {
            bad |= buf_puts(b, f == echo_line_fields ? f->key + 1 : f->key);
            bad |= echo_str(b, line, f->name);
        }
        bad |= buf_puts(b, ",\"AppliedAmount\":");
        bad |= echo_col(b, res, row, C_APPLIED);
        bad |= buf_puts(b, ",\"UnappliedAmount\":");
        bad |= echo_col(b, res, row, C_UNAPPLIED);
        bad |= buf_puts(b, ",\"Status\":");
        bad |= echo_col(b, res, row, C_STATUS);
        bad |= buf_puts(b, ",\"ExceptionReason\":");
        bad |= echo_col(b, res, row, C_REASON);
        bad |= buf_puts(b, ",\"Applications\":");
        bad |= buf_puts(b, PQgetvalue(res, row, C_APPS));
        bad |= buf_puts(b, "}");
    }
    bad |= buf_puts(b, "]}");
    return bad ? -1 : 0;
}

int posting_post_payments(fl_req *r, const fl_route *route)
{
    const posting_op *op = route->data;
    json_object *in = NULL, *doc = NULL;
    PGresult *res = NULL;
    int rc;

    if ((rc = create_doc(r, op, &in, &doc)) < 0)
        goto out;
    const char *params[2] = { r->tenant_id, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN) };
    if ((rc = db_exec(r, &op->stmt, params, &res)) < 0) {
        rc = serve_fail_pending(r);
        goto out;
    }
    if (PQnfields(res) == C_NCOLS && PQntuples(res) == 1 && !PQgetisnull(res, 0, C_REPLAY)) {
        answer(r, 201, PQgetvalue(res, 0, C_REPLAY));       /* a retry: the stored batch */
        goto out;
    }
    fl_buf b;
    /* the echo is the body's size again and the lines' results: one allocation, mostly */
    buf_init(&b, r->arena, r->body_len + 256 * (size_t) PQntuples(res) + 256);
    if (PQnfields(res) != C_NCOLS || answer_open(&b, 201) < 0 || echo_batch(&b, doc, res) < 0) {
        /* the batch is stored: the same body again is answered with its replay */
        log_msg("error", r->request_id, "post-payments: the answer could not be written (%d result rows); "
                "the batch is stored", PQntuples(res));
        rc = serve_fail(r, 500, NULL);
        goto out;
    }
    resp_json(r->resp, 201, b.data);
out:
    PQclear(res);
    json_object_put(in);
    json_object_put(doc);
    return rc;
}

#define POSTING_MAX_QPARAMS 4

/* Answers a read: a PL/pgSQL call with the params as a document, or, for an
 * op with a notfound message, its SELECT under the tenant (db_tenant_exec). */
static int get_answer(fl_req *r, const posting_op *op, const char *const *vals, size_t n)
{
    char *out;
    if (op->notfound != NULL) {
        const char *p[1 + POSTING_MAX_QPARAMS] = { r->tenant_id };
        PGresult *res;
        for (size_t i = 0; i < n; i++)
            p[1 + i] = vals[i];
        if (db_tenant_exec(r, &op->stmt, p, &res) < 0)
            return serve_fail_pending(r);
        int found = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
        out = found ? arena_strdup(r->arena, PQgetvalue(res, 0, 0)) : NULL;
        PQclear(res);
        if (!found)
            return serve_fail(r, 404, op->notfound);
    } else {
        fl_buf doc;
        buf_init(&doc, r->arena, 128);
        buf_puts(&doc, "{");
        for (size_t i = 0; i < n; i++) {
            buf_puts(&doc, i ? "," : "");
            buf_json_str(&doc, op->params[i].field);
            buf_puts(&doc, ":");
            buf_json_str(&doc, vals[i]);
        }
        buf_puts(&doc, "}");
        if (db_call(r, &op->stmt, doc.data, &out) < 0)
            return serve_fail_pending(r);
    }
    answer(r, 200, (op->opts & OP_PII) ? reveal_pii(r, out) : out);
    return 0;
}

int posting_get(fl_req *r, const fl_route *route)
{
    const posting_op *op = route->data;
    const char *vals[POSTING_MAX_QPARAMS];
    size_t n = 0;

    r->resp->status = 400;
    for (const posting_qparam *q = op->params; q->query != NULL && n < POSTING_MAX_QPARAMS; q++) {
        /* trimmed as a body's text is: every read finds "C1 " as "C1", and " " is missing */
        const char *v = req_query(r, q->query);
        if (v != NULL && (v = json_trim(r->arena, v)) == NULL)
            return serve_fail(r, 500, NULL);
        if (v == NULL || *v == '\0')
            return serve_fail(r, 400, arena_printf(r->arena, "Missing %s", q->query));
        if (json_utf8_chars(v) > 100)         /* characters, as the body's limits */
            return serve_fail(r, 400, arena_printf(r->arena, "Invalid %s", q->query));
        vals[n++] = v;
    }
    return get_answer(r, op, vals, n);
}
