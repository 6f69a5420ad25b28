/* JSON in: strict parsing with a depth limit, and declarative field specs that
 * validate a request object and build the normalised document a stored
 * function receives.  Money never passes through a double. */
#ifndef FL_JSON_H
#define FL_JSON_H
#include <stddef.h>
#include <json-c/json.h>
#include "arena.h"

#define JSON_MAX_DEPTH 16

typedef enum {
    FT_STR,      /* string (numbers accepted and kept as their text) */
    FT_MONEY,    /* decimal string or number, > 0, at most 2 decimals -> "123.40" */
    FT_MONEY0,   /* as FT_MONEY but 0 allowed */
    FT_DATE,     /* MM-DD-YY, MM-DD-YYYY, MM/DD/YYYY or YYYY-MM-DD -> "YYYY-MM-DD" */
    FT_INT,      /* integer (or integer string) within [min, max] */
    FT_BOOL,     /* true or false, or the strings "true"/"false" in any case */
    FT_ENUM,     /* string, one of enumv (case-insensitive, stored as listed) */
    FT_EMAIL,
    FT_BASE64,   /* strict base64 string */
    FT_ARRAY,    /* array of objects validated with sub */
    FT_OBJECT,   /* object validated with sub */
    FT_DIGITS,   /* exactly maxlen digits (ssn, fein, 10-digit phone; dashes and
                    spaces in phone numbers are dropped) */
    FT_STATE,    /* US state or territory code -> upper case */
    FT_ZIP,      /* US zip: 12345 or 12345-6789 */
    FT_PERCENT,  /* number from 0 to 100, at most 2 decimals -> string */
    FT_URL       /* http or https URL */
} fl_ftype;

#define F_REQ   0x1      /* must be present and non-empty */
#define F_UPPER 0x2      /* FT_STR: stored upper-case */
#define F_PAST  0x4      /* FT_DATE: not after today */
#define F_PHONE 0x8      /* FT_DIGITS: drop ( ) - . and spaces first */
#define F_CNTRL 0x10     /* FT_STR: control characters kept (the handler sanitises them) */
#define F_ISO   0x20     /* FT_DATE: YYYY-MM-DD only */

typedef struct fl_field {
    const char *name;          /* canonical name; input keys match case-insensitively */
    fl_ftype type;
    unsigned flags;
    int maxlen;                /* strings; 0 = 255 */
    long min, max;             /* FT_INT range; FT_ARRAY item count (max 0 = 10000) */
    const char *const *enumv;  /* FT_ENUM values, NULL-terminated */
    const struct fl_field *sub;/* FT_ARRAY item spec, terminated by a NULL name */
} fl_field;

typedef struct fl_ferr {
    const char *field;         /* "PaymentDetails[2].Amount" */
    const char *code;          /* "missing", "invalid", "too_long" */
    const char *message;       /* human text */
} fl_ferr;

#define JSON_MAX_ERRORS 256      /* more than a lead of 10 contacts has fields: every error is reported */
typedef struct fl_ferrs {
    fl_ferr e[JSON_MAX_ERRORS];
    size_t n;
} fl_ferrs;

/* Bounds on a document's size in values, whatever its size in bytes (json.c). */
#define JSON_MAX_VALUES 400000
#define JSON_MAX_CONTAINERS 50000
#define JSON_TOO_LARGE (-2)
/* Strict parse of len bytes.  0 and *out (caller owns, json_object_put) on
 * success; -1 on malformed JSON (NUL characters included) or nesting deeper than
 * JSON_MAX_DEPTH; JSON_TOO_LARGE past JSON_MAX_VALUES or JSON_MAX_CONTAINERS. */
int json_parse_strict(const char *s, size_t len, json_object **out);
/* Validates object in against spec; returns a new object (caller owns) with
 * canonical names and normalised values, and fills errs.  Returns 0 when there
 * are no errors, -1 otherwise (*out still set when not NULL). */
int json_validate(fl_arena *a, json_object *in, const fl_field *spec, json_object **out,
                  fl_ferrs *errs);
/* json_validate with options.  JV_CLEARS (upserts): an optional scalar member sent as
 * null or blank is in the output as null (it clears the stored value), where
 * json_validate leaves it out like an absent member (which keeps it). */
#define JV_CLEARS 0x1
int json_validate_ex(fl_arena *a, json_object *in, const fl_field *spec, json_object **out,
                     fl_ferrs *errs, unsigned opts);
/* Case-insensitive member lookup; borrowed. */
json_object *json_get_ci(json_object *obj, const char *name);
/* Normalises a positive decimal with at most 2 decimals into out ("12.5" ->
 * "12.50"); allow_zero admits 0.  Returns 0 or -1. */
int json_money_norm(const char *s, int allow_zero, char *out, size_t outsz);
/* Normalises a date into "YYYY-MM-DD"; 0 or -1 for a malformed or unreal date. */
int json_date_norm(const char *s, char out[11]);
/* Characters (code points) of valid UTF-8 text. */
size_t json_utf8_chars(const char *s);
/* s without the blanks, tabs and line ends at its ends, copied into a; NULL when out of memory. */
const char *json_trim(fl_arena *a, const char *s);
/* v, or the worker stops when it is NULL (json-c out of memory): for a value put into a
 * document where a NULL member would mean "clear". */
json_object *json_need(json_object *v);
int json_base64_valid(const char *s, size_t *decoded_len);
int json_email_valid(const char *s);

#endif
