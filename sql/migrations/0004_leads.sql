-- 0004_leads: the leads family (Forward Financing Partner API).
-- A tenant is the funder; its partners (ISOs, brokers) are its leads credentials.
-- A partner sees only its own leads, on top of the tenant isolation every table has.
-- The lead's children carry tenant_id for row-level security but no foreign key to
-- tenants: their lead_id key already ties them to a lead, which references its tenant,
-- and a key share lock on the one tenants row from every insert of every worker was the
-- busiest lock of POST /lead.

-- NULL rate: the credential is not rate-limited (the benchmark's, or a trusted partner's).
ALTER TABLE credentials ALTER COLUMN rate_per_sec DROP NOT NULL;

-- The one credential an event is addressed to (a partner's own deal); NULL: the whole tenant.
ALTER TABLE events ADD COLUMN audience uuid REFERENCES credentials;

-- Token buckets for per-credential rate limits, shared by every worker of every host.
CREATE TABLE rate_buckets (
    credential_id  uuid PRIMARY KEY REFERENCES credentials,
    tokens         double precision NOT NULL,
    updated_at     timestamptz NOT NULL
);
ALTER TABLE rate_buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_buckets FORCE ROW LEVEL SECURITY;
CREATE POLICY rate_buckets_report ON rate_buckets FOR SELECT TO fl_report USING (true);
GRANT SELECT ON rate_buckets TO fl_report;

-- The decline drivers in use; set_stage accepts only these.
CREATE TABLE lead_decline_drivers (
    driver  text PRIMARY KEY
);
INSERT INTO lead_decline_drivers (driver) VALUES
    ('Application Incomplete'), ('Challenged personal credit history'), ('Default history'),
    ('Excessive liens or judgements'), ('Excessive negative days or NSFs'),
    ('Excessive recent inquiries'), ('Existing customer'), ('Failed merchant interview'), ('Fraud'),
    ('Inability to extend a minimum offer'), ('Low adjusted deposit count'),
    ('Low adjusted deposit volume'), ('Open or recent bankruptcy'), ('Over daily submission limit'),
    ('Over-leveraged w/ pre-existing financing'), ('Personal Bank Statements'),
    ('Poor business risk score'), ('Poor month to date performance'), ('Poor personal risk score'),
    ('Presence of criminal filings'), ('Previous decline'), ('Prohibited business type'),
    ('Restricted business location'), ('Poor Industry Risk Score'), ('Short-time In business'),
    ('Sub 500 FICO'), ('Too early to net 50%'), ('Unexplained UCCs'),
    ('Unwillingness to pay creditors'), ('Volatile deposits');
GRANT SELECT ON lead_decline_drivers TO fl_api, fl_report;

CREATE TABLE leads (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL REFERENCES tenants,
    credential_id     uuid NOT NULL REFERENCES credentials,     -- the submitting partner
    public_id         text NOT NULL UNIQUE,                     -- the opaque id the partner sees
    reference_id      text NOT NULL,
    stage             text NOT NULL DEFAULT 'Working'
                      CHECK (stage IN ('Working','Approval Sent','Declined','File Missing Info','Waiting on ISO')),
    max_approval      numeric(18,2) CHECK (max_approval > 0),
    max_payments      int CHECK (max_payments > 0),              -- term in business days
    offer_link        text,
    decline_drivers   text[],
    decline_notes     text,
    missing_info      text,
    stage_changed_at  timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, credential_id, reference_id)
);
CREATE INDEX leads_tenant_stage ON leads (tenant_id, stage);

CREATE TABLE lead_stipulations (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    lead_id    uuid NOT NULL REFERENCES leads ON DELETE CASCADE,
    type       text NOT NULL
);
CREATE INDEX lead_stipulations_lead ON lead_stipulations (lead_id);

CREATE TABLE lead_accounts (
    lead_id          uuid PRIMARY KEY REFERENCES leads ON DELETE CASCADE,
    tenant_id        uuid NOT NULL,
    entity_type      text,
    name             text NOT NULL,
    started_on       date,
    legal_name       text,
    phone            text,
    email            text,
    website          text,
    fein_enc         text,          -- AES-256-GCM, sealed by the C side: never clear text here
    fein_last4       text CHECK (fein_last4 ~ '^[0-9]{4}$'),
    monthly_revenue  text,
    industry_name    text
);

CREATE TABLE lead_contacts (
    id              bigserial PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    lead_id         uuid NOT NULL REFERENCES leads ON DELETE CASCADE,
    position        int NOT NULL,
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text,
    title           text,
    born_on_enc     text,          -- sealed
    home_phone      text,
    cell_phone      text,
    ssn_enc         text,          -- sealed
    ssn_last4       text CHECK (ssn_last4 ~ '^[0-9]{4}$'),
    ownership_date  date,
    UNIQUE (lead_id, position)
);

