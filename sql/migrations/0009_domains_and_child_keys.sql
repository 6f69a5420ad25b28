-- Cheaper rows for the two write paths that carry the load, POST /lead and post-payments, with the
-- same rules and the same reads.
--
-- 1. One-column CHECKs become domains on the tables those two paths write (leads and its
--    children; payment_batches, payment_lines, payment_applications, invoices).
--    PostgreSQL 15 reads a table's CHECK constraints back from their stored form and plans them
--    again in every statement that writes the table, and an UPDATE evaluates every CHECK of the
--    row, whichever columns it sets. A domain's constraint is prepared once per session (type
--    cache) and checked only when a value is assigned to a column of that domain. Same rules,
--    same SQLSTATE (23514, check_violation); rules over two columns stay CHECKs.
--    Backend CPU, the two schemas alternated (docs/sql.md has the figures):
--      POST /lead (pgbench calling leads_create): median 568 -> 536 us per lead;
--      post-payments (tests/sql/perf/post_payments_bench.sh --cpu 300): median 8.33 -> 8.01 ms
--      per 100-line batch.
--    invoices.invoice_number keeps its CHECK: the generated invoice_number_norm depends on it,
--    and PostgreSQL cannot change the type of such a column.
-- 2. lead_addresses, lead_prior_loans, lead_stage_history and lead_stipulations: PRIMARY KEY
--    (lead_id, id) replaces PRIMARY KEY (id) and the index on lead_id (on (lead_id, id) for the
--    history). Nothing refers to these rows by id; every read goes by lead. One index entry fewer
--    per row: four per new lead. WAL per lead (full_page_writes off, to leave page images out):
--    3,236 bytes before, 2,762 after both changes.
--
-- No table is rewritten. The domains are created without their constraint, the columns change
-- type (binary-compatible: no rewrite), and then each constraint is added to its domain, which
-- checks the stored values with one scan of each table using it (SHARE lock: reads go on,
-- writes wait for the scan). Measured on 1.1 million payment lines: ~0.2 s per constraint.
-- Changing the columns to constrained domains directly would rewrite every table and rebuild its
-- indexes (4.5 s for the same payment_lines).
--
-- The views that read these columns (ALTER COLUMN ... TYPE refuses while they exist) are dropped
-- here and created again, unchanged, from sql/functions/, which ./factorline migrate applies after
-- the migrations. No CASCADE: a view of a DBA's own on these columns stops the migration, with
-- PostgreSQL's message naming it.
DROP VIEW IF EXISTS lead_pipeline, lead_approval_rate, lead_decline_driver_counts, lead_contacts_masked,
    unapplied_cash, payment_exceptions, debtor_aging, client_aging, open_invoice_aging, posting_invoice_docs;

CREATE DOMAIN fl_money_pos AS numeric(18,2);
CREATE DOMAIN fl_money_nonneg AS numeric(18,2);
CREATE DOMAIN fl_percent AS numeric(5,2);
CREATE DOMAIN fl_count_pos AS int;
CREATE DOMAIN fl_nonblank AS text;
CREATE DOMAIN fl_last4 AS text;
CREATE DOMAIN lead_stage AS text;
CREATE DOMAIN invoice_status AS char(1);
CREATE DOMAIN payment_type AS text;
CREATE DOMAIN payment_line_status AS text;

-- leads
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

-- posting
ALTER TABLE payment_batches
    DROP CONSTRAINT payment_batches_batch_reference_check,
    DROP CONSTRAINT payment_batches_batch_total_check,
    ALTER COLUMN batch_reference TYPE fl_nonblank,
    ALTER COLUMN batch_total TYPE fl_money_pos;
ALTER TABLE payment_lines
    DROP CONSTRAINT payment_lines_line_no_check,
    DROP CONSTRAINT payment_lines_payment_type_check,
    DROP CONSTRAINT payment_lines_amount_check,
    DROP CONSTRAINT payment_lines_applied_amount_check,
    DROP CONSTRAINT payment_lines_unapplied_amount_check,
    DROP CONSTRAINT payment_lines_status_check,
    ALTER COLUMN line_no TYPE fl_count_pos,
    ALTER COLUMN payment_type TYPE payment_type,
    ALTER COLUMN amount TYPE fl_money_pos,
    ALTER COLUMN applied_amount TYPE fl_money_nonneg,
    ALTER COLUMN unapplied_amount TYPE fl_money_nonneg,
    ALTER COLUMN status TYPE payment_line_status;
