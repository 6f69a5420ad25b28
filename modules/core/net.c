#include "net.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

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
        || (a[0] == 192 && a[1] == 0 && a[2] == 2)      /* 192.0.2/24 documentation */
        || (a[0] == 198 && a[1] == 51 && a[2] == 100)   /* 198.51.100/24 documentation */
        || (a[0] == 203 && a[1] == 0 && a[2] == 113)    /* 203.0.113/24 documentation */
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
    static const unsigned char translated[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0 };
    if (memcmp(a, translated, 12) == 0)                 /* ::ffff:0:a.b.c.d, IPv4-translated */
        return v4_private(a + 12);
    if (a[0] == 0 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b) {
        if (memcmp(a + 4, zero, 8) == 0)                /* 64:ff9b::/96 NAT64 */
            return v4_private(a + 12);
        if (a[4] == 0 && a[5] == 1)                     /* 64:ff9b:1::/48 local-use NAT64 */
            return 1;
    }
    if (a[0] == 0x20 && a[1] == 0x02)                   /* 2002::/16 6to4: the IPv4 in bits 16-47 */
        return v4_private(a + 2);
    return (a[0] & 0xfe) == 0xfc                        /* fc00::/7 unique-local (and fd00:ec2::254) */
        || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)      /* fe80::/10 link-local */
        || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)      /* fec0::/10 site-local */
        || a[0] == 0xff                                 /* multicast */
        || (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8); /* documentation */
}

int net_sockaddr_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_private((const unsigned char *) &((const struct sockaddr_in *) sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_private((const unsigned char *) &((const struct sockaddr_in6 *) sa)->sin6_addr);
    return 1;                                           /* not an internet address: refuse */
}

static int fail(char *err, size_t errsz, const char *msg)
{
    snprintf(err, errsz, "%s", msg);
    return -1;
}

int net_url_has_credentials(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    return memchr(p, '@', strcspn(p, "/?#")) != NULL;
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
    if (alen == 0 || net_url_has_credentials(url))
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
    /* no percent-encoding in a host: curl would decode "127%2e0%2e0%2e1" to an address
     * the numeric check below never saw (and a zone id, "[fe80::1%25eth0]", is local) */
    if (strchr(out->host, '%') != NULL)
        return fail(err, errsz, "bad host");
    if (portp != NULL) {
        char *end;
        long port = strtol(portp, &end, 10);
        if (end != p + alen || port < 1 || port > 65535)
            return fail(err, errsz, "bad port");
        out->port = (int) port;
    }

    /* a host that is an address, in any form the C library reads as one ("2130706433" and
     * "0x7f.1" are 127.0.0.1): checked now.  A name is not looked up here: the address a
     * connection goes to is checked when it is made (net_sockaddr_private). */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(out->host, NULL, &hints, &res) != 0)
        return 0;
    int refused = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
        if (!allow_private && net_sockaddr_private(ai->ai_addr))
            refused = 1;
    freeaddrinfo(res);
    if (refused)
        return fail(err, errsz, NET_REFUSED_PRIVATE);
    return 0;
}
