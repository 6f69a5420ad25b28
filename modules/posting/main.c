/* posting: FactorCloud api_factor over Factorline. */
#include "posting.h"

static const fl_route routes[] = {
    { "POST", "/api_factor/test-post/", posting_test_post, 0, NULL },
    { "POST", "/api_factor/create-client/", posting_create, 0, &op_create_client },
    { "GET", "/api_factor/get-client/", posting_get, 0, &op_get_client },
    { "POST", "/api_factor/create-debtor/", posting_create, 0, &op_create_debtor },
    { "GET", "/api_factor/get-client-debtor/", posting_get, 0, &op_get_client_debtor },
    { "GET", "/api_factor/get-debtor-master/", posting_get, 0, &op_get_debtor_master },
    { "POST", "/api_factor/create-vendor/", posting_create, 0, &op_create_vendor },
    { "POST", "/api_factor/create-sched/", posting_create, 0, &op_create_sched },
    { "GET", "/api_factor/get-sched/", posting_get, 0, &op_get_sched },
    { "POST", "/api_factor/create-sched-broker/", posting_create, 0, &op_create_sched_broker },
    { "GET", "/api_factor/get-broker-sched/", posting_get, 0, &op_get_broker_sched },
    { "GET", "/api_factor/get-invoice/", posting_get, 0, &op_get_invoice },
    { "POST", "/api_factor/post-payments/", posting_post_payments, 0, &op_post_payments },
};

static const fl_family family = {
    .name = "posting",
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .body_max = 10 * 1024 * 1024,
    .authenticate = posting_auth,
    .error = posting_error,
};

int main(int argc, char **argv)
{
    return serve_main(&family, argc, argv);
}
