-- 0002_posting: FactorCloud api_factor (clients, debtors, schedules, invoices, payment batches).
-- Every table carries tenant_id; foreign keys between tenant tables include tenant_id so that a
-- row can never reference another tenant's row (FK checks bypass RLS, composite keys do not).

-- Remitter/debtor name normalisation: lower case, legal suffixes dropped, only [a-z0-9] kept.
-- IMMUTABLE and used by a generated column: change it only with a migration that recomputes.
CREATE OR REPLACE FUNCTION fl_norm_name(p text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$
    SELECT nullif(regexp_replace(
               regexp_replace(lower(p), '\m(inc|llc|l l c|ltd|corp|corporation|co|company|lp|llp)\M', '', 'g'),
               '[^a-z0-9]+', '', 'g'), '')
$$;
GRANT EXECUTE ON FUNCTION fl_norm_name(text) TO fl_api, fl_report;

CREATE TABLE clients (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES tenants,
    client_key         text NOT NULL CHECK (btrim(client_key) <> ''),
    name               text NOT NULL,
    comp_code          text,
    -- ClientCode look-ups compare upper(comp_code). Through RLS only leakproof operators on plain
    -- columns can be index conditions (upper() is not leakproof), hence a stored column.
    comp_code_key      text GENERATED ALWAYS AS (upper(comp_code)) STORED,
    address1           text,
    address2           text,
    city               text,
    state              text,
    zip_code           text,
    country            text,
    phone              text,
    phone_alt          text,
    fax                text,
    email              text,
    ucc_date           date,
    ucc_date2          date,
    ucc_signed_date    date,
    type               smallint CHECK (type IN (0, 1)),          -- 0 carrier, 1 broker
    industry           smallint CHECK (industry BETWEEN 1 AND 5),
    alt_name           text,
    edi_id             text,
    fed_tax_num_enc    text,          -- encrypted by the C side (AES-256-GCM), opaque here
    fed_tax_num_last4  text,
    duns_num           text,
    mc_number          text,
    dot_number         text,
    credit_limit       numeric(18,2) CHECK (credit_limit >= 0),
    advance_rate       numeric(5,4) NOT NULL DEFAULT 0.9000 CHECK (advance_rate BETWEEN 0 AND 1),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, client_key),
    UNIQUE (tenant_id, id)
);
CREATE INDEX clients_comp_code_idx ON clients (tenant_id, comp_code_key);

-- Master debtors (and vendors: a broker's carriers are debtors linked with relation 'vendor').
CREATE TABLE debtors (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants,
    debtor_key   text NOT NULL CHECK (btrim(debtor_key) <> ''),
    name         text NOT NULL,
    name_norm    text GENERATED ALWAYS AS (fl_norm_name(name)) STORED,
    comp_code    text,
    address1     text,
    address2     text,
    city         text,
    state        text,
    zip_code     text,
    country      text CHECK (country IN ('USA', 'MEX', 'CAN')),
    phone        text,
    fax          text,
    email        text,
    mc_number    text,
    dot_number   text,
    notes        text,
    credit_limit numeric(18,2) CHECK (credit_limit >= 0),
    buy_status   boolean NOT NULL DEFAULT false,   -- true = no-buy: do not purchase on this debtor
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, debtor_key),
    UNIQUE (tenant_id, id)
);
CREATE INDEX debtors_name_norm_idx ON debtors (tenant_id, name_norm);

-- Sub-debtor: a master debtor linked to a client.
CREATE TABLE client_debtors (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants,
    client_id     uuid NOT NULL,
    debtor_id     uuid NOT NULL,
    relation      text NOT NULL DEFAULT 'debtor' CHECK (relation IN ('debtor', 'vendor')),
    comp_code     text NOT NULL,
    credit_limit  numeric(18,2) CHECK (credit_limit >= 0),
    buy_status    boolean NOT NULL DEFAULT false,  -- true = no-buy for this client
    notes         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, id),
    FOREIGN KEY (tenant_id, debtor_id) REFERENCES debtors (tenant_id, id),
    UNIQUE (client_id, debtor_id, relation),
    UNIQUE (client_id, comp_code)
);
CREATE INDEX client_debtors_debtor_idx ON client_debtors (debtor_id);

