-- Payment integrity checked per statement instead of per row, and no stored echo.
--
-- post-payments writes ~100 payment lines and ~100 applications per request. Their foreign keys
-- (line -> batch, application -> line, application -> invoice) ran one check query per row,
-- each taking a KEY SHARE lock that writes the parent tuple and WAL: ~1.5 ms of a ~13 ms batch
-- (tests/sql/perf/post_payments_bench.sh --cpu). They are replaced by the same rules checked
-- once per statement over its transition table (one query for all the rows it inserted):
--
--   * AFTER INSERT ... FOR EACH STATEMENT on payment_lines and payment_applications: every new
--     row's parent exists, in the same tenant (the composite keys' rule). SQLSTATE 23503.
--   * BEFORE UPDATE OF the key columns on the children: the same check for the new values.
--   * BEFORE DELETE, UPDATE OF id/tenant_id and TRUNCATE on the parents (payment_batches,
--     payment_lines, invoices): refused while a child row refers to the parent. The check first
--     takes SHARE on the child table, which waits for transactions still inserting children
--     (ROW EXCLUSIVE) to end, so an insert can never slip in between (no row locks needed on
--     the hot path). The API never deletes these rows; this guards DBAs.
--
-- Visibility is the caller's: for fl_api, row-level security shows only its tenant's parents,
-- so a row pointing at another tenant's parent fails like a missing one.
--
-- payment_batches.response (the stored echo, ~40 kB per 100 lines) goes: a retry with the same
-- body is answered from the stored rows by fl_batch_json(), the function post-payments' answer is
-- built with (sql/functions/20_posting_json.sql), so both are the same by construction.

ALTER TABLE payment_lines DROP CONSTRAINT payment_lines_tenant_id_batch_id_fkey;
ALTER TABLE payment_applications DROP CONSTRAINT payment_applications_tenant_id_line_id_fkey,
                                 DROP CONSTRAINT payment_applications_tenant_id_invoice_id_fkey;
-- (tenant_id, id) existed only as the target of those composite keys.
ALTER TABLE payment_lines DROP CONSTRAINT payment_lines_tenant_id_id_key;
ALTER TABLE payment_batches DROP CONSTRAINT payment_batches_tenant_id_id_key;
ALTER TABLE invoices DROP CONSTRAINT invoices_tenant_id_id_key;
ALTER TABLE payment_batches DROP COLUMN response;

-- post-payments takes ~200 ids a batch from these two sequences; with CACHE 100 a session takes
-- them from its own cache instead of locking and updating the sequence (and logging it) each
-- time (~0.1-0.3 ms of ~8 ms a batch, --cpu 800). Ids stay unique and increase within a
-- session, which is all that is used: a line's applications are ordered by id, and they are
-- written by one transaction.
ALTER SEQUENCE payment_lines_id_seq CACHE 100;
ALTER SEQUENCE payment_applications_id_seq CACHE 100;

