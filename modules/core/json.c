#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "log.h"

/* What json-c is not asked to judge, in one pass before it parses:
 *  - a NUL character, raw or as the escape \u0000 (-1, malformed).  json-c takes both,
 *    and its C strings end there: {"Amount":"12.00\u0000junk"} would read as 12.00, and
 *    a key "Amount\u0000x" as Amount.  PostgreSQL refuses \u0000 in json and jsonb too;
 *  - more than JSON_MAX_VALUES values or JSON_MAX_CONTAINERS objects and arrays
 *    (JSON_TOO_LARGE).  json-c holds ~750 bytes per object and ~75 per number, so a
 *    10 MB body of [{},{},...] took 2.6 GB to parse; within the limits the worst document
 *    (50,000 empty objects and 350,000 numbers, 3.6 MB) takes 66 MB, and the largest
 *    the APIs take (10,000 payment lines, 14 fields each) fits with room to spare.
 * Commas outside strings count the values (one fewer), braces and brackets the
 * containers.  A string is skipped to its closing quote, each backslash with the
 * character it escapes.  Malformed text is left for json-c to refuse. */
static int json_prescan(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    size_t values = 1, containers = 0;
    if (memchr(s, '\0', len) != NULL)
        return -1;
    while (p < end) {
        char c = *p++;
        if (c == '"') {
            for (;;) {
                const char *q = p;
                while (q < end && *q != '"' && *q != '\\')
                    q++;
                if (end - q < 2) {
                    p = end;                    /* the end, or a backslash at the end */
                    break;
                }
                if (*q == '"') {
                    p = q + 1;
                    break;
                }
                if (end - q >= 6 && memcmp(q + 1, "u0000", 5) == 0)
                    return -1;
                p = q + 2;
            }
        } else if (c == ',') {
            if (++values > JSON_MAX_VALUES)
                return JSON_TOO_LARGE;
        } else if (c == '{' || c == '[') {
            if (++containers > JSON_MAX_CONTAINERS)
                return JSON_TOO_LARGE;
        }
    }
    return 0;
}

int json_parse_strict(const char *s, size_t len, json_object **out)
{
    int rc = json_prescan(s, len);
    if (rc < 0)
        return rc;
    struct json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
    if (tok == NULL)
        return -1;
    /* UTF-8 checked here: text PostgreSQL would refuse is malformed JSON, answered in the
     * family's own shape, not a database error */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, s, (int) len);
    enum json_tokener_error err = json_tokener_get_error(tok);
    /* trailing bytes other than white space make the document malformed */
    size_t used = json_tokener_get_parse_end(tok);
    if (o == NULL && err == json_tokener_continue) {
        /* a number or true/false that ends the text ("42") is complete only once the
         * tokener sees its end (the prescan refused NUL characters in the text) */
        o = json_tokener_parse_ex(tok, "", 1);
        err = json_tokener_get_error(tok);
        used = len;
    }
    json_tokener_free(tok);
    if (o == NULL || err != json_tokener_success) {
        json_object_put(o);
        return -1;
    }
    for (size_t i = used; i < len; i++)
        if (!isspace((unsigned char) s[i])) {
            json_object_put(o);
            return -1;
        }
    *out = o;
    return 0;
}

json_object *json_get_ci(json_object *obj, const char *name)
{
    if (obj == NULL || !json_object_is_type(obj, json_type_object))
        return NULL;
    json_object *v;
    if (json_object_object_get_ex(obj, name, &v))
        return v;
    json_object_object_foreach(obj, key, val) {
        if (strcasecmp(key, name) == 0)
            return val;
    }
    return NULL;
}