-- Payer bank accounts known for a debtor (learned by reconciliation or entered by staff).
CREATE TABLE debtor_accounts (
    id              bigserial PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants,
    debtor_id       uuid NOT NULL,
    account_number  text NOT NULL CHECK (btrim(account_number) <> ''),
    source          text NOT NULL DEFAULT 'learned' CHECK (source IN ('learned', 'manual')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, debtor_id) REFERENCES debtors (tenant_id, id),
    UNIQUE (tenant_id, account_number, debtor_id)
);
CREATE INDEX debtor_accounts_debtor_idx ON debtor_accounts (debtor_id);

CREATE TABLE schedules (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id             uuid NOT NULL REFERENCES tenants,
    integration_batch_id  text NOT NULL CHECK (btrim(integration_batch_id) <> ''),
    client_id             uuid NOT NULL,
    kind                  text NOT NULL DEFAULT 'standard' CHECK (kind IN ('standard', 'broker')),
    amount                numeric(18,2) NOT NULL CHECK (amount > 0),
    label                 text,
    notes                 text,
    payment_method        char(1) CHECK (payment_method IN ('A', 'W', 'C')),
    request_hash          text,
    response              jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, id),
    UNIQUE (tenant_id, integration_batch_id),
    UNIQUE (tenant_id, id)
);
CREATE INDEX schedules_client_idx ON schedules (client_id);

CREATE TABLE invoices (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants,
    schedule_id             uuid NOT NULL,
    seq                     int NOT NULL,            -- position in the schedule's InvoiceArray
    client_id               uuid NOT NULL,
    debtor_id               uuid NOT NULL,
    vendor_id               uuid,                    -- broker schedules: the carrier (a debtor row)
    invoice_integration_id  text NOT NULL CHECK (btrim(invoice_integration_id) <> ''),
    invoice_number          text NOT NULL CHECK (btrim(invoice_number) <> ''),
    -- the look-up key of invoice_number: a plain column, so that fl_api (RLS) can use an index
    -- on it (lower()/btrim() are not leakproof: an index on the expression is never used as an
    -- index condition through RLS, which made every look-up a scan of the tenant's invoices)
    invoice_number_norm     text GENERATED ALWAYS AS (lower(btrim(invoice_number))) STORED,
    amount                  numeric(18,2) NOT NULL CHECK (amount > 0),
    open_balance            numeric(18,2) NOT NULL,
    invoice_date            date NOT NULL DEFAULT current_date,
    due_date                date NOT NULL DEFAULT current_date,
    ref_num                 text,
    status                  char(1) NOT NULL DEFAULT 'P' CHECK (status IN ('F', 'P', 'V', 'H', 'X')),
    purchase_date           date,
    fund_date               date,
    escrow_reserve_amount   numeric(18,2) CHECK (escrow_reserve_amount >= 0),
    advance_amount          numeric(18,2) CHECK (advance_amount >= 0 AND advance_amount <= amount),
    vendor_invoice_number   text,
    doc                     bytea,
    paid_in_full_on         date,
    last_payment_on         date,
    created_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (open_balance BETWEEN 0 AND amount),
    CHECK ((paid_in_full_on IS NOT NULL) = (open_balance = 0)),
    FOREIGN KEY (tenant_id, schedule_id) REFERENCES schedules (tenant_id, id),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, id),
    FOREIGN KEY (tenant_id, debtor_id) REFERENCES debtors (tenant_id, id),
    FOREIGN KEY (tenant_id, vendor_id) REFERENCES debtors (tenant_id, id),
    UNIQUE (tenant_id, invoice_integration_id),
    UNIQUE (tenant_id, id)
);
CREATE INDEX invoices_schedule_idx ON invoices (schedule_id, seq);
-- Reconciliation look-ups. Payments update open_balance, last_payment_on and (once, when paid in
-- full) paid_in_full_on: no index may contain open_balance or last_payment_on, not even in a
-- partial-index predicate, so that a partial payment is a HOT update (no index entries written).
-- "Open" is spelled paid_in_full_on IS NULL (equivalent to open_balance > 0 by the CHECKs above).
-- Balances are not indexed: numeric equality is not leakproof, so through RLS it could not be an
-- index condition anyway; the exact-amount rule filters the open invoices of one debtor/client.
-- By number, all invoices (open ones and closed ones, which tell "not open" from "unknown"):
CREATE INDEX invoices_number_idx ON invoices (tenant_id, invoice_number_norm);
CREATE INDEX invoices_open_debtor_idx ON invoices (tenant_id, debtor_id)
    WHERE paid_in_full_on IS NULL AND status <> 'X';
