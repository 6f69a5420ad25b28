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

CREATE OR REPLACE VIEW debtor_aging WITH (security_invoker = true) AS
SELECT i.tenant_id, t.name AS tenant_name, d.id AS debtor_id, d.debtor_key, d.name AS debtor_name,
       coalesce(sum(i.open_balance) FILTER (WHERE i.due_date >= current_date), 0)                    AS current_amount,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date BETWEEN 1 AND 30), 0)    AS days_1_30,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date BETWEEN 31 AND 60), 0)   AS days_31_60,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date BETWEEN 61 AND 90), 0)   AS days_61_90,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date > 90), 0)                AS days_91_plus,
       sum(i.open_balance)                                                              AS total_open,
       count(*)                                                                         AS open_invoices
  FROM invoices i
  JOIN debtors d ON d.id = i.debtor_id
  JOIN tenants t ON t.id = i.tenant_id
 WHERE i.open_balance > 0 AND i.status <> 'X'
 GROUP BY i.tenant_id, t.name, d.id, d.debtor_key, d.name;

CREATE OR REPLACE VIEW client_aging WITH (security_invoker = true) AS
SELECT i.tenant_id, t.name AS tenant_name, c.id AS client_id, c.client_key, c.name AS client_name,
       coalesce(sum(i.open_balance) FILTER (WHERE i.due_date >= current_date), 0)                    AS current_amount,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date BETWEEN 1 AND 30), 0)    AS days_1_30,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date BETWEEN 31 AND 60), 0)   AS days_31_60,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date BETWEEN 61 AND 90), 0)   AS days_61_90,
       coalesce(sum(i.open_balance) FILTER (WHERE current_date - i.due_date > 90), 0)                AS days_91_plus,
       sum(i.open_balance)                                                              AS total_open,
       count(*)                                                                         AS open_invoices
  FROM invoices i
  JOIN clients c ON c.id = i.client_id
  JOIN tenants t ON t.id = i.tenant_id
 WHERE i.open_balance > 0 AND i.status <> 'X'
 GROUP BY i.tenant_id, t.name, c.id, c.client_key, c.name;

GRANT SELECT ON unapplied_cash, payment_exceptions, debtor_aging, client_aging TO fl_report;
