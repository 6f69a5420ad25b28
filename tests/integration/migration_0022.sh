#!/bin/sh
# Migration 0022 (a lead is one row) on rows of the shape before it, in a scratch database of
# the test cluster: migrations 0001-0021, leads written as the old leads_create wrote them,
# then 0022. Prints one line per lead and contact after it, then the outcome of 0022 on a lead
# with two prior loans (refused, nothing changed) and on one without an account (refused).
#
#   tests/integration/migration_0022.sh PGHOST ROOT      (run by tests/integration/test_ops.c)
set -eu
H=$1 ROOT=$2 DB=fl_test_m0022
export PGOPTIONS="-c client_min_messages=warning"     # no NOTICEs in the output
p() { psql -X -q -A -t -h "$H" -U postgres -v ON_ERROR_STOP=1 "$@"; }

# migrate DB to just before 0022
fresh() {
    p -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
    for f in "$ROOT"/sql/migrations/*.sql; do
        case ${f##*/} in 0022_*) break ;; esac
        p -d "$DB" --single-transaction -f "$f" >/dev/null 2>&1
    done
}
apply_0022() { p -d "$DB" --single-transaction -f "$ROOT/sql/migrations/0022_lead_in_one_row.sql" 2>&1; }

# a tenant, a partner, and leads of the old shape ($1: extra SQL run after them)
seed() {
    p -d "$DB" >/dev/null <<SQL
INSERT INTO tenants (id, name, factor_id) VALUES ('00000000-0000-0000-0000-0000000000a1', 'm22', 'M22');
INSERT INTO credentials (id, tenant_id, family, public_id, secret_hash)
VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1', 'leads', 'm22p', sha256('x'));
-- lead 1: everything, two contacts (the second without an address)
INSERT INTO leads (id, tenant_id, credential_id, public_id, reference_id)
VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1',
        '00000000-0000-0000-0000-0000000000c1', 'm22-1', 'R1'),
       ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-0000000000a1',
        '00000000-0000-0000-0000-0000000000c1', 'm22-2', 'R2');
INSERT INTO lead_accounts (lead_id, tenant_id, entity_type, name, started_on, legal_name, phone, email,
                           website, fein_enc, fein_last4, monthly_revenue, industry_name)
VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1', 'LLC', 'Pied Piper',
        '2015-01-01', 'Pied Piper LLC', '6176781000', 'a@b.c', 'https://pp', 'v1:0000000a:f', '6789', 'Low', 'Tech'),
       ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-0000000000a1', NULL, 'Hooli',
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO lead_applications (lead_id, tenant_id, has_current_loan, applicant_is_owner, loan_use,
                               capital_needed, owner_1_percent_ownership, owner_2_percent_ownership, notes)
VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1', true, false, 'Debt',
        50000, 56, 9, 'great'),
       ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-0000000000a1', NULL, NULL, NULL,
        NULL, NULL, NULL, NULL);
INSERT INTO lead_prior_loans (tenant_id, lead_id, company_name, daily_payment_amount, balance)
VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'Wells', 25, 15000.23);
INSERT INTO lead_contacts (id, tenant_id, lead_id, position, first_name, last_name, ssn_enc, ssn_last4)
VALUES (9001, '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 1, 'Erlich', 'B',
        'v1:0000000a:s', '5566'),
       (9002, '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 2, 'Jared', 'D',
        NULL, NULL),
       (9003, '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000002', 1, 'Gavin', 'B',
        NULL, NULL);
INSERT INTO lead_addresses (tenant_id, lead_id, contact_id, street1, street2, city, state, zip)
VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', NULL,
        '36 Bromfield St', 'Floor 2', 'Boston', 'MA', '00112'),
       ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 9001,
        '1 Home Rd', NULL, 'Palo Alto', 'CA', '94301'),
       ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000002', 9003,
        '2 Campus Dr', NULL, 'Mountain View', 'CA', '94043');
$1
SQL
}

fresh
seed ""
apply_0022 >/dev/null
p -d "$DB" -c "SELECT concat_ws('|', public_id, entity_type, business_name, started_on, legal_name, business_phone,
                     business_email, website, fein_enc, fein_last4, monthly_revenue, industry_name,
                     business_street1, business_street2, business_city, business_state, business_zip,
                     has_current_loan, applicant_is_owner, loan_use, capital_needed, owner_1_percent_ownership,
                     owner_2_percent_ownership, notes, prior_loan_company, prior_loan_daily_payment,
                     prior_loan_balance) FROM leads ORDER BY public_id" \
               -c "SELECT concat_ws('|', c.id, c.position, c.first_name, c.ssn_enc, c.street1, c.city, c.state, c.zip)
                     FROM lead_contacts c ORDER BY c.id" \
               -c "SELECT 'tables left: ' || count(*) FROM pg_class WHERE relname IN
                     ('lead_accounts', 'lead_applications', 'lead_prior_loans', 'lead_addresses')"

# a second prior loan: refused, and the old tables are still there
fresh
seed "INSERT INTO lead_prior_loans (tenant_id, lead_id, company_name)
      VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001', 'Chase');"
if out=$(apply_0022); then echo "two prior loans: applied"; else
    printf 'two prior loans: refused: %s\n' "$(printf '%s\n' "$out" | grep -o 'lead m22-1 has two prior loans, two business addresses or a contact with two addresses' | head -1)"
fi
p -d "$DB" -c "SELECT 'prior loans kept: ' || count(*) FROM lead_prior_loans"

# a lead without an account: refused
fresh
seed "DELETE FROM lead_accounts WHERE lead_id = '00000000-0000-0000-0000-000000000002';"
if out=$(apply_0022); then echo "no account: applied"; else
    printf 'no account: refused: %s\n' "$(printf '%s\n' "$out" | grep -o 'column "business_name" of relation "leads" contains null values' | head -1)"
fi
p -d postgres -c "DROP DATABASE $DB"
