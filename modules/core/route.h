/* Method + path pattern routing.  Patterns are literal segments and {name}
 * segments; a trailing slash is optional on both sides. */
#ifndef FL_ROUTE_H
#define FL_ROUTE_H
#include <stddef.h>
#include "req.h"

typedef struct fl_route fl_route;
typedef int (*fl_handler)(fl_req *r, const fl_route *route);

#define ROUTE_PUBLIC 0x1       /* no authentication */

struct fl_route {
    const char *method;
    const char *pattern;
    fl_handler handler;
    unsigned flags;
    const void *data;          /* handler-specific table (field specs, SQL) */
};

/* 0 and *out set on a match (path params stored in r); -404 when no pattern
 * matches; -405 when a pattern matches with another method, with the allowed
 * methods written to allow ("GET, POST"). */
int route_match(const fl_route *routes, size_t n, fl_req *r, const fl_route **out,
                char *allow, size_t allow_size);

#endif
