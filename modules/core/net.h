/* Outbound URL checks (the SSRF guard) shared by every outbound fetch:
 * webhook deliveries, attachment downloads. */
#ifndef FL_NET_H
#define FL_NET_H
#include <stddef.h>
#include <sys/socket.h>

typedef struct fl_url {
    char scheme[8];            /* "http" or "https" */
    char host[256];            /* without brackets for IPv6 literals */
    int port;
} fl_url;

#define NET_REFUSED_PRIVATE "the host resolves to a private, loopback or link-local address"

/* Parses url: http or https only, no user-info, no spaces or control
 * characters, a host and a valid port.  A host that is an address (in any
 * numeric form) must not be loopback, private, link-local, unique-local,
 * CGNAT, multicast, unspecified or cloud metadata unless allow_private.  A
 * name is not looked up: nothing here waits for DNS.  Whoever connects checks
 * the address it connects to with net_sockaddr_private (the worker does, in
 * curl's socket callback), which also defeats DNS rebinding.  0 and *out
 * filled, or -1 with a short reason in err. */
/* Whether url's authority (after "scheme://", up to the path) carries user information. */
int net_url_has_credentials(const char *url);
int net_url_check(const char *url, int allow_private, fl_url *out, char *err, size_t errsz);
/* 1 when the address is not publicly routable (see above), or not IPv4/IPv6. */
int net_sockaddr_private(const struct sockaddr *sa);

#endif
