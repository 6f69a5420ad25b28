#include "env.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include "log.h"

long env_long(const char *name, long def, long lo, long hi)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    /* strtol skips leading blanks; a trailing one is refused, so is a leading one */
    if (errno == 0 && end != v && !isspace((unsigned char) *v) && *end == '\0' && n >= lo && n <= hi)
        return n;
    log_msg("warn", NULL, "%s=%s is not a whole number within %ld..%ld: %ld", name, v, lo, hi, def);
    return def;
}
