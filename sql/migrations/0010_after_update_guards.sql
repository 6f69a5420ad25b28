-- The payment tables' row triggers on UPDATE run AFTER the update, and only when a key column
-- changed: no more row lock for every updated invoice.
--
-- PostgreSQL 15 takes a row lock for a BEFORE ROW UPDATE trigger before it looks at the
-- trigger's column list (ExecBRUpdateTriggers fetches the old row with GetTupleForTrigger,
-- which locks it, and only then asks which triggers are enabled). So invoices_guard, declared
-- BEFORE DELETE OR UPDATE OF id, tenant_id, locked every invoice that post-payments updated,
-- though post-payments never changes those columns: one heap lock (a write of the row and a WAL
-- record, 54 bytes) before each balance update, 100 per 100-line batch. pg_waldump of ten
-- batches in the SQL harness: 1,010 LOCK records before, 10 after (the foreign-key checks on
-- tenants). The same held for payment_lines (two such triggers: reconcile_batch and the
-- one-by-one path update lines) and payment_applications (no code path updates those).
--
-- An AFTER ROW trigger fetches the old row without locking it, checks the column list, and
-- then the WHEN condition (OLD against NEW) before it queues anything. The rules are the same:
-- a parent's id or tenant_id cannot change while a child row refers to it (fl_refs_guard), a
-- child's key columns cannot point at a missing parent (fl_*_refs), 23503. The check runs at the
-- end of the statement, after the row is written: another check on that row can report first
-- (row-level security, a unique key), and a statement that moves the children and the parent
-- together passes, as with a foreign key (docs/sql.md). DELETE keeps its BEFORE ROW guard (only
-- DBAs delete).
--
-- Measured: WAL per 100-line batch (SQL harness, ten batches) 85,708 bytes before, 83,786 after.
-- Throughput did not change measurably: on the benchmark stack, the two forms alternated ABBA
-- six times (8 s each, 2 workers) gave a mean of 15,309 against 13,765 lines/s in one series
-- and 13,548 against 13,734 in the next; three full benchmark runs of each tree, alternated:
-- 16,286, 14,440, 13,769 against 16,862, 16,867, 13,762. Kept because it is less work for the
-- same rules, not for a figure.

DROP TRIGGER invoices_guard ON invoices;
CREATE TRIGGER invoices_guard BEFORE DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION fl_refs_guard('payment_applications', 'invoice_id');
CREATE TRIGGER invoices_guard_update AFTER UPDATE OF id, tenant_id ON invoices
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION fl_refs_guard('payment_applications', 'invoice_id');

DROP TRIGGER payment_batches_guard ON payment_batches;
CREATE TRIGGER payment_batches_guard BEFORE DELETE ON payment_batches
    FOR EACH ROW EXECUTE FUNCTION fl_refs_guard('payment_lines', 'batch_id');
CREATE TRIGGER payment_batches_guard_update AFTER UPDATE OF id, tenant_id ON payment_batches
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION fl_refs_guard('payment_lines', 'batch_id');

DROP TRIGGER payment_lines_guard ON payment_lines;
CREATE TRIGGER payment_lines_guard BEFORE DELETE ON payment_lines
    FOR EACH ROW EXECUTE FUNCTION fl_refs_guard('payment_applications', 'line_id');
CREATE TRIGGER payment_lines_guard_update AFTER UPDATE OF id, tenant_id ON payment_lines
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION fl_refs_guard('payment_applications', 'line_id');

DROP TRIGGER payment_lines_refs_update ON payment_lines;
CREATE TRIGGER payment_lines_refs_update AFTER UPDATE OF tenant_id, batch_id ON payment_lines
    FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.batch_id IS DISTINCT FROM NEW.batch_id)
    EXECUTE FUNCTION fl_payment_lines_refs();

DROP TRIGGER payment_applications_refs_update ON payment_applications;
CREATE TRIGGER payment_applications_refs_update AFTER UPDATE OF tenant_id, line_id, invoice_id ON payment_applications
    FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.line_id IS DISTINCT FROM NEW.line_id
                       OR OLD.invoice_id IS DISTINCT FROM NEW.invoice_id)
    EXECUTE FUNCTION fl_payment_applications_refs();
