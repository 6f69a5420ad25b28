/* Per-request memory arena: allocations live until arena_reset(); nothing is
 * freed piecemeal.  The arena keeps its first block across resets so a worker
 * in steady state does not touch malloc for ordinary requests. */
#ifndef FL_ARENA_H
#define FL_ARENA_H
#include <stddef.h>
#include <stdarg.h>

typedef struct fl_arena fl_arena;

/* Returns a new arena (caller owns; release with arena_free) or NULL. */
fl_arena *arena_new(size_t block_size);
/* Memory owned by the arena, aligned for any type; NULL only on ENOMEM. */
void *arena_alloc(fl_arena *a, size_t n);
void *arena_calloc(fl_arena *a, size_t n);
char *arena_strdup(fl_arena *a, const char *s);
char *arena_strndup(fl_arena *a, const char *s, size_t n);
char *arena_printf(fl_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vprintf(fl_arena *a, const char *fmt, va_list ap);
/* Drops every allocation; keeps the first block for reuse. */
void arena_reset(fl_arena *a);
void arena_free(fl_arena *a);
/* Bytes currently reserved from malloc (for tests and the benchmark). */
size_t arena_reserved(const fl_arena *a);

/* A growable byte buffer whose storage comes from an arena. */
typedef struct fl_buf {
    fl_arena *arena;
    char *data;
    size_t len, cap;
} fl_buf;

void buf_init(fl_buf *b, fl_arena *a, size_t cap);
int buf_append(fl_buf *b, const char *s, size_t n);
int buf_puts(fl_buf *b, const char *s);
int buf_printf(fl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
int buf_json_str(fl_buf *b, const char *s);

#endif