int json_money_norm(const char *s, int allow_zero, char *out, size_t outsz)
{
    const char *p = s;
    size_t ilen = 0, flen = 0;
    char ip[32], fp[3] = "00";

    while (*p == ' ') p++;
    if (*p == '+') p++;
    const char *istart = p;
    while (isdigit((unsigned char) *p)) p++;
    ilen = (size_t) (p - istart);
    if (*p == '.') {
        p++;
        const char *fstart = p;
        while (isdigit((unsigned char) *p)) p++;
        flen = (size_t) (p - fstart);
        if (flen > 2 || (flen == 0 && ilen == 0))
            return -1;
        memcpy(fp, fstart, flen);
    }
    while (*p == ' ') p++;
    if (*p != '\0' || (ilen == 0 && flen == 0))
        return -1;
    while (ilen > 1 && *istart == '0') { istart++; ilen--; }
    if (ilen == 0) { istart = "0"; ilen = 1; }
    if (ilen > 16)                      /* numeric(18,2) */
        return -1;
    memcpy(ip, istart, ilen);
    ip[ilen] = '\0';
    if (!allow_zero && strcmp(ip, "0") == 0 && strcmp(fp, "00") == 0)
        return -1;
    if ((size_t) snprintf(out, outsz, "%s.%s", ip, fp) >= outsz)
        return -1;
    return 0;
}

static int is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int real_date(int y, int m, int d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || y > 2999 || m < 1 || m > 12 || d < 1)
        return 0;
    return d <= mdays[m - 1] + (m == 2 && is_leap(y));
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char) s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int json_date_norm(const char *s, char out[11])
{
    size_t n = strlen(s);
    int y, m, d;
    if (n == 10 && s[4] == '-' && s[7] == '-') {                 /* YYYY-MM-DD */
        y = digits(s, 4); m = digits(s + 5, 2); d = digits(s + 8, 2);
    } else if (n == 10 && (s[2] == '-' || s[2] == '/') && s[5] == s[2]) { /* MM-DD-YYYY */
        m = digits(s, 2); d = digits(s + 3, 2); y = digits(s + 6, 4);
    } else if (n == 8 && (s[2] == '-' || s[2] == '/') && s[5] == s[2]) {  /* MM-DD-YY */
        m = digits(s, 2); d = digits(s + 3, 2); y = digits(s + 6, 2);
        if (y >= 0)
            y += 2000;
    } else {
        return -1;
    }
    if (y < 0 || m < 0 || d < 0 || !real_date(y, m, d))
        return -1;
    out[0] = (char) ('0' + y / 1000); out[1] = (char) ('0' + y / 100 % 10);
    out[2] = (char) ('0' + y / 10 % 10); out[3] = (char) ('0' + y % 10); out[4] = '-';
    out[5] = (char) ('0' + m / 10); out[6] = (char) ('0' + m % 10); out[7] = '-';
    out[8] = (char) ('0' + d / 10); out[9] = (char) ('0' + d % 10); out[10] = '\0';
    return 0;
}

int json_base64_valid(const char *s, size_t *decoded_len)
{
    size_t n = 0, pad = 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char) *p;
        if (c == '=') {
            pad++;
        } else if (pad || !(isalnum(c) || c == '+' || c == '/')) {
            return -1;
        }
        n++;
    }
    if (n % 4 != 0 || pad > 2)
        return -1;
    if (pad > 0) {
        /* strict, as Ruby's strict_decode64: the bits of the last character that no byte
         * uses are zero ("QR==" is not another spelling of "QQ==") */
        unsigned char c = (unsigned char) s[n - pad - 1];
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
              : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : 63;
        if ((v & (pad == 2 ? 0x0F : 0x03)) != 0)
            return -1;
    }
    if (decoded_len)
        *decoded_len = n / 4 * 3 - pad;
    return 0;
}

int json_email_valid(const char *s)
{
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL)
        return 0;
    for (const char *p = s; p < at; p++)
        if (isspace((unsigned char) *p) || iscntrl((unsigned char) *p))
            return 0;
    /* the domain: two labels or more, each of letters, digits and inner hyphens (or UTF-8, an
     * internationalised name), none empty: not "a@.b.c", "a@b..c" or "a@b_c,d.e" */
    int labels = 0;
    for (const char *p = at + 1;; p++) {
        const char *start = p;
        while (*p && *p != '.') {
            unsigned char c = (unsigned char) *p;
            if (!(isalnum(c) || c >= 0x80 || (c == '-' && p != start && p[1] != '.' && p[1] != '\0')))
                return 0;
            p++;
        }
        if (p == start)
            return 0;
        labels++;
        if (*p == '\0')
            break;
    }
    return labels >= 2;
}

