#include "arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

typedef struct block {
    struct block *next;
    size_t size, used;
    max_align_t data[];
} block;

struct fl_arena {
    block *head;        /* current block; the chain ends with the first one */
    block *first;
    size_t block_size;
    size_t reserved;
};

static block *block_new(size_t size)
{
    block *b = malloc(sizeof(block) + size);
    if (b == NULL)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

fl_arena *arena_new(size_t block_size)
{
    fl_arena *a = malloc(sizeof(*a));
    if (a == NULL)
        return NULL;
    a->block_size = block_size < 1024 ? 1024 : block_size;
    a->first = a->head = block_new(a->block_size);
    if (a->first == NULL) {
        free(a);
        return NULL;
    }
    a->reserved = a->block_size;
    return a;
}

void *arena_alloc(fl_arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX / 2)               /* no caller asks this much; the rounding would wrap */
        return NULL;
    size_t need = (n + align - 1) & ~(align - 1);
    block *b = a->head;

    if (need == 0)
        need = align;
    if (b->size - b->used < need) {
        size_t size = need > a->block_size ? need : a->block_size;
        block *nb = block_new(size);
        if (nb == NULL)
            return NULL;
        nb->next = b;
        a->head = b = nb;
        a->reserved += size;
    }
    void *p = (char *) b->data + b->used;
    b->used += need;
    return p;
}

void *arena_calloc(fl_arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

char *arena_strndup(fl_arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(fl_arena *a, const char *s)
{
    return s == NULL ? NULL : arena_strndup(a, s, strlen(s));
}

char *arena_vprintf(fl_arena *a, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return NULL;
    char *p = arena_alloc(a, (size_t) n + 1);
    if (p != NULL)
        vsnprintf(p, (size_t) n + 1, fmt, ap);
    return p;
}

char *arena_printf(fl_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void arena_reset(fl_arena *a)
{
    block *b = a->head;
    while (b != a->first) {
        block *next = b->next;
        free(b);
        b = next;
    }
    a->head = a->first;
    a->first->used = 0;
    a->reserved = a->block_size;
}

void arena_free(fl_arena *a)
{
    if (a == NULL)
        return;
    arena_reset(a);
    free(a->first);
    free(a);
}

size_t arena_reserved(const fl_arena *a)
{
    return a->reserved;
}

void buf_init(fl_buf *b, fl_arena *a, size_t cap)
{
    b->arena = a;
    b->len = 0;
    b->cap = cap ? cap : 256;
    b->data = arena_alloc(a, b->cap);
    if (b->data == NULL)
        b->cap = 0;
    else
        b->data[0] = '\0';
}

int buf_append(fl_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *d = arena_alloc(b->arena, cap);
        if (d == NULL)
            return -1;
        if (b->len)
            memcpy(d, b->data, b->len);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(fl_buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(fl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = arena_vprintf(b->arena, fmt, ap);
    va_end(ap);
    return s == NULL ? -1 : buf_puts(b, s);
}

int buf_json_str(fl_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *run = (const unsigned char *) s, *p;
    if (buf_append(b, "\"", 1) < 0)
        return -1;
    /* PostgreSQL's escape_json, byte for byte: the posting worker's answers must equal
     * the same text built by to_json() in SQL (docs/posting.md, post-payments) */
    for (p = run; *p; p++) {
        char esc[7];
        const char *out;
        size_t n = 2;
        switch (*p) {
        case '"': out = "\\\""; break;
        case '\\': out = "\\\\"; break;
        case '\b': out = "\\b"; break;
        case '\f': out = "\\f"; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        default:
            if (*p >= 0x20)
                continue;
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            out = esc;
            n = 6;
        }
        if (buf_append(b, (const char *) run, (size_t) (p - run)) < 0 || buf_append(b, out, n) < 0)
            return -1;
        run = p + 1;
    }
    if (buf_append(b, (const char *) run, (size_t) (p - run)) < 0)
        return -1;
    return buf_append(b, "\"", 1);
}
