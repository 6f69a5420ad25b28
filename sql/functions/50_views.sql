-- DBA views. security_invoker: they read through the caller's RLS policies, so fl_report (select
-- policy USING true) sees every tenant and fl_api would see only its own.

CREATE OR REPLACE VIEW unapplied_cash WITH (security_invoker = true) AS
SELECT l.tenant_id, t.name AS tenant_name, b.batch_reference, b.posted_at, l.id AS line_id, l.line_no,
       l.payment_date, l.payment_type, l.amount, l.applied_amount, l.unapplied_amount, l.status,
       l.exception_reason, l.account_number, l.remitter_name, l.transaction_number,
       l.invoice_ref_number, l.memo_line, l.client_code
  FROM payment_lines l
  JOIN payment_batches b ON b.id = l.batch_id
  JOIN tenants t ON t.id = l.tenant_id
 WHERE l.unapplied_amount > 0 AND l.status <> 'pending';

CREATE OR REPLACE VIEW payment_exceptions WITH (security_invoker = true) AS
SELECT l.tenant_id, t.name AS tenant_name, b.batch_reference, b.posted_at, l.id AS line_id, l.line_no,
       l.payment_date, l.payment_type, l.amount, l.exception_reason, l.account_number, l.remitter_name,
       l.transaction_number, l.invoice_ref_number, l.memo_line, l.client_code
  FROM payment_lines l
  JOIN payment_batches b ON b.id = l.batch_id
  JOIN tenants t ON t.id = l.tenant_id
 WHERE l.status = 'exception';

-- Each open invoice's balance in its aging bucket (days past due_date); the two aging views
-- add these up by debtor and by client.
CREATE OR REPLACE VIEW open_invoice_aging WITH (security_invoker = true) AS
SELECT i.tenant_id, i.id AS invoice_id, i.client_id, i.debtor_id, i.open_balance,
       CASE WHEN i.due_date >= current_date THEN i.open_balance ELSE 0 END                 AS current_amount,
       CASE WHEN current_date - i.due_date BETWEEN 1 AND 30 THEN i.open_balance ELSE 0 END  AS days_1_30,
       CASE WHEN current_date - i.due_date BETWEEN 31 AND 60 THEN i.open_balance ELSE 0 END AS days_31_60,
       CASE WHEN current_date - i.due_date BETWEEN 61 AND 90 THEN i.open_balance ELSE 0 END AS days_61_90,
       CASE WHEN current_date - i.due_date > 90 THEN i.open_balance ELSE 0 END              AS days_91_plus
  FROM invoices i
 WHERE i.open_balance > 0 AND i.status <> 'X';

CREATE OR REPLACE VIEW debtor_aging WITH (security_invoker = true) AS
SELECT a.tenant_id, t.name AS tenant_name, d.id AS debtor_id, d.debtor_key, d.name AS debtor_name,
       sum(a.current_amount) AS current_amount, sum(a.days_1_30) AS days_1_30, sum(a.days_31_60) AS days_31_60,
       sum(a.days_61_90) AS days_61_90, sum(a.days_91_plus) AS days_91_plus,
       sum(a.open_balance) AS total_open, count(*) AS open_invoices
  FROM open_invoice_aging a
  JOIN debtors d ON d.id = a.debtor_id
  JOIN tenants t ON t.id = a.tenant_id
 GROUP BY a.tenant_id, t.name, d.id, d.debtor_key, d.name;

CREATE OR REPLACE VIEW client_aging WITH (security_invoker = true) AS
SELECT a.tenant_id, t.name AS tenant_name, c.id AS client_id, c.client_key, c.name AS client_name,
       sum(a.current_amount) AS current_amount, sum(a.days_1_30) AS days_1_30, sum(a.days_31_60) AS days_31_60,
       sum(a.days_61_90) AS days_61_90, sum(a.days_91_plus) AS days_91_plus,
       sum(a.open_balance) AS total_open, count(*) AS open_invoices
  FROM open_invoice_aging a
  JOIN clients c ON c.id = a.client_id
  JOIN tenants t ON t.id = a.tenant_id
 GROUP BY a.tenant_id, t.name, c.id, c.client_key, c.name;

GRANT SELECT ON unapplied_cash, payment_exceptions, open_invoice_aging, debtor_aging, client_aging TO fl_report;
