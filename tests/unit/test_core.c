/* Unit tests of the core's pure logic: arena, decoding, routing, JSON field
 * validation, money and dates, SQLSTATE mapping, crypto.  Like h2o, the test
 * reaches static helpers by including what it needs from the library. */
#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fl.h"

static fl_arena *A;

static void test_arena(void)
{
    fl_arena *a = arena_new(1024);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    char *s = arena_strdup(a, "hello");
    CU_ASSERT_STRING_EQUAL(s, "hello");
    /* a large allocation takes its own block; reset gives it back */
    void *big = arena_alloc(a, 100000);
    CU_ASSERT_PTR_NOT_NULL(big);
    CU_ASSERT(arena_reserved(a) > 100000);
    arena_reset(a);
    CU_ASSERT_EQUAL(arena_reserved(a), 1024);
    /* a size whose rounding would wrap to a small block is refused, not served short */
    CU_ASSERT_PTR_NULL(arena_alloc(a, SIZE_MAX - 3));
    CU_ASSERT_PTR_NULL(arena_alloc(a, SIZE_MAX / 2 + 1));
    CU_ASSERT_EQUAL(arena_reserved(a), 1024);
    CU_ASSERT_STRING_EQUAL(arena_printf(a, "%d-%s", 7, "x"), "7-x");
    fl_buf b;
    buf_init(&b, a, 4);
    for (int i = 0; i < 100; i++)
        buf_puts(&b, "ab");
    CU_ASSERT_EQUAL(b.len, 200);
    b.len = 0;
    buf_json_str(&b, "a\"b\\c\n\x01");
    CU_ASSERT_STRING_EQUAL(b.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    /* PostgreSQL's escape_json: \b \f \n \r \t by name, other controls as \u00xx (lower-case
     * hex), DEL and UTF-8 as they are; runs of plain bytes around the escapes kept whole */
    b.len = 0;
    buf_json_str(&b, "\b\f\r\t\x1f\x7f caf\xc3\xa9 \"\"end");
    CU_ASSERT_STRING_EQUAL(b.data, "\"\\b\\f\\r\\t\\u001f\x7f caf\xc3\xa9 \\\"\\\"end\"");
    b.len = 0;
    buf_json_str(&b, "");
    CU_ASSERT_STRING_EQUAL(b.data, "\"\"");
    arena_free(a);
}

static void test_decode(void)
{
    CU_ASSERT_STRING_EQUAL(req_decode(A, "a%20b+c", 7, 1), "a b c");
    CU_ASSERT_STRING_EQUAL(req_decode(A, "a+b", 3, 0), "a+b");
    CU_ASSERT_PTR_NULL(req_decode(A, "bad%2", 5, 1));
    CU_ASSERT_PTR_NULL(req_decode(A, "bad%zz", 6, 1));
    CU_ASSERT_PTR_NULL(req_decode(A, "nul%00", 6, 1));
    fl_req r;
    memset(&r, 0, sizeof(r));
    r.arena = A;
    CU_ASSERT_EQUAL(req_parse_query(&r, "clientkey=C%201&x=&flag"), 0);
    CU_ASSERT_EQUAL(r.nquery, 3);
    CU_ASSERT_STRING_EQUAL(req_query(&r, "ClientKey"), "C 1");
    CU_ASSERT_STRING_EQUAL(req_query(&r, "x"), "");
    CU_ASSERT_PTR_NULL(req_query(&r, "missing"));
    CU_ASSERT_EQUAL(req_parse_query(&r, "a=%G1"), -400);
    CU_ASSERT_EQUAL(req_parse_query(&r, "filename=caf%C3%A9.pdf"), 0);
    CU_ASSERT_STRING_EQUAL(req_query(&r, "filename"), "caf\xc3\xa9.pdf");
    CU_ASSERT_EQUAL(req_parse_query(&r, "filename=caf%E9.pdf"), -400);     /* Latin-1 */
    CU_ASSERT_EQUAL(req_parse_query(&r, "%FF=1"), -400);
}

static void test_utf8(void)
{
    static const char *const good[] = { "", "plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xed\x9f\xbf",
                                        "\xee\x80\x80", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\x7f" };
    static const char *const bad[] = {
        "\xe9", "caf\xe9 au lait", "\xc0\xaf", "\xc1\xbf",     /* Latin-1; overlong 2-byte forms */
        "\xe0\x80\xaf", "\xed\xa0\x80", "\xed\xbf\xbf",   /* overlong 3-byte; surrogates */
        "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", /* overlong 4-byte; past U+10FFFF */
        "\xc3", "\xe2\x82", "\xf0\x90\x80", "\x80", "\xbf",     /* cut short; a lone continuation */
        "\xc3\x28", "\xe2\x28\xa1", "\xfe", "\xff" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CU_ASSERT_EQUAL(req_utf8_valid(good[i]), 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CU_ASSERT_EQUAL(req_utf8_valid(bad[i]), 0);
}

static int h_dummy(fl_req *r, const fl_route *route) { (void) r; (void) route; return 0; }

static void test_content_length(void)
{
    size_t n = 99;
    CU_ASSERT_EQUAL(req_content_length(NULL, 10, &n), 0);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(req_content_length("", 10, &n), 0);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(req_content_length("0", 10, &n), 0);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(req_content_length("007", 10, &n), 0);
    CU_ASSERT_EQUAL(n, 7);
    CU_ASSERT_EQUAL(req_content_length("10", 10, &n), 0);
    CU_ASSERT_EQUAL(n, 10);
    CU_ASSERT_EQUAL(req_content_length("11", 10, &n), -413);
    CU_ASSERT_EQUAL(req_content_length("5", 0, &n), -413);
    CU_ASSERT_EQUAL(req_content_length("1a", 10, &n), -400);
    CU_ASSERT_EQUAL(req_content_length("+5", 10, &n), -400);
    CU_ASSERT_EQUAL(req_content_length(" 5", 10, &n), -400);
    CU_ASSERT_EQUAL(req_content_length("-1", 10, &n), -400);
    CU_ASSERT_EQUAL(req_content_length("99999999999999999999999", 10 * 1024 * 1024, &n), -413);
    /* the largest size, and one more, without overflow */
    char buf[32];
    snprintf(buf, sizeof(buf), "%zu", (size_t) SIZE_MAX);
    CU_ASSERT_EQUAL(req_content_length(buf, SIZE_MAX, &n), 0);
    CU_ASSERT_EQUAL(n, SIZE_MAX);
    buf[strlen(buf) - 1]++;
    CU_ASSERT_EQUAL(req_content_length(buf, SIZE_MAX, &n), -413);
}

static void test_route(void)
{
    static const fl_route routes[] = {
        { "GET", "/clients/{ClientKey}", h_dummy, 0, NULL },
        { "POST", "/clients", h_dummy, 0, NULL },
        { "GET", "/clients", h_dummy, 0, NULL },
        { "POST", "/api_factor/test-post/", h_dummy, 0, NULL },
    };
    fl_req r;
    const fl_route *out;
    char allow[64];
    memset(&r, 0, sizeof(r));
    r.arena = A;
    r.method = "GET";
    /* the path as nginx passes it, decoded once: a parameter is taken as it is */
    r.path = "/clients/AB%2FC";
    CU_ASSERT_EQUAL(route_match(routes, 4, &r, &out, allow, sizeof(allow)), 0);
    CU_ASSERT_PTR_EQUAL(out, &routes[0]);
    CU_ASSERT_STRING_EQUAL(req_path_param(&r, "ClientKey"), "AB%2FC");
    r.path = "/clients/";
    CU_ASSERT_EQUAL(route_match(routes, 4, &r, &out, allow, sizeof(allow)), 0);
    CU_ASSERT_PTR_EQUAL(out, &routes[2]);
    r.method = "DELETE";
    CU_ASSERT_EQUAL(route_match(routes, 4, &r, &out, allow, sizeof(allow)), -405);
    CU_ASSERT_STRING_EQUAL(allow, "POST, GET");
    r.method = "POST";
    r.path = "/api_factor/test-post";          /* trailing slash optional */
    CU_ASSERT_EQUAL(route_match(routes, 4, &r, &out, allow, sizeof(allow)), 0);
    r.path = "/api_factor/test-post/extra";
    CU_ASSERT_EQUAL(route_match(routes, 4, &r, &out, allow, sizeof(allow)), -404);
    r.path = "/nothing";
    CU_ASSERT_EQUAL(route_match(routes, 4, &r, &out, allow, sizeof(allow)), -404);
}

static void test_money(void)
{
    char out[40];
    CU_ASSERT_EQUAL(json_money_norm("1500.00", 0, out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "1500.00");
    CU_ASSERT_EQUAL(json_money_norm("12.5", 0, out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "12.50");
    CU_ASSERT_EQUAL(json_money_norm("007", 0, out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "7.00");
    CU_ASSERT_EQUAL(json_money_norm(".5", 0, out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "0.50");
    CU_ASSERT_EQUAL(json_money_norm("0", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm("0.00", 1, out, sizeof(out)), 0);
    CU_ASSERT_EQUAL(json_money_norm("-1", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm("1.234", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm("1e3", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm("abc", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm("", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm(".", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm("12345678901234567", 0, out, sizeof(out)), -1);
    CU_ASSERT_EQUAL(json_money_norm("1234567890123456.99", 0, out, sizeof(out)), 0);
}

static void test_dates(void)
{
    char d[11];
    CU_ASSERT_EQUAL(json_date_norm("03-31-21", d), 0);
    CU_ASSERT_STRING_EQUAL(d, "2021-03-31");
    CU_ASSERT_EQUAL(json_date_norm("2024-02-29", d), 0);
    CU_ASSERT_STRING_EQUAL(d, "2024-02-29");
    CU_ASSERT_EQUAL(json_date_norm("02/28/2023", d), 0);
    CU_ASSERT_STRING_EQUAL(d, "2023-02-28");
    CU_ASSERT_EQUAL(json_date_norm("2023-02-29", d), -1);
    CU_ASSERT_EQUAL(json_date_norm("13-01-21", d), -1);
    CU_ASSERT_EQUAL(json_date_norm("2021-3-1", d), -1);
    CU_ASSERT_EQUAL(json_date_norm("garbage!!", d), -1);
}

static void test_parse_and_validate(void)
{
    json_object *in = NULL, *out = NULL;
    fl_ferrs errs;
    static const char *const types[] = { "ACH", "CHECK", "WIRE", NULL };
    static const fl_field line[] = {
        { "Amount", FT_MONEY, F_REQ, 0, 0, 0, NULL, NULL },
        { "PaymentType", FT_ENUM, F_REQ, 0, 0, 0, types, NULL },
        { NULL, 0, 0, 0, 0, 0, NULL, NULL },
    };
    static const fl_field spec[] = {
        { "BatchReference", FT_STR, F_REQ, 10, 0, 0, NULL, NULL },
        { "BatchTotal", FT_MONEY, F_REQ, 0, 0, 0, NULL, NULL },
        { "PaymentDate", FT_DATE, 0, 0, 0, 0, NULL, NULL },
        { "Type", FT_INT, 0, 0, 0, 1, NULL, NULL },
        { "Email", FT_EMAIL, 0, 0, 0, 0, NULL, NULL },
        { "PaymentDetails", FT_ARRAY, F_REQ, 0, 1, 3, NULL, line },
        { NULL, 0, 0, 0, 0, 0, NULL, NULL },
    };
    const char *good = "{\"batchreference\":\" b1 \",\"BatchTotal\":1500.10,\"PaymentDate\":\"03-31-21\","
                       "\"Type\":\"1\",\"PaymentDetails\":[{\"Amount\":\"1500.1\",\"PaymentType\":\"ach\"}]}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(good, strlen(good), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, spec, &out, &errs), 0);
    CU_ASSERT_STRING_EQUAL(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN),
        "{\"BatchReference\":\"b1\",\"BatchTotal\":\"1500.10\",\"PaymentDate\":\"2021-03-31\","
        "\"Type\":1,\"PaymentDetails\":[{\"Amount\":\"1500.10\",\"PaymentType\":\"ACH\"}]}");
    json_object_put(in);
    json_object_put(out);

    const char *bad = "{\"BatchReference\":\"far-too-long-ref\",\"BatchTotal\":\"1.001\",\"Type\":2,"
                      "\"Email\":\"nope\",\"PaymentDetails\":[{\"PaymentType\":\"CASH\"}]}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(bad, strlen(bad), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, spec, &out, &errs), -1);
    CU_ASSERT_EQUAL(errs.n, 6);
    CU_ASSERT_STRING_EQUAL(errs.e[0].field, "BatchReference");
    CU_ASSERT_STRING_EQUAL(errs.e[0].code, "too_long");
    CU_ASSERT_STRING_EQUAL(errs.e[1].field, "BatchTotal");
    CU_ASSERT_STRING_EQUAL(errs.e[4].field, "PaymentDetails[0].Amount");
    CU_ASSERT_STRING_EQUAL(errs.e[4].code, "missing");
    CU_ASSERT_STRING_EQUAL(errs.e[5].field, "PaymentDetails[0].PaymentType");
    json_object_put(in);
    json_object_put(out);

    /* error paths of items past the first ten, inside an object */
    static const fl_field item[] = { { "x", FT_STR, F_REQ, 0, 0, 0, NULL, NULL }, { NULL, 0, 0, 0, 0, 0, NULL, NULL } };
    static const fl_field inner[] = { { "items", FT_ARRAY, F_REQ, 0, 1, 200, NULL, item },
                                      { NULL, 0, 0, 0, 0, 0, NULL, NULL } };
    static const fl_field outer[] = { { "lead", FT_OBJECT, F_REQ, 0, 0, 0, NULL, inner },
                                      { NULL, 0, 0, 0, 0, 0, NULL, NULL } };
    char many[2048] = "{\"lead\":{\"items\":[";
    for (int i = 0; i < 123; i++)
        strcat(many, i == 10 || i == 122 ? "{}," : "{\"x\":\"v\"},");
    many[strlen(many) - 1] = '\0';
    strcat(many, "]}}");
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(many, strlen(many), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, outer, &out, &errs), -1);
    CU_ASSERT_EQUAL(errs.n, 2);
    CU_ASSERT_STRING_EQUAL(errs.e[0].field, "lead.items[10].x");
    CU_ASSERT_STRING_EQUAL(errs.e[1].field, "lead.items[122].x");
    json_object_put(in);
    json_object_put(out);

    /* JV_CLEARS: an optional member sent null or blank comes out null; absent stays absent */
    static const fl_field up[] = {
        { "Key", FT_STR, F_REQ, 10, 0, 0, NULL, NULL },
        { "Email", FT_EMAIL, 0, 50, 0, 0, NULL, NULL },
        { "City", FT_STR, 0, 50, 0, 0, NULL, NULL },
        { "Type", FT_INT, 0, 0, 0, 1, NULL, NULL },
        { "Notes", FT_STR, 0, 50, 0, 0, NULL, NULL },
        { NULL, 0, 0, 0, 0, 0, NULL, NULL }
    };
    const char *clr = "{\"key\":\"K\",\"email\":null,\"CITY\":\" \\t \",\"Type\":\"\"}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(clr, strlen(clr), &in), 0);
    CU_ASSERT_EQUAL(json_validate_ex(A, in, up, &out, &errs, JV_CLEARS), 0);
    CU_ASSERT_STRING_EQUAL(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN),
                           "{\"Key\":\"K\",\"Email\":null,\"City\":null,\"Type\":null}");
    json_object_put(out);
    CU_ASSERT_EQUAL(json_validate(A, in, up, &out, &errs), 0);
    CU_ASSERT_STRING_EQUAL(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN), "{\"Key\":\"K\"}");
    json_object_put(in);
    json_object_put(out);

    /* names: the exact one first, else the first that differs only in case; among many
     * unknown members (each field is matched in one pass over them, not a scan per field) */
    fl_buf members;
    buf_init(&members, A, 1 << 20);
    buf_puts(&members, "{\"cITy\":\"first\",\"NOTES\":\"n\",\"city\":\"second\"");
    for (int i = 0; i < 50000; i++)
        buf_puts(&members, arena_printf(A, ",\"k%d\":%d", i, i));
    buf_puts(&members, ",\"Key\":\"K\",\"KEY\":\"other\",\"type\":null}");
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(members.data, members.len, &in), 0);
    CU_ASSERT_EQUAL(json_validate_ex(A, in, up, &out, &errs, JV_CLEARS), 0);
    CU_ASSERT_STRING_EQUAL(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN),
                           "{\"Key\":\"K\",\"City\":\"first\",\"Type\":null,\"Notes\":\"n\"}");
    json_object_put(in);
    json_object_put(out);

    /* text: line ends and tabs inside are kept, blanks and line ends at the ends trimmed, other
     * control characters refused; lengths count characters, not bytes */
    static const fl_field txt[] = {
        { "Notes", FT_STR, 0, 20, 0, 0, NULL, NULL },
        { "Name", FT_STR, 0, 5, 0, 0, NULL, NULL },
        { NULL, 0, 0, 0, 0, 0, NULL, NULL }
    };
    const char *ml = "{\"Notes\":\"\\r\\n line 1\\r\\nline\\t2\\n\",\"Name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(ml, strlen(ml), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, txt, &out, &errs), 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_object_get(out, "Notes")), "line 1\r\nline\t2");
    CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_object_get(out, "Name")),
                           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    json_object_put(in);
    json_object_put(out);
    const char *cc = "{\"Notes\":\"bell\\u0007\",\"Name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(cc, strlen(cc), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, txt, &out, &errs), -1);
    CU_ASSERT_EQUAL_FATAL(errs.n, 2);
    CU_ASSERT_STRING_EQUAL(errs.e[0].field, "Notes");
    CU_ASSERT_STRING_EQUAL(errs.e[0].message, "contains control characters");
    CU_ASSERT_STRING_EQUAL(errs.e[1].field, "Name");
    CU_ASSERT_STRING_EQUAL(errs.e[1].message, "is too long (maximum is 5 characters)");
    json_object_put(in);
    json_object_put(out);

    /* booleans (also "true"/"false" as strings), dates YYYY-MM-DD only with F_ISO, percentages */
    static const fl_field misc[] = {
        { "a", FT_BOOL, 0, 0, 0, 0, NULL, NULL },
        { "b", FT_BOOL, 0, 0, 0, 0, NULL, NULL },
        { "c", FT_BOOL, 0, 0, 0, 0, NULL, NULL },
        { "d", FT_DATE, F_ISO, 0, 0, 0, NULL, NULL },
        { "e", FT_PERCENT, 0, 0, 0, 0, NULL, NULL },
        { NULL, 0, 0, 0, 0, 0, NULL, NULL }
    };
    const char *mok = "{\"a\":true,\"b\":\" TRUE \",\"c\":\"false\",\"d\":\"1980-07-15\",\"e\":\"33.3\"}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(mok, strlen(mok), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, misc, &out, &errs), 0);
    CU_ASSERT_STRING_EQUAL(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN),
                           "{\"a\":true,\"b\":true,\"c\":false,\"d\":\"1980-07-15\",\"e\":\"33.30\"}");
    json_object_put(in);
    json_object_put(out);
    const char *mbad = "{\"a\":\"yes\",\"b\":1,\"c\":{},\"d\":\"07/15/80\",\"e\":33.333}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(mbad, strlen(mbad), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, misc, &out, &errs), -1);
    CU_ASSERT_EQUAL_FATAL(errs.n, 5);
    CU_ASSERT_STRING_EQUAL(errs.e[0].message, "must be true or false");
    CU_ASSERT_STRING_EQUAL(errs.e[1].message, "must be true or false");
    CU_ASSERT_STRING_EQUAL(errs.e[2].message, "must be true or false");
    CU_ASSERT_STRING_EQUAL(errs.e[3].message, "is not a valid date");
    CU_ASSERT_STRING_EQUAL(errs.e[4].message, "must be between 0 and 100, with at most 2 decimals");
    json_object_put(in);
    json_object_put(out);

    /* malformed, trailing garbage, too deep, not strict */
    CU_ASSERT_EQUAL(json_parse_strict("{\"a\":", 5, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("{} x", 4, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("[1,]", 4, &in), -1);          /* strict: no trailing comma */
    CU_ASSERT_EQUAL(json_parse_strict("{\"a\":\"caf\xe9\"}", 12, &in), -1);   /* not UTF-8: malformed */
    CU_ASSERT_EQUAL_FATAL(json_parse_strict("{\"a\":\"caf\xc3\xa9\"}", 13, &in), 0);
    json_object_put(in);
    /* NUL, escaped or raw, in a value or a key: malformed (C strings would end there) */
    CU_ASSERT_EQUAL(json_parse_strict("{\"a\":\"12.00\\u0000x\"}", 20, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("{\"a\\u0000b\":\"1\"}", 16, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("{\"a\":\"1\"}\0", 10, &in), -1);
    /* a number or boolean that ends the text is JSON (not an object: the caller's "Invalid
     * body"); one cut short is malformed; so is null, which json-c gives as no object */
    CU_ASSERT_EQUAL_FATAL(json_parse_strict("42", 2, &in), 0);
    CU_ASSERT(json_object_is_type(in, json_type_int) && json_object_get_int(in) == 42);
    json_object_put(in);
    CU_ASSERT_EQUAL_FATAL(json_parse_strict("true", 4, &in), 0);
    CU_ASSERT(json_object_is_type(in, json_type_boolean));
    json_object_put(in);
    CU_ASSERT_EQUAL_FATAL(json_parse_strict("-1.5", 4, &in), 0);
    json_object_put(in);
    CU_ASSERT_EQUAL(json_parse_strict("-", 1, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("4e", 2, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("nul", 3, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("null", 4, &in), -1);
    CU_ASSERT_EQUAL(json_parse_strict("42x", 3, &in), -1);
    /* bounded in values, whatever the bytes: [{},{},...] and [0,0,...] past the limits are
     * refused before json-c builds them; commas and brackets inside strings do not count */
    {
        size_t cap = (size_t) 4 << 20, n;
        char *big = malloc(cap);
        CU_ASSERT_PTR_NOT_NULL_FATAL(big);
        n = 0;
        big[n++] = '[';
        for (int i = 0; i < JSON_MAX_CONTAINERS; i++)
            n += (size_t) sprintf(big + n, "%s{}", i ? "," : "");
        big[n++] = ']';                              /* JSON_MAX_CONTAINERS + 1 with the array */
        CU_ASSERT_EQUAL(json_parse_strict(big, n, &in), JSON_TOO_LARGE);
        n = 0;
        big[n++] = '{';
        big[n++] = '"';
        big[n++] = 'a';
        big[n++] = '"';
        big[n++] = ':';
        big[n++] = '[';
        for (int i = 0; i < JSON_MAX_CONTAINERS - 2; i++)
            n += (size_t) sprintf(big + n, "%s{}", i ? "," : "");
        big[n++] = ']';
        big[n++] = '}';
        CU_ASSERT_EQUAL_FATAL(json_parse_strict(big, n, &in), 0);          /* exactly the limit */
        json_object_put(in);
        n = 0;
        big[n++] = '[';
        for (int i = 0; i < JSON_MAX_VALUES; i++) {
            big[n++] = '0';
            big[n++] = ',';
        }
        big[n++] = '0';
        big[n++] = ']';
        CU_ASSERT_EQUAL(json_parse_strict(big, n, &in), JSON_TOO_LARGE);
        big[0] = '"';
        big[n - 1] = '"';                            /* the same commas inside a string */
        CU_ASSERT_EQUAL_FATAL(json_parse_strict(big, n, &in), 0);
        CU_ASSERT_EQUAL((size_t) json_object_get_string_len(in), n - 2);
        json_object_put(in);
        /* the largest document the APIs take fits: a payment batch of 10,000 lines, every field */
        n = (size_t) sprintf(big, "{\"BatchReference\":\"B\",\"BatchTotal\":\"10000.00\",\"AccountNumber\":\"1\","
                                  "\"PaymentDetails\":[");
        for (int i = 0; i < 10000; i++)
            n += (size_t) sprintf(big + n, "%s{\"PaymentDate\":\"01-05-24\",\"BankBatchItem\":\"%d\",\"PaymentType\":"
                                  "\"ACH\",\"Amount\":\"1.00\",\"BankRefNumber\":\"R\",\"AccountNumber\":\"A\","
                                  "\"TransactionNumber\":\"T\",\"RemitterName\":\"N\",\"MemoLine\":\"M\","
                                  "\"InvoiceRefNumber\":\"I%d\",\"ClientCode\":\"C\",\"FinancialDocs\":\"F\","
                                  "\"Extra1\":1,\"Extra2\":[2]}", i ? "," : "", i, i);
        n += (size_t) sprintf(big + n, "]}");
        CU_ASSERT_FATAL(n < cap);
        CU_ASSERT_EQUAL_FATAL(json_parse_strict(big, n, &in), 0);
        CU_ASSERT_EQUAL(json_object_array_length(json_object_object_get(in, "PaymentDetails")), 10000);
        json_object_put(in);
        free(big);
    }
    /* an integer json-c cannot hold is out of range in a text field too, not its limit */
    {
        const char *ints[] = { "{\"BatchReference\":123456789012345678901234}",
                               "{\"BatchReference\":-123456789012345678901234}",
                               "{\"BatchReference\":1234567890}" };
        for (int i = 0; i < 3; i++) {
            CU_ASSERT_EQUAL_FATAL(json_parse_strict(ints[i], strlen(ints[i]), &in), 0);
            json_validate(A, in, spec, &out, &errs);
            json_object *br = json_object_object_get(out, "BatchReference");
            if (i < 2) {
                CU_ASSERT_PTR_NULL(br);
                CU_ASSERT(errs.n >= 1 && strcmp(errs.e[0].field, "BatchReference") == 0
                          && strcmp(errs.e[0].message, "is out of range") == 0);
            } else {
                CU_ASSERT_STRING_EQUAL(json_object_get_string(br), "1234567890");
            }
            json_object_put(in);
            json_object_put(out);
        }
    }
    /* an escaped backslash before u0000 is the text \u0000: fine */
    CU_ASSERT_EQUAL_FATAL(json_parse_strict("{\"a\":\"\\\\u0000\"}", 15, &in), 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_object_get(in, "a")), "\\u0000");
    json_object_put(in);
    char deep[64] = "";
    for (int i = 0; i < 20; i++) strcat(deep, "[");
    for (int i = 0; i < 20; i++) strcat(deep, "]");
    CU_ASSERT_EQUAL(json_parse_strict(deep, strlen(deep), &in), -1);
    /* an oversized integer is never silently clamped into money */
    const char *huge = "{\"BatchReference\":\"x\",\"BatchTotal\":99999999999999999999999,\"PaymentDetails\":[]}";
    CU_ASSERT_EQUAL_FATAL(json_parse_strict(huge, strlen(huge), &in), 0);
    CU_ASSERT_EQUAL(json_validate(A, in, spec, &out, &errs), -1);
    CU_ASSERT_STRING_EQUAL(errs.e[0].field, "BatchTotal");
    json_object_put(in);
    json_object_put(out);
}

static void test_base64_email(void)
{
    size_t n;
    CU_ASSERT_EQUAL(json_base64_valid("aGVsbG8=", &n), 0);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(json_base64_valid("aGVsbG8", &n), -1);
    CU_ASSERT_EQUAL(json_base64_valid("aGV=sbG8", &n), -1);
    CU_ASSERT_EQUAL(json_base64_valid("a!==", &n), -1);
    /* the unused bits before the padding are zero */
    CU_ASSERT_EQUAL(json_base64_valid("QQ==", &n), 0);
    CU_ASSERT_EQUAL(json_base64_valid("QR==", &n), -1);
    CU_ASSERT_EQUAL(json_base64_valid("QUE=", &n), 0);
    CU_ASSERT_EQUAL(json_base64_valid("QUF=", &n), -1);
    CU_ASSERT_EQUAL(json_base64_valid("aGVsbG8=", &n), 0);
    CU_ASSERT_EQUAL(json_base64_valid("aGVsbG9=", &n), -1);
    CU_ASSERT(json_email_valid("ap@example.com"));
    CU_ASSERT(!json_email_valid("ap@example"));
    CU_ASSERT(!json_email_valid("a p@example.com"));
    CU_ASSERT(!json_email_valid("@example.com"));
    /* the domain's labels */
    CU_ASSERT(json_email_valid("first.last+tag@mail.example-one.co.uk"));
    CU_ASSERT(json_email_valid("a@b-c.de"));
    CU_ASSERT(!json_email_valid("a@.b.c"));
    CU_ASSERT(!json_email_valid("a@b..c"));
    CU_ASSERT(!json_email_valid("a@b_c,d.e"));
    CU_ASSERT(!json_email_valid("a@b.c."));
    CU_ASSERT(!json_email_valid("a@-b.c"));
    CU_ASSERT(!json_email_valid("a@b-.c"));
    CU_ASSERT(!json_email_valid("a@b c.d"));
    CU_ASSERT(!json_email_valid("a@b@c.d"));
}

/* A server that accepts the connection and never says a word: db_open gives up after the
 * default connect timeout (5 s) instead of waiting for ever. */
static void test_db_connect_timeout(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 && listen(fd, 4) == 0);
    CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *) &sa, &len) == 0);
    char conninfo[128];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable",
             ntohs(sa.sin_port));
    unsetenv("PGCONNECT_TIMEOUT");
    unsetenv("FL_DB_CONNECT_TIMEOUT_S");
    long t0 = req_now_us();
    CU_ASSERT_EQUAL(db_open(conninfo), -1);
    long ms = (req_now_us() - t0) / 1000;
    CU_ASSERT(ms >= 4000 && ms < 8000);
    if (ms < 4000 || ms >= 8000)
        fprintf(stderr, "db_open on a silent server gave up after %ld ms\n", ms);
    CU_ASSERT_STRING_EQUAL(getenv("PGCONNECT_TIMEOUT"), "5");
    /* the operator's own setting wins */
    setenv("PGCONNECT_TIMEOUT", "2", 1);
    t0 = req_now_us();
    CU_ASSERT_EQUAL(db_open(conninfo), -1);
    ms = (req_now_us() - t0) / 1000;
    CU_ASSERT(ms >= 1500 && ms < 4000);
    db_close();
    unsetenv("PGCONNECT_TIMEOUT");
    close(fd);
}

/* The connection's TCP keep-alive and unacknowledged-data defaults, read back from libpq
 * (PQconnectStartParams: nothing is connected): set when the conninfo says nothing, the
 * conninfo's own values win, a URI alike. */
static const char *conn_opt(PGconn *c, const char *kw)
{
    static char buf[64];
    buf[0] = '\0';
    PQconninfoOption *o = PQconninfo(c);
    for (PQconninfoOption *p = o; p && p->keyword; p++)
        if (strcmp(p->keyword, kw) == 0 && p->val != NULL)
            snprintf(buf, sizeof(buf), "%s", p->val);
    PQconninfoFree(o);
    return buf;
}

static void test_db_connect_defaults(void)
{
    PGconn *c = db_connect("host=/nonexistent-fl-dir dbname=x user=x", 1);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives"), "1");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives_idle"), "10");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives_interval"), "5");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives_count"), "3");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "tcp_user_timeout"), "30000");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "dbname"), "x");
    PQfinish(c);
    c = db_connect("host=/nonexistent-fl-dir dbname=x user=x keepalives_idle=99 tcp_user_timeout=0", 1);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives_idle"), "99");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "tcp_user_timeout"), "0");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives_count"), "3");
    PQfinish(c);
    c = db_connect("postgresql:///x?host=/nonexistent-fl-dir&keepalives_count=7", 1);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives_count"), "7");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "keepalives_idle"), "10");
    CU_ASSERT_STRING_EQUAL(conn_opt(c, "dbname"), "x");
    PQfinish(c);
}

