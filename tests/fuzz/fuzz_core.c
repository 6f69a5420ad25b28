/* Fuzz targets for the core's input handling: everything a client's bytes reach
 * before PostgreSQL does (JSON parsing and field validation, money and dates,
 * query strings and percent-decoding, routing, Content-Length, base64, e-mail,
 * UTF-8, JSON string escaping, content sniffing, file names).
 *
 * One entry point; the input's first byte picks the target and the rest is its
 * input, so a corpus file reads as "m12.50" or "j{...}".  Besides memory and
 * undefined-behaviour errors (the sanitizers), each target checks properties:
 * a validated document validates again to itself, a normalised amount or date
 * normalises to itself and keeps its value, an escaped string parses back to
 * itself, ...  A failed property is FUZZ_CHECK's report: an abort under
 * libFuzzer (`factorline fuzz`), a failed assertion under the replay of the
 * committed corpus (tests/fuzz/replay.c, part of `factorline test`). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "fl.h"
#include "fuzz.h"

/* Every field type and flag, at the top level, in an object and in an array,
 * and one level further down in each. */
static const char *const kinds[] = { "ACH", "CHECK", "WIRE", NULL };
#define SCALARS                                                                         \
    { "s", FT_STR, 0, 0, 0, 0, NULL, NULL },                                            \
    { "su", FT_STR, F_UPPER, 8, 0, 0, NULL, NULL },                                     \
    { "sc", FT_STR, F_CNTRL, 0, 0, 0, NULL, NULL },                                     \
    { "m", FT_MONEY, 0, 0, 0, 0, NULL, NULL },                                          \
    { "m0", FT_MONEY0, 0, 0, 0, 0, NULL, NULL },                                        \
    { "d", FT_DATE, 0, 0, 0, 0, NULL, NULL },                                           \
    { "dp", FT_DATE, F_PAST, 0, 0, 0, NULL, NULL },                                     \
    { "di", FT_DATE, F_ISO, 0, 0, 0, NULL, NULL },                                      \
    { "i", FT_INT, 0, 0, -5, 100000, NULL, NULL },                                      \
    { "b", FT_BOOL, 0, 0, 0, 0, NULL, NULL },                                           \
    { "e", FT_ENUM, 0, 0, 0, 0, kinds, NULL },                                          \
    { "em", FT_EMAIL, 0, 40, 0, 0, NULL, NULL },                                        \
    { "b64", FT_BASE64, 0, 0, 0, 0, NULL, NULL },                                       \
    { "ssn", FT_DIGITS, 0, 9, 0, 0, NULL, NULL },                                       \
    { "ph", FT_DIGITS, F_PHONE, 10, 0, 0, NULL, NULL },                                 \
    { "st", FT_STATE, 0, 0, 0, 0, NULL, NULL },                                         \
    { "z", FT_ZIP, 0, 0, 0, 0, NULL, NULL },                                            \
    { "p", FT_PERCENT, 0, 0, 0, 0, NULL, NULL },                                        \
    { "url", FT_URL, 0, 0, 0, 0, NULL, NULL }

