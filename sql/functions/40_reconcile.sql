-- reconcile_batch: auto-apply a payment batch's pending lines to open invoices.
--
-- Per line, in line order (amount A):
--  1. InvoiceRefNumber: the open invoice with that number (trimmed, case-insensitive), within the
--     client named by ClientCode (CompCode or ClientKey; an unknown code is ignored). Several:
--     narrow by the payer's debtor (AccountNumber via debtor_accounts, else RemitterName by
--     normalised name); still several (or none left): exception 'Ambiguous invoice <n>'.
--     No open invoice but a closed one with that number: exception 'Invoice <n> not open'
--     (a duplicate payment is never re-routed by amount). Unknown number: go on with 2.
--  2. MemoLine tokens (alphanumeric runs of >= 3 chars) equal to open invoice numbers, same
--     narrowing, applied in memo order; any ambiguous token makes the line an exception.
--  3. Amount: the single open invoice of the payer's debtor (or of the ClientCode client) whose
--     open balance equals A exactly.
-- Applying takes min(remaining, open_balance) per invoice; the rest stays unapplied ('partial').
-- Lines applied by invoice number teach debtor_accounts the payer's AccountNumber.
-- Only 'pending' lines are processed: running it again changes nothing.
CREATE OR REPLACE FUNCTION reconcile_batch(p_batch_id uuid) RETURNS void
    LANGUAGE plpgsql
    -- Every statement below is written to have a good generic plan; custom re-planning of the
    -- apply statement per line cost more than executing it.
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_tenant     uuid;
    l            record;
    r            record;
    v_clients    uuid[];
    v_debtors    uuid[];
    v_dset_done  boolean;
    v_ids        uuid[];
    v_dids       uuid[];
    v_targets    uuid[];
    v_tokens     text[];
    v_status     text;
    v_reason     text;
    v_by_number  boolean;
    v_applied    numeric(18,2);
    -- line results, written in one statement at the end
    a_id         bigint[] := '{}';
    a_applied    numeric[] := '{}';
    a_status     text[] := '{}';
    a_reason     text[] := '{}';
