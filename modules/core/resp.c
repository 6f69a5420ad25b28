#include "resp.h"

#include <stdio.h>
#include <string.h>

const char *resp_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

void resp_init(fl_resp *s, fl_arena *a)
{
    s->status = 500;
    s->content_type = "application/json";
    buf_init(&s->headers, a, 128);
    buf_init(&s->body, a, 1024);
    s->sent = 0;
}

void resp_header(fl_resp *s, const char *name, const char *value)
{
    buf_printf(&s->headers, "%s: %s\r\n", name, value);
}

void resp_body(fl_resp *s, int status, const char *content_type, const char *body, size_t len)
{
    s->status = status;
    s->content_type = content_type;
    s->body.len = 0;
    buf_append(&s->body, body, len);
}

void resp_json(fl_resp *s, int status, const char *json)
{
    resp_body(s, status, "application/json", json, strlen(json));
}

int resp_send(fl_resp *s, FCGX_Stream *out)
{
    if (s->sent)
        return 0;
    s->sent = 1;
    /* libfcgi's own printf knows no %zu: format here, write once */
    char head[512];
    int n = snprintf(head, sizeof(head), "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
                     s->status, resp_reason(s->status), s->content_type, s->body.len);
    if (n < 0 || (size_t) n >= sizeof(head) || FCGX_PutStr(head, n, out) < 0)
        return -1;
    if (s->headers.len && FCGX_PutStr(s->headers.data, (int) s->headers.len, out) < 0)
        return -1;
    if (FCGX_PutStr("\r\n", 2, out) < 0)
        return -1;
    if (s->body.len && FCGX_PutStr(s->body.data, (int) s->body.len, out) < 0)
        return -1;
    return 0;
}