static const fl_field leaf_spec[] = {
    { "r", FT_STR, F_REQ, 4, 0, 0, NULL, NULL },
    SCALARS,
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};
/* a second level, as a lead's contacts hold their addresses */
static const fl_field item_spec[] = {
    { "r", FT_STR, F_REQ, 4, 0, 0, NULL, NULL },
    SCALARS,
    { "io", FT_OBJECT, 0, 0, 0, 0, NULL, leaf_spec },
    { "ia", FT_ARRAY, 0, 0, 0, 2, NULL, leaf_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};
static const fl_field doc_spec[] = {
    SCALARS,
    { "o", FT_OBJECT, 0, 0, 0, 0, NULL, item_spec },
    { "a", FT_ARRAY, 0, 0, 0, 3, NULL, item_spec },
    { "al", FT_ARRAY, 0, 0, 1, 0, NULL, item_spec },
    { NULL, 0, 0, 0, 0, 0, NULL, NULL }
};

static const fl_route routes[] = {
    { "POST", "/api_factor/post-payments/", NULL, 0, NULL },
    { "GET", "/api_factor/get-invoice/", NULL, 0, NULL },
    { "GET", "/deal_status/{lead_id}", NULL, 0, NULL },
    { "POST", "/lead", NULL, 0, NULL },
    { "GET", "/a/{x}/b/{y}", NULL, 0, NULL },
    { "PUT", "/a/{x}/b/{y}", NULL, 0, NULL },
    { "DELETE", "/{only}", NULL, ROUTE_PUBLIC, NULL },
};

static fl_arena *arena;

/* 1 if a string in the document holds a NUL character. */
static int has_nul_string(json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_string:
        return memchr(json_object_get_string(o), '\0', (size_t) json_object_get_string_len(o)) != NULL;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            if (has_nul_string(json_object_array_get_idx(o, i)))
                return 1;
        return 0;
    case json_type_object: {
        json_object_object_foreach(o, key, val) {
            (void) key;
            if (has_nul_string(val))
                return 1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* JSON: strict parse, then validation; what validates must validate again, from
 * its own text, to the same document (with and without JV_CLEARS). */
static void t_json(const char *s, size_t n)
{
    json_object *in = NULL, *out = NULL, *again = NULL, *out2 = NULL;
    fl_ferrs *errs = arena_alloc(arena, sizeof(*errs));
    if (json_parse_strict(s, n, &in) < 0)
        return;
    /* PostgreSQL refuses \u0000 in json and jsonb, and C strings end there: the
     * parser must have refused it */
    FUZZ_CHECK(!has_nul_string(in));
    for (unsigned opts = 0; opts <= JV_CLEARS; opts += JV_CLEARS) {
        int rc = json_validate_ex(arena, in, doc_spec, &out, errs, opts);
        FUZZ_CHECK(out != NULL);
        FUZZ_CHECK(rc == 0 ? errs->n == 0 : errs->n > 0 && errs->n <= JSON_MAX_ERRORS);
        for (size_t i = 0; i < errs->n; i++)
            FUZZ_CHECK(errs->e[i].field != NULL && errs->e[i].code != NULL && errs->e[i].message != NULL);
        if (rc == 0) {
            const char *text = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN);
            FUZZ_CHECK(json_parse_strict(text, strlen(text), &again) == 0);
            FUZZ_CHECK(json_validate_ex(arena, again, doc_spec, &out2, errs, opts) == 0);
            FUZZ_CHECK(json_object_equal(out, out2));
            json_object_put(again);
            json_object_put(out2);
            again = out2 = NULL;
        }
        json_object_put(out);
    }
    json_object_put(in);
}

/* Money: a normalised amount has two decimals, no needless leading zero, the same
 * value, and normalises to itself. */
static void t_money(const char *s)
{
    char out[40], again[40];
    for (int zero = 0; zero <= 1; zero++) {
        if (json_money_norm(s, zero, out, sizeof(out)) < 0)
            continue;
        size_t n = strlen(out);
        FUZZ_CHECK(n >= 4 && out[n - 3] == '.' && strspn(out, "0123456789") == n - 3
                   && strspn(out + n - 2, "0123456789") == 2);
        FUZZ_CHECK(out[0] != '0' || out[1] == '.');
        FUZZ_CHECK(n - 3 <= 16);
        FUZZ_CHECK(strtold(s, NULL) == strtold(out, NULL));
        FUZZ_CHECK(zero || strtold(out, NULL) > 0);
        FUZZ_CHECK(json_money_norm(out, zero, again, sizeof(again)) == 0 && strcmp(out, again) == 0);
    }
}

/* Dates: YYYY-MM-DD of a real day, which normalises to itself. */
static void t_date(const char *s)
{
    char out[11], again[11];
    if (json_date_norm(s, out) < 0)
        return;
    FUZZ_CHECK(strlen(out) == 10 && out[4] == '-' && out[7] == '-');
    FUZZ_CHECK(json_date_norm(out, again) == 0 && strcmp(out, again) == 0);
    if (strlen(s) == 10 && s[4] == '-')
        FUZZ_CHECK(strcmp(s, out) == 0);
}

/* Query strings: what is accepted is at most REQ_MAX_PARAMS names and values, all
 * UTF-8 text without NUL, and each name finds a value. */
static void t_query(const char *s)
{
    fl_req r;
    memset(&r, 0, sizeof(r));
    r.arena = arena;
    if (req_parse_query(&r, s) < 0)
        return;
    FUZZ_CHECK(r.nquery <= REQ_MAX_PARAMS);
    for (size_t i = 0; i < r.nquery; i++) {
        FUZZ_CHECK(req_utf8_valid(r.query[i].name) && req_utf8_valid(r.query[i].value));
        FUZZ_CHECK(req_query(&r, r.query[i].name) != NULL);
    }
}

/* Routing: a path matches one pattern with its parameters (each one non-empty
 * segment, as it is), or is 404, or 405 with the methods it allows. */
static void t_route(const char *s)
{
    static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "PATCH" };
    fl_req r;
    char allow[64];
    const fl_route *hit = NULL;
    memset(&r, 0, sizeof(r));
    r.arena = arena;
    r.method = methods[(unsigned char) (s[0] - '0') % 5];     /* "0/path": GET, "1/path": POST, ... */
    r.path = s[0] ? s + 1 : s;
    allow[0] = '\0';
    int rc = route_match(routes, sizeof(routes) / sizeof(routes[0]), &r, &hit, allow, sizeof(allow));
    FUZZ_CHECK(rc == 0 || rc == -404 || rc == -405);
    if (rc == 0) {
        FUZZ_CHECK(hit != NULL && strcmp(hit->method, r.method) == 0);
        FUZZ_CHECK(r.npath_params <= REQ_MAX_PATH_PARAMS);
        /* each one a segment of the path as it is: nginx has decoded the path already */
        for (size_t i = 0; i < r.npath_params; i++)
            FUZZ_CHECK(r.path_params[i].value[0] != '\0' && strchr(r.path_params[i].value, '/') == NULL
                       && strstr(r.path, r.path_params[i].value) != NULL);
    } else if (rc == -405) {
        FUZZ_CHECK(allow[0] != '\0' && strstr(allow, r.method) == NULL);
    }
}

/* Content-Length: digits only, never above the cap, the value they spell. */
static void t_length(const char *s)
{
    static const size_t caps[] = { 0, 1, 1048576, SIZE_MAX };
    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
        size_t v = 1;
        int rc = req_content_length(s, caps[k], &v);
        FUZZ_CHECK(rc == 0 || rc == -400 || rc == -413);
        if (rc == 0) {
            FUZZ_CHECK(v <= caps[k] && strspn(s, "0123456789") == strlen(s));
            FUZZ_CHECK(s[0] == '\0' ? v == 0 : strtoull(s, NULL, 10) == v);
        }
    }
}

/* Base64: what is valid decodes (OpenSSL) to the length given. */
static void t_base64(const char *s)
{
    size_t len = 0, n = strlen(s);
    if (json_base64_valid(s, &len) < 0)
        return;
    unsigned char *buf = arena_alloc(arena, n / 4 * 3 + 1);
    int got = EVP_DecodeBlock(buf, (const unsigned char *) s, (int) n);
    size_t pad = n >= 1 && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
    FUZZ_CHECK(got >= 0 && (size_t) got - pad == len);
}

/* UTF-8: req_utf8_valid against a decoder written out the long way. */
static int utf8_reference(const unsigned char *p)
{
    while (*p) {
        unsigned long cp;
        size_t n;
        if (*p < 0x80) { p++; continue; }
        if ((*p & 0xE0) == 0xC0) { n = 1; cp = *p & 0x1F; }
        else if ((*p & 0xF0) == 0xE0) { n = 2; cp = *p & 0x0F; }
        else if ((*p & 0xF8) == 0xF0) { n = 3; cp = *p & 0x07; }
        else return 0;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000))
            return 0;                       /* overlong */
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        p += n + 1;
    }
    return 1;
}