/* Today as YYYY-MM-DD (UTC), for dates that must not be in the future. */
static const char *today(void)
{
    static char buf[11];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
    return buf;
}

static void add_err(fl_ferrs *errs, fl_arena *a, const char *prefix, const char *field,
                    const char *code, const char *message)
{
    if (errs->n == JSON_MAX_ERRORS)
        return;
    fl_ferr *e = &errs->e[errs->n++];
    e->field = prefix[0] ? arena_printf(a, "%s.%s", prefix, field) : field;
    e->code = code;
    e->message = message;
}

/* A validated field into the output.  Spec field names are string constants, so the
 * object keeps the pointer instead of a copy of the key (a malloc and a free per field:
 * 700 of each for a batch of 100 payment lines). */
static void put(json_object *out, const char *name, json_object *v)
{
    json_object_object_add_ex(out, name, v, JSON_C_OBJECT_ADD_CONSTANT_KEY);
}

/* A value made for the validated document. json-c answers NULL when out of memory, and a NULL
 * member is what a clear looks like to the SQL upserts (a field sent null): the worker stops
 * (its supervisor starts another; nginx answers 503) rather than clear a stored value. */
json_object *json_need(json_object *v)
{
    if (v == NULL) {
        log_msg("error", NULL, "out of memory building a JSON value: the worker stops");
        abort();
    }
    return v;
}

/* White space trimmed from both ends of a scalar: blanks and line ends. */
static int is_edge_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* s without the blanks and line ends at its ends (a copy in a); NULL when out of memory. */
const char *json_trim(fl_arena *a, const char *s)
{
    while (is_edge_space(*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && is_edge_space(s[n - 1])) n--;
    return arena_strndup(a, s, n);
}

/* Characters (code points) of a UTF-8 string whose encoding has been checked
 * (by the JSON parser, or req_utf8_valid for a query): every byte that is not a
 * continuation byte starts one. */
size_t json_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char) *s & 0xC0) != 0x80;
    return n;
}

/* Text of a scalar: strings as they are, numbers as their original JSON text. */
static const char *scalar_text(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_string:
    case json_type_int:
    case json_type_double:
        return json_object_get_string(v);
    default:
        return NULL;
    }
}

/* 1 for an integer json-c could not hold: it keeps 18446744073709551615 for any larger
 * number and -9223372036854775808 for any smaller one, and drops the text it read, so
 * 123456789012345678901234 sent as a TransactionNumber would be stored as
 * 18446744073709551615 (and two different numbers as the same one).  The two limits
 * themselves, sent as such, are refused with them. */
static int int_clamped(json_object *v)
{
    if (!json_object_is_type(v, json_type_int))
        return 0;
    const char *t = json_object_get_string(v);
    return strcmp(t, "18446744073709551615") == 0 || strcmp(t, "-9223372036854775808") == 0;
}

/* "prefix.name[i]" (or "name[i]"): the path of an array item for error messages, built
 * without printf, which was a noticeable share of validating a 100-line batch. */
static const char *item_path(fl_arena *a, const char *prefix, const char *name, size_t i)
{
    char num[24];
    size_t k = sizeof(num);
    num[--k] = '\0';
    do {
        num[--k] = (char) ('0' + i % 10);
        i /= 10;
    } while (i > 0);
    size_t lp = strlen(prefix), ln = strlen(name), li = sizeof(num) - 1 - k;
    char *p = arena_alloc(a, lp + 1 + ln + li + 3), *q = p;
    if (p == NULL)
        return name;
    if (lp > 0) {
        memcpy(q, prefix, lp);
        q += lp;
        *q++ = '.';
    }
    memcpy(q, name, ln);
    q += ln;
    *q++ = '[';
    memcpy(q, num + k, li);
    q += li;
    *q++ = ']';
    *q = '\0';
    return p;
}

static unsigned hash_ci(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char) tolower((unsigned char) *s)) * 16777619u;
    return h;
}

/* The member of in for each field of spec, matched as json_get_ci does (the
 * exact name, else the first member whose name differs only in case), and
 * whether there is one (a member may be null).  One pass over the members for
 * the names not found exactly, comparing a hash of each name before its text:
 * a field at a time, each missing optional field cost a scan of every member,
 * and an object of 400,000 unknown members kept a worker 3 s in validation. */
