-- 0022: a lead is one row, and each contact one row.
--
-- POST /lead wrote eight rows into seven tables in one statement: the lead, its account, its
-- application and its prior loan (one each at most), each contact, an address for each contact
-- and one for the business, and the first stage history row. Every row cost an executor node
-- opening its table and indexes, a foreign-key check (a query of its own, locking the lead's
-- row) and its index entries: with 14 index entries, 10 key checks and 8 heap rows a lead,
-- that was most of PostgreSQL's CPU on the lead's path (docs/leads.md, twenty-fifth session).
--
-- The one-to-one parts become columns: the account (with the business's address), the
-- application and the prior loan of leads; a contact's address of lead_contacts. A lead now
-- writes itself, its contacts and its first history row.
--
-- leads loses its own key to tenants: (tenant_id, credential_id) REFERENCES credentials
-- (tenant_id, id) already ties a lead to its tenant, since a credential's tenant_id references
-- tenants. The check locked the tenant's one row from every lead of every partner (a MultiXact
-- whenever two leads were in flight).
--
-- The views that read the old tables are dropped here and created again by
-- sql/functions/70_leads.sql.
DROP VIEW IF EXISTS lead_pipeline, lead_contacts_masked;

ALTER TABLE leads
    DROP CONSTRAINT leads_tenant_id_fkey,
    -- account_attributes
    ADD COLUMN entity_type text,
    ADD COLUMN business_name text,
    ADD COLUMN started_on date,
    ADD COLUMN legal_name text,
    ADD COLUMN business_phone text,
    ADD COLUMN business_email text,
    ADD COLUMN website text,
    ADD COLUMN fein_enc text,           -- AES-256-GCM, sealed by the C side: never clear text here
    ADD COLUMN fein_last4 fl_last4,
    ADD COLUMN monthly_revenue text,
    ADD COLUMN industry_name text,
    -- account_attributes.current_address_attributes: the business's address
    ADD COLUMN street1 text,
    ADD COLUMN street2 text,
    ADD COLUMN city text,
    ADD COLUMN state char(2),
    ADD COLUMN zip text,
    -- application_attributes (reference_id is a column already)
    ADD COLUMN has_current_loan boolean,
    ADD COLUMN applicant_is_owner boolean,
    ADD COLUMN loan_use text,
    ADD COLUMN capital_needed fl_money_pos,
    ADD COLUMN owner_1_percent_ownership fl_percent,
    ADD COLUMN owner_2_percent_ownership fl_percent,
    ADD COLUMN notes text,
    -- loan_attributes: the merchant's current financing
    ADD COLUMN prior_loan_company text,
    ADD COLUMN prior_loan_daily_payment fl_money_nonneg,
    ADD COLUMN prior_loan_balance fl_money_nonneg;

ALTER TABLE lead_contacts
    ADD COLUMN street1 text,
    ADD COLUMN street2 text,
    ADD COLUMN city text,
    ADD COLUMN state char(2),
    ADD COLUMN zip text;

-- Each lead's parts, in one pass over leads (every lead has its account and application: they
-- were written by the statement that wrote the lead).
UPDATE leads l
   SET entity_type = a.entity_type, business_name = a.name, started_on = a.started_on,
       legal_name = a.legal_name, business_phone = a.phone, business_email = a.email,
       website = a.website, fein_enc = a.fein_enc, fein_last4 = a.fein_last4,
       monthly_revenue = a.monthly_revenue, industry_name = a.industry_name,
       street1 = x.street1, street2 = x.street2, city = x.city, state = x.state, zip = x.zip,
       has_current_loan = ap.has_current_loan, applicant_is_owner = ap.applicant_is_owner,
       loan_use = ap.loan_use, capital_needed = ap.capital_needed,
       owner_1_percent_ownership = ap.owner_1_percent_ownership,
       owner_2_percent_ownership = ap.owner_2_percent_ownership, notes = ap.notes,
       prior_loan_company = p.company_name, prior_loan_daily_payment = p.daily_payment_amount,
       prior_loan_balance = p.balance
  FROM leads l2
  LEFT JOIN lead_accounts a ON a.lead_id = l2.id
  LEFT JOIN lead_applications ap ON ap.lead_id = l2.id
  LEFT JOIN LATERAL (SELECT * FROM lead_addresses x WHERE x.lead_id = l2.id AND x.contact_id IS NULL
                      ORDER BY x.id LIMIT 1) x ON true
  LEFT JOIN LATERAL (SELECT * FROM lead_prior_loans p WHERE p.lead_id = l2.id ORDER BY p.id LIMIT 1) p ON true
 WHERE l2.id = l.id;

UPDATE lead_contacts c
   SET street1 = x.street1, street2 = x.street2, city = x.city, state = x.state, zip = x.zip
  FROM (SELECT DISTINCT ON (contact_id) * FROM lead_addresses WHERE contact_id IS NOT NULL
         ORDER BY contact_id, id) x
 WHERE x.lead_id = c.lead_id AND x.contact_id = c.id;

-- a lead without an account name (only a DBA's INSERT could have made one) stops the
-- migration here, with PostgreSQL's message naming the column
ALTER TABLE leads ALTER COLUMN business_name SET NOT NULL;
ALTER TABLE leads ADD CONSTRAINT leads_ownership_check
    CHECK (coalesce(owner_1_percent_ownership, 0) + coalesce(owner_2_percent_ownership, 0) <= 100);

DROP TABLE lead_addresses, lead_prior_loans, lead_applications, lead_accounts;
-- The key an address named its contact by (0018); no table refers to a contact now.
ALTER TABLE lead_contacts DROP CONSTRAINT lead_contacts_lead_id_id_key;

-- DBAs read everything but the sealed PII (the views show the last four digits).
REVOKE SELECT ON leads FROM fl_report;
GRANT SELECT (id, tenant_id, credential_id, public_id, reference_id, stage, max_approval, max_payments,
              offer_link, decline_drivers, decline_notes, missing_info, stage_changed_at, created_at,
              entity_type, business_name, started_on, legal_name, business_phone, business_email, website,
              fein_last4, monthly_revenue, industry_name, street1, street2, city, state, zip,
              has_current_loan, applicant_is_owner, loan_use, capital_needed, owner_1_percent_ownership,
              owner_2_percent_ownership, notes, prior_loan_company, prior_loan_daily_payment,
              prior_loan_balance) ON leads TO fl_report;
GRANT SELECT (street1, street2, city, state, zip) ON lead_contacts TO fl_report;
