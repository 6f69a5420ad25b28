-- 0001_core: roles, tenants, credentials, tenant context, events outbox.
-- Applied once, in one transaction, by the database owner (superuser or BYPASSRLS:
-- the owner's admin and DBA functions must see every tenant; FORCE RLS applies to it otherwise).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fl_api') THEN
        CREATE ROLE fl_api LOGIN;           -- FastCGI workers; no password (peer/cert auth)
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fl_report') THEN
        CREATE ROLE fl_report LOGIN;        -- read-only reporting for DBAs
    END IF;
END
$$;

-- Function EXECUTE is revoked from PUBLIC function by function in sql/functions/ (not with
-- ALTER DEFAULT PRIVILEGES, which would also hit extensions such as pgtap created later).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO fl_api, fl_report;

-- Tenant context: transaction-local GUC set by every API function (fl_set_tenant).
-- Defined here because the RLS policies below reference it.
CREATE OR REPLACE FUNCTION fl_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('fl.tenant_id', true), '')::uuid $$;

-- Returns set_config's text so that the planner inlines it: a SQL function whose
-- declared type differs from its body's (void here) runs through the SQL-function
-- executor and is planned again on every call (~40 us per API call, measured).
CREATE OR REPLACE FUNCTION fl_set_tenant(p uuid) RETURNS text
    LANGUAGE sql VOLATILE
AS $$ SELECT set_config('fl.tenant_id', coalesce(p::text, ''), true) $$;

GRANT EXECUTE ON FUNCTION fl_current_tenant() TO fl_api, fl_report;
GRANT EXECUTE ON FUNCTION fl_set_tenant(uuid) TO fl_api, fl_report;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (btrim(name) <> ''),
    factor_id   text NOT NULL UNIQUE CHECK (btrim(factor_id) <> ''),   -- Auth-FactorID
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants,
    family        text NOT NULL CHECK (family IN ('posting','factoring','leads','quotes','financing')),
    public_id     text NOT NULL CHECK (btrim(public_id) <> ''),
    secret_hash   bytea NOT NULL CHECK (octet_length(secret_hash) = 32),  -- sha256, computed by C
    label         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    rate_per_sec  numeric NOT NULL DEFAULT 1 CHECK (rate_per_sec > 0),
    burst         int NOT NULL DEFAULT 5 CHECK (burst > 0),
    webhook_url   text,
    UNIQUE (family, public_id)
);
CREATE INDEX credentials_tenant_idx ON credentials (tenant_id);

-- Outbox: written in the same transaction as the change, delivered later as webhooks.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants,
    family      text NOT NULL,
    type        text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant_idx ON events (tenant_id, id);

CREATE OR REPLACE FUNCTION fl_events_notify() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('fl_events', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION fl_events_notify();

-- Row-level security. credentials: only the owner's SECURITY DEFINER functions and fl_report.
ALTER TABLE credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY credentials_report ON credentials FOR SELECT TO fl_report USING (true);

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY events_api ON events TO fl_api
    USING (tenant_id = fl_current_tenant()) WITH CHECK (tenant_id = fl_current_tenant());
CREATE POLICY events_report ON events FOR SELECT TO fl_report USING (true);

GRANT SELECT, INSERT ON events TO fl_api;
GRANT USAGE ON SEQUENCE events_id_seq TO fl_api;
GRANT SELECT ON tenants, events TO fl_report;
-- No secret hashes for reporting.
GRANT SELECT (id, tenant_id, family, public_id, label, created_at, revoked_at,
              rate_per_sec, burst, webhook_url) ON credentials TO fl_report;
