#include "net.h"
#include "log.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

static int v4_private(const unsigned char a[4])
{
    return a[0] == 0                                    /* 0.0.0.0/8 "this network" */
        || a[0] == 10                                   /* 10/8 */
        || a[0] == 127                                  /* loopback */
        || (a[0] == 100 && (a[1] & 0xc0) == 64)         /* 100.64/10 CGNAT */
        || (a[0] == 169 && a[1] == 254)                 /* link-local, cloud metadata */
        || (a[0] == 172 && (a[1] & 0xf0) == 16)         /* 172.16/12 */
        || (a[0] == 192 && a[1] == 168)                 /* 192.168/16 */
        || (a[0] == 192 && a[1] == 0 && a[2] == 0)      /* 192.0.0/24 IETF */
        || (a[0] == 198 && (a[1] & 0xfe) == 18)         /* 198.18/15 benchmarking */
        || a[0] >= 224;                                 /* multicast, reserved, broadcast */
}

static int v6_private(const unsigned char a[16])
{
    static const unsigned char zero[16];
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))  /* :: and ::1 */
        return 1;
    if (memcmp(a, mapped, 12) == 0)                     /* ::ffff:a.b.c.d */
        return v4_private(a + 12);
    if (memcmp(a, zero, 12) == 0)                       /* deprecated ::a.b.c.d */
        return v4_private(a + 12);
    if (a[0] == 0 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b)  /* 64:ff9b::/96 NAT64 */
        return v4_private(a + 12);
    return (a[0] & 0xfe) == 0xfc                        /* fc00::/7 unique-local (and fd00:ec2::254) */
        || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)      /* fe80::/10 link-local */
        || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)      /* fec0::/10 site-local */
        || a[0] == 0xff                                 /* multicast */
        || (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8); /* documentation */
}

int net_addr_private(const char *addr)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, addr, buf) == 1)
        return v4_private(buf);
    if (inet_pton(AF_INET6, addr, buf) == 1)
        return v6_private(buf);
    return 1;                                           /* not an address: refuse */
}

static int fail(char *err, size_t errsz, const char *msg)
{
    snprintf(err, errsz, "%s", msg);
    return -1;
}

/* Name lookups have a deadline.  getaddrinfo() waits as long as the resolver
 * does (5 s a try, with retries, for a name whose servers do not answer),
 * and the callers are an API worker answering one request at a time and the
 * webhook worker's single loop: a partner's URL must not stall either.  The
 * lookup runs in glibc's getaddrinfo_a() thread; a caller that gives up
 * leaves it there, and it is freed at a later lookup of the same process once
 * it has finished.  glibc runs at most 20 such threads, and a request queued
 * behind them waits its whole deadline: hence at most 16 left hanging. */
typedef struct pending {
    struct gaicb cb;
    struct addrinfo hints;
    char name[256];
    struct pending *next;
} pending;

static pending *abandoned;
static int n_abandoned;
static int timeout_ms = -1;

void net_set_resolve_timeout(int ms)
{
    timeout_ms = ms;
}

static int resolve_timeout(void)
{
    if (timeout_ms < 0) {
        const char *v = getenv("FL_RESOLVE_TIMEOUT_MS");
        char *end = NULL;
        long ms = v && *v ? strtol(v, &end, 10) : NET_RESOLVE_TIMEOUT_MS;
        if (end != NULL && (*end != '\0' || ms < 100 || ms > 60000)) {
            log_msg("warn", NULL, "FL_RESOLVE_TIMEOUT_MS=%s is not within 100..60000: %d",
                    v, NET_RESOLVE_TIMEOUT_MS);
            ms = NET_RESOLVE_TIMEOUT_MS;
        }
        timeout_ms = (int) ms;
    }
    return timeout_ms;
}

static void reap(void)
{
    for (pending **pp = &abandoned; *pp != NULL;) {
        pending *p = *pp;
        /* EAI_ALLDONE: taken under glibc's lock, once it has let go of the request */
        if (gai_cancel(&p->cb) != EAI_ALLDONE) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        n_abandoned--;
        if (p->cb.ar_result != NULL)
            freeaddrinfo(p->cb.ar_result);
        free(p);
    }
}

