-- 0003_webhooks: subscriptions, deliveries and attempts for the webhook worker.
-- Events (0001) fan out into one delivery per matching subscription, in the same
-- transaction as the event; the worker claims due deliveries with SKIP LOCKED.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fl_worker') THEN
        CREATE ROLE fl_worker LOGIN;        -- the webhook worker: EXECUTE on its functions only
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO fl_worker;

CREATE TABLE webhook_subscriptions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants,
    family         text NOT NULL CHECK (family IN ('posting','factoring','leads','quotes','financing')),
    credential_id  uuid REFERENCES credentials,        -- leads: one URL per partner credential
    name           text,
    url            text NOT NULL CHECK (url ~* '^https?://' AND length(url) <= 2048),
    event_types    text[],                             -- NULL: every event of the family
    secret_enc     text NOT NULL,                      -- signing secret, AES-256-GCM sealed by C
    signature      text NOT NULL DEFAULT 'factorline' CHECK (signature IN ('factorline','isoamp')),
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_match ON webhook_subscriptions (tenant_id, family) WHERE active;

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants,
    event_id         bigint NOT NULL REFERENCES events,
    subscription_id  uuid REFERENCES webhook_subscriptions,
    url              text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending','delivering','delivered','dead')),
    attempts         int NOT NULL DEFAULT 0,
    -- when it is due: for 'delivering' the end of the claimer's lease, after
    -- which another worker may take it (at-least-once)
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    window_start     timestamptz NOT NULL DEFAULT now(),  -- retries stop 3 days after this
    last_status      int,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state IN ('pending','delivering');
CREATE INDEX webhook_deliveries_sub ON webhook_deliveries (subscription_id, id);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, id);

CREATE TABLE webhook_attempts (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants,
    delivery_id   bigint NOT NULL REFERENCES webhook_deliveries,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    status_code   int,                                 -- NULL: no HTTP answer
    latency_ms    int NOT NULL,
    error         text CHECK (length(error) <= 500)
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

ALTER TABLE webhook_subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_subscriptions FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;

CREATE POLICY webhook_subscriptions_api ON webhook_subscriptions TO fl_api
    USING (tenant_id = fl_current_tenant()) WITH CHECK (tenant_id = fl_current_tenant());
CREATE POLICY webhook_deliveries_api ON webhook_deliveries TO fl_api
    USING (tenant_id = fl_current_tenant()) WITH CHECK (tenant_id = fl_current_tenant());
CREATE POLICY webhook_attempts_api ON webhook_attempts TO fl_api
    USING (tenant_id = fl_current_tenant()) WITH CHECK (tenant_id = fl_current_tenant());
CREATE POLICY webhook_subscriptions_report ON webhook_subscriptions FOR SELECT TO fl_report USING (true);
CREATE POLICY webhook_deliveries_report ON webhook_deliveries FOR SELECT TO fl_report USING (true);
CREATE POLICY webhook_attempts_report ON webhook_attempts FOR SELECT TO fl_report USING (true);

GRANT SELECT, INSERT, UPDATE ON webhook_subscriptions TO fl_api;
GRANT SELECT, INSERT ON webhook_deliveries TO fl_api;
GRANT USAGE ON SEQUENCE webhook_deliveries_id_seq TO fl_api;
GRANT SELECT ON webhook_attempts TO fl_api;
GRANT SELECT (id, tenant_id, family, credential_id, name, url, event_types, signature, active,
              created_at, updated_at) ON webhook_subscriptions TO fl_report;
GRANT SELECT ON webhook_deliveries, webhook_attempts TO fl_report;