-- Children: a statement's new rows (transition table fl_new), or one updated row (NEW).
-- The plans must not depend on table statistics: plpgsql caches them per session, and a plan
-- made while payment_lines was nearly empty hashed the whole table on every later call (seen:
-- 44 ms a batch after a minute of posting, until autovacuum's ANALYZE). Hence one LATERAL
-- probe per row with LIMIT (never turned into a hash join or a hashed subplan) and
-- enable_seqscan off (the probe is an index scan even on a tiny table).
CREATE OR REPLACE FUNCTION fl_payment_lines_refs() RETURNS trigger
    LANGUAGE plpgsql
    SET enable_seqscan = off
AS $$
DECLARE
    r record;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        SELECT NEW.tenant_id, NEW.batch_id INTO r
         WHERE NOT EXISTS (SELECT 1 FROM payment_batches b WHERE b.id = NEW.batch_id AND b.tenant_id = NEW.tenant_id);
    ELSE
        SELECT n.tenant_id, n.batch_id INTO r
          FROM (SELECT DISTINCT tenant_id, batch_id FROM fl_new) n
          LEFT JOIN LATERAL (SELECT true AS ok FROM payment_batches b
                              WHERE b.id = n.batch_id AND b.tenant_id = n.tenant_id LIMIT 1) b ON true
         WHERE b.ok IS NULL
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = 'insert or update on table "payment_lines" violates its reference to "payment_batches"',
            DETAIL = format('Key (tenant_id, batch_id)=(%s, %s) is not present in table "payment_batches".',
                            r.tenant_id, r.batch_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION fl_payment_applications_refs() RETURNS trigger
    LANGUAGE plpgsql
    SET enable_seqscan = off
AS $$
DECLARE
    r record;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        SELECT NEW.tenant_id, NEW.line_id, NEW.invoice_id,
               NOT EXISTS (SELECT 1 FROM payment_lines l WHERE l.id = NEW.line_id AND l.tenant_id = NEW.tenant_id) AS no_line
          INTO r
         WHERE NOT EXISTS (SELECT 1 FROM payment_lines l WHERE l.id = NEW.line_id AND l.tenant_id = NEW.tenant_id)
            OR NOT EXISTS (SELECT 1 FROM invoices i WHERE i.id = NEW.invoice_id AND i.tenant_id = NEW.tenant_id);
    ELSE
        SELECT n.tenant_id, n.line_id, n.invoice_id, l.ok IS NULL AS no_line
          INTO r
          FROM fl_new n
          LEFT JOIN LATERAL (SELECT true AS ok FROM payment_lines l
                              WHERE l.id = n.line_id AND l.tenant_id = n.tenant_id LIMIT 1) l ON true
          LEFT JOIN LATERAL (SELECT true AS ok FROM invoices i
                              WHERE i.id = n.invoice_id AND i.tenant_id = n.tenant_id LIMIT 1) i ON true
         WHERE l.ok IS NULL OR i.ok IS NULL
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('insert or update on table "payment_applications" violates its reference to "%s"',
                             CASE WHEN r.no_line THEN 'payment_lines' ELSE 'invoices' END),
            DETAIL = CASE WHEN r.no_line
                          THEN format('Key (tenant_id, line_id)=(%s, %s) is not present in table "payment_lines".',
                                      r.tenant_id, r.line_id)
                          ELSE format('Key (tenant_id, invoice_id)=(%s, %s) is not present in table "invoices".',
                                      r.tenant_id, r.invoice_id) END;
    END IF;
    RETURN NEW;
END
$$;

-- Parents: TG_ARGV[0] the child table, TG_ARGV[1] its column holding this table's id.
CREATE OR REPLACE FUNCTION fl_refs_guard() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    v_used boolean;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id = OLD.id AND NEW.tenant_id = OLD.tenant_id THEN
            RETURN NEW;
        END IF;
    END IF;
    EXECUTE format('LOCK TABLE %I IN SHARE MODE', TG_ARGV[0]);
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', TG_ARGV[0]) INTO v_used;
    ELSE
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I = $1)', TG_ARGV[0], TG_ARGV[1])
           INTO v_used USING OLD.id;
    END IF;
    IF v_used THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('%s on table "%s" violates the reference from "%s"', lower(TG_OP), TG_TABLE_NAME, TG_ARGV[0]),
            DETAIL = CASE WHEN TG_OP = 'TRUNCATE' THEN format('Table "%s" has rows.', TG_ARGV[0])
                          ELSE format('Key (id)=(%s) is still referenced from table "%s".', OLD.id, TG_ARGV[0]) END;
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD WHEN 'UPDATE' THEN NEW END;
END
$$;

CREATE TRIGGER payment_lines_refs AFTER INSERT ON payment_lines
    REFERENCING NEW TABLE AS fl_new FOR EACH STATEMENT EXECUTE FUNCTION fl_payment_lines_refs();
CREATE TRIGGER payment_lines_refs_update BEFORE UPDATE OF tenant_id, batch_id ON payment_lines
    FOR EACH ROW EXECUTE FUNCTION fl_payment_lines_refs();
CREATE TRIGGER payment_applications_refs AFTER INSERT ON payment_applications
    REFERENCING NEW TABLE AS fl_new FOR EACH STATEMENT EXECUTE FUNCTION fl_payment_applications_refs();
CREATE TRIGGER payment_applications_refs_update BEFORE UPDATE OF tenant_id, line_id, invoice_id ON payment_applications
    FOR EACH ROW EXECUTE FUNCTION fl_payment_applications_refs();

CREATE TRIGGER payment_batches_guard BEFORE DELETE OR UPDATE OF id, tenant_id ON payment_batches
    FOR EACH ROW EXECUTE FUNCTION fl_refs_guard('payment_lines', 'batch_id');
CREATE TRIGGER payment_batches_guard_truncate BEFORE TRUNCATE ON payment_batches
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refs_guard('payment_lines', 'batch_id');
CREATE TRIGGER payment_lines_guard BEFORE DELETE OR UPDATE OF id, tenant_id ON payment_lines
    FOR EACH ROW EXECUTE FUNCTION fl_refs_guard('payment_applications', 'line_id');
CREATE TRIGGER payment_lines_guard_truncate BEFORE TRUNCATE ON payment_lines
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refs_guard('payment_applications', 'line_id');
CREATE TRIGGER invoices_guard BEFORE DELETE OR UPDATE OF id, tenant_id ON invoices
    FOR EACH ROW EXECUTE FUNCTION fl_refs_guard('payment_applications', 'invoice_id');
CREATE TRIGGER invoices_guard_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION fl_refs_guard('payment_applications', 'invoice_id');
