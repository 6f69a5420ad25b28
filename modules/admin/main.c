/* fl-admin: tenants and credentials, behind `./factorline tenant|key`.
 * Connects as the schema owner (FL_ADMIN_DATABASE_URL); secrets are printed
 * once and stored only as sha256. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <ctype.h>
#include "fl.h"

static PGconn *conn;

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fl-admin: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

/* One statement; its error with the detail and hint the SQL gives (which family names are
 * valid, which tenant exists). */
static PGresult *call(const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        const char *d = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        const char *h = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        fprintf(stderr, "fl-admin: %s", m ? m : PQerrorMessage(conn));
        if (m && d)
            fprintf(stderr, " (%s)", d);
        if (m && h)
            fprintf(stderr, " %s", h);
        if (m)
            fputc('\n', stderr);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int exec_ok(const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "fl-admin: %s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    return ok;
}

/* A secret is printed once: the change that made it commits only once it is written. A
 * secret that could not be written (a full disk, a closed pipe) leaves nothing changed, where
 * a rotated key used to be locked out with nobody knowing its new secret. */
static int commit_printed(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        exec_ok("ROLLBACK");
        return die("the secret could not be written out: nothing was changed");
    }
    return exec_ok("COMMIT") ? 0 : 1;
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static int in_list(const char *s, const char *const *list)
{
    for (; list != NULL && *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* The command's arguments are its options: each of valued[] followed by its value (not another
 * option), each of flags[] alone. Anything else is refused, so that a mistyped option
 * (--brust) is not ignored. 0, or 2 after saying why. */
static int check_opts(int argc, char **argv, const char *const *valued, const char *const *flags)
{
    for (int i = 0; i < argc; i++) {
        if (in_list(argv[i], flags))
            continue;
        if (!in_list(argv[i], valued))
            return die("unknown option %s", argv[i]);
        if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
            return die("%s lacks its value", argv[i]);
        i++;
    }
    return 0;
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int tenant_add(const char *name)
{
    char factor[17];
    if (crypto_random_hex(factor, 8) < 0)
        return die("no randomness");
    for (char *p = factor; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char) (*p - 32);
    const char *params[2] = { name, factor };
    PGresult *res = call("SELECT fl_tenant_add($1, $2)::text", 2, params);
    if (res == NULL)
        return 1;
    printf("{\"tenant\":");
    json_str(name);
    printf(",\"id\":\"%s\",\"factor_id\":\"%s\"}\n", PQgetvalue(res, 0, 0), factor);
    PQclear(res);
    return 0;
}

/* The headers a client of each family sends, as the vendor documents them. */
static void print_headers(const char *family, const char *factor_id, const char *public_id,
                          const char *secret)
{
    if (strcmp(family, "posting") == 0) {
        printf("{\"Auth-FactorID\":");
        json_str(factor_id);
        printf(",\"Auth-SystemKey\":");
        json_str(public_id);
        printf(",\"Auth-APIKey\":");
        json_str(secret);
        printf("}");
    } else if (strcmp(family, "leads") == 0) {
        /* Forward Financing: one api_key header; the key carries its public id */
        printf("{\"api_key\":\"%s.%s\"}", public_id, secret);
    } else {
        printf("{\"Authorization\":\"Bearer %s.%s\"}", public_id, secret);
    }
}

/* A new secret (64 hex digits) and its sha256 as bytea hex input; -1 without randomness. */
static int new_secret(char secret[65], char bytea[67])
{
    char hex[65];
    unsigned char h[32];

    if (crypto_random_hex(secret, 32) < 0)
        return -1;
    crypto_sha256(secret, strlen(secret), h);
    crypto_hex(h, 32, hex);
    snprintf(bytea, 67, "\\x%s", hex);
    return 0;
}

/* {"base_url": ..., "headers": {...}}: what a client needs, printed once. */
static void print_credential(const char *base, const char *family, const char *factor_id,
                             const char *public_id, const char *secret)
{
    printf("{\"base_url\":");
    json_str(base ? base : "");
    printf(",\"headers\":");
    print_headers(family, factor_id, public_id, secret);
    printf("}\n");
}

static int key_add(int argc, char **argv)
{
    const char *tenant = opt(argc, argv, "--tenant");
    const char *family = opt(argc, argv, "--family");
    const char *base = opt(argc, argv, "--base-url");
    const char *label = opt(argc, argv, "--label");
    char public_id[25], secret[65], bytea[67];
    static const char *const valued[] = { "--tenant", "--family", "--base-url", "--label", NULL };

    if (check_opts(argc, argv, valued, NULL) != 0)
        return 2;
    if (tenant == NULL || family == NULL)
        return die("usage: key add --tenant NAME --family FAMILY [--base-url URL] [--label TEXT]");
    if (crypto_random_hex(public_id, 12) < 0 || new_secret(secret, bytea) < 0)
        return die("no randomness");
    const char *params[5] = { tenant, family, public_id, bytea, label ? label : "" };
    if (!exec_ok("BEGIN"))
        return 1;
    PGresult *res = call("SELECT k::text, t.factor_id FROM fl_key_add($1, $2, $3, $4::bytea, $5) k"
                         " JOIN tenants t ON t.name = $1", 5, params);
    if (res == NULL)
        return 1;
    print_credential(base, family, PQgetvalue(res, 0, 1), public_id, secret);
    PQclear(res);
    return commit_printed();
}

/* key rotate --family F --public-id ID [--base-url URL]: a new secret, printed once as key add
 * prints it; the old one stops within the workers' 5 s auth cache. */
static int key_rotate(int argc, char **argv)
{
    const char *family = opt(argc, argv, "--family");
    const char *public_id = opt(argc, argv, "--public-id");
    const char *base = opt(argc, argv, "--base-url");
    char secret[65], bytea[67];
    static const char *const valued[] = { "--family", "--public-id", "--base-url", NULL };

    if (check_opts(argc, argv, valued, NULL) != 0)
        return 2;
    if (family == NULL || public_id == NULL)
        return die("usage: key rotate --family FAMILY --public-id ID [--base-url URL]");
    if (new_secret(secret, bytea) < 0)
        return die("no randomness");
    const char *params[3] = { family, public_id, bytea };
    if (!exec_ok("BEGIN"))
        return 1;
    PGresult *res = call("SELECT fl_key_rotate($1, $2, $3::bytea)", 3, params);
    if (res == NULL)
        return 1;
    if (PQgetisnull(res, 0, 0)) {
        PQclear(res);
        return die("no such active key");
    }
    print_credential(base, family, PQgetvalue(res, 0, 0), public_id, secret);
    PQclear(res);
    return commit_printed();
}

/* Runs a key function that answers true when it found the active key. */
static int key_call(const char *sql, int n, const char *const *params, const char *done)
{
    PGresult *res = call(sql, n, params);
    if (res == NULL)
        return 1;
    int ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!ok)
        return die("no such active key");
    printf("%s\n", done);
    return 0;
}

static int key_revoke(int argc, char **argv)
{
    const char *family = opt(argc, argv, "--family");
    const char *public_id = opt(argc, argv, "--public-id");
    static const char *const valued[] = { "--family", "--public-id", NULL };
    if (check_opts(argc, argv, valued, NULL) != 0)
        return 2;
    if (family == NULL || public_id == NULL)
        return die("usage: key revoke --family FAMILY --public-id ID");
    const char *params[2] = { family, public_id };
    return key_call("SELECT fl_key_revoke($1, $2)", 2, params, "revoked");
}

/* key limit --family F --public-id ID (--rate N [--burst M] | --unlimited) */
static int key_limit(int argc, char **argv)
{
    const char *family = opt(argc, argv, "--family");
    const char *public_id = opt(argc, argv, "--public-id");
    const char *rate = opt(argc, argv, "--rate");
    const char *burst = opt(argc, argv, "--burst");
    int unlimited = 0;
    static const char *const valued[] = { "--family", "--public-id", "--rate", "--burst", NULL };
    static const char *const flags[] = { "--unlimited", NULL };
    if (check_opts(argc, argv, valued, flags) != 0)
        return 2;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--unlimited") == 0)
            unlimited = 1;
    if (family == NULL || public_id == NULL || (rate == NULL) == !unlimited || (unlimited && burst != NULL))
        return die("usage: key limit --family F --public-id ID (--rate N [--burst M] | --unlimited)");
    const char *params[4] = { family, public_id, unlimited ? NULL : rate, burst };
    return key_call("SELECT fl_key_limit($1, $2, $3::numeric, $4::int)", 4, params, "limited");
}

/* lead stage LEAD STAGE [--max-approval N] [--max-payments N] [--offer-link URL]
 *   [--stipulation TYPE]... [--decline-driver D]... [--decline-notes T] [--missing-info T] */
static int lead_stage(int argc, char **argv)
{
    if (argc < 2)
        return die("usage: lead stage LEAD_ID STAGE [--max-approval N] [--max-payments N] [--offer-link URL] "
                   "[--stipulation TYPE]... [--decline-driver D]... [--decline-notes T] [--missing-info T]");
    json_object *d = json_object_new_object();
    json_object *stips = json_object_new_array(), *drivers = json_object_new_array();
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            json_object_put(d);
            json_object_put(stips);
            json_object_put(drivers);
            return die("an option lacks its value");
        }
        if (strcmp(k, "--max-approval") == 0) json_object_object_add(d, "max_approval", json_object_new_string(v));
        else if (strcmp(k, "--max-payments") == 0) json_object_object_add(d, "max_payments", json_object_new_string(v));
        else if (strcmp(k, "--offer-link") == 0) json_object_object_add(d, "offer_link", json_object_new_string(v));
        else if (strcmp(k, "--decline-notes") == 0) json_object_object_add(d, "decline_notes", json_object_new_string(v));
        else if (strcmp(k, "--missing-info") == 0) json_object_object_add(d, "missing_info", json_object_new_string(v));
        else if (strcmp(k, "--stipulation") == 0) json_object_array_add(stips, json_object_new_string(v));
        else if (strcmp(k, "--decline-driver") == 0) json_object_array_add(drivers, json_object_new_string(v));
        else {
            json_object_put(d);
            json_object_put(stips);
            json_object_put(drivers);
            return die("unknown option");
        }
        i++;
    }
    json_object_object_add(d, "stipulations", stips);
    json_object_object_add(d, "decline_drivers", drivers);
    const char *params[3] = { argv[0], argv[1], json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN) };
    PGresult *res = call("SELECT set_stage($1, $2, $3::jsonb)::text", 3, params);
    json_object_put(d);
    if (res == NULL)
        return 1;
    printf("%s\n", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

/* A webhook subscription made from the command line; its signing secret is
 * printed once and stored sealed with the data key (FL_DATA_KEY_FILE). */
static int webhook_add(int argc, char **argv)
{
    const char *tenant = opt(argc, argv, "--tenant");
    const char *family = opt(argc, argv, "--family");
    const char *url = opt(argc, argv, "--url");
    const char *events = opt(argc, argv, "--events");
    const char *name = opt(argc, argv, "--name");
    const char *sigs = opt(argc, argv, "--signature");
    const char *keyfile = getenv("FL_DATA_KEY_FILE");
    char secret[65], *arr = NULL, why[160];
    fl_url u;
    static const char *const valued[] = { "--tenant", "--family", "--url", "--events", "--name", "--signature", NULL };

    if (check_opts(argc, argv, valued, NULL) != 0)
        return 2;
    if (tenant == NULL || family == NULL || url == NULL)
        return die("usage: webhook add --tenant NAME --family FAMILY --url URL [--events a,b] [--name N] [--signature factorline|isoamp]");
    /* the rules the API applies to a partner's webhook URL, and the worker to every delivery
     * (until the twenty-fourth session a URL with credentials was stored, readable by fl_report,
     * and every delivery to it refused) */
    if (net_url_check(url, (int) env_long("FL_WEBHOOK_ALLOW_PRIVATE", 0, 0, 1), &u, why, sizeof(why)) < 0)
        return die("--url refused: %s", why);
    if (keyfile == NULL || crypto_pii_load(keyfile) < 0)
        return die("the data key (FL_DATA_KEY_FILE) cannot be read");
    if (crypto_random_hex(secret, 32) < 0)
        return die("no randomness");
    fl_arena *a = arena_new(4096);
    char *sealed = a != NULL ? crypto_pii_encrypt(a, secret) : NULL;
    if (sealed == NULL) {
        arena_free(a);
        return die("the signing secret could not be sealed with the data key");
    }
    if (events != NULL) {
        /* a,b,c -> {"a","b","c"} (quoted: an unquoted NULL in an array is SQL's NULL); event
         * names are [A-Za-z0-9._-], none empty */
        fl_buf b;
        buf_init(&b, a, 128);
        buf_puts(&b, "{\"");
        for (const char *p = events;; p++) {
            if (*p == ',' || *p == '\0') {
                if (p == events || p[-1] == ',') {
                    arena_free(a);
                    return die("bad event type list: an empty name (leave --events out for every event)");
                }
                if (*p == '\0')
                    break;
                buf_puts(&b, "\",\"");
                continue;
            }
            if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '_' || *p == '-')) {
                arena_free(a);
                return die("bad event type list: names are letters, digits, '.', '_' and '-'");
            }
            buf_append(&b, p, 1);
        }
        buf_puts(&b, "\"}");
        arr = b.data;
    }
    const char *params[7] = { tenant, family, name, url, arr, sealed, sigs };
    if (!exec_ok("BEGIN")) {
        arena_free(a);
        return 1;
    }
    PGresult *res = call("SELECT webhook_subscription_add($1, $2, $3, $4, $5::text[], $6, $7)::text", 7, params);
    arena_free(a);
    if (res == NULL)
        return 1;
    printf("{\"id\":\"%s\",\"secret\":\"%s\"}\n", PQgetvalue(res, 0, 0), secret);
    PQclear(res);
    return commit_printed();
}

