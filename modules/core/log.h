/* Structured log: one JSON object per line on stderr. */
#ifndef FL_LOG_H
#define FL_LOG_H
#include "req.h"

void log_init(const char *family);
/* The access line for a finished request: id, tenant, route, status, duration. */
void log_request(const fl_req *r, int status);
/* An event line: level "info", "warn" or "error"; msg is plain text. */
void log_msg(const char *level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