/* Settings from the environment: a whole number within the range, else the default. */
static void test_env_long(void)
{
    static const struct { const char *v; long want; } cases[] = {
        { NULL, 7 }, { "", 7 }, { "3", 3 }, { "1", 1 }, { "10", 10 }, { "0", 7 }, { "11", 7 }, { "-3", 7 },
        { "abc", 7 }, { "5x", 7 }, { "5 ", 7 }, { "0x5", 7 }, { "5.0", 7 }, { "99999999999999999999", 7 },
        { "+4", 4 }, { "007", 7 }, { "008", 8 }, { " 3", 7 }, { "\t3", 7 }, { "\n3", 7 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].v == NULL)
            unsetenv("FL_TEST_ENV_LONG");
        else
            setenv("FL_TEST_ENV_LONG", cases[i].v, 1);
        long got = env_long("FL_TEST_ENV_LONG", 7, 1, 10);
        CU_ASSERT_EQUAL(got, cases[i].want);
        if (got != cases[i].want)
            fprintf(stderr, "env_long(\"%s\") = %ld, expected %ld\n", cases[i].v ? cases[i].v : "(unset)", got,
                    cases[i].want);
    }
    unsetenv("FL_TEST_ENV_LONG");

    /* the statement timeout stays under nginx's fastcgi_read_timeout of 60 s (db.c) */
    static const struct { const char *v; long want; } st[] = {
        { NULL, 5000 }, { "100", 100 }, { "50000", 50000 }, { "50001", 5000 }, { "60000", 5000 },
        { "3600000", 5000 }, { "99", 5000 }, { "0", 5000 }, { "30s", 5000 },
    };
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
        if (st[i].v == NULL)
            unsetenv("FL_STATEMENT_TIMEOUT_MS");
        else
            setenv("FL_STATEMENT_TIMEOUT_MS", st[i].v, 1);
        long got = db_statement_timeout_ms();
        CU_ASSERT_EQUAL(got, st[i].want);
        if (got != st[i].want)
            fprintf(stderr, "FL_STATEMENT_TIMEOUT_MS=%s: %ld, expected %ld\n", st[i].v ? st[i].v : "(unset)", got,
                    st[i].want);
    }
    unsetenv("FL_STATEMENT_TIMEOUT_MS");
}