int main(int argc, char **argv)
{
    const char *url = getenv("FL_ADMIN_DATABASE_URL");
    int rc;

    if (argc < 3)
        return die("usage: fl-admin tenant add NAME | key add ... | key rotate ... | key revoke ...");
    conn = PQconnectdb(url ? url : "");
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "fl-admin: %s", PQerrorMessage(conn));
        return 2;
    }
    if (strcmp(argv[1], "tenant") == 0 && strcmp(argv[2], "add") == 0)
        rc = argc == 4 ? tenant_add(argv[3]) : die("usage: tenant add NAME");
    else if (strcmp(argv[1], "key") == 0 && strcmp(argv[2], "add") == 0)
        rc = key_add(argc - 3, argv + 3);
    else if (strcmp(argv[1], "key") == 0 && strcmp(argv[2], "rotate") == 0)
        rc = key_rotate(argc - 3, argv + 3);
    else if (strcmp(argv[1], "key") == 0 && strcmp(argv[2], "revoke") == 0)
        rc = key_revoke(argc - 3, argv + 3);
    else if (strcmp(argv[1], "key") == 0 && strcmp(argv[2], "limit") == 0)
        rc = key_limit(argc - 3, argv + 3);
    else if (strcmp(argv[1], "lead") == 0 && strcmp(argv[2], "stage") == 0)
        rc = lead_stage(argc - 3, argv + 3);
    else if (strcmp(argv[1], "webhook") == 0 && strcmp(argv[2], "add") == 0)
        rc = webhook_add(argc - 3, argv + 3);
    else
        rc = die("unknown command");
    PQfinish(conn);
    return rc;
}
