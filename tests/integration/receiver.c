/* fl-receiver: a small HTTP/1.1 server on 127.0.0.1 that receives webhook
 * deliveries for the tests and the benchmark.  One thread per connection,
 * keep-alive, Content-Length bodies only (what the worker sends).
 *
 *   fl-receiver [--port N] [--log FILE] [--status-seq 500,200] [--delay-ms N]
 *               [--hang-first-ms N] [--answer-bytes N] [--location URL]
 *
 *   --port N           listen on N; 0 (default) picks a free port.  The port is
 *                      printed on stdout as one line once the socket listens.
 *   --log FILE         one JSON line per request, written when the request has
 *                      been read (before the answer):
 *                      {"n":1,"t_ms":..,"peer_port":..,"method":"POST","path":"/x",
 *                       "event_id":..,"event_type":..,"user_agent":..,"fl_sig":..,
 *                       "iso_sig":..,"content_type":..,"body":".."}
 *                      (headers absent from the request are null).
 *   --status-seq LIST  answers the n-th request (over all connections) with the
 *                      n-th status of LIST, then the last one forever (default 200).
 *   --delay-ms N       waits N ms before every answer.
 *   --ipv6 1           listens on [::1] instead of 127.0.0.1.
 *   --bind ADDR        listens on the IPv4 address ADDR instead of 127.0.0.1.
 *   --hang-first-ms N  waits N ms before answering the first request only.
 *   --answer-bytes N   answers with a body of N bytes (default: a short JSON).
 *   --location URL     the Location of a 3xx answer (default http://127.0.0.1:9/elsewhere).
 *
 * SIGTERM or SIGINT: exit 0 at once (requests in flight are dropped). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (16 * 1024 * 1024)
#define MAX_SEQ 64

static int log_fd = -1;
static int status_seq[MAX_SEQ] = { 200 };
static int nstatus = 1;
static int ipv6;
static struct in_addr bind_addr = { .s_addr = 0 };  /* 0: 127.0.0.1 */
static long delay_ms, hang_first_ms, answer_bytes = -1;
static const char *location = "http://127.0.0.1:9/elsewhere";
static atomic_long nrequests;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_stop(int sig)
{
    (void) sig;
    _exit(0);   /* no atexit work: the log is written with write(2) per line */
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A growable string; the caller frees data. */
typedef struct sbuf {
    char *data;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            perror("fl-receiver");
            _exit(2);
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* s (n bytes) as a JSON string, or null; lossless for any bytes but NUL. */
static void sb_json(sbuf *b, const char *s, size_t n)
{
    if (s == NULL) {
        sb_str(b, "null");
        return;
    }
    sb_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char) c;
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            sb_add(b, esc, 6);
        } else {
            sb_add(b, (const char *) &s[i], 1);
        }
    }
    sb_str(b, "\"");
}

typedef struct hdr {
    const char *value;
    size_t len;
} hdr;

/* The value of header name in the head (CRLF lines), or {NULL, 0}. */
static hdr find_header(const char *head, const char *name)
{
    hdr h = { NULL, 0 };
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p != NULL && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2;
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            break;
        if ((size_t) (end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            h.value = v;
            h.len = (size_t) (ve - v);
            return h;
        }
        p = end;
    }
    return h;
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += k;
        n -= (size_t) k;
    }
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static int answer(int fd, int status, int keep)
{
    char out[1024];
    if (answer_bytes >= 0) {
        int n = snprintf(out, sizeof(out), "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %ld\r\n%s\r\n", status, reason(status), answer_bytes,
                         keep ? "" : "Connection: close\r\n");
        if (send_all(fd, out, (size_t) n) < 0)
            return -1;
        char chunk[8192];
        memset(chunk, 'x', sizeof(chunk));
        for (long left = answer_bytes; left > 0; left -= (long) sizeof(chunk))
            if (send_all(fd, chunk, left < (long) sizeof(chunk) ? (size_t) left : sizeof(chunk)) < 0)
                return -1;
        return 0;
    }
    const char *body = status >= 200 && status < 300 ? "{\"ok\":true}" : "{\"ok\":false}";
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s%s%s%s\r\n%s",
                     status, reason(status), status == 204 ? (size_t) 0 : strlen(body),
                     status / 100 == 3 ? "Location: " : "", status / 100 == 3 ? location : "",
                     status / 100 == 3 ? "\r\n" : "",
                     keep ? "" : "Connection: close\r\n", status == 204 ? "" : body);
    return send_all(fd, out, (size_t) n);
}

