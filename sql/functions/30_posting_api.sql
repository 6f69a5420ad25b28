-- posting: one function per api_factor endpoint, called by the C handlers with one statement.
-- Errors: ERRCODE 'FLnnn' -> HTTP nnn, MESSAGE is the short reason ("Invalid ClientKey").
-- The C side has validated formats; these functions enforce the business rules.

------------------------------------------------------------------------------ clients
CREATE OR REPLACE FUNCTION posting_create_client(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    c clients;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    IF fl_txt(p_doc, 'ClientKey') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid ClientKey';
    END IF;
    IF fl_txt(p_doc, 'Name') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid Name';
    END IF;
    IF (p_doc ->> 'Type') IS NOT NULL AND (p_doc ->> 'Type') NOT IN ('0', '1') THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid Type';
    END IF;
    IF (p_doc ->> 'Industry') IS NOT NULL AND (p_doc ->> 'Industry') NOT IN ('1', '2', '3', '4', '5') THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid Industry';
    END IF;

    -- Upsert: a field present in the document replaces the stored value (null clears it),
    -- an absent field keeps it.
    INSERT INTO clients AS t (tenant_id, client_key, name, comp_code, address1, address2, city, state,
                         zip_code, country, phone, phone_alt, fax, email, ucc_date, ucc_date2,
                         ucc_signed_date, type, industry, alt_name, edi_id, fed_tax_num_enc,
                         fed_tax_num_last4)
    VALUES (p_tenant, fl_txt(p_doc, 'ClientKey'), fl_txt(p_doc, 'Name'), fl_txt(p_doc, 'CompCode'),
            fl_txt(p_doc, 'Address1'), fl_txt(p_doc, 'Address2'), fl_txt(p_doc, 'City'),
            upper(fl_txt(p_doc, 'State')), fl_txt(p_doc, 'ZipCode'), fl_txt(p_doc, 'Country'),
            fl_txt(p_doc, 'Phone'), fl_txt(p_doc, 'PhoneAlt'), fl_txt(p_doc, 'Fax'),
            fl_txt(p_doc, 'Email'), fl_txt(p_doc, 'UccDate')::date, fl_txt(p_doc, 'UccDate2')::date,
            fl_txt(p_doc, 'UccSignedDate')::date, (p_doc ->> 'Type')::smallint,
            (p_doc ->> 'Industry')::smallint, fl_txt(p_doc, 'AltName'), fl_txt(p_doc, 'EdiID'),
            fl_txt(p_doc, 'FedTaxNum'), fl_txt(p_doc, 'FedTaxNumLast4'))
    ON CONFLICT (tenant_id, client_key) DO UPDATE SET
        name              = EXCLUDED.name,
        comp_code         = CASE WHEN p_doc ? 'CompCode' THEN EXCLUDED.comp_code ELSE t.comp_code END,
        address1          = CASE WHEN p_doc ? 'Address1' THEN EXCLUDED.address1 ELSE t.address1 END,
        address2          = CASE WHEN p_doc ? 'Address2' THEN EXCLUDED.address2 ELSE t.address2 END,
        city              = CASE WHEN p_doc ? 'City' THEN EXCLUDED.city ELSE t.city END,
        state             = CASE WHEN p_doc ? 'State' THEN EXCLUDED.state ELSE t.state END,
        zip_code          = CASE WHEN p_doc ? 'ZipCode' THEN EXCLUDED.zip_code ELSE t.zip_code END,
        country           = CASE WHEN p_doc ? 'Country' THEN EXCLUDED.country ELSE t.country END,
        phone             = CASE WHEN p_doc ? 'Phone' THEN EXCLUDED.phone ELSE t.phone END,
        phone_alt         = CASE WHEN p_doc ? 'PhoneAlt' THEN EXCLUDED.phone_alt ELSE t.phone_alt END,
        fax               = CASE WHEN p_doc ? 'Fax' THEN EXCLUDED.fax ELSE t.fax END,
        email             = CASE WHEN p_doc ? 'Email' THEN EXCLUDED.email ELSE t.email END,
        ucc_date          = CASE WHEN p_doc ? 'UccDate' THEN EXCLUDED.ucc_date ELSE t.ucc_date END,
        ucc_date2         = CASE WHEN p_doc ? 'UccDate2' THEN EXCLUDED.ucc_date2 ELSE t.ucc_date2 END,
        ucc_signed_date   = CASE WHEN p_doc ? 'UccSignedDate' THEN EXCLUDED.ucc_signed_date ELSE t.ucc_signed_date END,
        type              = CASE WHEN p_doc ? 'Type' THEN EXCLUDED.type ELSE t.type END,
        industry          = CASE WHEN p_doc ? 'Industry' THEN EXCLUDED.industry ELSE t.industry END,
        alt_name          = CASE WHEN p_doc ? 'AltName' THEN EXCLUDED.alt_name ELSE t.alt_name END,
        edi_id            = CASE WHEN p_doc ? 'EdiID' THEN EXCLUDED.edi_id ELSE t.edi_id END,
        fed_tax_num_enc   = CASE WHEN p_doc ? 'FedTaxNum' THEN EXCLUDED.fed_tax_num_enc ELSE t.fed_tax_num_enc END,
        fed_tax_num_last4 = CASE WHEN p_doc ? 'FedTaxNum' OR p_doc ? 'FedTaxNumLast4'
                                 THEN EXCLUDED.fed_tax_num_last4 ELSE t.fed_tax_num_last4 END,
        updated_at        = now()
    RETURNING * INTO c;

    -- The webhook payload never carries the (encrypted) tax number.
    PERFORM fl_event(p_tenant, 'posting', 'client.upserted', fl_client_json(c) - 'FedTaxNum');
    RETURN fl_client_json(c);
END
$$;

CREATE OR REPLACE FUNCTION posting_get_client(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    c clients;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    SELECT * INTO c FROM clients WHERE tenant_id = p_tenant AND client_key = fl_txt(p_doc, 'ClientKey');
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Client not found';
    END IF;
    RETURN fl_client_json(c);
END
$$;

------------------------------------------------------------------------------ debtors
-- Shared by create-debtor and create-vendor (p_relation 'debtor' / 'vendor').
CREATE OR REPLACE FUNCTION fl_posting_upsert_debtor(p_tenant uuid, p_doc jsonb, p_relation text)
RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_client    clients;
    v_debtor    debtors;
    v_link      client_debtors;
    v_key       text := fl_txt(p_doc, 'DebtorKey');
    v_zip_key   text := CASE WHEN p_doc ? 'Zipcode' THEN 'Zipcode' ELSE 'ZipCode' END;
    v_mc_key    text := CASE WHEN p_doc ? 'McNumber' THEN 'McNumber' ELSE 'MCNumber' END;
    v_comp      text := upper(fl_txt(p_doc, 'CompCode'));
    v_base      text;
    v_out       jsonb;
BEGIN
    -- The client's row is locked (against other links being made for it, not against its
    -- schedules: their keys take KEY SHARE): the CompCode chosen below must still be free when
    -- the link is inserted, or two debtors created at once would both take WALMAR1 and the
    -- second fail on the unique key.
    SELECT * INTO v_client FROM clients WHERE tenant_id = p_tenant AND client_key = fl_txt(p_doc, 'ClientKey')
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid ClientKey';
    END IF;
    IF v_key IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid DebtorKey';
    END IF;
    IF fl_txt(p_doc, 'Name') IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid Name';
    END IF;
    IF upper(fl_txt(p_doc, 'Country')) NOT IN ('USA', 'MEX', 'CAN') THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid Country';
    END IF;

    -- Master: created on a new key; otherwise present fields replace, absent fields are kept.
    INSERT INTO debtors AS t (tenant_id, debtor_key, name, comp_code, address1, address2, city, state,
                         zip_code, country, phone, fax, email, mc_number, dot_number, notes)
    VALUES (p_tenant, v_key, fl_txt(p_doc, 'Name'), v_comp, fl_txt(p_doc, 'Address1'),
            fl_txt(p_doc, 'Address2'), fl_txt(p_doc, 'City'), upper(fl_txt(p_doc, 'State')),
            fl_txt(p_doc, v_zip_key), upper(fl_txt(p_doc, 'Country')), fl_txt(p_doc, 'Phone'),
            fl_txt(p_doc, 'Fax'), fl_txt(p_doc, 'Email'), fl_txt(p_doc, v_mc_key),
            fl_txt(p_doc, 'DOTNumber'), fl_txt(p_doc, 'Notes'))
    ON CONFLICT (tenant_id, debtor_key) DO UPDATE SET
        name       = EXCLUDED.name,
        address1   = CASE WHEN p_doc ? 'Address1' THEN EXCLUDED.address1 ELSE t.address1 END,
        address2   = CASE WHEN p_doc ? 'Address2' THEN EXCLUDED.address2 ELSE t.address2 END,
        city       = CASE WHEN p_doc ? 'City' THEN EXCLUDED.city ELSE t.city END,
        state      = CASE WHEN p_doc ? 'State' THEN EXCLUDED.state ELSE t.state END,
        zip_code   = CASE WHEN p_doc ? v_zip_key THEN EXCLUDED.zip_code ELSE t.zip_code END,
        country    = CASE WHEN p_doc ? 'Country' THEN EXCLUDED.country ELSE t.country END,
        phone      = CASE WHEN p_doc ? 'Phone' THEN EXCLUDED.phone ELSE t.phone END,
        fax        = CASE WHEN p_doc ? 'Fax' THEN EXCLUDED.fax ELSE t.fax END,
        email      = CASE WHEN p_doc ? 'Email' THEN EXCLUDED.email ELSE t.email END,
        mc_number  = CASE WHEN p_doc ? v_mc_key THEN EXCLUDED.mc_number ELSE t.mc_number END,
        dot_number = CASE WHEN p_doc ? 'DOTNumber' THEN EXCLUDED.dot_number ELSE t.dot_number END,
        -- the master's Notes (get-debtor-master): the last written through any of its links
        notes      = CASE WHEN p_doc ? 'Notes' THEN EXCLUDED.notes ELSE t.notes END,
        comp_code  = coalesce(t.comp_code, EXCLUDED.comp_code),
        updated_at = now()
    RETURNING * INTO v_debtor;

    SELECT * INTO v_link FROM client_debtors
     WHERE client_id = v_client.id AND debtor_id = v_debtor.id AND relation = p_relation
       FOR UPDATE;

    -- CompCode of the link: the requested one when free for this client, else kept (existing
    -- link) or generated: up to 6 upper-case letters/digits of the name plus a counter.
    IF v_comp IS NOT NULL AND EXISTS (SELECT 1 FROM client_debtors
                                       WHERE client_id = v_client.id AND comp_code = v_comp
                                         AND id IS DISTINCT FROM v_link.id) THEN
        v_comp := NULL;
    END IF;
    IF v_comp IS NULL AND v_link.id IS NULL THEN
        v_base := coalesce(nullif(left(upper(regexp_replace(v_debtor.name, '[^A-Za-z0-9]+', '', 'g')), 6), ''),
                           'DEBTOR');
        -- The smallest free counter is 1 or one past a code in use: only those are tried (not
        -- 1..100000, which cost 45 ms a call).
        SELECT v_base || c.n INTO v_comp
          FROM (SELECT 1 AS n
                UNION
                SELECT substr(cd.comp_code, length(v_base) + 1)::int + 1
                  FROM client_debtors cd
                 WHERE cd.client_id = v_client.id AND left(cd.comp_code, length(v_base)) = v_base
                   AND substr(cd.comp_code, length(v_base) + 1) ~ '^[1-9][0-9]{0,5}$') c
         WHERE c.n <= 100000
           AND NOT EXISTS (SELECT 1 FROM client_debtors
                            WHERE client_id = v_client.id AND comp_code = v_base || c.n)
         ORDER BY c.n LIMIT 1;
    END IF;

    IF v_link.id IS NULL THEN
        INSERT INTO client_debtors (tenant_id, client_id, debtor_id, relation, comp_code, notes)
        VALUES (p_tenant, v_client.id, v_debtor.id, p_relation, v_comp, fl_txt(p_doc, 'Notes'))
        RETURNING * INTO v_link;
        -- A master created without a CompCode takes its first link's code; so does one created
        -- by this call with a CompCode its link could not have (another debtor of the client
        -- has it): the master would show another debtor's code (created_at is the
        -- transaction's start only for a row this transaction made).
        IF v_debtor.comp_code IS NULL
           OR (v_debtor.created_at = now() AND v_debtor.comp_code IS DISTINCT FROM v_link.comp_code) THEN
            UPDATE debtors SET comp_code = v_link.comp_code WHERE id = v_debtor.id RETURNING * INTO v_debtor;
        END IF;
    ELSE
        UPDATE client_debtors SET
            comp_code  = coalesce(v_comp, comp_code),
            notes      = CASE WHEN p_doc ? 'Notes' THEN fl_txt(p_doc, 'Notes') ELSE notes END,
            updated_at = now()
         WHERE id = v_link.id
        RETURNING * INTO v_link;
    END IF;

    v_out := fl_debtor_json(v_client.client_key, v_debtor, v_link);
    PERFORM fl_event(p_tenant, 'posting', 'debtor.upserted', v_out || jsonb_build_object('Relation', p_relation));
    RETURN v_out;
END
$$;

CREATE OR REPLACE FUNCTION posting_create_debtor(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    RETURN fl_posting_upsert_debtor(p_tenant, p_doc, 'debtor');
END
$$;

CREATE OR REPLACE FUNCTION posting_create_vendor(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    RETURN fl_posting_upsert_debtor(p_tenant, p_doc, 'vendor');
END
$$;

CREATE OR REPLACE FUNCTION posting_get_client_debtor(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_out jsonb;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    SELECT fl_debtor_json(c.client_key, d, cd) INTO v_out
      FROM clients c
      JOIN client_debtors cd ON cd.client_id = c.id
      JOIN debtors d ON d.id = cd.debtor_id
     WHERE c.tenant_id = p_tenant AND c.client_key = fl_txt(p_doc, 'ClientKey')
       AND d.debtor_key = fl_txt(p_doc, 'DebtorKey')
     ORDER BY cd.relation          -- 'debtor' before 'vendor'
     LIMIT 1;
    IF v_out IS NULL THEN
        -- which key is unknown: the client's, or the debtor's at that client
        IF NOT EXISTS (SELECT 1 FROM clients c
                        WHERE c.tenant_id = p_tenant AND c.client_key = fl_txt(p_doc, 'ClientKey')) THEN
            RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Client not found';
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Debtor not found';
    END IF;
    RETURN v_out;
END
$$;

CREATE OR REPLACE FUNCTION posting_get_debtor_master(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_out jsonb;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    SELECT fl_debtor_json(NULL, d, NULL) INTO v_out
      FROM debtors d
     WHERE d.tenant_id = p_tenant AND d.debtor_key = fl_txt(p_doc, 'DebtorKey');
    IF v_out IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Debtor not found';
    END IF;
    RETURN v_out;
END
$$;

------------------------------------------------------------------------------ schedules
-- Shared by create-sched (p_kind 'standard') and create-sched-broker ('broker').
CREATE OR REPLACE FUNCTION fl_posting_create_sched(p_tenant uuid, p_doc jsonb, p_kind text) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_batch_id  text := fl_txt(p_doc, 'IntegrationBatchId');
    v_hash      text := fl_txt(p_doc, 'RequestHash');
    v_amount    numeric(18,2) := fl_txt(p_doc, 'Amount')::numeric(18,2);
    v_arr       jsonb := p_doc -> 'InvoiceArray';
    v_broker    boolean := p_kind = 'broker';
    v_old       schedules;
    v_client    clients;
    v_sched_id  uuid;
    v_bad       text;
    v_sum       numeric;
    v_out       jsonb;
BEGIN
    IF v_batch_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid IntegrationBatchId';
    END IF;

    -- Concurrent first posts of one IntegrationBatchId queue here, so the later
    -- ones see the first's schedule and answer as for a retry.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant::text || '/sched/' || v_batch_id, 0));
    -- Idempotent retry: same IntegrationBatchId and same body -> the stored answer, nothing written.
    SELECT * INTO v_old FROM schedules WHERE tenant_id = p_tenant AND integration_batch_id = v_batch_id;
    IF FOUND THEN
        IF v_hash IS NOT NULL AND v_old.request_hash = v_hash AND v_old.kind = p_kind THEN
            RETURN v_old.response;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Duplicate IntegrationBatchId',
            DETAIL = format('IntegrationBatchId %s was already posted with a different body.', v_batch_id);
    END IF;

    SELECT * INTO v_client FROM clients WHERE tenant_id = p_tenant AND client_key = fl_txt(p_doc, 'ClientKey');
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid ClientKey';
    END IF;
    IF v_amount IS NULL OR v_amount <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid Amount';
    END IF;
    IF jsonb_typeof(v_arr) IS DISTINCT FROM 'array' OR jsonb_array_length(v_arr) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid InvoiceArray';
    END IF;
    IF fl_txt(p_doc, 'PaymentMethod') NOT IN ('A', 'W', 'C') THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid PaymentMethod';
    END IF;

    -- Required invoice fields, first offender in array order.
    SELECT CASE WHEN fl_txt(e, 'InvoiceIntegrationId') IS NULL THEN 'Invalid InvoiceIntegrationId'
                WHEN fl_txt(e, 'InvoiceNumber') IS NULL THEN 'Invalid InvoiceNumber'
                WHEN fl_txt(e, 'DebtorKey') IS NULL THEN 'Invalid DebtorKey'
                WHEN coalesce(fl_txt(e, 'InvoiceAr')::numeric, 0) <= 0 THEN 'Invalid InvoiceAr'
                WHEN v_broker AND fl_txt(e, 'VendorKey') IS NULL THEN 'Invalid VendorKey'
                WHEN v_broker AND coalesce(fl_txt(e, 'AdvanceAmount')::numeric, -1) < 0 THEN 'Invalid AdvanceAmount'
           END INTO v_bad
      FROM jsonb_array_elements(v_arr) WITH ORDINALITY x(e, n)
     WHERE jsonb_typeof(e) IS DISTINCT FROM 'object'
        OR fl_txt(e, 'InvoiceIntegrationId') IS NULL OR fl_txt(e, 'InvoiceNumber') IS NULL
        OR fl_txt(e, 'DebtorKey') IS NULL OR coalesce(fl_txt(e, 'InvoiceAr')::numeric, 0) <= 0
        OR (v_broker AND (fl_txt(e, 'VendorKey') IS NULL
                          OR coalesce(fl_txt(e, 'AdvanceAmount')::numeric, -1) < 0))
     ORDER BY n LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = coalesce(v_bad, 'Invalid InvoiceArray');
    END IF;

    SELECT sum(fl_txt(e, 'InvoiceAr')::numeric(18,2)) INTO v_sum FROM jsonb_array_elements(v_arr) e;
    IF v_sum <> v_amount THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid Amount',
            DETAIL = format('Amount %s, sum of InvoiceAr %s.', v_amount, v_sum);
    END IF;

    SELECT fl_txt(e, 'DebtorKey') INTO v_bad
      FROM jsonb_array_elements(v_arr) WITH ORDINALITY x(e, n)
     WHERE NOT EXISTS (SELECT 1 FROM debtors d JOIN client_debtors cd ON cd.debtor_id = d.id
                        WHERE d.tenant_id = p_tenant AND d.debtor_key = fl_txt(e, 'DebtorKey')
                          AND cd.client_id = v_client.id AND cd.relation = 'debtor')
     ORDER BY n LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid DebtorKey ' || v_bad,
            HINT = 'Create the debtor for this client first (create-debtor).';
    END IF;

    IF v_broker THEN
        SELECT fl_txt(e, 'VendorKey') INTO v_bad
          FROM jsonb_array_elements(v_arr) WITH ORDINALITY x(e, n)
         WHERE NOT EXISTS (SELECT 1 FROM debtors d JOIN client_debtors cd ON cd.debtor_id = d.id
                            WHERE d.tenant_id = p_tenant AND d.debtor_key = fl_txt(e, 'VendorKey')
                              AND cd.client_id = v_client.id AND cd.relation = 'vendor')
         ORDER BY n LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid VendorKey ' || v_bad,
                HINT = 'Create the vendor for this client first (create-vendor).';
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_arr) e
                    WHERE fl_txt(e, 'AdvanceAmount')::numeric(18,2)
                          > fl_txt(e, 'InvoiceAr')::numeric(18,2) * v_client.advance_rate) THEN
            RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid AdvanceAmount',
                DETAIL = format('AdvanceAmount is capped at %s of InvoiceAr.', v_client.advance_rate);
        END IF;
    END IF;

    SELECT id INTO v_bad FROM (
        SELECT fl_txt(e, 'InvoiceIntegrationId') AS id, n,
               count(*) OVER (PARTITION BY fl_txt(e, 'InvoiceIntegrationId')) AS k
          FROM jsonb_array_elements(v_arr) WITH ORDINALITY x(e, n)) s
     WHERE k > 1 OR EXISTS (SELECT 1 FROM invoices i
                             WHERE i.tenant_id = p_tenant AND i.invoice_integration_id = s.id)
     ORDER BY n LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Duplicate InvoiceIntegrationId ' || v_bad;
    END IF;

    INSERT INTO schedules (tenant_id, integration_batch_id, client_id, kind, amount, label, notes,
                           payment_method, request_hash)
    VALUES (p_tenant, v_batch_id, v_client.id, p_kind, v_amount, fl_txt(p_doc, 'Label'),
            fl_txt(p_doc, 'Notes'), fl_txt(p_doc, 'PaymentMethod'), v_hash)
    RETURNING id INTO v_sched_id;

    BEGIN
        INSERT INTO invoices (tenant_id, schedule_id, seq, client_id, debtor_id, vendor_id,
                              client_key, debtor_key, vendor_key,
                              invoice_integration_id, invoice_number, amount, open_balance, invoice_date,
                              due_date, ref_num, advance_amount, vendor_invoice_number, doc)
        SELECT p_tenant, v_sched_id, x.n, v_client.id, d.id, v.id,
               v_client.client_key, d.debtor_key, v.debtor_key,
               fl_txt(e, 'InvoiceIntegrationId'), fl_txt(e, 'InvoiceNumber'),
               fl_txt(e, 'InvoiceAr')::numeric(18,2), fl_txt(e, 'InvoiceAr')::numeric(18,2),
               -- today in UTC, whatever the server's or the session's time zone
               coalesce(fl_txt(e, 'InvoiceDate')::date, (now() AT TIME ZONE 'UTC')::date),
               coalesce(fl_txt(e, 'DueDate')::date, (now() AT TIME ZONE 'UTC')::date),
               fl_txt(e, 'RefNum'),
               CASE WHEN v_broker THEN fl_txt(e, 'AdvanceAmount')::numeric(18,2) END,
               CASE WHEN v_broker THEN fl_txt(e, 'VendorInvoiceNumber') END,
               decode(fl_txt(e, 'DocBase64'), 'base64')
          FROM jsonb_array_elements(v_arr) WITH ORDINALITY x(e, n)
          JOIN debtors d ON d.tenant_id = p_tenant AND d.debtor_key = fl_txt(e, 'DebtorKey')
          LEFT JOIN debtors v ON v_broker AND v.tenant_id = p_tenant AND v.debtor_key = fl_txt(e, 'VendorKey')
         -- inserted in id order, so that two schedules naming the same ids in other orders wait
         -- for each other (then 409) instead of deadlocking; seq keeps the array's order
         ORDER BY fl_txt(e, 'InvoiceIntegrationId');
    EXCEPTION WHEN unique_violation THEN
        -- Another schedule, committed since the check above, took one of these ids: the same
        -- answer as when it was there before (this statement sees it now).
        SELECT fl_txt(e, 'InvoiceIntegrationId') INTO v_bad
          FROM jsonb_array_elements(v_arr) WITH ORDINALITY x(e, n)
         WHERE EXISTS (SELECT 1 FROM invoices i
                        WHERE i.tenant_id = p_tenant AND i.invoice_integration_id = fl_txt(e, 'InvoiceIntegrationId'))
         ORDER BY n LIMIT 1;
        IF NOT FOUND THEN
            RAISE;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Duplicate InvoiceIntegrationId ' || v_bad;
    END;

    v_out := fl_sched_json(v_sched_id);
    UPDATE schedules SET response = v_out WHERE id = v_sched_id;
    PERFORM fl_event(p_tenant, 'posting', 'schedule.created',
                     jsonb_build_object('IntegrationBatchId', v_batch_id, 'ClientKey', v_client.client_key,
                                        'Kind', p_kind, 'Amount', fl_money(v_amount),
                                        'InvoiceCount', jsonb_array_length(v_arr)));
    RETURN v_out;
END
$$;

CREATE OR REPLACE FUNCTION posting_create_sched(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    RETURN fl_posting_create_sched(p_tenant, p_doc, 'standard');
END
$$;

CREATE OR REPLACE FUNCTION posting_create_sched_broker(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    RETURN fl_posting_create_sched(p_tenant, p_doc, 'broker');
END
$$;

CREATE OR REPLACE FUNCTION posting_get_sched(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    SELECT id INTO v_id FROM schedules
     WHERE tenant_id = p_tenant AND integration_batch_id = fl_txt(p_doc, 'IntegrationBatchId')
       AND kind = 'standard';
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Schedule not found';
    END IF;
    RETURN fl_sched_json(v_id);
END
$$;

CREATE OR REPLACE FUNCTION posting_get_broker_sched(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    SELECT id INTO v_id FROM schedules
     WHERE tenant_id = p_tenant AND integration_batch_id = fl_txt(p_doc, 'IntegrationBatchId')
       AND kind = 'broker';
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Schedule not found';
    END IF;
    RETURN fl_sched_json(v_id);
END
$$;

-- get-invoice reads this view directly: the worker sends fl_set_tenant and
-- the SELECT as one pipeline (db_tenant_exec), which costs PostgreSQL less
-- than a PL/pgSQL call; the invoice row carries the keys it shows (0006), so
-- it is one index look-up.  A broker invoice is one with a vendor.
-- security_invoker: RLS applies to the caller (fl_api: its tenant; fl_report: all).
CREATE OR REPLACE VIEW posting_invoice_docs WITH (security_invoker = true) AS
SELECT i.tenant_id, i.invoice_integration_id,
       fl_invoice_json(i, i.client_key, i.debtor_key, i.vendor_key, i.vendor_id IS NOT NULL) AS doc
  FROM invoices i;
GRANT SELECT ON posting_invoice_docs TO fl_api, fl_report;
-- a view's functions are checked against its reader: the reporting role needs these two
GRANT EXECUTE ON FUNCTION fl_invoice_json(invoices, text, text, text, boolean), fl_money(numeric) TO fl_report;

-- The same answer as a call, for DBAs and tests.
CREATE OR REPLACE FUNCTION posting_get_invoice(p_tenant uuid, p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_out jsonb;
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    SELECT doc INTO v_out FROM posting_invoice_docs
     WHERE tenant_id = p_tenant AND invoice_integration_id = fl_txt(p_doc, 'InvoiceIntegrationId');
    IF v_out IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Invoice not found';
    END IF;
    RETURN v_out;
END
$$;

------------------------------------------------------------------------------ payments
-- post-payments: stores the batch and reconciles its lines in one transaction. The API's
-- worker calls this function and writes the answer itself: the batch's echo is the document
-- it sent (validated and normalised as stored: dates YYYY-MM-DD, amounts with two decimals)
-- with each line's results from here, one row per line in line order:
--   line_no, line_applied and line_unapplied (two decimals), line_status, line_reason,
--   line_apps (the line's Applications, a JSON array as text), and replay NULL.
-- A retry of a posted batch (same BatchReference and RequestHash) is one row with only replay
-- set: the stored batch read back (fl_batch_echo), which the worker answers as it is.
-- Formatting the echo here cost ~6 % of the backend's CPU for a 100-line batch; the workers
-- scale out, the database does not (docs/benchmarks.md, twenty-ninth session).
-- posting_post_payments below is the same call for DBAs and tests, answered as text.
CREATE OR REPLACE FUNCTION posting_post_payments_lines(p_tenant uuid, p_doc jsonb)
RETURNS TABLE (line_no int, line_applied text, line_unapplied text, line_status text, line_reason text,
               line_apps text, replay text)
    LANGUAGE plpgsql
    SET enable_seqscan = off        -- reached by key only: see fl_reconcile_lines
AS $$
#variable_conflict use_column
DECLARE
    v_ref       text := fl_txt(p_doc, 'BatchReference');
    v_hash      text := fl_txt(p_doc, 'RequestHash');
    v_total     numeric(18,2) := fl_txt(p_doc, 'BatchTotal')::numeric(18,2);
    v_lines     jsonb := p_doc -> 'PaymentDetails';
    v_old       payment_batches;
    v_batch_id  uuid;
    v_bad       text;
    v_sum       numeric;
    v_ok        boolean;
    v_plines    payment_lines[];
BEGIN
    PERFORM fl_set_tenant(p_tenant);
    IF v_ref IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid BatchReference';
    END IF;

    SELECT * INTO v_old FROM payment_batches b WHERE b.tenant_id = p_tenant AND b.batch_reference = v_ref;
    IF FOUND THEN
        IF v_hash IS NOT NULL AND v_old.request_hash = v_hash THEN
            RETURN QUERY SELECT NULL::int, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
                                fl_batch_echo(v_old.id);
            RETURN;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Duplicate BatchReference',
            DETAIL = format('BatchReference %s was already posted with a different body.', v_ref);
    END IF;

    IF v_total IS NULL OR v_total <= 0 OR v_total = 'NaN' THEN     -- NaN: > 0 and = itself in PostgreSQL
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid batchTotal';
    END IF;
    IF jsonb_typeof(v_lines) IS DISTINCT FROM 'array' OR jsonb_array_length(v_lines) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid PaymentDetails';
    END IF;

    -- The lines as the batch stores them, read from the document once (line ids included: a
    -- refused batch leaves a gap in them). A value its type refuses (a date or an amount
    -- PostgreSQL cannot read) leaves v_plines NULL, for the checks below.
    v_batch_id := gen_random_uuid();
    BEGIN
        SELECT array_agg(ROW(nextval('payment_lines_id_seq'), p_tenant, v_batch_id, x.n, x.pdate, x.item,
                             x.ptype, x.amount, x.bankref, x.acct, x.txn, x.remitter, x.memo, x.ref,
                             x.code, x.docs, 0, x.amount, 'pending', NULL, NULL)::payment_lines ORDER BY x.n),
               sum(x.amount),
               -- NULL (a missing value) fails, not skipped
               bool_and(coalesce(x.pdate IS NOT NULL AND x.ptype IN ('ACH', 'CHECK', 'WIRE')
                                 AND x.amount BETWEEN 0.02 AND 9999999999999999.99, false))
          INTO v_plines, v_sum, v_ok
          FROM (SELECT n::int AS n, fl_txt(e, 'PaymentDate')::date AS pdate, fl_txt(e, 'BankBatchItem') AS item,
                       upper(fl_txt(e, 'PaymentType')) AS ptype, fl_txt(e, 'Amount')::numeric(18,2) AS amount,
                       fl_txt(e, 'BankRefNumber') AS bankref, fl_txt(e, 'AccountNumber') AS acct,
                       fl_txt(e, 'TransactionNumber') AS txn, fl_txt(e, 'RemitterName') AS remitter,
                       fl_txt(e, 'MemoLine') AS memo, fl_txt(e, 'InvoiceRefNumber') AS ref,
                       fl_txt(e, 'ClientCode') AS code, fl_txt(e, 'FinancialDocs') AS docs
                  FROM jsonb_array_elements(v_lines) WITH ORDINALITY j(e, n)
                OFFSET 0) x;
    EXCEPTION WHEN data_exception THEN
        v_plines := NULL;
    END;
    -- The lines' checks. On the array when every line passes them there (an amount of 0.01 may
    -- have been rounded up to it: not decided there); else on the document, in line order, for
    -- the first line's reason.
    IF v_plines IS NULL OR NOT coalesce(v_ok, false) THEN
        SELECT CASE WHEN jsonb_typeof(e) IS DISTINCT FROM 'object' THEN 'Invalid PaymentDetails'
                    WHEN fl_txt(e, 'PaymentDate') IS NULL THEN 'Invalid PaymentDate'
                    WHEN fl_txt(e, 'PaymentType') IS NULL
                      OR upper(fl_txt(e, 'PaymentType')) NOT IN ('ACH', 'CHECK', 'WIRE') THEN 'Invalid PaymentType'
                    ELSE 'Invalid Amount'
               END INTO v_bad
          FROM jsonb_array_elements(v_lines) WITH ORDINALITY x(e, n)
         WHERE jsonb_typeof(e) IS DISTINCT FROM 'object'
            OR fl_txt(e, 'PaymentDate') IS NULL
            OR fl_txt(e, 'PaymentType') IS NULL
            OR upper(fl_txt(e, 'PaymentType')) NOT IN ('ACH', 'CHECK', 'WIRE')
            OR NOT coalesce(fl_txt(e, 'Amount')::numeric BETWEEN 0.01 AND 9999999999999999.99, false)   -- NaN, Infinity
         ORDER BY n LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = v_bad;
        END IF;
        IF v_plines IS NULL THEN
            -- a date PostgreSQL cannot read: after the total's check (below), its own error
            SELECT sum(fl_txt(e, 'Amount')::numeric(18,2)) INTO v_sum FROM jsonb_array_elements(v_lines) e;
            IF v_sum <> v_total THEN
                RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid batchTotal',
                    DETAIL = format('BatchTotal %s, sum of Amount %s.', v_total, v_sum);
            END IF;
            PERFORM fl_txt(e, 'PaymentDate')::date FROM jsonb_array_elements(v_lines) e;
            RAISE EXCEPTION 'post-payments: a line refused by its type passed the checks';
        END IF;
    END IF;

    IF v_sum <> v_total THEN
        RAISE EXCEPTION USING ERRCODE = 'FL400', MESSAGE = 'Invalid batchTotal',
            DETAIL = format('BatchTotal %s, sum of Amount %s.', v_total, v_sum);
    END IF;

    -- A concurrent first post of the same BatchReference: wait for it, then answer as for a retry.
    INSERT INTO payment_batches AS b (id, tenant_id, batch_reference, batch_total, account_number, request_hash)
    VALUES (v_batch_id, p_tenant, v_ref, v_total, fl_txt(p_doc, 'AccountNumber'), v_hash)
    ON CONFLICT (tenant_id, batch_reference) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_old FROM payment_batches b WHERE b.tenant_id = p_tenant AND b.batch_reference = v_ref;
        IF v_hash IS NOT NULL AND v_old.request_hash = v_hash THEN
            RETURN QUERY SELECT NULL::int, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
                                fl_batch_echo(v_old.id);
            RETURN;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'FL409', MESSAGE = 'Duplicate BatchReference',
            DETAIL = format('BatchReference %s was already posted with a different body.', v_ref);
    END IF;

    -- The lines, reconciled: each is inserted once, with its result (see fl_reconcile_lines).
    -- Its rows, in line order, and the summary event from them: one sort, where an array per
    -- column (each aggregated in line order) took six. A data-modifying WITH runs to its end
    -- whether or not the query reads it.
    RETURN QUERY
    WITH r AS MATERIALIZED (
        SELECT r.line_k, r.line_applied, l.amount - r.line_applied AS line_unapplied, r.line_status,
               r.line_reason, r.line_apps
          FROM fl_reconcile_lines(p_tenant, v_plines, true) r
          -- the line's amount, fetched once (an array element is found by walking the array)
          CROSS JOIN LATERAL (SELECT (v_plines[r.line_k]).amount OFFSET 0) l(amount)
    ), ev AS (
        INSERT INTO events (tenant_id, family, type, payload)
        SELECT p_tenant, 'posting', 'payment_batch.posted',
               jsonb_build_object('BatchReference', v_ref, 'BatchTotal', fl_money(v_total),
                                  'Lines', count(*),
                                  'AppliedAmount', fl_money(coalesce(sum(r.line_applied), 0)),
                                  'UnappliedAmount', fl_money(coalesce(sum(r.line_unapplied), 0)),
                                  'Exceptions', count(*) FILTER (WHERE r.line_status = 'exception'))
          FROM r
    )
    SELECT r.line_k, fl_money(r.line_applied), fl_money(r.line_unapplied), r.line_status, r.line_reason,
           r.line_apps, NULL::text
      FROM r
     ORDER BY r.line_k;
END
$$;

-- post-payments as a call answering the batch's echo as JSON text (what the API answers after
-- its "message"), for DBAs and tests: the stored batch read back (fl_batch_echo), which is
-- also the answer to a retry. The API's worker builds the same text from its document and
-- posting_post_payments_lines' rows; the integration tests hold the two equal byte for byte.
CREATE OR REPLACE FUNCTION posting_post_payments(p_tenant uuid, p_doc jsonb) RETURNS text
    LANGUAGE plpgsql
AS $$
DECLARE
    v_replay text;
BEGIN
    SELECT x.replay INTO v_replay FROM posting_post_payments_lines(p_tenant, p_doc) x LIMIT 1;
    RETURN coalesce(v_replay, fl_batch_echo((SELECT b.id FROM payment_batches b
                                              WHERE b.tenant_id = p_tenant
                                                AND b.batch_reference = fl_txt(p_doc, 'BatchReference'))));
END
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['posting_create_client', 'posting_get_client', 'posting_create_debtor',
                             'posting_create_vendor', 'posting_get_client_debtor', 'posting_get_debtor_master',
                             'posting_create_sched', 'posting_create_sched_broker', 'posting_get_sched',
                             'posting_get_broker_sched', 'posting_get_invoice', 'posting_post_payments',
                             'posting_post_payments_lines']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %I(uuid, jsonb) FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %I(uuid, jsonb) TO fl_api', f);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION fl_posting_upsert_debtor(uuid, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_posting_upsert_debtor(uuid, jsonb, text) TO fl_api;
REVOKE ALL ON FUNCTION fl_posting_create_sched(uuid, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fl_posting_create_sched(uuid, jsonb, text) TO fl_api;