static void t_utf8(const char *s)
{
    FUZZ_CHECK(req_utf8_valid(s) == utf8_reference((const unsigned char *) s));
}

/* JSON string escaping: valid text comes back from the parser as itself. */
static void t_escape(const char *s)
{
    fl_buf b;
    json_object *o = NULL;
    if (!req_utf8_valid(s))
        return;
    buf_init(&b, arena, 16);
    FUZZ_CHECK(buf_json_str(&b, s) == 0);
    FUZZ_CHECK(json_parse_strict(b.data, b.len, &o) == 0 && json_object_is_type(o, json_type_string)
               && strcmp(json_object_get_string(o), s) == 0);
    json_object_put(o);
}

static void t_email(const char *s)
{
    int ok = json_email_valid(s);
    FUZZ_CHECK(!ok || (strchr(s, '@') != NULL && strchr(s, ' ') == NULL));
}

static void t_sniff(const unsigned char *p, size_t n)
{
    const char *type = mime_sniff(p, n);
    FUZZ_CHECK(type != NULL && strchr(type, '/') != NULL);
}

/* A stored file name: one path component of UTF-8 text, nothing invisible or
 * controlling, and the same when cleaned again. */
static void t_filename(const char *s)
{
    char *f = mime_filename(arena, s);
    if (f == NULL)
        return;
    size_t n = strlen(f);
    FUZZ_CHECK(n > 0 && n <= 255 && strcmp(f, ".") != 0 && strcmp(f, "..") != 0);
    FUZZ_CHECK(strpbrk(f, "/\\") == NULL && f[n - 1] != '.' && f[n - 1] != ' ');
    for (const unsigned char *p = (const unsigned char *) f; *p; p++) {
        FUZZ_CHECK(*p >= 0x20 && *p != 0x7f);
        FUZZ_CHECK(!(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f));                  /* C1 */
        FUZZ_CHECK(!(p[0] == 0xe2 && p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae));  /* U+202A-E */
        FUZZ_CHECK(!(p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9));  /* U+2066-9 */
    }
    FUZZ_CHECK(req_utf8_valid(s) && req_utf8_valid(f));
    char *again = mime_filename(arena, f);
    FUZZ_CHECK(again != NULL && strcmp(again, f) == 0);
}

int fuzz_one(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (arena == NULL)
        arena = arena_new(65536);
    /* the target's input as a C string (they take text), and as bytes */
    const char *s = arena_strndup(arena, (const char *) data + 1, size - 1);
    switch (data[0]) {
    case 'j': t_json((const char *) data + 1, size - 1); break;
    case 'm': t_money(s); break;
    case 'd': t_date(s); break;
    case 'q': t_query(s); break;
    case 'r': t_route(s); break;
    case 'c': t_length(s); break;
    case 'b': t_base64(s); break;
    case 'u': t_utf8(s); break;
    case 'e': t_escape(s); break;
    case '@': t_email(s); break;
    case 's': t_sniff(data + 1, size - 1); break;
    case 'f': t_filename(s); break;
    default: break;
    }
    arena_reset(arena);
    return 0;
}