CREATE INDEX invoices_open_client_idx ON invoices (tenant_id, client_id)
    WHERE paid_in_full_on IS NULL AND status <> 'X';
-- Free space on each page for the new row versions of HOT updates.
ALTER TABLE invoices SET (fillfactor = 85);

CREATE TABLE payment_batches (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants,
    batch_reference  text NOT NULL CHECK (btrim(batch_reference) <> ''),
    batch_total      numeric(18,2) NOT NULL CHECK (batch_total > 0),
    account_number   text,
    request_hash     text,
    response         jsonb COMPRESSION lz4,   -- the stored echo (~40 kB per 100 lines); lz4 is cheap
    posted_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, batch_reference),
    UNIQUE (tenant_id, id)
);

-- payment_lines and payment_applications have no foreign key of their own to tenants: their
-- composite key to the parent (payment_batches, payment_lines) carries tenant_id, and the parent's
-- tenant_id references tenants, so it would be checked again per row (100s of rows per request).
CREATE TABLE payment_lines (
    id                  bigserial PRIMARY KEY,
    tenant_id           uuid NOT NULL,
    batch_id            uuid NOT NULL,
    line_no             int NOT NULL CHECK (line_no > 0),
    payment_date        date NOT NULL,
    bank_batch_item     text,
    payment_type        text NOT NULL CHECK (payment_type IN ('ACH', 'CHECK', 'WIRE')),
    amount              numeric(18,2) NOT NULL CHECK (amount > 0),
    bank_ref_number     text,
    account_number      text,
    transaction_number  text,
    remitter_name       text,
    memo_line           text,
    invoice_ref_number  text,
    client_code         text,
    financial_docs      text,
    applied_amount      numeric(18,2) NOT NULL DEFAULT 0 CHECK (applied_amount >= 0),
    unapplied_amount    numeric(18,2) NOT NULL CHECK (unapplied_amount >= 0),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'applied', 'partial', 'unapplied', 'exception')),
    exception_reason    text,
    reconciled_at       timestamptz,
    CHECK (applied_amount + unapplied_amount = amount),
    CHECK ((status = 'exception') = (exception_reason IS NOT NULL)),
    CHECK (status <> 'applied' OR unapplied_amount = 0),
    CHECK (status NOT IN ('pending', 'unapplied', 'exception') OR applied_amount = 0),
    CHECK (status <> 'partial' OR (applied_amount > 0 AND unapplied_amount > 0)),
    FOREIGN KEY (tenant_id, batch_id) REFERENCES payment_batches (tenant_id, id),
    UNIQUE (batch_id, line_no),
    UNIQUE (tenant_id, id)
);
-- posting_post_payments inserts most lines with their result; the others are inserted 'pending'
-- and updated once by reconciliation (as are lines a DBA sets back to pending): free space and no
-- index on status/amount columns keep that update HOT.
ALTER TABLE payment_lines SET (fillfactor = 80);

CREATE TABLE payment_applications (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    line_id     bigint NOT NULL,
    invoice_id  uuid NOT NULL,
    amount      numeric(18,2) NOT NULL CHECK (amount > 0),
    applied_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, line_id) REFERENCES payment_lines (tenant_id, id),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
);
CREATE INDEX payment_applications_line_idx ON payment_applications (line_id);
CREATE INDEX payment_applications_invoice_idx ON payment_applications (invoice_id);

-- Row-level security, grants.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['clients', 'debtors', 'client_debtors', 'debtor_accounts', 'schedules',
                             'invoices', 'payment_batches', 'payment_lines', 'payment_applications']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I TO fl_api USING (tenant_id = fl_current_tenant()) '
                       'WITH CHECK (tenant_id = fl_current_tenant())', t || '_api', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO fl_report USING (true)', t || '_report', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO fl_api', t);
        EXECUTE format('GRANT SELECT ON %I TO fl_report', t);
    END LOOP;
END
$$;
GRANT USAGE ON SEQUENCE debtor_accounts_id_seq, payment_lines_id_seq, payment_applications_id_seq TO fl_api;
