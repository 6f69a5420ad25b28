/* Buffered responses: a handler sets status, headers and body; serve.c sends
 * them once, after the handler returns. */
#ifndef FL_RESP_H
#define FL_RESP_H
#include "req.h"

typedef struct fl_resp {
    int status;
    const char *content_type;
    fl_buf headers;            /* extra "Name: value\r\n" lines */
    fl_buf body;
    int sent;
} fl_resp;

void resp_init(fl_resp *s, fl_arena *a);
void resp_header(fl_resp *s, const char *name, const char *value);
/* Sets the status and a body copied into the arena. */
void resp_body(fl_resp *s, int status, const char *content_type, const char *body, size_t len);
void resp_json(fl_resp *s, int status, const char *json);
/* Writes status line, headers and body to the FastCGI stream. */
int resp_send(fl_resp *s, FCGX_Stream *out);
const char *resp_reason(int status);

#endif
