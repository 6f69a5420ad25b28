/* leads: the Forward Financing Partner API dialect. */
#ifndef FL_LEADS_H
#define FL_LEADS_H
#include "fl.h"

#define LEADS_MAX_ATTACHMENT (25 * 1024 * 1024)

int leads_auth(fl_req *r);
void leads_error(fl_req *r, int status, const char *reason);
int leads_create(fl_req *r, const fl_route *route);
int leads_attachment(fl_req *r, const fl_route *route);
int leads_deal_status(fl_req *r, const fl_route *route);
int leads_webhook(fl_req *r, const fl_route *route);
int leads_trigger_webhook(fl_req *r, const fl_route *route);

#endif
