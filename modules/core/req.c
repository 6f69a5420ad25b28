#include "req.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

long req_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *req_decode(fl_arena *a, const char *s, size_t n, int plus_space)
{
    char *out = arena_alloc(a, n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n)
                return NULL;
            h = hexval((unsigned char) s[i + 1]);
            l = hexval((unsigned char) s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                return NULL;
            *o++ = (char) (h * 16 + l);
            i += 2;
        } else if (s[i] == '+' && plus_space) {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

int req_parse_query(fl_req *r, const char *qs)
{
    r->nquery = 0;
    while (qs != NULL && *qs) {
        const char *amp = strchr(qs, '&');
        size_t len = amp ? (size_t) (amp - qs) : strlen(qs);
        if (len > 0) {
            const char *eq = memchr(qs, '=', len);
            size_t nlen = eq ? (size_t) (eq - qs) : len;
            if (r->nquery == REQ_MAX_PARAMS)
                return -400;
            char *name = req_decode(r->arena, qs, nlen, 1);
            char *value = eq ? req_decode(r->arena, eq + 1, len - nlen - 1, 1) : arena_strdup(r->arena, "");
            if (name == NULL || value == NULL || !req_utf8_valid(name) || !req_utf8_valid(value))
                return -400;
            r->query[r->nquery].name = name;
            r->query[r->nquery].value = value;
            r->nquery++;
        }
        qs = amp ? amp + 1 : NULL;
    }
    return 0;
}

static const char *param(fl_req *r, const char *name)
{
    const char *v = FCGX_GetParam(name, r->fcgi->envp);
    return v ? arena_strdup(r->arena, v) : NULL;
}

int req_init(fl_req *r, FCGX_Request *fcgi, fl_arena *a)
{
    memset(r, 0, sizeof(*r));
    r->fcgi = fcgi;
    r->arena = a;
    r->start_us = req_now_us();
    r->method = param(r, "REQUEST_METHOD");
    r->path = param(r, "FL_PATH");
    if (r->path == NULL || *r->path == '\0')
        r->path = param(r, "DOCUMENT_URI");
    if (r->method == NULL)
        r->method = "GET";
    if (r->path == NULL)
        r->path = "/";
    r->request_id = param(r, "REQUEST_ID");
    if (r->request_id == NULL)
        r->request_id = "-";
    r->content_length_rc = req_content_length(FCGX_GetParam("CONTENT_LENGTH", fcgi->envp), SIZE_MAX,
                                              &r->content_length);
    const char *https = FCGX_GetParam("HTTPS", fcgi->envp);
    r->tls = https != NULL && strcasecmp(https, "on") == 0;
    r->query_rc = req_parse_query(r, FCGX_GetParam("QUERY_STRING", fcgi->envp));
    return r->query_rc;
}

int req_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *) s;
    while (*p) {
        unsigned c = *p;
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;      /* the allowed range of the second byte */
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0;                  /* overlong */
            else if (c == 0xED)
                hi = 0x9F;                  /* UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90;                  /* overlong */
            else if (c == 0xF4)
                hi = 0x8F;                  /* past U+10FFFF */
        } else
            return 0;
        if (p[1] < lo || p[1] > hi)
            return 0;
        for (size_t i = 2; i <= n; i++)
            if (p[i] < 0x80 || p[i] > 0xBF)
                return 0;
        p += n + 1;
    }
    return 1;
}

int req_content_length(const char *cl, size_t max, size_t *out)
{
    size_t n = 0;

    *out = 0;
    if (cl == NULL)
        return 0;
    for (const char *p = cl; *p; p++) {
        if (!isdigit((unsigned char) *p))
            return -400;
        size_t d = (size_t) (*p - '0');
        if (d > max || n > (max - d) / 10)      /* n * 10 + d > max, without overflow */
            return -413;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

int req_read_body(fl_req *r, size_t max)
{
    size_t n = r->content_length;

    r->body = arena_strdup(r->arena, "");
    r->body_len = 0;
    if (r->content_length_rc < 0)
        return r->content_length_rc;
    if (n > max)
        return -413;
    if (n == 0)
        return 0;
    r->body = arena_alloc(r->arena, n + 1);
    if (r->body == NULL)
        return -500;
    size_t got = 0;
    while (got < n) {
        int k = FCGX_GetStr(r->body + got, (int) (n - got), r->fcgi->in);
        if (k <= 0)
            break;
        got += (size_t) k;
    }
    r->body[got] = '\0';
    r->body_len = got;
    return got == n ? 0 : -400;
}

int req_input_drained(fl_req *r)
{
    if (r->content_length_rc < 0)
        return 0;
    /* a body left unread (an answer given before it was read): not drained */
    if (r->content_length > 0 && (r->body == NULL || r->body_len != r->content_length))
        return 0;
    /* next comes the end of the input: nginx sends it with the request */
    return FCGX_GetChar(r->fcgi->in) == EOF && FCGX_GetError(r->fcgi->in) == 0;
}

const char *req_header(fl_req *r, const char *name)
{
    char key[128] = "HTTP_";
    size_t i = 5;
    for (const char *p = name; *p && i < sizeof(key) - 1; p++)
        key[i++] = *p == '-' ? '_' : (char) toupper((unsigned char) *p);
    key[i] = '\0';
    if (strcmp(key, "HTTP_CONTENT_TYPE") == 0)
        return FCGX_GetParam("CONTENT_TYPE", r->fcgi->envp);
    return FCGX_GetParam(key, r->fcgi->envp);
}

const char *req_query(const fl_req *r, const char *name)
{
    for (size_t i = 0; i < r->nquery; i++)
        if (strcasecmp(r->query[i].name, name) == 0)
            return r->query[i].value;
    return NULL;
}

const char *req_path_param(const fl_req *r, const char *name)
{
    for (size_t i = 0; i < r->npath_params; i++)
        if (strcmp(r->path_params[i].name, name) == 0)
            return r->path_params[i].value;
    return NULL;
}
