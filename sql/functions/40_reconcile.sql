-- reconcile_batch: auto-apply a payment batch's pending lines to open invoices.
--
-- Per line, in line order (amount A):
--  1. InvoiceRefNumber: the open invoice with that number (trimmed, case-insensitive), within the
--     client named by ClientCode (CompCode or ClientKey; an unknown code is ignored). Several:
--     narrow by the payer's debtor (AccountNumber via debtor_accounts, else RemitterName by
--     normalised name); still several (or none left): exception 'Ambiguous invoice <n>'.
--     No open invoice but a closed one with that number: exception 'Invoice <n> not open'
--     (a duplicate payment is never re-routed by amount). Unknown number: go on with 2.
--  2. MemoLine tokens (fl_memo_tokens: its words, punctuation inside kept, as "inv-1001" or
--     "2021/0042", and their alphanumeric runs of >= 3 chars) equal to open invoice numbers, same
--     narrowing, applied in memo order; a run counts only when its word names no invoice, open
--     or not ("INV-1001" pays invoice INV-1001, not also an invoice 1001, nor invoice 1001 in
--     its place once INV-1001 is paid); any ambiguous token makes the line an exception. A memo
--     whose tokens name invoices of the payer's debtor (else of the ClientCode client), none of
--     them open: exception 'Invoice <token> not open' (as in 1, never re-routed by amount;
--     until the twenty-fourth session such a line went on to a run of the word or to rule 3).
--  3. Amount: the single open invoice of the payer's debtor (or of the ClientCode client) whose
--     open balance equals A exactly. Two or more: exception 'Ambiguous amount <A>' (the payer is
--     known, the invoice is not: a person decides).
-- Applying takes min(remaining, open_balance) per invoice; the rest stays unapplied ('partial').
-- Lines applied by invoice number teach debtor_accounts the payer's AccountNumber (unless another
-- transaction is teaching it the same pair at that moment: fl_learn_lock).
-- Only 'pending' lines are processed: running it again changes nothing.
--
-- fl_reconcile_lines(tenant, lines, insert) does the work on lines given as payment_lines rows in line
-- order: reconcile_batch passes the stored pending lines (insert = false: their results are
-- updated); posting_post_payments passes the new lines (insert = true: each is inserted once,
-- with its result, or pending just before the one-by-one path when that path takes it). It
-- returns per line (line_k = position in lines) its result and Applications, for the echo.
-- How (the result is that of processing the lines one by one in line order):
--  * fast path (fl_reconcile_run): one statement applies the leading run of lines whose
--    InvoiceRefNumber names exactly one open invoice (within ClientCode). Lines of the run paying
--    the same invoice get, in line order, min(amount, what is left): cumulative applied =
--    least(balance, cumulative amount); a line finding it already paid is 'Invoice <n> not
--    open', as it would one by one;
--  * slow path: the line where the run stopped and the lines after it that did not qualify, one
--    by one with the rules above; then the fast path again, on the new state;
--  * which lines qualify is looked up once, after the lock step, for the routing: the fast path
--    takes a run of lines that qualified then (a window: after a stop that left lines of a
--    window looked up for nothing, 4 lines, doubling while whole windows qualify), and decides
--    again on the state it finds. Each line is looked up a bounded number of times. (Looking up
--    every remaining line at every stop made a mixed batch quadratic: 4,000 lines took 7-16 s.)
--  * locks: every open invoice a line names (InvoiceRefNumber or a MemoLine token) is locked up
--    front, in id order, so that concurrent batches paying the same invoices cannot deadlock;
--  * except for new lines that all qualify for the fast path (a bank file of invoice numbers):
--    they are first applied without that lock step, in a subtransaction, with a lock_timeout
--    of 50 ms. The fast path reads the invoices unlocked and updates the versions it read, in
--    id order. One that a concurrent transaction updated in between (it waits for that one to
--    end) is updated after the others if it is still open and still the same invoice to these
--    lines, with a balance above what they pay: then each line's result is the one it gets on
--    the new balance. Otherwise, or if a lock is not granted within the timeout, the
--    subtransaction is rolled back and the batch goes the locked way. Each wait of an attempt
--    ends within 50 ms, so a lock cycle with another batch ends with the attempt, long before
--    PostgreSQL's deadlock check (deadlock_timeout, 1 s by default) would pick a victim. The
--    lock step was 100 row locks per 100-line batch, each a write of the row and a WAL record,
--    before the same rows were updated (docs/sql.md has the figures; until migration 0010 a
--    BEFORE UPDATE trigger on invoices locked each updated invoice anyway).
-- line_apps: the line's Applications as a JSON array (text, see fl_payment_line_json).

