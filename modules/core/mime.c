#include "mime.h"
#include "req.h"

#include <ctype.h>
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

/* The length of the invisible character at p (UTF-8), 0 for any other: C1 controls and the format
 * characters that change how a name is shown without being seen, above all
 * the bidirectional overrides ("invoice\u202Efdp.exe" is shown as
 * "invoiceexe.pdf"), zero-width characters, separators and the BOM. */
static int invisible_at(const unsigned char *p)
{
    unsigned cp;
    int n;
    if (p[0] >= 0xc2 && p[0] < 0xe0 && (p[1] & 0xc0) == 0x80) {
        cp = ((p[0] & 0x1fu) << 6) | (p[1] & 0x3fu);
        n = 2;
    } else if (p[0] >= 0xe0 && p[0] < 0xf0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
        cp = ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
        n = 3;
    } else {
        return 0;
    }
    return (cp >= 0x80 && cp <= 0x9f)        /* C1 controls */
        || cp == 0xad                        /* soft hyphen */
        || cp == 0x61c || cp == 0x180e       /* Arabic letter mark, Mongolian vowel separator */
        || (cp >= 0x200b && cp <= 0x200f)    /* zero-width space, joiners, LRM, RLM */
        || (cp >= 0x2028 && cp <= 0x202e)    /* line and paragraph separators, embeddings, overrides */
        || (cp >= 0x2060 && cp <= 0x206f)    /* word joiner, invisible operators, isolates */
        || cp == 0xfeff                      /* BOM, zero-width no-break space */
        || (cp >= 0xfff9 && cp <= 0xfffb)    /* interlinear annotations */
        ? n : 0;
}

char *mime_filename(fl_arena *a, const char *name)
{
    /* not UTF-8: refused, for taking characters out of broken sequences could join
     * their bytes into one that is taken out above (the callers' parsers have
     * checked the text already) */
    if (!req_utf8_valid(name))
        return NULL;
    const char *base = name;
    for (const char *p = name; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;
    char *out = arena_alloc(a, strlen(base) + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = base; *p;) {
        int skip = invisible_at((const unsigned char *) p);
        if (skip > 0)
            p += skip;
        else if (iscntrl((unsigned char) *p))
            p++;
        else
            *o++ = *p++;
    }
    *o = '\0';
    while (o > out && (o[-1] == ' ' || o[-1] == '.'))
        *--o = '\0';
    if (out[0] == '\0' || strcmp(out, ".") == 0 || strcmp(out, "..") == 0 || strlen(out) > 255)
        return NULL;
    return out;
}
