/* leads: the Forward Financing Partner API over Factorline.  nginx strips
 * both the /leads prefix and an optional /v1, so one table serves both. */
#include "leads.h"

static const fl_route routes[] = {
    { "POST", "/lead", leads_create, 0, NULL },
    { "POST", "/attachment", leads_attachment, 0, NULL },
    { "GET", "/deal_status/{lead_id}", leads_deal_status, 0, NULL },
    { "POST", "/webhook", leads_webhook, 0, NULL },
    { "POST", "/trigger_webhook", leads_trigger_webhook, 0, NULL },
};

static const fl_family family = {
    .name = "leads",
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .body_max = LEADS_MAX_ATTACHMENT,
    .https_only = 1,                        /* partners send SSNs */
    .authenticate = leads_auth,
    .error = leads_error,
};

int main(int argc, char **argv)
{
    return serve_main(&family, argc, argv);
}
