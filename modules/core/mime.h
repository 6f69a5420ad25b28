/* Content types from a document's first bytes, never from what a client says. */
#ifndef FL_MIME_H
#define FL_MIME_H
#include <stddef.h>

/* A static string: application/pdf, image/png, ..., text/plain or
 * application/octet-stream. */
const char *mime_sniff(const unsigned char *p, size_t n);

#endif