static long ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000L + (now.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* 0 and *res, -1 when the name does not resolve, 1 when it did not within
 * the deadline (or too many earlier lookups are still hanging). */
static int lookup(const char *host, int literal, struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    *res = NULL;
    if (literal) {                      /* nothing to ask a server */
        hints.ai_flags = AI_NUMERICHOST;
        return getaddrinfo(host, NULL, &hints, res) == 0 ? 0 : -1;
    }
    reap();
    if (n_abandoned >= NET_RESOLVE_MAX_HANGING)
        return 1;
    pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    snprintf(p->name, sizeof(p->name), "%s", host);
    p->hints = hints;
    p->cb.ar_name = p->name;
    p->cb.ar_request = &p->hints;
    struct gaicb *list[1] = { &p->cb };
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0) {
        free(p);
        return -1;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int limit = resolve_timeout();
    while (gai_error(&p->cb) == EAI_INPROGRESS) {
        long left = limit - ms_since(&t0);
        if (left <= 0) {
            int c = gai_cancel(&p->cb);
            if (c == EAI_ALLDONE)
                break;                  /* it finished meanwhile */
            if (c == EAI_CANCELED) {
                free(p);                /* still queued: glibc has let go of it */
            } else {
                p->next = abandoned;    /* its thread still writes to it */
                abandoned = p;
                n_abandoned++;
            }
            return 1;
        }
        struct timespec ts = { left / 1000, (left % 1000) * 1000000L };
        /* done, a timeout (EAI_SYSTEM in glibc 2.36, not the EAI_AGAIN of its manual) or
         * a signal (EAI_INTR): whichever, the loop asks gai_error and the clock */
        (void) gai_suspend((const struct gaicb *const *) list, 1, &ts);
    }
    int rc = gai_error(&p->cb);
    *res = p->cb.ar_result;
    free(p);
    if (rc != 0 && *res != NULL) {
        freeaddrinfo(*res);
        *res = NULL;
    }
    return rc == 0 ? 0 : -1;
}

int net_url_check(const char *url, int allow_private, fl_url *out, char *err, size_t errsz)
{
    const char *p;
    memset(out, 0, sizeof(*out));
    if (strncasecmp(url, "http://", 7) == 0) {
        strcpy(out->scheme, "http");
        out->port = 80;
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        strcpy(out->scheme, "https");
        out->port = 443;
        p = url + 8;
    } else {
        return fail(err, errsz, "only http and https URLs are allowed");
    }
    size_t alen = strcspn(p, "/?#");
    if (alen == 0 || memchr(p, '@', alen) != NULL)
        return fail(err, errsz, "the URL has no host, or carries credentials");
    for (const char *c = url; *c; c++)
        if ((unsigned char) *c <= 0x20 || *c == 0x7f || *c == '\\')
            return fail(err, errsz, "the URL contains spaces or control characters");
    const char *host = p, *hend;
    const char *portp = NULL;
    if (*p == '[') {
        hend = memchr(p, ']', alen);
        if (hend == NULL)
            return fail(err, errsz, "malformed IPv6 address");
        host = p + 1;
        if (hend + 1 < p + alen) {
            if (hend[1] != ':')
                return fail(err, errsz, "malformed authority");
            portp = hend + 2;
        }
    } else {
        hend = memchr(p, ':', alen);
        if (hend != NULL)
            portp = hend + 1;
        else
            hend = p + alen;
    }
    size_t hlen = (size_t) (hend - host);
    if (hlen == 0 || hlen >= sizeof(out->host))
        return fail(err, errsz, "bad host");
    memcpy(out->host, host, hlen);
    unsigned char bin[16];
    out->literal = inet_pton(AF_INET, out->host, bin) == 1 || inet_pton(AF_INET6, out->host, bin) == 1;
    if (portp != NULL) {
        char *end;
        long port = strtol(portp, &end, 10);
        if (end != p + alen || port < 1 || port > 65535)
            return fail(err, errsz, "bad port");
        out->port = (int) port;
    }

    struct addrinfo *res = NULL;
    int lr = lookup(out->host, out->literal, &res);
    if (lr == 1) {
        snprintf(err, errsz, "the host did not resolve within %d ms", resolve_timeout());
        return -1;
    }
    if (lr != 0 || res == NULL)
        return fail(err, errsz, "the host does not resolve");
    int refused = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        char a[64];
        const void *src = ai->ai_family == AF_INET
            ? (const void *) &((struct sockaddr_in *) ai->ai_addr)->sin_addr
            : (const void *) &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr;
        if (inet_ntop(ai->ai_family, src, a, sizeof(a)) == NULL)
            continue;
        if (!allow_private && net_addr_private(a))
            refused = 1;
        if (out->addr[0] == '\0')
            snprintf(out->addr, sizeof(out->addr), "%s", a);
    }
    freeaddrinfo(res);
    if (refused)
        return fail(err, errsz, "the host resolves to a private, loopback or link-local address");
    if (out->addr[0] == '\0')
        return fail(err, errsz, "the host does not resolve");
    return 0;
}