ALTER TABLE payment_applications
    DROP CONSTRAINT payment_applications_amount_check,
    ALTER COLUMN amount TYPE fl_money_pos;
ALTER TABLE invoices
    DROP CONSTRAINT invoices_invoice_integration_id_check,
    DROP CONSTRAINT invoices_amount_check,
    DROP CONSTRAINT invoices_status_check,
    DROP CONSTRAINT invoices_escrow_reserve_amount_check,
    ALTER COLUMN invoice_integration_id TYPE fl_nonblank,
    ALTER COLUMN amount TYPE fl_money_pos,
    ALTER COLUMN status TYPE invoice_status,
    ALTER COLUMN escrow_reserve_amount TYPE fl_money_nonneg;

-- The rules, as they were in the CHECKs (checked here against every stored value).
ALTER DOMAIN fl_money_pos ADD CONSTRAINT fl_money_pos_check CHECK (VALUE > 0);
ALTER DOMAIN fl_money_nonneg ADD CONSTRAINT fl_money_nonneg_check CHECK (VALUE >= 0);
ALTER DOMAIN fl_percent ADD CONSTRAINT fl_percent_check CHECK (VALUE BETWEEN 0 AND 100);
ALTER DOMAIN fl_count_pos ADD CONSTRAINT fl_count_pos_check CHECK (VALUE > 0);
ALTER DOMAIN fl_nonblank ADD CONSTRAINT fl_nonblank_check CHECK (btrim(VALUE) <> '');
ALTER DOMAIN fl_last4 ADD CONSTRAINT fl_last4_check CHECK (VALUE ~ '^[0-9]{4}$');
ALTER DOMAIN lead_stage ADD CONSTRAINT lead_stage_check
    CHECK (VALUE IN ('Working', 'Approval Sent', 'Declined', 'File Missing Info', 'Waiting on ISO'));
ALTER DOMAIN invoice_status ADD CONSTRAINT invoice_status_check CHECK (VALUE IN ('F', 'P', 'V', 'H', 'X'));
ALTER DOMAIN payment_type ADD CONSTRAINT payment_type_check CHECK (VALUE IN ('ACH', 'CHECK', 'WIRE'));
ALTER DOMAIN payment_line_status ADD CONSTRAINT payment_line_status_check
    CHECK (VALUE IN ('pending', 'applied', 'partial', 'unapplied', 'exception'));

COMMENT ON DOMAIN fl_money_pos IS 'an amount in dollars and cents, above zero';
COMMENT ON DOMAIN fl_money_nonneg IS 'an amount in dollars and cents, zero or more';
COMMENT ON DOMAIN fl_percent IS 'a percentage, 0 to 100, two decimals';
COMMENT ON DOMAIN fl_count_pos IS 'a count or a position, above zero';
COMMENT ON DOMAIN fl_nonblank IS 'text that is not empty or only blanks';
COMMENT ON DOMAIN fl_last4 IS 'the last four digits of an SSN or FEIN';
COMMENT ON DOMAIN lead_stage IS 'a deal''s stage, in the partner API''s words; moves: lead_stage_allowed()';
COMMENT ON DOMAIN invoice_status IS 'InvoiceStatus: F funded, P pending, V verified, H on hold, X cancelled';
COMMENT ON DOMAIN payment_type IS 'a bank payment line''s PaymentType';
COMMENT ON DOMAIN payment_line_status IS 'a payment line''s reconciliation result';

-- The lead's children: one index each.
ALTER TABLE lead_addresses DROP CONSTRAINT lead_addresses_pkey,
                           ADD CONSTRAINT lead_addresses_pkey PRIMARY KEY (lead_id, id);
DROP INDEX lead_addresses_lead;
ALTER TABLE lead_prior_loans DROP CONSTRAINT lead_prior_loans_pkey,
                             ADD CONSTRAINT lead_prior_loans_pkey PRIMARY KEY (lead_id, id);
DROP INDEX lead_prior_loans_lead;
ALTER TABLE lead_stage_history DROP CONSTRAINT lead_stage_history_pkey,
                               ADD CONSTRAINT lead_stage_history_pkey PRIMARY KEY (lead_id, id);
DROP INDEX lead_stage_history_lead;
ALTER TABLE lead_stipulations DROP CONSTRAINT lead_stipulations_pkey,
                              ADD CONSTRAINT lead_stipulations_pkey PRIMARY KEY (lead_id, id);
DROP INDEX lead_stipulations_lead;