CREATE TABLE lead_addresses (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    lead_id     uuid NOT NULL REFERENCES leads ON DELETE CASCADE,
    contact_id  bigint REFERENCES lead_contacts ON DELETE CASCADE,   -- NULL: the business's
    street1     text,
    street2     text,
    city        text,
    state       char(2),
    zip         text
);
CREATE INDEX lead_addresses_lead ON lead_addresses (lead_id);

CREATE TABLE lead_prior_loans (
    id                    bigserial PRIMARY KEY,
    tenant_id             uuid NOT NULL,
    lead_id               uuid NOT NULL REFERENCES leads ON DELETE CASCADE,
    company_name          text,
    daily_payment_amount  numeric(18,2) CHECK (daily_payment_amount >= 0),
    balance               numeric(18,2) CHECK (balance >= 0)
);
CREATE INDEX lead_prior_loans_lead ON lead_prior_loans (lead_id);

CREATE TABLE lead_applications (
    lead_id                    uuid PRIMARY KEY REFERENCES leads ON DELETE CASCADE,
    tenant_id                  uuid NOT NULL,
    has_current_loan           boolean,
    applicant_is_owner         boolean,
    loan_use                   text,
    capital_needed             numeric(18,2) CHECK (capital_needed > 0),
    owner_1_percent_ownership  numeric(5,2) CHECK (owner_1_percent_ownership BETWEEN 0 AND 100),
    owner_2_percent_ownership  numeric(5,2) CHECK (owner_2_percent_ownership BETWEEN 0 AND 100),
    notes                      text,
    CHECK (coalesce(owner_1_percent_ownership, 0) + coalesce(owner_2_percent_ownership, 0) <= 100)
);

CREATE TABLE lead_stage_history (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    lead_id     uuid NOT NULL REFERENCES leads ON DELETE CASCADE,
    from_stage  text,
    to_stage    text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    changed_by  text NOT NULL DEFAULT current_user,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_stage_history_lead ON lead_stage_history (lead_id, id);

-- Attachments: uploaded (state 'received') or fetched by the worker from a URL
-- ('pending' -> 'fetching' -> 'received' or 'failed').
CREATE TABLE lead_attachments (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL,
    lead_id          uuid NOT NULL REFERENCES leads ON DELETE CASCADE,
    filename         text NOT NULL CHECK (filename <> '' AND filename !~ '[/\\[:cntrl:]]'),
    source_url       text,
    state            text NOT NULL CHECK (state IN ('pending','fetching','received','failed')),
    size             bigint CHECK (size BETWEEN 0 AND 26214400),
    sha256           text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type     text,
    content          bytea,
    attempts         int NOT NULL DEFAULT 0,
    error            text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    received_at      timestamptz,
    CHECK (state <> 'received' OR (content IS NOT NULL AND size = octet_length(content)))
);
CREATE INDEX lead_attachments_lead ON lead_attachments (lead_id);
CREATE INDEX lead_attachments_due ON lead_attachments (next_attempt_at) WHERE state IN ('pending','fetching');

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leads','lead_stipulations','lead_accounts','lead_contacts','lead_addresses',
                             'lead_prior_loans','lead_applications','lead_stage_history','lead_attachments']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I TO fl_api USING (tenant_id = fl_current_tenant())'
                       ' WITH CHECK (tenant_id = fl_current_tenant())', t || '_api', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO fl_report USING (true)', t || '_report', t);
        EXECUTE format('GRANT SELECT, INSERT ON %I TO fl_api', t);
    END LOOP;
END
$$;
GRANT UPDATE ON leads TO fl_api;
GRANT USAGE ON SEQUENCE lead_stipulations_id_seq, lead_contacts_id_seq, lead_addresses_id_seq,
    lead_prior_loans_id_seq, lead_stage_history_id_seq TO fl_api;
-- DBAs read everything but the sealed PII and the documents (views show last four digits)
GRANT SELECT ON leads, lead_stipulations, lead_prior_loans, lead_applications, lead_stage_history,
    lead_addresses TO fl_report;
GRANT SELECT (lead_id, tenant_id, entity_type, name, started_on, legal_name, phone, email, website,
              fein_last4, monthly_revenue, industry_name) ON lead_accounts TO fl_report;
GRANT SELECT (id, tenant_id, lead_id, position, first_name, last_name, email, title, home_phone,
              cell_phone, ssn_last4, ownership_date) ON lead_contacts TO fl_report;
GRANT SELECT (id, tenant_id, lead_id, filename, source_url, state, size, sha256, content_type,
              attempts, error, created_at, received_at) ON lead_attachments TO fl_report;