-- The payer's debtor, for rules 1-3 of reconcile_batch: the debtor that the line's AccountNumber
-- is known for (debtor_accounts), if it is known for exactly one; else the one debtor named
-- RemitterName (fl_norm_name); else none (NULL). An account known for several debtors does not
-- name the payer. As a one-element array, for "debtor_id = ANY (...)". Lines applied by invoice
-- number teach debtor_accounts their AccountNumber, unless it is the batch's own AccountNumber
-- (the receiving account a bank file repeats on every line, as the vendor's example does).
CREATE OR REPLACE FUNCTION fl_payer_debtors(p_tenant uuid, p_account text, p_remitter text) RETURNS uuid[]
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v uuid[];
BEGIN
    IF p_account IS NOT NULL THEN
        SELECT array_agg(DISTINCT debtor_id) INTO v FROM debtor_accounts
         WHERE tenant_id = p_tenant AND account_number = p_account;
        IF cardinality(v) = 1 THEN
            RETURN v;
        END IF;
    END IF;
    IF p_remitter IS NOT NULL THEN
        SELECT array_agg(id) INTO v FROM debtors
         WHERE tenant_id = p_tenant AND name_norm = fl_norm_name(p_remitter);
        IF cardinality(v) = 1 THEN
            RETURN v;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION fl_payer_debtors(uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_payer_debtors(uuid, text, text) TO fl_api, fl_report;

-- Whether this transaction may learn (p_account, p_debtor) into debtor_accounts now: the pair
-- is not known yet, and no other transaction is learning it (a transaction-level advisory lock,
-- tried, never waited for). When one is, it records the pair (or, rolled back, a later payment does) and
-- this one leaves it, so that a batch never waits for another's uncommitted row: two batches
-- paying by number that learned two new accounts in opposite orders waited for each other, and
-- PostgreSQL cancelled one (40P01; until the twenty-fourth session). Known pairs take no lock.
-- At most 256 such locks a transaction (advisory locks share PostgreSQL's lock
-- table: a first bank file of 10,000 new payers must not fill it); past that the pair is
-- learned without one, and may wait as before (counted in fl.learn_locks, for the transaction).
CREATE OR REPLACE FUNCTION fl_learn_lock(p_tenant uuid, p_debtor uuid, p_account text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    n int := coalesce(nullif(current_setting('fl.learn_locks', true), ''), '0')::int;
BEGIN
    IF EXISTS (SELECT 1 FROM debtor_accounts k
                WHERE k.tenant_id = p_tenant AND k.account_number = p_account AND k.debtor_id = p_debtor) THEN
        RETURN false;
    END IF;
    IF n >= 256 THEN
        RETURN true;
    END IF;
    PERFORM set_config('fl.learn_locks', (n + 1)::text, true);
    RETURN pg_try_advisory_xact_lock(hashtextextended(p_tenant::text || '/account/' || p_debtor::text
                                                      || '/' || p_account, 0));
END
$$;
REVOKE ALL ON FUNCTION fl_learn_lock(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_learn_lock(uuid, uuid, text) TO fl_api;

-- The tokens of a MemoLine that may be invoice numbers, lower-case, each once (its first place),
-- in memo order (wn: word, pn: 0 for the word itself, else its n-th alphanumeric run; a token
-- that is also a word of its own is taken there, with no parent). Words are
-- split at white space, commas and semicolons, and lose the punctuation around them ("#INV-1001,"
-- -> "inv-1001"); a word with punctuation inside is a token itself (parent NULL), and so is each
-- of its alphanumeric runs of 3 or more characters (parent: the word). Invoice numbers with a
-- space inside, or shorter than 3 characters, cannot be found in a memo.
CREATE OR REPLACE FUNCTION fl_memo_tokens(p_memo text)
RETURNS TABLE (tok text, wn bigint, pn bigint, parent text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT DISTINCT ON (t.tok) t.tok, t.wn, t.pn, t.parent
      FROM (SELECT w.wn, regexp_replace(w.word, '^[^a-z0-9]+|[^a-z0-9]+$', '', 'g') AS whole
              FROM regexp_split_to_table(lower(p_memo), '[[:space:],;]+') WITH ORDINALITY w(word, wn)) w
     CROSS JOIN LATERAL (
           SELECT w.whole AS tok, w.wn, 0::bigint AS pn, NULL::text AS parent
            WHERE w.whole ~ '[^a-z0-9]' AND length(w.whole) >= 3
           UNION ALL
           SELECT p.part, w.wn, p.pn, CASE WHEN w.whole ~ '[^a-z0-9]' THEN w.whole END
             FROM regexp_split_to_table(w.whole, '[^a-z0-9]+') WITH ORDINALITY p(part, pn)
            WHERE length(p.part) >= 3) t
     ORDER BY t.tok, t.parent IS NOT NULL, t.wn, t.pn     -- a token that stands alone somewhere counts there
$$;
GRANT EXECUTE ON FUNCTION fl_memo_tokens(text) TO fl_api, fl_report;

-- The fast path over p_lines, a window of the batch's lines whose first is line p_first (see
-- above): writes the run's lines (p_insert) or their results, the applications, learned accounts,
-- the invoices and their invoice.paid events. run_stop: the first line of the window that does
-- not qualify (NULL: all did). p_unlocked: the invoices are not locked by the caller; the run is
-- applied only if every line qualifies, and SQLSTATE FLR01 is raised if an invoice changed in a way that would
-- change a line's result (the caller's subtransaction then undoes the run). Called by
-- fl_reconcile_lines only; its settings, for plans that do not depend on statistics.
-- Before the ninth session it also returned run_next (the next line that qualified, which took looking up
-- every line after the stop): a changed result type needs DROP, not CREATE OR REPLACE.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'fl_reconcile_run' AND 'run_next' = ANY (proargnames)
                                       AND pronamespace = 'public'::regnamespace) THEN
        DROP FUNCTION fl_reconcile_run(uuid, payment_lines[], int, boolean, boolean);
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION fl_reconcile_run(p_tenant uuid, p_lines payment_lines[], p_first int,
                                            p_insert boolean, p_unlocked boolean,
                                            OUT run_stop int, OUT run_k int[],
                                            OUT run_applied numeric[], OUT run_status text[],
                                            OUT run_reason text[], OUT run_apps text[])
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
AS $$
DECLARE
    v_tenant   uuid := p_tenant;
    v_invoices bigint;
    v_updated  bigint;
    v_missed   jsonb;
    v_m        record;
BEGIN
    -- MATERIALIZED: ref must be a plain value for the index condition on invoice_number_norm
    -- (RLS lets only leakproof operators on plain values be index conditions; lower() is not).
    -- The invoices are updated by the row versions read (ctid), in id order: a Tid Scan under
    -- the sorted per_inv, a plan no statistics can change (a join on id can be driven from an
    -- index on tenant_id, which RLS makes usable: all the tenant's open invoices, in another
    -- order). A row a concurrent transaction updated since it was read is not updated here
    -- (PostgreSQL re-checks a Tid Scan against the new version's ctid): see "missed" below.
    WITH ln AS MATERIALIZED (
        SELECT p_first - 1 + u.ordinality::int AS k, u.id, u.amount, u.payment_date AS pdate,
               u.account_number AS acct, lower(u.invoice_ref_number) AS ref,
               u.invoice_ref_number AS refraw, u.client_code AS code, u.tenant_id AS x_tenant,
               u.batch_id AS x_batch, u.line_no AS x_no, u.bank_batch_item AS x_item,
               u.payment_type AS x_type, u.bank_ref_number AS x_bankref, u.transaction_number AS x_tx,
               u.remitter_name AS x_remit, u.memo_line AS x_memo, u.financial_docs AS x_docs
          FROM unnest(p_lines) WITH ORDINALITY u
    ), q AS (
        SELECT ln.*, m.cnt = 1 AS ok, m.inv, m.tid, m.xid, m.cid, m.did, m.bal, m.ckey, m.iid, m.inum
          FROM ln
          LEFT JOIN LATERAL (
               SELECT array_agg(c.id) AS ids FROM clients c
                WHERE ln.code IS NOT NULL AND c.tenant_id = v_tenant
                  AND (c.comp_code_key = upper(ln.code) OR c.client_key = ln.code)) cl ON true
          LEFT JOIN LATERAL (
               -- the first of the open invoices the line names, and how many there are (a
               -- column each taken as (array_agg(x))[1] built and read ten arrays a line: ~4 %
               -- of a batch's backend instructions)
               SELECT count(*) OVER () AS cnt, i.id AS inv, i.ctid AS tid, i.xmin AS xid,
                      i.client_id AS cid, i.debtor_id AS did, i.open_balance AS bal,
                      i.client_key AS ckey, i.invoice_integration_id AS iid, i.invoice_number AS inum
                 FROM invoices i
                WHERE ln.ref IS NOT NULL AND i.tenant_id = v_tenant AND i.invoice_number_norm = ln.ref
                  AND i.paid_in_full_on IS NULL AND i.status <> 'X'
                  AND (cl.ids IS NULL OR i.client_id = ANY (cl.ids))
                LIMIT 1) m ON true
    ), stop AS (
        SELECT min(k) AS k FROM q WHERE ok IS NOT TRUE
    ), run AS (
        SELECT q.*,
               least(q.bal, sum(q.amount) OVER w) AS cum_after,
               least(q.bal, sum(q.amount) OVER w - q.amount) AS cum_before
          FROM q
         WHERE q.ok AND q.k < coalesce((SELECT k FROM stop), 2147483647)
           AND (NOT p_unlocked OR (SELECT k FROM stop) IS NULL)
        WINDOW w AS (PARTITION BY q.inv ORDER BY q.k)
    ), ap AS (
        SELECT run.*, run.cum_after - run.cum_before AS amt,
               CASE WHEN run.cum_after = run.cum_before THEN 'exception'
                    WHEN run.cum_after - run.cum_before = run.amount THEN 'applied'
                    ELSE 'partial' END AS status,
               CASE WHEN run.cum_after = run.cum_before
                    THEN 'Invoice ' || run.refraw || ' not open' END AS reason
          FROM run
    ), ins_lines AS (
        -- new lines (posting_post_payments): written once, with their result
        INSERT INTO payment_lines (id, tenant_id, batch_id, line_no, payment_date, bank_batch_item,
                                   payment_type, amount, bank_ref_number, account_number,
                                   transaction_number, remitter_name, memo_line, invoice_ref_number,
                                   client_code, financial_docs, applied_amount, unapplied_amount,
                                   status, exception_reason, reconciled_at)
        SELECT ap.id, ap.x_tenant, ap.x_batch, ap.x_no, ap.pdate, ap.x_item, ap.x_type, ap.amount,
               ap.x_bankref, ap.acct, ap.x_tx, ap.x_remit, ap.x_memo, ap.refraw, ap.code, ap.x_docs,
               ap.amt, ap.amount - ap.amt, ap.status, ap.reason, now()
          FROM ap
         WHERE p_insert             -- in any order: their ids are the array's
    ), upd_lines AS (
        -- stored pending lines (reconcile_batch)
        UPDATE payment_lines p
           SET applied_amount   = ap.amt,
               unapplied_amount = p.amount - ap.amt,
               status           = ap.status,
               exception_reason = ap.reason,
               reconciled_at    = now()
          FROM ap
         WHERE NOT p_insert AND p.id = ap.id
    ), ins AS (
        INSERT INTO payment_applications (tenant_id, line_id, invoice_id, amount)
        SELECT v_tenant, ap.id, ap.inv, ap.amt FROM ap WHERE ap.amt > 0 ORDER BY ap.k
    ), learn AS (
        -- the payer's account, not the batch's own (fl_payer_debtors)
        INSERT INTO debtor_accounts (tenant_id, debtor_id, account_number)
        SELECT v_tenant, s.did, s.acct
          FROM (SELECT DISTINCT ap.did, ap.acct, ap.x_batch FROM ap WHERE ap.amt > 0 AND ap.acct IS NOT NULL) s
         -- a CASE, so that the lock is tried last, and only for a pair to insert
         WHERE CASE WHEN EXISTS (SELECT 1 FROM payment_batches b WHERE b.id = s.x_batch AND b.account_number = s.acct)
                    THEN false
                    ELSE fl_learn_lock(v_tenant, s.did, s.acct) END
        ON CONFLICT DO NOTHING
    ), per_inv AS (
        SELECT inv, tid, xid, sum(amt) AS tot,
               max(pdate) AS last_date,
               min(pdate) FILTER (WHERE cum_after = bal) AS paid_date,
               min(k) FILTER (WHERE cum_after = bal) AS paid_by
          FROM ap WHERE amt > 0
         -- the lines of an invoice read it in one statement, with one snapshot: the same version
         GROUP BY inv, tid, xid
    ), upd AS (
        UPDATE invoices i
           SET open_balance    = i.open_balance - p.tot,
               last_payment_on = greatest(i.last_payment_on, p.last_date),
               paid_in_full_on = CASE WHEN i.open_balance = p.tot THEN p.paid_date
                                      ELSE i.paid_in_full_on END
          FROM (SELECT * FROM per_inv ORDER BY inv) p
         -- xmin: the version read, also on a PostgreSQL whose re-check of a Tid Scan on a
         -- concurrently updated row does not compare ctids (older minor releases passed it)
         WHERE i.ctid = p.tid AND i.id = p.inv AND i.xmin = p.xid
     RETURNING i.id, i.client_key, i.debtor_key, i.invoice_integration_id, i.invoice_number,
               i.amount, i.open_balance, i.paid_in_full_on, p.paid_by
    ), ev AS (
        INSERT INTO events (tenant_id, family, type, payload)
        SELECT v_tenant, 'posting', 'invoice.paid',
               fl_invoice_paid_json(upd.invoice_integration_id, upd.invoice_number, upd.client_key,
                                    upd.debtor_key, upd.amount, upd.paid_in_full_on)
          FROM upd
         WHERE upd.open_balance = 0
         ORDER BY upd.paid_by
    )
    SELECT (SELECT k FROM stop),
           (SELECT count(*) FROM per_inv), (SELECT count(*) FROM upd),
           CASE WHEN (SELECT count(*) FROM upd) <> (SELECT count(*) FROM per_inv)
                -- the missed invoices, with what their lines read of them (rare: not on the
                -- way of every batch)
                THEN (SELECT jsonb_agg(to_jsonb(p) || to_jsonb(a) ORDER BY p.inv) FROM per_inv p
                        CROSS JOIN LATERAL (SELECT ap.inum, ap.cid, ap.did, ap.iid, ap.ckey
                                              FROM ap WHERE ap.inv = p.inv LIMIT 1) a
                       WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.id = p.inv)) END,
           array_agg(ap.k), array_agg(ap.amt), array_agg(ap.status), array_agg(ap.reason),
           array_agg(CASE WHEN ap.amt > 0
                          THEN '[' || fl_application_json(ap.iid, ap.inum, ap.ckey, ap.amt) || ']'
                          ELSE '[]' END)
      INTO run_stop, v_invoices, v_updated, v_missed, run_k, run_applied, run_status, run_reason,
           run_apps
      FROM ap;
    IF v_updated = v_invoices THEN
        RETURN;
    END IF;
    IF NOT p_unlocked THEN
        RAISE EXCEPTION 'reconcile: % of % invoices updated', v_updated, v_invoices;
    END IF;
    -- Missed (unlocked only): invoices a concurrent transaction updated since they were read.
    -- Each is updated by id if it is still open and still the same invoice to these lines, with
    -- a balance above what they pay (none pays it off): then every line's result is the one it
    -- gets on the new balance. Otherwise FLR01: the caller undoes the batch and applies it
    -- locked. These row locks come after the run's others, out of id order: the caller's
    -- lock_timeout bounds the wait, so a cycle with another batch ends with this attempt.
    FOR v_m IN SELECT * FROM jsonb_to_recordset(v_missed)
                        AS j(inv uuid, tot numeric, last_date date, paid_by int, inum text, cid uuid,
                             did uuid, iid text, ckey text)
    LOOP
        UPDATE invoices i
           SET open_balance    = i.open_balance - v_m.tot,
               last_payment_on = greatest(i.last_payment_on, v_m.last_date)
         WHERE i.id = v_m.inv AND v_m.paid_by IS NULL
           AND i.paid_in_full_on IS NULL AND i.status <> 'X' AND i.open_balance > v_m.tot
           AND i.invoice_number = v_m.inum AND i.client_id = v_m.cid AND i.debtor_id = v_m.did
           AND i.invoice_integration_id = v_m.iid AND i.client_key IS NOT DISTINCT FROM v_m.ckey;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'FLR01', MESSAGE = 'reconcile: an invoice changed since it was read';
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION fl_reconcile_run(uuid, payment_lines[], int, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_reconcile_run(uuid, payment_lines[], int, boolean, boolean) TO fl_api;

CREATE OR REPLACE FUNCTION fl_reconcile_lines(p_tenant uuid, p_lines payment_lines[], p_insert boolean)
RETURNS TABLE (line_k int, line_applied numeric, line_status text, line_reason text, line_apps text)
    LANGUAGE plpgsql
    -- Every statement below (and in fl_reconcile_run) is written to have a good generic plan;
    -- custom re-planning of the apply statement per line cost more than executing it.
    SET plan_cache_mode = force_generic_plan
    -- Every table is reached by key. A session keeps its plans until the next ANALYZE, and one
    -- planned while a table looked empty (a fresh install, right after VACUUM ANALYZE) scans it
    -- sequentially for as long as that lasts (up to autovacuum_naptime, while it grows by
    -- thousands of rows a second): measured as a batch slowing from 10 to 40+ ms. Index plans
    -- cost next to nothing on a tiny table and keep the cost flat.
    SET enable_seqscan = off
AS $$
DECLARE
    v_tenant     uuid := p_tenant;
    v_n          int := coalesce(cardinality(p_lines), 0);
    v_pos        int := 1;
    v_stop       int;
    v_next       int;
    v_end        int;
    v_win        int;                -- fast path: the end of its window (exclusive)
    v_h          int;                -- and its length limit (NULL: none)
    v_q          boolean[];          -- per line: it qualified after the lock step (routing only)
    -- one line (slow path)
    l            payment_lines;
    l_ref        text;
    r            record;
    v_clients    uuid[];
    v_debtors    uuid[];
    v_dset_done  boolean;
    v_ids        uuid[];
    v_dids       uuid[];
    v_targets    uuid[];
    v_status     text;
    v_reason     text;
    v_by_number  boolean;
    v_applied    numeric(18,2);
    -- slow-path line results, written in one statement at the end
    a_id         bigint[] := '{}';
    a_applied    numeric[] := '{}';
    a_status     text[] := '{}';
    a_reason     text[] := '{}';
    -- fast path: per line, its result
    r_k          int[];
    r_applied    numeric[];
    r_status     text[];
    r_reason     text[];
    r_apps       text[];
    v_apps       text;
    v_lock_timeout text;
    -- per line (its position, as text): the MemoLine tokens that named an open invoice at the
    -- lock step, [{tok, wn, pn, parent}, ...] (fl_memo_tokens' columns)
    v_memo       jsonb;
    v_nlocked    bigint;
BEGIN
    IF v_n = 0 THEN
        RETURN;
    END IF;

    -- New lines that all name an invoice: first without the lock step (see above).
    IF p_insert AND NOT EXISTS (SELECT 1 FROM unnest(p_lines) u WHERE u.invoice_ref_number IS NULL) THEN
        v_lock_timeout := current_setting('lock_timeout');
        BEGIN
            -- It never waits long for an invoice another transaction holds: it gives up first.
            PERFORM set_config('lock_timeout', '50ms', true);
            SELECT f.run_stop, f.run_k, f.run_applied, f.run_status, f.run_reason, f.run_apps
              INTO v_stop, r_k, r_applied, r_status, r_reason, r_apps
              FROM fl_reconcile_run(v_tenant, p_lines, 1, true, true) f;
            PERFORM set_config('lock_timeout', v_lock_timeout, true);
            IF v_stop IS NULL THEN
                -- last: rows returned are not taken back by a rollback of the subtransaction
                RETURN QUERY SELECT * FROM unnest(r_k, r_applied, r_status, r_reason, r_apps);
                RETURN;
            END IF;
            -- some line does not qualify: nothing was written
        EXCEPTION
            -- An invoice changed since it was read (FLR01), or another transaction held one for
            -- 50 ms (a batch's row lock, a DBA's DELETE guard: SHARE on payment_applications):
            -- undone (lock_timeout included), done again locked.
            WHEN SQLSTATE 'FLR01' OR lock_not_available OR deadlock_detected THEN
                NULL;
        END;
    END IF;

    -- Lock every open invoice that a line names, in id order (no deadlock between batches).
    -- The MemoLines are split into tokens here, once (for a long memo that is most of the
    -- line's cost), and the tokens that name an invoice, open or not, are kept per line for
    -- rule 2: the others name nothing, so the line-by-line step does not look them up again.
    -- (The count is there so that every row of "locked" is read, and locked, whatever the rest.)
    WITH mt AS MATERIALIZED (
        SELECT u.ordinality AS k, t.tok, t.wn, t.pn, t.parent
          FROM unnest(p_lines) WITH ORDINALITY u, fl_memo_tokens(u.memo_line) t
         WHERE u.memo_line IS NOT NULL
    ), named AS MATERIALIZED (
        SELECT t.tok AS num
          FROM (SELECT DISTINCT mt.tok FROM mt) t
         WHERE EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = v_tenant AND i.invoice_number_norm = t.tok)
    ), locked AS MATERIALIZED (
        SELECT i.invoice_number_norm AS num
          FROM invoices i
         WHERE i.tenant_id = v_tenant
           AND i.invoice_number_norm = ANY (ARRAY(
                   SELECT lower(u.invoice_ref_number) FROM unnest(p_lines) u
                    WHERE u.invoice_ref_number IS NOT NULL
                   UNION
                   SELECT mt.tok FROM mt))
           AND i.paid_in_full_on IS NULL AND i.status <> 'X'
         ORDER BY i.id
           FOR UPDATE
    )
    SELECT (SELECT count(*) FROM locked), jsonb_object_agg(h.k, h.toks)
      INTO v_nlocked, v_memo
      FROM (SELECT mt.k, jsonb_agg(jsonb_build_object('tok', mt.tok, 'wn', mt.wn, 'pn', mt.pn,
                                                      'parent', mt.parent)) AS toks
              FROM mt
             WHERE mt.tok IN (SELECT named.num FROM named)
             GROUP BY mt.k) h;

    -- Which lines qualify for the fast path now (InvoiceRefNumber naming exactly one open invoice
    -- within ClientCode, as fl_reconcile_run decides): the fast path takes runs of those, the
    -- slow path runs of the others. Lines before may change that (a slow line closing an invoice
    -- a later line names): the fast path decides again on the state it finds, and stops there.
    WITH ln AS MATERIALIZED (   -- ref a plain value, for the index (see fl_reconcile_run)
        SELECT u.ordinality AS k, lower(u.invoice_ref_number) AS ref, u.client_code AS code
          FROM unnest(p_lines) WITH ORDINALITY u
    )
    SELECT array_agg(coalesce(m.cnt = 1, false) ORDER BY ln.k) INTO v_q
      FROM ln
      LEFT JOIN LATERAL (
           SELECT array_agg(c.id) AS ids FROM clients c
            WHERE ln.code IS NOT NULL AND c.tenant_id = v_tenant
              AND (c.comp_code_key = upper(ln.code) OR c.client_key = ln.code)) cl ON true
      LEFT JOIN LATERAL (
           SELECT count(*) AS cnt FROM invoices i
            WHERE ln.ref IS NOT NULL AND i.tenant_id = v_tenant AND i.invoice_number_norm = ln.ref
              AND i.paid_in_full_on IS NULL AND i.status <> 'X'
              AND (cl.ids IS NULL OR i.client_id = ANY (cl.ids))) m ON true;
    LOOP
        -- Fast path over the window v_pos .. v_win - 1: the run of lines that qualified, at most
        -- v_h lines (NULL: no limit).
        v_win := v_pos;
        WHILE v_win <= v_n AND v_q[v_win] AND (v_h IS NULL OR v_win < v_pos + v_h) LOOP
            v_win := v_win + 1;
        END LOOP;
        IF v_win > v_pos THEN
            -- The window's lines, taken one by one: a slice (p_lines[a:b]) would first copy the
            -- whole batch out of the expanded array this function holds, at every window.
            SELECT f.run_stop, f.run_k, f.run_applied, f.run_status, f.run_reason, f.run_apps
              INTO v_stop, r_k, r_applied, r_status, r_reason, r_apps
              FROM fl_reconcile_run(v_tenant, ARRAY(SELECT p_lines[i] FROM generate_series(v_pos, v_win - 1) i),
                                    v_pos, p_insert, false) f;
            IF r_k IS NOT NULL THEN
                RETURN QUERY SELECT * FROM unnest(r_k, r_applied, r_status, r_reason, r_apps);
            END IF;
        ELSE
            v_stop := v_pos;
        END IF;
        IF v_stop IS NULL THEN
            -- the whole window qualified
            EXIT WHEN v_win > v_n;
            v_pos := v_win;
            IF v_q[v_win] THEN
                v_h := v_h * 2;     -- it ended at its limit: go on with a longer one
                CONTINUE;
            END IF;
            v_stop := v_win;        -- it ended at a line that did not qualify
        ELSIF v_stop < v_win - 1 THEN
            -- A line of the window no longer qualified, and the lines after it were looked up
            -- for nothing: windows start short again (and double while they qualify), so that
            -- a line costs a bounded number of look-ups whatever the lines before it changed.
            v_h := 4;
        END IF;

        -- Slow path: lines v_stop .. up to the next line that qualified, one by one (new lines
        -- are stored pending first).
        v_next := v_stop + 1;
        WHILE v_next <= v_n AND NOT v_q[v_next] LOOP
            v_next := v_next + 1;
        END LOOP;
        v_end := v_next - 1;
        IF p_insert THEN
            INSERT INTO payment_lines
            SELECT (s.l).* FROM (SELECT p_lines[i] AS l FROM generate_series(v_stop, v_end) i OFFSET 0) s;
        END IF;
        FOR k IN v_stop .. v_end LOOP
            l := p_lines[k];
            l_ref := lower(l.invoice_ref_number);
            v_clients := NULL; v_debtors := NULL; v_dset_done := false; v_targets := NULL;
            v_status := NULL; v_reason := NULL; v_by_number := false; v_applied := 0; v_apps := NULL;

            IF l.client_code IS NOT NULL THEN
                SELECT array_agg(id) INTO v_clients FROM clients
                 WHERE tenant_id = v_tenant
                   AND (comp_code_key = upper(l.client_code) OR client_key = l.client_code);
            END IF;

            -- 1. InvoiceRefNumber
            IF l_ref IS NOT NULL THEN
                SELECT array_agg(id ORDER BY id), array_agg(debtor_id ORDER BY id) INTO v_ids, v_dids
                  FROM (SELECT id, debtor_id FROM invoices
                         WHERE tenant_id = v_tenant AND invoice_number_norm = l_ref
                           AND paid_in_full_on IS NULL AND status <> 'X'
                           AND (v_clients IS NULL OR client_id = ANY (v_clients))
                           FOR UPDATE) s;
                IF cardinality(v_ids) = 1 THEN
                    v_targets := v_ids;
                ELSIF cardinality(v_ids) > 1 THEN
                    IF NOT v_dset_done THEN
                        v_debtors := fl_payer_debtors(v_tenant, l.account_number, l.remitter_name);
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
                               WHERE tenant_id = v_tenant AND invoice_number_norm = l_ref
                                 AND (v_clients IS NULL OR client_id = ANY (v_clients))) THEN
                    v_status := 'exception';
                    v_reason := 'Invoice ' || l.invoice_ref_number || ' not open';
                END IF;
                v_by_number := v_targets IS NOT NULL;
            END IF;

            -- 2. MemoLine
            IF v_targets IS NULL AND v_status IS NULL AND l.memo_line IS NOT NULL THEN
                -- a run of a word counts only if the word itself names no invoice, open or not (in
                -- the tenant: v_memo keeps a line's tokens that name one, its words among them)
                FOR r IN WITH m AS (
                             SELECT t.tok, t.wn, t.pn, t.parent, i.id, i.debtor_id
                               FROM jsonb_to_recordset(v_memo -> k::text)
                                    AS t(tok text, wn bigint, pn bigint, parent text)
                               JOIN LATERAL (SELECT id, debtor_id FROM invoices
                                              WHERE tenant_id = v_tenant
                                                AND invoice_number_norm = t.tok
                                                AND paid_in_full_on IS NULL AND status <> 'X'
                                                AND (v_clients IS NULL OR client_id = ANY (v_clients))
                                                FOR UPDATE) i ON true)
                         SELECT m.tok, array_agg(m.id ORDER BY m.id) AS ids,
                                array_agg(m.debtor_id ORDER BY m.id) AS dids
                           FROM m
                          WHERE m.parent IS NULL
                             OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_memo -> k::text) w
                                             WHERE w ->> 'tok' = m.parent)
                          GROUP BY m.tok, m.wn, m.pn
                          ORDER BY m.wn, m.pn
                LOOP
                    IF cardinality(r.ids) = 1 THEN
                        v_targets := coalesce(v_targets, '{}') || r.ids[1];
                        CONTINUE;
                    END IF;
                    IF NOT v_dset_done THEN
                        v_debtors := fl_payer_debtors(v_tenant, l.account_number, l.remitter_name);
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
                -- A memo that names invoices of the payer (of the ClientCode client when the
                -- payer is not known), none of them open (paid or cancelled): as for
                -- InvoiceRefNumber, a duplicate payment is never re-routed by amount. Closed
                -- invoices of others do not count (a check number, a year in the memo).
                IF v_targets IS NULL AND v_status IS NULL THEN
                    IF NOT v_dset_done THEN
                        v_debtors := fl_payer_debtors(v_tenant, l.account_number, l.remitter_name);
                        v_dset_done := true;
                    END IF;
                    SELECT 'Invoice ' || t.tok || ' not open' INTO v_reason
                      FROM jsonb_to_recordset(v_memo -> k::text) AS t(tok text, wn bigint, pn bigint, parent text)
                     WHERE EXISTS (SELECT 1 FROM invoices i
                                    WHERE i.tenant_id = v_tenant AND i.invoice_number_norm = t.tok
                                      AND (v_clients IS NULL OR i.client_id = ANY (v_clients))
                                      AND CASE WHEN v_debtors IS NOT NULL THEN i.debtor_id = ANY (v_debtors)
                                               ELSE v_clients IS NOT NULL END)
                       AND (t.parent IS NULL
                            OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_memo -> k::text) w
                                            WHERE w ->> 'tok' = t.parent))
                     ORDER BY t.wn, t.pn
                     LIMIT 1;
                    IF FOUND THEN
                        v_status := 'exception';
                    END IF;
                END IF;
            END IF;

            -- 3. Exact open balance for the payer's debtor (or the ClientCode client).
            IF v_targets IS NULL AND v_status IS NULL THEN
                IF NOT v_dset_done THEN
                    v_debtors := fl_payer_debtors(v_tenant, l.account_number, l.remitter_name);
                    v_dset_done := true;
                END IF;
                -- Two statements, so each plan can use its index.
                IF v_debtors IS NOT NULL THEN
                    SELECT array_agg(id) INTO v_ids
                      FROM (SELECT id FROM invoices
                             WHERE tenant_id = v_tenant AND debtor_id = ANY (v_debtors)
                               AND open_balance = l.amount AND paid_in_full_on IS NULL AND status <> 'X'
                               AND (v_clients IS NULL OR client_id = ANY (v_clients))
                             LIMIT 2 FOR UPDATE) s;
                ELSIF v_clients IS NOT NULL THEN
                    SELECT array_agg(id) INTO v_ids
                      FROM (SELECT id FROM invoices
                             WHERE tenant_id = v_tenant AND client_id = ANY (v_clients)
                               AND open_balance = l.amount AND paid_in_full_on IS NULL AND status <> 'X'
                             LIMIT 2 FOR UPDATE) s;
                ELSE
                    v_ids := NULL;
                END IF;
                IF cardinality(v_ids) = 1 THEN
                    v_targets := v_ids;
                ELSIF cardinality(v_ids) > 1 THEN
                    v_status := 'exception';
                    v_reason := 'Ambiguous amount ' || fl_money(l.amount);
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
                 RETURNING i.id, i.client_key, i.debtor_id, i.debtor_key, i.invoice_integration_id,
                           i.invoice_number, i.amount, i.open_balance, i.paid_in_full_on, a.amt, a.ord
                ), ins AS (
                    INSERT INTO payment_applications (tenant_id, line_id, invoice_id, amount)
                    SELECT v_tenant, l.id, upd.id, upd.amt FROM upd ORDER BY upd.ord
                ), ev AS (
                    INSERT INTO events (tenant_id, family, type, payload)
                    SELECT v_tenant, 'posting', 'invoice.paid',
                           fl_invoice_paid_json(upd.invoice_integration_id, upd.invoice_number, upd.client_key,
                                                upd.debtor_key, upd.amount, upd.paid_in_full_on)
                      FROM upd
                     WHERE upd.open_balance = 0
                     ORDER BY upd.ord
                ), learn AS (
                    INSERT INTO debtor_accounts (tenant_id, debtor_id, account_number)
                    SELECT v_tenant, (array_agg(upd.debtor_id))[1], l.account_number
                      FROM upd
                     WHERE v_by_number AND l.account_number IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM payment_batches b
                                        WHERE b.id = l.batch_id AND b.account_number = l.account_number)
                    HAVING count(DISTINCT upd.debtor_id) = 1
                       AND fl_learn_lock(v_tenant, (array_agg(upd.debtor_id))[1], l.account_number)
                    ON CONFLICT DO NOTHING
                )
                SELECT coalesce(sum(upd.amt), 0),
                       '[' || string_agg(fl_application_json(upd.invoice_integration_id, upd.invoice_number,
                                                             upd.client_key, upd.amt), ',' ORDER BY upd.ord) || ']'
                  INTO v_applied, v_apps
                  FROM upd;
            END IF;

            a_id      := a_id || l.id;
            a_applied := a_applied || v_applied;
            a_status  := a_status || CASE WHEN v_status IS NOT NULL THEN v_status
                                          WHEN v_applied = 0 THEN 'unapplied'
                                          WHEN v_applied = l.amount THEN 'applied'
                                          ELSE 'partial' END;
            a_reason  := a_reason || v_reason;
            line_k := k; line_applied := v_applied; line_status := a_status[cardinality(a_status)];
            line_reason := v_reason; line_apps := coalesce(v_apps, '[]');
            RETURN NEXT;
        END LOOP;

        EXIT WHEN v_next > v_n;
        v_pos := v_next;
    END LOOP;

    -- Slow-path results.
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
REVOKE ALL ON FUNCTION fl_reconcile_lines(uuid, payment_lines[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_reconcile_lines(uuid, payment_lines[], boolean) TO fl_api;

-- A stored batch: its pending lines (see above).
CREATE OR REPLACE FUNCTION reconcile_batch(p_batch_id uuid) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    v_tenant uuid;
    v_lines  payment_lines[];
BEGIN
    SELECT tenant_id INTO v_tenant FROM payment_batches WHERE id = p_batch_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Batch not found';
    END IF;
    PERFORM fl_set_tenant(v_tenant);
    -- The batch row lock serialises reconciliations of a batch.
    SELECT array_agg(l ORDER BY l.line_no) INTO v_lines
      FROM payment_lines l
     WHERE l.batch_id = p_batch_id AND l.status = 'pending';
    PERFORM count(*) FROM fl_reconcile_lines(v_tenant, v_lines, false);
END
$$;
REVOKE ALL ON FUNCTION reconcile_batch(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_batch(uuid) TO fl_api;
