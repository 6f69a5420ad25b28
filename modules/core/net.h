/* Outbound URL checks (the SSRF guard) shared by every outbound fetch:
 * webhook deliveries, attachment downloads. */
#ifndef FL_NET_H
#define FL_NET_H
#include <stddef.h>

typedef struct fl_url {
    char scheme[8];            /* "http" or "https" */
    char host[256];            /* without brackets for IPv6 literals */
    int port;
    char addr[64];             /* the resolved address that was checked */
    int literal;               /* the host is an address itself: nothing to look up or pin */
} fl_url;

/* Parses url (http or https only, no user-info), resolves the host and
 * refuses loopback, private, link-local, unique-local, CGNAT, multicast,
 * unspecified and cloud-metadata addresses unless allow_private.  Every
 * address the name resolves to must pass.  0 and *out filled (connect to
 * out->addr, not to the name, so a second lookup cannot rebind it), or -1
 * with a short reason in err. */
int net_url_check(const char *url, int allow_private, fl_url *out, char *err, size_t errsz);
/* How long net_url_check waits for a name to resolve: FL_RESOLVE_TIMEOUT_MS
 * (100..60000), read at the first lookup, unless set here first.  A name that
 * does not resolve in time fails like one that does not resolve. */
#define NET_RESOLVE_TIMEOUT_MS 3000
/* Lookups given up on but still running in the resolver; beyond this many,
 * a lookup fails at once instead of queueing behind them (glibc runs at most
 * 20 lookup threads).  A process must not fork() after a lookup: the child
 * inherits glibc's count of idle lookup threads but not the threads, and its
 * lookups would wait out their deadline in the queue (exec is fine). */
#define NET_RESOLVE_MAX_HANGING 16
void net_set_resolve_timeout(int ms);
/* 1 when the textual address is not publicly routable (see above). */
int net_addr_private(const char *addr);

#endif
