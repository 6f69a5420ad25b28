-- 0022: a lead is one row, and each contact one row.
--
-- POST /lead wrote eight rows into seven tables in one statement: the lead, its account, its
-- application and its prior loan (one each at most), each contact, an address for each contact
-- and one for the business, and the first stage history row. Every row cost an executor node
-- opening its table and indexes, a foreign-key check (a query of its own, locking the lead's
-- row) and its index entries: 14 index entries, 10 key checks and 8 heap rows a lead. One row
-- instead took a quarter of PostgreSQL's CPU per lead off (docs/leads.md, twenty-fifth session).
--
-- The one-to-one parts become columns: the account (with the business's address), the
-- application and the prior loan of leads; a contact's address of lead_contacts. A lead now
-- writes itself, its contacts and its first history row.
--
-- leads' own key to tenants goes in 0023, in a transaction of its own: dropping a key locks the
-- table it references (tenants, which every request of every family reads) until commit.
--
-- fl_api loses UPDATE on leads: the stage machine (set_stage) is the owner's, and the account's
-- columns, sealed FEIN included, are now leads' columns.
--
-- The views that read the old tables are dropped here and created again by
-- sql/functions/70_leads.sql.
DROP VIEW IF EXISTS lead_pipeline, lead_contacts_masked;

ALTER TABLE leads
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
    ADD COLUMN business_street1 text,
    ADD COLUMN business_street2 text,
    ADD COLUMN business_city text,
    ADD COLUMN business_state char(2),
    ADD COLUMN business_zip text,
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

-- Only a DBA's INSERT could have given a lead a second prior loan or business address, or a
-- contact a second address: such a lead stops the migration, rather than losing a row.
DO $$
DECLARE
    v text;
BEGIN
    SELECT l.public_id INTO v FROM leads l
     WHERE (SELECT count(*) FROM lead_prior_loans p WHERE p.lead_id = l.id) > 1
        OR (SELECT count(*) FROM lead_addresses x WHERE x.lead_id = l.id AND x.contact_id IS NULL) > 1
        OR EXISTS (SELECT 1 FROM lead_addresses x WHERE x.lead_id = l.id AND x.contact_id IS NOT NULL
                    GROUP BY x.contact_id HAVING count(*) > 1)
     LIMIT 1;
    IF v IS NOT NULL THEN
        RAISE EXCEPTION 'lead % has two prior loans, two business addresses or a contact with two addresses', v
            USING HINT = 'Keep one of each (lead_prior_loans, lead_addresses), then migrate again.';
    END IF;
END
$$;

-- Each lead's parts, in one pass over leads (every lead has its account and application: they
-- were written by the statement that wrote the lead).
UPDATE leads l
   SET entity_type = a.entity_type, business_name = a.name, started_on = a.started_on,
       legal_name = a.legal_name, business_phone = a.phone, business_email = a.email,
       website = a.website, fein_enc = a.fein_enc, fein_last4 = a.fein_last4,
       monthly_revenue = a.monthly_revenue, industry_name = a.industry_name,
       business_street1 = x.street1, business_street2 = x.street2, business_city = x.city,
       business_state = x.state, business_zip = x.zip,
       has_current_loan = ap.has_current_loan, applicant_is_owner = ap.applicant_is_owner,
       loan_use = ap.loan_use, capital_needed = ap.capital_needed,
       owner_1_percent_ownership = ap.owner_1_percent_ownership,
       owner_2_percent_ownership = ap.owner_2_percent_ownership, notes = ap.notes,
       prior_loan_company = p.company_name, prior_loan_daily_payment = p.daily_payment_amount,
       prior_loan_balance = p.balance
  FROM leads l2
  LEFT JOIN lead_accounts a ON a.lead_id = l2.id
  LEFT JOIN lead_applications ap ON ap.lead_id = l2.id
  LEFT JOIN lead_addresses x ON x.lead_id = l2.id AND x.contact_id IS NULL
  LEFT JOIN lead_prior_loans p ON p.lead_id = l2.id
 WHERE l2.id = l.id;

UPDATE lead_contacts c
   SET street1 = x.street1, street2 = x.street2, city = x.city, state = x.state, zip = x.zip
  FROM lead_addresses x
 WHERE x.lead_id = c.lead_id AND x.contact_id = c.id;

-- a lead without an account name (only a DBA's INSERT could have made one) stops the
-- migration here, with PostgreSQL's message naming the column
ALTER TABLE leads ALTER COLUMN business_name SET NOT NULL;
ALTER TABLE leads ADD CONSTRAINT leads_ownership_check
    CHECK (coalesce(owner_1_percent_ownership, 0) + coalesce(owner_2_percent_ownership, 0) <= 100);

DROP TABLE lead_addresses, lead_prior_loans, lead_applications, lead_accounts;
-- The key an address named its contact by (0018); no table refers to a contact now.
ALTER TABLE lead_contacts DROP CONSTRAINT lead_contacts_lead_id_id_key;

REVOKE UPDATE ON leads FROM fl_api;

-- DBAs read everything but the sealed PII (the views show the last four digits). A column
-- grant: fl_report names the columns it reads (SELECT * FROM leads is refused, 42501).
REVOKE SELECT ON leads FROM fl_report;
GRANT SELECT (id, tenant_id, credential_id, public_id, reference_id, stage, max_approval, max_payments,
              offer_link, decline_drivers, decline_notes, missing_info, stage_changed_at, created_at,
              entity_type, business_name, started_on, legal_name, business_phone, business_email, website,
              fein_last4, monthly_revenue, industry_name, business_street1, business_street2, business_city,
              business_state, business_zip,
              has_current_loan, applicant_is_owner, loan_use, capital_needed, owner_1_percent_ownership,
              owner_2_percent_ownership, notes, prior_loan_company, prior_loan_daily_payment,
              prior_loan_balance) ON leads TO fl_report;
GRANT SELECT (street1, street2, city, state, zip) ON lead_contacts TO fl_report;