static void log_request(long n, long long t, int peer_port, const char *head, const char *body,
                        size_t blen)
{
    if (log_fd < 0)
        return;
    sbuf b = { 0 };
    char num[96];
    const char *sp1 = strchr(head, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    snprintf(num, sizeof(num), "{\"n\":%ld,\"t_ms\":%lld,\"peer_port\":%d,\"method\":", n, t, peer_port);
    sb_str(&b, num);
    sb_json(&b, head, sp1 ? (size_t) (sp1 - head) : 0);
    sb_str(&b, ",\"path\":");
    sb_json(&b, sp1 ? sp1 + 1 : "", sp1 && sp2 ? (size_t) (sp2 - sp1 - 1) : 0);
    static const char *const names[][2] = {
        { "event_id", "Factorline-Event-Id" },
        { "event_type", "Factorline-Event-Type" },
        { "user_agent", "User-Agent" },
        { "fl_sig", "Factorline-Signature" },
        { "iso_sig", "Isoamp-Signature" },
        { "content_type", "Content-Type" },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        hdr h = find_header(head, names[i][1]);
        sb_str(&b, ",\"");
        sb_str(&b, names[i][0]);
        sb_str(&b, "\":");
        sb_json(&b, h.value, h.len);
    }
    sb_str(&b, ",\"body\":");
    sb_json(&b, body, blen);
    sb_str(&b, "}\n");
    /* one write per line under a lock: lines never interleave */
    pthread_mutex_lock(&log_lock);
    for (size_t off = 0; off < b.len;) {
        ssize_t k = write(log_fd, b.data + off, b.len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        off += (size_t) k;
    }
    pthread_mutex_unlock(&log_lock);
    free(b.data);
}

typedef struct conn {
    int fd;
    int peer_port;
} conn;

/* Serves one connection until the peer closes it or sends garbage. */
static void *serve(void *arg)
{
    conn *c = arg;
    sbuf in = { 0 };
    char buf[16384];
    int keep = 1;

    while (keep) {
        char *eoh;
        /* read until the end of the head */
        while ((eoh = in.data ? strstr(in.data, "\r\n\r\n") : NULL) == NULL) {
            if (in.len > MAX_HEAD)
                goto out;
            ssize_t k = recv(c->fd, buf, sizeof(buf), 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                goto out;
            sb_add(&in, buf, (size_t) k);
        }
        size_t head_len = (size_t) (eoh - in.data) + 4;
        char *head = malloc(head_len + 1);
        if (head == NULL)
            goto out;
        memcpy(head, in.data, head_len);
        head[head_len] = '\0';

        hdr te = find_header(head, "Transfer-Encoding");
        hdr cl = find_header(head, "Content-Length");
        hdr cn = find_header(head, "Connection");
        long long blen = cl.value ? strtoll(cl.value, NULL, 10) : 0;
        if (te.value != NULL || blen < 0 || blen > MAX_BODY) {
            answer(c->fd, te.value ? 411 : 413, 0);
            free(head);
            goto out;
        }
        if (cn.value && cn.len == 5 && strncasecmp(cn.value, "close", 5) == 0)
            keep = 0;
        while (in.len < head_len + (size_t) blen) {
            ssize_t k = recv(c->fd, buf, sizeof(buf), 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                free(head);
                goto out;
            }
            sb_add(&in, buf, (size_t) k);
        }
        long n = atomic_fetch_add(&nrequests, 1) + 1;
        int status = status_seq[n - 1 < nstatus ? n - 1 : nstatus - 1];
        log_request(n, now_ms(), c->peer_port, head, in.data + head_len, (size_t) blen);
        free(head);

        if (n == 1 && hang_first_ms > 0)
            sleep_ms(hang_first_ms);
        if (delay_ms > 0)
            sleep_ms(delay_ms);
        if (answer(c->fd, status, keep) < 0)
            goto out;
        /* keep what follows (a pipelined request) */
        size_t used = head_len + (size_t) blen;
        memmove(in.data, in.data + used, in.len - used);
        in.len -= used;
        in.data[in.len] = '\0';
    }
out:
    close(c->fd);
    free(in.data);
    free(c);
    return NULL;
}

static int parse_seq(const char *s)
{
    nstatus = 0;
    while (*s && nstatus < MAX_SEQ) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 100 || v > 599)
            return -1;
        status_seq[nstatus++] = (int) v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return -1;
    }
    return nstatus > 0 ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: fl-receiver [--port N] [--log FILE] [--status-seq 500,200] "
                    "[--delay-ms N] [--ipv6 1] [--bind ADDR] [--hang-first-ms N] [--answer-bytes N] [--location URL]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            return usage();
        if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--log") == 0) {
            log_fd = open(v, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (log_fd < 0) {
                perror(v);
                return 1;
            }
        } else if (strcmp(a, "--status-seq") == 0) {
            if (parse_seq(v) < 0)
                return usage();
        } else if (strcmp(a, "--delay-ms") == 0)
            delay_ms = atol(v);
        else if (strcmp(a, "--ipv6") == 0)
            ipv6 = atoi(v);
        else if (strcmp(a, "--bind") == 0) {
            if (inet_pton(AF_INET, v, &bind_addr) != 1)
                return usage();
        }
        else if (strcmp(a, "--hang-first-ms") == 0)
            hang_first_ms = atol(v);
        else if (strcmp(a, "--answer-bytes") == 0)
            answer_bytes = atol(v);
        else if (strcmp(a, "--location") == 0 && strlen(v) < 512 && strpbrk(v, "\r\n") == NULL)
            location = v;
        else
            return usage();
        i++;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;
    memset(&ss, 0, sizeof(ss));
    if (ipv6) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short) port);
        sin6->sin6_addr = in6addr_loopback;
    } else {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short) port);
        sin->sin_addr.s_addr = bind_addr.s_addr ? bind_addr.s_addr : htonl(INADDR_LOOPBACK);
    }
    socklen_t sl = ipv6 ? sizeof(*sin6) : sizeof(*sin);
    if (ls < 0 || bind(ls, (struct sockaddr *) &ss, sl) < 0 || listen(ls, 512) < 0) {
        perror("fl-receiver: listen");
        return 1;
    }
    sl = sizeof(ss);
    getsockname(ls, (struct sockaddr *) &ss, &sl);
    printf("%d\n", ntohs(ipv6 ? sin6->sin6_port : sin->sin_port));
    fflush(stdout);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof(peer);
        int fd = accept4(ls, (struct sockaddr *) &peer, &pl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
                if (errno == EMFILE || errno == ENFILE)
                    sleep_ms(10);
                continue;
            }
            perror("fl-receiver: accept");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn *c = malloc(sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->peer_port = ntohs(peer.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &peer)->sin6_port
                                                        : ((struct sockaddr_in *) &peer)->sin_port);
        pthread_t t;
        if (pthread_create(&t, &attr, serve, c) != 0) {
            close(fd);
            free(c);
        }
    }
}
