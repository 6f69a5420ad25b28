-- Cheaper rows for POST /lead, which writes eight rows into seven tables in one statement, with
-- the same rules and the same reads.
--
-- 1. The one-column CHECKs of the leads tables become domains. PostgreSQL 15 reads a table's
--    CHECK constraints back from their stored form and plans them again in every statement that
--    writes the table (ten on the path of POST /lead). A domain's constraint is prepared once per
--    session (type cache) and checked only when a value is assigned to a column of that domain.
--    Same rules, same SQLSTATE (23514, check_violation). The two-column rule of
--    lead_applications (the ownership percentages add up to at most 100) stays a CHECK.
--    Backend CPU per lead, pgbench calling leads_create, the two schemas alternated eight times:
--    median 568 us with the CHECKs, 536 us with the domains.
--    The posting tables keep their CHECKs: the same change there (payment lines, applications,
--    invoices, batches) measured no different for post-payments, in the SQL harness or through
--    the stack (docs/sql.md), and it would scan the largest tables under a lock that holds writes.
-- 2. lead_addresses, lead_prior_loans, lead_stage_history and lead_stipulations: PRIMARY KEY
--    (lead_id, id) replaces PRIMARY KEY (id) and the index on lead_id (on (lead_id, id) for the
--    history). Nothing refers to these rows by id; every read goes by lead. One index entry fewer
--    per row: four per new lead. WAL per lead (full_page_writes off, to leave page images out):
--    3,236 bytes before, 2,762 after both changes.
--
-- No table is rewritten. The domains are created bare, the columns change type (binary-
-- compatible: no rewrite), and then each rule is added to its domain, which checks the stored
-- values with one scan of each table using it (SHARE lock: reads go on, writes wait for the
-- scan; ~0.2 s per rule per million rows here). Changing the columns to constrained domains
-- directly would rewrite each table and rebuild its indexes.
--
-- The DBA views that read these columns (ALTER COLUMN ... TYPE refuses while they exist) are
-- dropped here and created again, unchanged, by sql/functions/70_leads.sql, which
-- ./factorline migrate applies after the migrations. No CASCADE: a view of a DBA's own on these
-- columns stops the migration, with PostgreSQL's message naming it.
DROP VIEW IF EXISTS lead_pipeline, lead_approval_rate, lead_decline_driver_counts, lead_contacts_masked;

CREATE DOMAIN fl_money_pos AS numeric(18,2);
CREATE DOMAIN fl_money_nonneg AS numeric(18,2);
CREATE DOMAIN fl_percent AS numeric(5,2);
CREATE DOMAIN fl_count_pos AS int;
CREATE DOMAIN fl_last4 AS text;
CREATE DOMAIN lead_stage AS text;

ALTER TABLE leads
    DROP CONSTRAINT leads_stage_check,
    DROP CONSTRAINT leads_max_approval_check,
    DROP CONSTRAINT leads_max_payments_check,
    ALTER COLUMN stage TYPE lead_stage,
    ALTER COLUMN max_approval TYPE fl_money_pos,
    ALTER COLUMN max_payments TYPE fl_count_pos;
ALTER TABLE lead_accounts
    DROP CONSTRAINT lead_accounts_fein_last4_check,
    ALTER COLUMN fein_last4 TYPE fl_last4;
ALTER TABLE lead_contacts
    DROP CONSTRAINT lead_contacts_ssn_last4_check,
    ALTER COLUMN ssn_last4 TYPE fl_last4;
ALTER TABLE lead_prior_loans
    DROP CONSTRAINT lead_prior_loans_daily_payment_amount_check,
    DROP CONSTRAINT lead_prior_loans_balance_check,
    ALTER COLUMN daily_payment_amount TYPE fl_money_nonneg,
    ALTER COLUMN balance TYPE fl_money_nonneg;
ALTER TABLE lead_applications
    DROP CONSTRAINT lead_applications_capital_needed_check,
    DROP CONSTRAINT lead_applications_owner_1_percent_ownership_check,
    DROP CONSTRAINT lead_applications_owner_2_percent_ownership_check,
    ALTER COLUMN capital_needed TYPE fl_money_pos,
    ALTER COLUMN owner_1_percent_ownership TYPE fl_percent,
    ALTER COLUMN owner_2_percent_ownership TYPE fl_percent;

-- The rules, as they were in the CHECKs (checked here against every stored value).
ALTER DOMAIN fl_money_pos ADD CONSTRAINT fl_money_pos_check CHECK (VALUE > 0);
ALTER DOMAIN fl_money_nonneg ADD CONSTRAINT fl_money_nonneg_check CHECK (VALUE >= 0);
ALTER DOMAIN fl_percent ADD CONSTRAINT fl_percent_check CHECK (VALUE BETWEEN 0 AND 100);
ALTER DOMAIN fl_count_pos ADD CONSTRAINT fl_count_pos_check CHECK (VALUE > 0);
ALTER DOMAIN fl_last4 ADD CONSTRAINT fl_last4_check CHECK (VALUE ~ '^[0-9]{4}$');
ALTER DOMAIN lead_stage ADD CONSTRAINT lead_stage_check
    CHECK (VALUE IN ('Working', 'Approval Sent', 'Declined', 'File Missing Info', 'Waiting on ISO'));

COMMENT ON DOMAIN fl_money_pos IS 'an amount in dollars and cents, above zero';
COMMENT ON DOMAIN fl_money_nonneg IS 'an amount in dollars and cents, zero or more';
COMMENT ON DOMAIN fl_percent IS 'a percentage, 0 to 100, two decimals';
COMMENT ON DOMAIN fl_count_pos IS 'a count above zero';
COMMENT ON DOMAIN fl_last4 IS 'the last four digits of an SSN or FEIN';
COMMENT ON DOMAIN lead_stage IS 'a deal''s stage, in the partner API''s words; moves: lead_stage_allowed()';

-- The lead's children: one index each.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['lead_addresses', 'lead_prior_loans', 'lead_stage_history', 'lead_stipulations'] LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I, ADD CONSTRAINT %I PRIMARY KEY (lead_id, id)',
                       t, t || '_pkey', t || '_pkey');
        EXECUTE format('DROP INDEX %I', t || '_lead');
    END LOOP;
END
$$;
