#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_family = "-";
static int log_pid;              /* getpid() is a system call each time: once per process */

void log_init(const char *family)
{
    log_family = family;
    log_pid = (int) getpid();
    /* one write(2) per line, so lines from several workers never interleave */
    setvbuf(stderr, NULL, _IOLBF, 8192);
}

static int pid(void)
{
    return log_pid ? log_pid : (int) getpid();
}

static void stamp(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Writes s as JSON string content (no quotes) into f: at most max bytes of it
 * (cut at a character's start, "..." added), and bytes of text that is not
 * UTF-8 as \u00XX, so that every line is one JSON document, shorter than
 * stderr's buffer, and goes out in one write. */
static void put_escaped_n(FILE *f, const char *s, size_t max)
{
    if (s == NULL)
        return;
    int utf8 = req_utf8_valid(s);
    size_t i = 0;
    for (; s[i]; i++) {
        unsigned char c = (unsigned char) s[i];
        if (i >= max && (!utf8 || (c & 0xc0) != 0x80)) {
            fputs("...", f);
            return;
        }
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

static void put_escaped(FILE *f, const char *s)
{
    put_escaped_n(f, s, 1024);
}

void log_request(const fl_req *r, int status)
{
    char ts[40];
    stamp(ts, sizeof(ts));
    long us = req_now_us() - r->start_us;
    fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"info\",\"family\":\"%s\",\"pid\":%d,\"request_id\":\"",
            ts, log_family, pid());
    put_escaped(stderr, r->request_id);
    fputs("\",\"tenant\":\"", stderr);
    put_escaped(stderr, r->tenant_id ? r->tenant_id : "-");
    fputs("\",\"method\":\"", stderr);
    put_escaped_n(stderr, r->method, 32);
    fputs("\",\"route\":\"", stderr);
    put_escaped_n(stderr, r->route ? r->route : r->path, 256);   /* an unknown path is the client's */
    fprintf(stderr, "\",\"status\":%d,\"duration_ms\":%.3f}\n", status, us / 1000.0);
}

void log_msg(const char *level, const char *request_id, const char *fmt, ...)
{
    char ts[40], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    stamp(ts, sizeof(ts));
    fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"family\":\"%s\",\"pid\":%d,\"request_id\":\"",
            ts, level, log_family, pid());
    put_escaped(stderr, request_id ? request_id : "-");
    fputs("\",\"msg\":\"", stderr);
    put_escaped(stderr, msg);
    fputs("\"}\n", stderr);
}
