/* Content types from a document's first bytes, never from what a client says;
 * the file names clients give, made safe to store and show. */
#ifndef FL_MIME_H
#define FL_MIME_H
#include <stddef.h>
#include "arena.h"

/* A static string: application/pdf, image/png, ..., text/plain or
 * application/octet-stream. */
const char *mime_sniff(const unsigned char *p, size_t n);

/* A client's file name as it is stored: its last path component (after any '/'
 * or '\\'), without control characters (C0, DEL, C1) or invisible format
 * characters (bidirectional overrides and isolates, zero-width characters, the
 * BOM, ...), without trailing dots and spaces; in a.  NULL when the name is
 * not UTF-8, or nothing is left, it is "." or "..", or longer than 255 bytes. */
char *mime_filename(fl_arena *a, const char *name);

#endif