BEGIN
    SELECT tenant_id INTO v_tenant FROM payment_batches WHERE id = p_batch_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Batch not found';
    END IF;
    PERFORM fl_set_tenant(v_tenant);

    FOR l IN SELECT id, amount, payment_date, account_number, remitter_name, memo_line,
                    lower(invoice_ref_number) AS ref, invoice_ref_number, client_code
               FROM payment_lines
              WHERE batch_id = p_batch_id AND status = 'pending'
              ORDER BY line_no
                FOR UPDATE
    LOOP
        v_clients := NULL; v_debtors := NULL; v_dset_done := false; v_targets := NULL;
        v_status := NULL; v_reason := NULL; v_by_number := false; v_applied := 0;

        IF l.client_code IS NOT NULL THEN
            SELECT array_agg(id) INTO v_clients FROM clients
             WHERE tenant_id = v_tenant
               AND (upper(comp_code) = upper(l.client_code) OR client_key = l.client_code);
        END IF;

        -- 1. InvoiceRefNumber
        IF l.ref IS NOT NULL THEN
            SELECT array_agg(id ORDER BY id), array_agg(debtor_id ORDER BY id) INTO v_ids, v_dids
              FROM (SELECT id, debtor_id FROM invoices
                     WHERE tenant_id = v_tenant AND lower(btrim(invoice_number)) = l.ref
                       AND open_balance > 0 AND status <> 'X'
                       AND (v_clients IS NULL OR client_id = ANY (v_clients))
                       FOR UPDATE) s;
            IF cardinality(v_ids) = 1 THEN
                v_targets := v_ids;
            ELSIF cardinality(v_ids) > 1 THEN
                IF NOT v_dset_done THEN
                    IF l.account_number IS NOT NULL THEN
                        SELECT array_agg(DISTINCT debtor_id) INTO v_debtors FROM debtor_accounts
                         WHERE tenant_id = v_tenant AND account_number = l.account_number;
                    END IF;
                    IF v_debtors IS NULL AND l.remitter_name IS NOT NULL THEN
                        SELECT array_agg(id) INTO v_debtors FROM debtors
                         WHERE tenant_id = v_tenant AND name_norm = fl_norm_name(l.remitter_name);
                    END IF;
                    v_dset_done := true;
                END IF;
                SELECT array_agg(u.id) INTO v_targets FROM unnest(v_ids, v_dids) u(id, did)
                 WHERE u.did = ANY (v_debtors);
                IF coalesce(cardinality(v_targets), 0) <> 1 THEN
                    v_targets := NULL;
                    v_status := 'exception';
                    v_reason := 'Ambiguous invoice ' || l.invoice_ref_number;
                END IF;
            ELSIF EXISTS (SELECT 1 FROM invoices
                           WHERE tenant_id = v_tenant AND lower(btrim(invoice_number)) = l.ref
                             AND (v_clients IS NULL OR client_id = ANY (v_clients))) THEN
                v_status := 'exception';
                v_reason := 'Invoice ' || l.invoice_ref_number || ' not open';
            END IF;
            v_by_number := v_targets IS NOT NULL;
        END IF;

        -- 2. MemoLine
        IF v_targets IS NULL AND v_status IS NULL AND l.memo_line IS NOT NULL THEN
            SELECT array_agg(tok ORDER BY ord) INTO v_tokens
              FROM (SELECT tok, min(ord) AS ord
                      FROM regexp_split_to_table(lower(l.memo_line), '[^a-z0-9]+') WITH ORDINALITY t(tok, ord)
                     WHERE length(tok) >= 3
                     GROUP BY tok) s;
            IF v_tokens IS NOT NULL THEN
                FOR r IN SELECT t.tok, array_agg(i.id ORDER BY i.id) AS ids,
                                array_agg(i.debtor_id ORDER BY i.id) AS dids
                           FROM unnest(v_tokens) WITH ORDINALITY t(tok, ord)
                           JOIN LATERAL (SELECT id, debtor_id FROM invoices
                                          WHERE tenant_id = v_tenant
                                            AND lower(btrim(invoice_number)) = t.tok
                                            AND open_balance > 0 AND status <> 'X'
                                            AND (v_clients IS NULL OR client_id = ANY (v_clients))
                                            FOR UPDATE) i ON true
                          GROUP BY t.tok, t.ord
                          ORDER BY t.ord
                LOOP
                    IF cardinality(r.ids) = 1 THEN
                        v_targets := coalesce(v_targets, '{}') || r.ids[1];
                        CONTINUE;
                    END IF;
                    IF NOT v_dset_done THEN
                        IF l.account_number IS NOT NULL THEN
                            SELECT array_agg(DISTINCT debtor_id) INTO v_debtors FROM debtor_accounts
                             WHERE tenant_id = v_tenant AND account_number = l.account_number;
                        END IF;
                        IF v_debtors IS NULL AND l.remitter_name IS NOT NULL THEN
                            SELECT array_agg(id) INTO v_debtors FROM debtors
                             WHERE tenant_id = v_tenant AND name_norm = fl_norm_name(l.remitter_name);
                        END IF;
                        v_dset_done := true;
                    END IF;
                    SELECT array_agg(u.id) INTO v_ids FROM unnest(r.ids, r.dids) u(id, did)
                     WHERE u.did = ANY (v_debtors);
                    IF coalesce(cardinality(v_ids), 0) <> 1 THEN
                        v_targets := NULL;
                        v_status := 'exception';
                        v_reason := 'Ambiguous invoice ' || r.tok;
                        EXIT;
                    END IF;
                    v_targets := coalesce(v_targets, '{}') || v_ids[1];
                END LOOP;
                v_by_number := v_targets IS NOT NULL;
            END IF;
        END IF;

        -- 3. Exact open balance for the payer's debtor (or the ClientCode client).
        IF v_targets IS NULL AND v_status IS NULL THEN
            IF NOT v_dset_done THEN
                IF l.account_number IS NOT NULL THEN
                    SELECT array_agg(DISTINCT debtor_id) INTO v_debtors FROM debtor_accounts
                     WHERE tenant_id = v_tenant AND account_number = l.account_number;
                END IF;
                IF v_debtors IS NULL AND l.remitter_name IS NOT NULL THEN
                    SELECT array_agg(id) INTO v_debtors FROM debtors
                     WHERE tenant_id = v_tenant AND name_norm = fl_norm_name(l.remitter_name);
                END IF;
                v_dset_done := true;
            END IF;
            -- Two statements, so each plan can use its index.
            IF v_debtors IS NOT NULL THEN
                SELECT array_agg(id) INTO v_ids
                  FROM (SELECT id FROM invoices
                         WHERE tenant_id = v_tenant AND debtor_id = ANY (v_debtors)
                           AND open_balance = l.amount AND open_balance > 0 AND status <> 'X'
                           AND (v_clients IS NULL OR client_id = ANY (v_clients))
                         LIMIT 2 FOR UPDATE) s;
            ELSIF v_clients IS NOT NULL THEN
                SELECT array_agg(id) INTO v_ids
                  FROM (SELECT id FROM invoices
                         WHERE tenant_id = v_tenant AND client_id = ANY (v_clients)
                           AND open_balance = l.amount AND open_balance > 0 AND status <> 'X'
                         LIMIT 2 FOR UPDATE) s;
            ELSE
                v_ids := NULL;
            END IF;
            IF cardinality(v_ids) = 1 THEN
                v_targets := v_ids;
            END IF;
        END IF;

        -- Apply in target order: min(remaining, open_balance) each (running sum over targets).
        IF v_targets IS NOT NULL THEN
            WITH t AS (
                SELECT u.id, u.ord, i.open_balance AS bal
                  FROM unnest(v_targets) WITH ORDINALITY u(id, ord)
                  JOIN invoices i ON i.id = u.id
            ), a AS (
                SELECT id, ord,
                       least(bal, greatest(0, l.amount - coalesce(sum(bal) OVER (ORDER BY ord
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS amt
                  FROM t
            ), upd AS (
                UPDATE invoices i
                   SET open_balance    = i.open_balance - a.amt,
                       last_payment_on = greatest(i.last_payment_on, l.payment_date),
                       paid_in_full_on = CASE WHEN i.open_balance = a.amt THEN l.payment_date
                                              ELSE i.paid_in_full_on END
                  FROM a
                 WHERE i.id = a.id AND a.amt > 0
             RETURNING i.id, i.client_id, i.debtor_id, i.invoice_integration_id, i.invoice_number,
                       i.amount, i.open_balance, i.paid_in_full_on, a.amt, a.ord
            ), ins AS (
                INSERT INTO payment_applications (tenant_id, line_id, invoice_id, amount)
                SELECT v_tenant, l.id, upd.id, upd.amt FROM upd ORDER BY upd.ord
            ), ev AS (
                INSERT INTO events (tenant_id, family, type, payload)
                SELECT v_tenant, 'posting', 'invoice.paid',
                       jsonb_build_object('InvoiceIntegrationId', upd.invoice_integration_id,
                                          'InvoiceNumber', upd.invoice_number,
                                          'ClientKey', c.client_key,
                                          'DebtorKey', d.debtor_key,
                                          'InvoiceAmount', fl_money(upd.amount),
                                          'PaidInFullOn', upd.paid_in_full_on)
                  FROM upd
                  JOIN clients c ON c.id = upd.client_id
                  JOIN debtors d ON d.id = upd.debtor_id
                 WHERE upd.open_balance = 0
                 ORDER BY upd.ord
            ), learn AS (
                INSERT INTO debtor_accounts (tenant_id, debtor_id, account_number)
                SELECT v_tenant, (array_agg(upd.debtor_id))[1], l.account_number
                  FROM upd
                 WHERE v_by_number AND l.account_number IS NOT NULL
                HAVING count(DISTINCT upd.debtor_id) = 1
                ON CONFLICT DO NOTHING
            )
            SELECT coalesce(sum(amt), 0) INTO v_applied FROM upd;
        END IF;

        a_id      := a_id || l.id;
        a_applied := a_applied || v_applied;
        a_status  := a_status || CASE WHEN v_status IS NOT NULL THEN v_status
                                      WHEN v_applied = 0 THEN 'unapplied'
                                      WHEN v_applied = l.amount THEN 'applied'
                                      ELSE 'partial' END;
        a_reason  := a_reason || v_reason;
    END LOOP;

    UPDATE payment_lines p
       SET applied_amount   = u.applied,
           unapplied_amount = p.amount - u.applied,
           status           = u.status,
           exception_reason = u.reason,
           reconciled_at    = now()
      FROM unnest(a_id, a_applied, a_status, a_reason) u(id, applied, status, reason)
     WHERE p.id = u.id;
END
$$;
REVOKE ALL ON FUNCTION reconcile_batch(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_batch(uuid) TO fl_api;