static void members_of(json_object *in, const fl_field *spec, size_t nf, json_object **vals,
                       unsigned char *found, unsigned *h)
{
    size_t missing = 0;
    for (size_t i = 0; i < nf; i++) {
        found[i] = json_object_object_get_ex(in, spec[i].name, &vals[i]) ? 1 : 0;
        if (!found[i]) {
            vals[i] = NULL;
            h[i] = hash_ci(spec[i].name);
            missing++;
        }
    }
    if (missing == 0)
        return;
    json_object_object_foreach(in, key, val) {
        unsigned kh = hash_ci(key);
        for (size_t i = 0; i < nf; i++)
            if (!found[i] && h[i] == kh && strcasecmp(key, spec[i].name) == 0) {
                found[i] = 1;
                vals[i] = val;
                if (--missing == 0)
                    return;
            }
    }
}

static int validate(fl_arena *a, json_object *in, const fl_field *spec, json_object *out,
                    fl_ferrs *errs, const char *prefix, unsigned opts)
{
    size_t nf = 0;
    while (spec[nf].name != NULL)
        nf++;
    json_object **vals = arena_alloc(a, nf * sizeof(*vals));
    unsigned char *found = arena_alloc(a, nf);
    unsigned *h = arena_alloc(a, nf * sizeof(*h));
    if (vals == NULL || found == NULL || h == NULL) {
        add_err(errs, a, prefix, "body", "invalid", "is too large");
        return -1;
    }
    members_of(in, spec, nf, vals, found, h);
    for (const fl_field *f = spec; f->name != NULL; f++) {
        json_object *v = vals[f - spec];
        const char *txt = NULL;
        int empty = v == NULL || json_object_is_type(v, json_type_null);

        /* text, trimmed (a boolean only when it comes as the string "true"/"false") */
        if (!empty && f->type != FT_ARRAY && f->type != FT_OBJECT
            && (f->type != FT_BOOL || json_object_is_type(v, json_type_string))) {
            txt = scalar_text(v);
            if (txt == NULL) {
                add_err(errs, a, prefix, f->name, "invalid", "is invalid");
                continue;
            }
            if (int_clamped(v)) {
                add_err(errs, a, prefix, f->name, "invalid", "is out of range");
                continue;
            }
            txt = json_trim(a, txt);
            empty = txt == NULL || *txt == '\0';
        }
        if (empty) {
            if (f->flags & F_REQ)
                add_err(errs, a, prefix, f->name, "missing", "can't be blank");
            else if ((opts & JV_CLEARS) && f->type != FT_ARRAY && f->type != FT_OBJECT
                     && found[f - spec])
                put(out, f->name, NULL);        /* sent null or blank: clears */
            continue;
        }
        switch (f->type) {
        case FT_STR:
        case FT_EMAIL: {
            size_t max = f->maxlen ? (size_t) f->maxlen : 255;
            if (json_utf8_chars(txt) > max) {
                add_err(errs, a, prefix, f->name, "too_long",
                        arena_printf(a, "is too long (maximum is %zu characters)", max));
                break;
            }
            if (f->type == FT_EMAIL && !json_email_valid(txt)) {
                add_err(errs, a, prefix, f->name, "invalid", "is not a valid email");
                break;
            }
            for (const char *p = txt; *p && !(f->flags & F_CNTRL); p++)
                if (iscntrl((unsigned char) *p) && *p != '\t' && *p != '\n' && *p != '\r') {
                    txt = NULL;
                    break;
                }
            if (txt == NULL) {
                add_err(errs, a, prefix, f->name, "invalid", "contains control characters");
                break;
            }
            if (f->flags & F_UPPER) {
                char *u = arena_strdup(a, txt);
                for (char *p = u; *p; p++) *p = (char) toupper((unsigned char) *p);
                txt = u;
            }
            put(out, f->name, json_need(json_object_new_string(txt)));
            break;
        }
        case FT_MONEY:
        case FT_MONEY0: {
            char norm[40];
            if (json_object_is_type(v, json_type_int) && strlen(txt) > 16) {
                add_err(errs, a, prefix, f->name, "invalid", "is out of range");
                break;
            }
            if (json_money_norm(txt, f->type == FT_MONEY0, norm, sizeof(norm)) < 0) {
                add_err(errs, a, prefix, f->name, "invalid", "must be a positive number with at most 2 decimals");
                break;
            }
            put(out, f->name, json_need(json_object_new_string(norm)));
            break;
        }
        case FT_DATE: {
            char d[11];
            if (((f->flags & F_ISO) && (strlen(txt) != 10 || txt[4] != '-')) || json_date_norm(txt, d) < 0) {
                add_err(errs, a, prefix, f->name, "invalid", "is not a valid date");
                break;
            }
            if ((f->flags & F_PAST) && strcmp(d, today()) > 0) {
                add_err(errs, a, prefix, f->name, "invalid", "can't be in the future");
                break;
            }
            put(out, f->name, json_need(json_object_new_string(d)));
            break;
        }
        case FT_INT: {
            char *end;
            errno = 0;
            long n = strtol(txt, &end, 10);
            if (errno || *end != '\0' || strlen(txt) > 12 || n < f->min || n > f->max) {
                add_err(errs, a, prefix, f->name, "invalid", "is not a valid number");
                break;
            }
            put(out, f->name, json_need(json_object_new_int64(n)));
            break;
        }
        case FT_BOOL: {
            /* true or false, also as the strings "true"/"false" in any case, as numbers are
             * accepted as strings */
            int b = txt == NULL ? (json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : -1)
                    : strcasecmp(txt, "true") == 0 ? 1 : strcasecmp(txt, "false") == 0 ? 0 : -1;
            if (b < 0) {
                add_err(errs, a, prefix, f->name, "invalid", "must be true or false");
                break;
            }
            put(out, f->name, json_need(json_object_new_boolean(b)));
            break;
        }
        case FT_ENUM: {
            const char *hit = NULL;
            for (const char *const *e = f->enumv; *e; e++)
                if (strcasecmp(*e, txt) == 0)
                    hit = *e;
            if (hit == NULL) {
                add_err(errs, a, prefix, f->name, "invalid", "is not included in the list");
                break;
            }
            put(out, f->name, json_need(json_object_new_string(hit)));
            break;
        }
        case FT_BASE64:
            if (json_base64_valid(txt, NULL) < 0) {
                add_err(errs, a, prefix, f->name, "invalid", "is not valid base64");
                break;
            }
            put(out, f->name, json_need(json_object_new_string(txt)));
            break;
        case FT_DIGITS: {
            char d[32];
            size_t n = 0;
            int bad = 0;
            for (const char *p = txt; *p && !bad; p++) {
                if (isdigit((unsigned char) *p)) {
                    if (n + 1 < sizeof(d))
                        d[n] = *p;
                    n++;
                } else if (!((f->flags & F_PHONE) && strchr("()-. +", *p))) {
                    bad = 1;
                }
            }
            /* a US phone number may carry the country code 1 */
            if ((f->flags & F_PHONE) && n == (size_t) f->maxlen + 1 && n < sizeof(d) && d[0] == '1') {
                for (size_t i = 1; i < n; i++)
                    d[i - 1] = d[i];
                n--;
            }
            if (bad || n != (size_t) f->maxlen || n >= sizeof(d)) {
                add_err(errs, a, prefix, f->name, "invalid",
                        arena_printf(a, "must be %d digits", f->maxlen));
                break;
            }
            d[n] = '\0';
            put(out, f->name, json_need(json_object_new_string(d)));
            break;
        }
        case FT_STATE: {
            static const char *const states =
                "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE "
                "NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR VI GU AS MP ";
            char st[4];
            if (strlen(txt) != 2 || !isalpha((unsigned char) txt[0]) || !isalpha((unsigned char) txt[1])) {
                add_err(errs, a, prefix, f->name, "invalid", "is not a valid state");
                break;
            }
            st[0] = (char) toupper((unsigned char) txt[0]);
            st[1] = (char) toupper((unsigned char) txt[1]);
            st[2] = ' ';
            st[3] = '\0';
            if (strstr(states, st) == NULL || ((strstr(states, st) - states) % 3) != 0) {
                add_err(errs, a, prefix, f->name, "invalid", "is not a valid state");
                break;
            }
            st[2] = '\0';
            put(out, f->name, json_need(json_object_new_string(st)));
            break;
        }
        case FT_ZIP: {
            size_t n = strlen(txt);
            int ok = (n == 5 || (n == 10 && txt[5] == '-'));
            for (size_t i = 0; ok && i < n; i++)
                if (i != 5 && !isdigit((unsigned char) txt[i]))
                    ok = 0;
            if (!ok) {
                add_err(errs, a, prefix, f->name, "invalid", "is not a valid zip code");
                break;
            }
            put(out, f->name, json_need(json_object_new_string(txt)));
            break;
        }
        case FT_PERCENT: {
            char norm[40];
            if (json_money_norm(txt, 1, norm, sizeof(norm)) < 0 || strlen(norm) > 6
                || (strlen(norm) == 6 && strcmp(norm, "100.00") != 0)) {
                add_err(errs, a, prefix, f->name, "invalid", "must be between 0 and 100, with at most 2 decimals");
                break;
            }
            put(out, f->name, json_need(json_object_new_string(norm)));
            break;
        }
        case FT_URL: {
            size_t max = f->maxlen ? (size_t) f->maxlen : 2048;
            int ok = (strncasecmp(txt, "http://", 7) == 0 && txt[7]) || (strncasecmp(txt, "https://", 8) == 0 && txt[8]);
            for (const char *p = txt; ok && *p; p++)
                if ((unsigned char) *p <= 0x20 || *p == 0x7f)
                    ok = 0;
            if (!ok || strlen(txt) > max) {
                add_err(errs, a, prefix, f->name, "invalid", "is not a valid URL");
                break;
            }
            put(out, f->name, json_need(json_object_new_string(txt)));
            break;
        }
        case FT_OBJECT: {
            if (!json_object_is_type(v, json_type_object)) {
                add_err(errs, a, prefix, f->name, "invalid", "must be an object");
                break;
            }
            const char *p = prefix[0] ? arena_printf(a, "%s.%s", prefix, f->name) : f->name;
            json_object *o = json_object_new_object();
            validate(a, v, f->sub, o, errs, p, opts);
            put(out, f->name, o);
            break;
        }
        case FT_ARRAY: {
            long max = f->max ? f->max : 10000;
            if (!json_object_is_type(v, json_type_array)) {
                add_err(errs, a, prefix, f->name, "invalid", "must be an array");
                break;
            }
            size_t n = json_object_array_length(v);
            if ((long) n < f->min || (long) n > max) {
                add_err(errs, a, prefix, f->name, "invalid", "has a wrong number of items");
                break;
            }
            json_object *arr = json_object_new_array_ext((int) n);
            for (size_t i = 0; i < n; i++) {
                json_object *item = json_object_array_get_idx(v, i);
                const char *p = item_path(a, prefix, f->name, i);
                if (!json_object_is_type(item, json_type_object)) {
                    add_err(errs, a, "", p, "invalid", "must be an object");
                    continue;
                }
                json_object *o = json_object_new_object();
                validate(a, item, f->sub, o, errs, p, opts);
                json_object_array_add(arr, o);
            }
            put(out, f->name, arr);
            break;
        }
        }
    }
    return errs->n ? -1 : 0;
}

int json_validate(fl_arena *a, json_object *in, const fl_field *spec, json_object **out,
                  fl_ferrs *errs)
{
    return json_validate_ex(a, in, spec, out, errs, 0);
}

int json_validate_ex(fl_arena *a, json_object *in, const fl_field *spec, json_object **out,
                     fl_ferrs *errs, unsigned opts)
{
    json_object *o = json_object_new_object();
    errs->n = 0;
    if (in == NULL || !json_object_is_type(in, json_type_object)) {
        add_err(errs, a, "", "body", "invalid", "must be a JSON object");
        *out = o;
        return -1;
    }
    int rc = validate(a, in, spec, o, errs, "", opts);
    *out = o;
    return rc;
}
