-- Reconciliation's tables: the tenant policy evaluated once per statement, and one index fewer
-- on payment_applications.
--
-- 1. fl_api's policy on invoices, payment_lines and payment_applications compares tenant_id with
--    (SELECT fl_current_tenant()) instead of fl_current_tenant(). Same rule, same rows: the
--    uncorrelated subquery becomes an InitPlan, evaluated once per statement execution, where the
--    function call is evaluated for every row the statement reads or writes (current_setting()
--    looks the setting up by name and uuid_in parses it, each time). A post-payments batch reads,
--    locks, updates or inserts ~600 rows of these three tables, in statements of ~100 rows each.
--    The other tables keep the plain form: their statements touch one row or a few, and an
--    InitPlan costs more to set up than it saves there (measured on POST /lead: no gain).
-- 2. payment_applications: PRIMARY KEY (line_id, id) replaces PRIMARY KEY (id) and the index on
--    (line_id). Nothing refers to an application's id; every read goes by line (the echo, the
--    guard on payment_lines) or by invoice (its own index), and a line's applications come out
--    in id order, the order they were made. Each application written one index entry fewer.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['invoices', 'payment_lines', 'payment_applications'] LOOP
        EXECUTE format('ALTER POLICY %I ON %I USING (tenant_id = (SELECT fl_current_tenant())) '
                       'WITH CHECK (tenant_id = (SELECT fl_current_tenant()))', t || '_api', t);
    END LOOP;
END
$$;

ALTER TABLE payment_applications DROP CONSTRAINT payment_applications_pkey,
                                 ADD CONSTRAINT payment_applications_pkey PRIMARY KEY (line_id, id);
DROP INDEX payment_applications_line_idx;