static void test_sqlstate(void)
{
    CU_ASSERT_EQUAL(db_sqlstate_http("FL400"), 400);
    CU_ASSERT_EQUAL(db_sqlstate_http("FL404"), 404);
    CU_ASSERT_EQUAL(db_sqlstate_http("FL409"), 409);
    CU_ASSERT_EQUAL(db_sqlstate_http("23505"), 409);
    CU_ASSERT_EQUAL(db_sqlstate_http("23503"), 422);
    CU_ASSERT_EQUAL(db_sqlstate_http("08006"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("57014"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("22P02"), 400);
    CU_ASSERT_EQUAL(db_sqlstate_http("25006"), 503);   /* a standby after a failover */
    CU_ASSERT_EQUAL(db_sqlstate_http("53100"), 503);   /* disk full */
    CU_ASSERT_EQUAL(db_sqlstate_http("53300"), 503);   /* too many connections */
    CU_ASSERT_EQUAL(db_sqlstate_http("57P03"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("XX000"), 500);
    CU_ASSERT_EQUAL(db_sqlstate_http(NULL), 500);
    /* every row of the table (docs/operations.md) */
    CU_ASSERT_EQUAL(db_sqlstate_http("23514"), 422);
    CU_ASSERT_EQUAL(db_sqlstate_http("23502"), 422);
    CU_ASSERT_EQUAL(db_sqlstate_http("40001"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("40P01"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("55P03"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("57P01"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("08001"), 503);
    CU_ASSERT_EQUAL(db_sqlstate_http("42501"), 500);
    CU_ASSERT_EQUAL(db_sqlstate_http("22001"), 400);
    /* FLnnn only for an HTTP error status; anything malformed is 500 */
    CU_ASSERT_EQUAL(db_sqlstate_http("FL599"), 599);
    CU_ASSERT_EQUAL(db_sqlstate_http("FL399"), 500);
    CU_ASSERT_EQUAL(db_sqlstate_http("FL600"), 500);
    CU_ASSERT_EQUAL(db_sqlstate_http("FL40"), 500);
    CU_ASSERT_EQUAL(db_sqlstate_http("40P011"), 500);
    CU_ASSERT_EQUAL(db_sqlstate_http(""), 500);
}

static void test_crypto(void)
{
    char hex[65];
    crypto_sha256_hex("abc", 3, hex);
    CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* the digest context is reused: a second and a third hash start clean */
    crypto_sha256_hex("", 0, hex);
    CU_ASSERT_STRING_EQUAL(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    crypto_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
    CU_ASSERT_STRING_EQUAL(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CU_ASSERT(crypto_equal("abcd", "abcd", 4));
    CU_ASSERT(!crypto_equal("abcd", "abce", 4));
    char r1[33], r2[33];
    CU_ASSERT_EQUAL(crypto_random_hex(r1, 16), 0);
    CU_ASSERT_EQUAL(crypto_random_hex(r2, 16), 0);
    CU_ASSERT_EQUAL(strlen(r1), 32);
    CU_ASSERT_STRING_NOT_EQUAL(r1, r2);

    char path[] = "/tmp/fl-unit-keyXXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    const char *key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    CU_ASSERT_EQUAL(write(fd, key, strlen(key)), (ssize_t) strlen(key));
    close(fd);
    CU_ASSERT_PTR_NULL(crypto_pii_encrypt(A, "123456789"));     /* no key yet */
    CU_ASSERT_EQUAL_FATAL(crypto_pii_load(path), 0);
    unlink(path);
    char *sealed = crypto_pii_encrypt(A, "123456789");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sealed);
    CU_ASSERT(strncmp(sealed, "v1:", 3) == 0);
    CU_ASSERT_PTR_NULL(strstr(sealed, "123456789"));
    CU_ASSERT_STRING_NOT_EQUAL(sealed, crypto_pii_encrypt(A, "123456789"));  /* fresh IV */
    CU_ASSERT_STRING_EQUAL(crypto_pii_decrypt(A, sealed), "123456789");
    /* the sealing context is keyed once and reused: later messages, of other lengths, open too */
    const char *later[] = { "1980-01-01", "", "000000000", "a longer value than the others, 48 bytes long.." };
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
        char *s = crypto_pii_encrypt(A, later[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_STRING_EQUAL(crypto_pii_decrypt(A, s), later[i]);
    }
    /* any flipped byte is detected by the GCM tag */
    char *tampered = arena_strdup(A, sealed);
    size_t n = strlen(tampered);
    tampered[n - 6] = tampered[n - 6] == 'A' ? 'B' : 'A';
    CU_ASSERT_PTR_NULL(crypto_pii_decrypt(A, tampered));
    CU_ASSERT_PTR_NULL(crypto_pii_decrypt(A, "v1:00000000:AAAA"));

    /* rotation: a new current key seals; the old one, loaded as old, still opens */
    char path2[] = "/tmp/fl-unit-key2XXXXXX", path1[] = "/tmp/fl-unit-key1XXXXXX";
    int fd2 = mkstemp(path2), fd1 = mkstemp(path1);
    CU_ASSERT_FATAL(fd2 >= 0 && fd1 >= 0);
    const char *key2 = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    CU_ASSERT_EQUAL(write(fd2, key2, strlen(key2)), (ssize_t) strlen(key2));
    CU_ASSERT_EQUAL(write(fd1, key, strlen(key)), (ssize_t) strlen(key));
    close(fd2);
    close(fd1);
    CU_ASSERT_EQUAL_FATAL(crypto_pii_load(path2), 0);
    CU_ASSERT_PTR_NULL(crypto_pii_decrypt(A, sealed));          /* old key not loaded yet */
    CU_ASSERT_EQUAL(crypto_pii_load_old(path1), 0);
    CU_ASSERT_STRING_EQUAL(crypto_pii_decrypt(A, sealed), "123456789");
    char *sealed2 = crypto_pii_encrypt(A, "987654321");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sealed2);
    CU_ASSERT(strncmp(sealed2 + 3, sealed + 3, 8) != 0);         /* another key id */
    CU_ASSERT_STRING_EQUAL(crypto_pii_decrypt(A, sealed2), "987654321");

    /* as the pools load them: the old keys are the files FL_DATA_KEY_OLD_FILES lists (a colon
     * list; one that is not a key file is reported and skipped), and a reload starts afresh */
    setenv("FL_DATA_KEY_OLD_FILES", arena_printf(A, "/nonexistent/fl-key:%s", path1), 1);
    CU_ASSERT_EQUAL_FATAL(crypto_pii_load(path2), 0);
    CU_ASSERT_STRING_EQUAL(crypto_pii_decrypt(A, sealed), "123456789");
    CU_ASSERT_STRING_EQUAL(crypto_pii_decrypt(A, sealed2), "987654321");
    unsetenv("FL_DATA_KEY_OLD_FILES");
    CU_ASSERT_EQUAL_FATAL(crypto_pii_load(path2), 0);
    CU_ASSERT_PTR_NULL(crypto_pii_decrypt(A, sealed));          /* no longer listed: not loaded */
    CU_ASSERT_STRING_EQUAL(crypto_pii_decrypt(A, sealed2), "987654321");
    unlink(path2);
    unlink(path1);
}

static void test_hmac(void)
{
    /* the example in ISO Amp's "Request Signatures": HMAC(secret, t + body) */
    const char *secret = "f76fab345ce93a69aa77d68a08283400cd0b45cb0a0a16b61e20b4c1e626a115";
    const char *body = "{\"id\":\"f9a6e449-e884-4726-973e-26d6bd99666a\",\"object\":\"event\",\"time\":1650654842,"
                       "\"type\":\"statement_analysis.completed\",\"data\":{\"statementAnalysisId\":"
                       "\"f472949d-8227-4514-aa1c-b40f1f00380c\",\"proposalId\":\"f9a4bb9c-d2b2-45fa-83fe-f895c74235ad\"}}";
    char out[65];
    crypto_hmac_sha256_hex(secret, strlen(secret), "1650654842", NULL, body, strlen(body), out);
    CU_ASSERT_STRING_EQUAL(out, "143f3835f2bf090fa6fd78754517d51b1897f691682627d241c5ed309cad0515");
    /* RFC 4231 test case 2, split across the parts */
    crypto_hmac_sha256_hex("Jefe", 4, "what do ya ", "want ", "for nothing?", 12, out);
    CU_ASSERT_STRING_EQUAL(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* net_sockaddr_private of a textual address (1 for text that is not one, as for a
 * socket that is neither IPv4 nor IPv6) */
static int addr_private(const char *text)
{
    struct sockaddr_in s4 = { .sin_family = AF_INET };
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
    if (inet_pton(AF_INET, text, &s4.sin_addr) == 1)
        return net_sockaddr_private((struct sockaddr *) &s4);
    if (inet_pton(AF_INET6, text, &s6.sin6_addr) == 1)
        return net_sockaddr_private((struct sockaddr *) &s6);
    struct sockaddr other = { .sa_family = AF_UNIX };
    return net_sockaddr_private(&other);
}

static void test_ssrf(void)
{
    fl_url u;
    char err[160];
    static const char *const refused[] = {
        "http://127.0.0.1/x", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/", "http://172.16.5.4/", "http://192.168.1.1/",
        "http://100.64.0.1/", "http://0.0.0.0/", "http://[fd00:ec2::254]/", "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/", "http://127%2e0%2e0%2e1/",
        "http://[fe80::1%25eth0]/", "http://203.0.113.7/", "http://017700000001/", NULL
    };
    for (const char *const *p = refused; *p; p++) {
        int rc = net_url_check(*p, 0, &u, err, sizeof(err));
        CU_ASSERT_EQUAL(rc, -1);
        if (rc == 0)
            fprintf(stderr, "not refused: %s\n", *p);
    }
    /* credentials: before the host only (an @ in the path or query is none) */
    CU_ASSERT(net_url_has_credentials("https://user:pw@files.example/a.pdf"));
    CU_ASSERT(net_url_has_credentials("http://user@files.example"));
    CU_ASSERT(!net_url_has_credentials("http://files.example/a@b.pdf?by=x@y"));
    CU_ASSERT(!net_url_has_credentials("http://files.example#a@b"));
    CU_ASSERT_EQUAL(net_url_check("https://user:pw@files.example/a.pdf", 1, &u, err, sizeof(err)), -1);
    /* allowed explicitly, as the dev and test stacks do */
    CU_ASSERT_EQUAL(net_url_check("http://127.0.0.1:9999/hook", 1, &u, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(u.host, "127.0.0.1");
    CU_ASSERT_EQUAL(u.port, 9999);
    CU_ASSERT_EQUAL(net_url_check("https://[::1]/x", 1, &u, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(u.port, 443);
    CU_ASSERT_STRING_EQUAL(u.host, "::1");
    /* a name is not looked up (nothing waits for DNS): its connections' addresses are
     * checked when they are made (net_sockaddr_private, the worker's socket callback) */
    CU_ASSERT_EQUAL(net_url_check("http://localhost:9999/hook", 0, &u, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(u.host, "localhost");
    CU_ASSERT_EQUAL(net_url_check("https://stalls.invalid/hook", 0, &u, err, sizeof(err)), 0);
    CU_ASSERT(addr_private("127.0.0.1"));
    CU_ASSERT(!addr_private("93.184.216.34"));
    CU_ASSERT(addr_private("::ffff:169.254.169.254"));
    CU_ASSERT(addr_private("203.0.113.7"));
    /* public addresses pass (literals: no DNS needed) */
    CU_ASSERT_EQUAL(net_url_check("https://93.184.216.34/hook", 0, &u, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(net_url_check("http://[2606:2800:220:1::1]:8443/", 0, &u, err, sizeof(err)), 0);
    /* malformed or other schemes */
    CU_ASSERT_EQUAL(net_url_check("ftp://93.184.216.34/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("file:///etc/passwd", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://user:pw@93.184.216.34/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://93.184.216.34:99999/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http:///nohost", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://a b/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT(addr_private("not-an-address"));
    /* other spellings of loopback and mapped or translated private addresses */
    CU_ASSERT_EQUAL(net_url_check("http://2130706433/", 0, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://0x7f.1/", 0, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://[::ffff:10.1.2.3]/", 0, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://[64:ff9b::a9fe:a9fe]/", 0, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://1.1.1.1:0/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://[::1/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://1.1.1.1\\@10.0.0.1/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("https://1.1.1.1:8443/h?x=1", 0, &u, err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(u.scheme, "https");
    CU_ASSERT(addr_private("172.31.255.255"));
    CU_ASSERT(!addr_private("172.32.0.1"));
    CU_ASSERT(addr_private("198.19.0.1"));
    CU_ASSERT(addr_private("::"));
    CU_ASSERT(!addr_private("8.8.8.8"));
    CU_ASSERT(!addr_private("2606:4700::1111"));
    /* every range docs/webhooks.md names: documentation, reserved, site-local, IPv4-compatible */
    static const char *const named[] = { "192.0.2.1", "198.51.100.200", "203.0.113.255", "2001:db8::1",
                                         "2001:db8:ffff::1", "fec0::1", "feff::1", "240.0.0.1", "255.255.255.255",
                                         "fc00::1", "ff02::1", "::10.1.2.3", "::127.0.0.1", "64:ff9b::a00:1",
                                         "100.127.255.255", "0.1.2.3", "169.254.0.1",
                                         /* IPv4 inside IPv6: 6to4, IPv4-translated; local-use NAT64 */
                                         "2002:a00:1::1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "::ffff:0:10.0.0.1",
                                         "::ffff:0:127.0.0.1", "64:ff9b:1::8.8.8.8", NULL };
    for (const char *const *p = named; *p; p++) {
        CU_ASSERT(addr_private(*p));
        if (!addr_private(*p))
            fprintf(stderr, "not refused: %s\n", *p);
    }
    CU_ASSERT(!addr_private("192.0.3.1"));
    CU_ASSERT(!addr_private("198.51.101.1"));
    CU_ASSERT(!addr_private("2001:db9::1"));
    CU_ASSERT(!addr_private("100.128.0.1"));
    CU_ASSERT(!addr_private("::ffff:8.8.8.8"));
    CU_ASSERT(!addr_private("2002:808:808::1"));         /* 6to4 of a public address */
    CU_ASSERT(!addr_private("::ffff:0:8.8.8.8"));
    CU_ASSERT(!addr_private("64:ff9b::808:808"));
    /* control characters anywhere, and a bare backslash */
    CU_ASSERT_EQUAL(net_url_check("http://93.184.216.34/a\tb", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://93.184.216.34/a\x7f", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://93.184.216.34/\r\nX-Injected: 1", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://93.184.216.34\\x/", 1, &u, err, sizeof(err)), -1);
    CU_ASSERT_EQUAL(net_url_check("http://93.184.216.34/a\\b", 1, &u, err, sizeof(err)), -1);
}

static void test_mime(void)
{
    CU_ASSERT_STRING_EQUAL(mime_sniff((const unsigned char *) "%PDF-1.7\n", 9), "application/pdf");
    CU_ASSERT_STRING_EQUAL(mime_sniff((const unsigned char *) "hello\n", 6), "text/plain");
    CU_ASSERT_STRING_EQUAL(mime_sniff((const unsigned char *) "\x00\x01\x02", 3), "application/octet-stream");
    /* file names: the last component, no controls, nothing invisible, no trailing dots */
    CU_ASSERT_STRING_EQUAL(mime_filename(A, "../../etc/passwd"), "passwd");
    CU_ASSERT_STRING_EQUAL(mime_filename(A, "C:\\docs\\q1\r\n.pdf. . "), "q1.pdf");
    CU_ASSERT_STRING_EQUAL(mime_filename(A, "invoice\xe2\x80\xae" "fdp.exe"), "invoicefdp.exe");
    CU_ASSERT_STRING_EQUAL(mime_filename(A, "\xef\xbb\xbfr\xc3\xa9sum\xc3\xa9\xe2\x81\xa7\xc2\x85.pdf"),
                           "r\xc3\xa9sum\xc3\xa9.pdf");
    CU_ASSERT_PTR_NULL(mime_filename(A, "\xe2\x80\xae\xe2\x80\x8b"));
    CU_ASSERT_PTR_NULL(mime_filename(A, "a/.."));
    CU_ASSERT_PTR_NULL(mime_filename(A, "E\xe2\xc2\x85\x80\xae.exe"));   /* not UTF-8 */
    char *longname = arena_alloc(A, 300);
    memset(longname, 'a', 256);
    longname[256] = '\0';
    CU_ASSERT_PTR_NULL(mime_filename(A, longname));
    longname[255] = '\0';
    CU_ASSERT_PTR_NOT_NULL(mime_filename(A, longname));
}

int main(void)
{
    A = arena_new(64 * 1024);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite("core", NULL, NULL);
    CU_add_test(s, "arena and buffers", test_arena);
    CU_add_test(s, "percent-decoding and query strings", test_decode);
    CU_add_test(s, "UTF-8 validation", test_utf8);
    CU_add_test(s, "CONTENT_LENGTH: digits, cap, overflow", test_content_length);
    CU_add_test(s, "routing, 404 and 405", test_route);
    CU_add_test(s, "money normalisation", test_money);
    CU_add_test(s, "dates", test_dates);
    CU_add_test(s, "strict JSON and field specs", test_parse_and_validate);
    CU_add_test(s, "base64 and email", test_base64_email);
    CU_add_test(s, "SQLSTATE to HTTP", test_sqlstate);
    CU_add_test(s, "settings from the environment", test_env_long);
    CU_add_test(s, "database connect gives up on a silent server", test_db_connect_timeout);
    CU_add_test(s, "database connection: TCP keep-alive defaults, the conninfo's own win", test_db_connect_defaults);
    CU_add_test(s, "hashing, random, PII encryption", test_crypto);
    CU_add_test(s, "HMAC-SHA256 signatures", test_hmac);
    CU_add_test(s, "content sniffing and file names", test_mime);
    CU_add_test(s, "SSRF guard", test_ssrf);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures();
    CU_cleanup_registry();
    arena_free(A);
    return failures > 0 ? 1 : 0;
}
