#include "route.h"

#include <stdio.h>
#include <string.h>

/* Matches one pattern against a path; collects {params} into r when r != NULL. */
static int match(const char *pat, const char *path, fl_req *r)
{
    size_t np = 0;
    for (;;) {
        while (*pat == '/') pat++;
        while (*path == '/') path++;
        if (*pat == '\0' || *path == '\0')
            break;
        const char *pe = strchr(pat, '/');
        const char *se = strchr(path, '/');
        size_t pl = pe ? (size_t) (pe - pat) : strlen(pat);
        size_t sl = se ? (size_t) (se - path) : strlen(path);
        if (pl >= 2 && pat[0] == '{' && pat[pl - 1] == '}') {
            if (r != NULL) {
                if (np == REQ_MAX_PATH_PARAMS)
                    return 0;
                r->path_params[np].name = arena_strndup(r->arena, pat + 1, pl - 2);
                /* as it is: nginx has percent-decoded the path (FL_PATH comes from $uri), and
                 * decoding again would read "%2541" (sent for "%41") as "A" */
                r->path_params[np].value = arena_strndup(r->arena, path, sl);
            }
            np++;
        } else if (pl != sl || memcmp(pat, path, pl) != 0) {
            return 0;
        }
        pat += pl;
        path += sl;
    }
    while (*pat == '/') pat++;
    while (*path == '/') path++;
    if (*pat != '\0' || *path != '\0')
        return 0;
    if (r != NULL)
        r->npath_params = np;
    return 1;
}

int route_match(const fl_route *routes, size_t n, fl_req *r, const fl_route **out,
                char *allow, size_t allow_size)
{
    int path_seen = 0;
    if (allow_size)
        allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!match(routes[i].pattern, r->path, NULL))
            continue;
        if (strcmp(routes[i].method, r->method) == 0) {
            match(routes[i].pattern, r->path, r);
            r->route = routes[i].pattern;
            *out = &routes[i];
            return 0;
        }
        if (allow_size && strstr(allow, routes[i].method) == NULL) {
            size_t used = strlen(allow);
            snprintf(allow + used, allow_size - used, "%s%s", used ? ", " : "", routes[i].method);
        }
        path_seen = 1;
    }
    return path_seen ? -405 : -404;
}
