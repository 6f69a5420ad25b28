#include "mime.h"

#include <string.h>

const char *mime_sniff(const unsigned char *p, size_t n)
{
    static const struct { const char *magic; size_t len; const char *type; } sig[] = {
        { "%PDF-", 5, "application/pdf" },
        { "\x89PNG\r\n\x1a\n", 8, "image/png" },
        { "\xff\xd8\xff", 3, "image/jpeg" },
        { "GIF87a", 6, "image/gif" },
        { "GIF89a", 6, "image/gif" },
        { "II*\0", 4, "image/tiff" },
        { "MM\0*", 4, "image/tiff" },
        { "PK\x03\x04", 4, "application/zip" },              /* also docx, xlsx */
        { "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8, "application/x-ole-storage" },  /* doc, xls */
    };
    for (size_t i = 0; i < sizeof(sig) / sizeof(sig[0]); i++)
        if (n >= sig[i].len && memcmp(p, sig[i].magic, sig[i].len) == 0)
            return sig[i].type;
    for (size_t i = 0; i < n && i < 4096; i++)
        if (p[i] < 0x09 || (p[i] > 0x0d && p[i] < 0x20) || p[i] == 0x7f)
            return "application/octet-stream";
    return n ? "text/plain" : "application/octet-stream";
}
