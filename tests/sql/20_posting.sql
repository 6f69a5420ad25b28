-- create/get client, debtor, vendor, schedule rules and echo shapes.
BEGIN;
SELECT plan(53);

SELECT fl_tenant_add('Posting T', 'POST-T') AS t \gset
SET LOCAL ROLE fl_api;

-- clients
SELECT is(posting_create_client(:'t', '{"ClientKey":"C1","Name":"Acme","City":"Austin","State":"tx","Type":1,
            "Industry":2,"UccDate":"2021-03-01","FedTaxNum":"v1:opaque","FedTaxNumLast4":"6789"}')
          - 'UUID',
          '{"ClientKey":"C1","Name":"Acme","CompCode":null,"Address1":null,"Address2":null,"City":"Austin",
            "State":"TX","ZipCode":null,"Country":null,"Phone":null,"PhoneAlt":null,"Fax":null,"Email":null,
            "UccDate":"2021-03-01","UccDate2":null,"UccSignedDate":null,"Type":1,"Industry":2,"AltName":null,
            "EdiID":null,"FedTaxNum":"v1:opaque","FedTaxNumLast4":"6789","DunsNum":null,"MCNumber":null,
            "DOTNumber":null,"CreditLimit":null}'::jsonb,
          'create-client echoes the stored client');
SELECT is((posting_create_client(:'t', '{"ClientKey":"C1","Name":"Acme Trucking","Phone":"555"}')
           ->> 'City'), 'Austin', 'upsert keeps fields absent from the document');
SELECT is(posting_get_client(:'t', '{"ClientKey":"C1"}') ->> 'Name', 'Acme Trucking', 'upsert updates the name');
SELECT ok((posting_get_client(:'t', '{"ClientKey":"C1"}') ->> 'UUID') IS NOT NULL, 'get-client gives the UUID');
SELECT throws_ok(format($$SELECT posting_get_client(%L, '{"ClientKey":"NOPE"}')$$, :'t'),
                 'FL404', 'Client not found', 'get-client of an unknown key is 404');
SELECT throws_ok(format($$SELECT posting_create_client(%L, '{"ClientKey":"C9"}')$$, :'t'),
                 'FL400', 'Invalid Name', 'create-client requires Name');
SELECT posting_create_client(:'t', '{"ClientKey":"C2","Name":"Second Client"}') IS NOT NULL AS x \gset

-- debtors
SELECT throws_ok(format($$SELECT posting_create_debtor(%L, '{"ClientKey":"NOPE","DebtorKey":"D1","Name":"x"}')$$, :'t'),
                 'FL400', 'Invalid ClientKey', 'create-debtor with an unknown client is 400');
SELECT is(posting_create_debtor(:'t', '{"ClientKey":"C1","DebtorKey":"D1","Name":"Big Shipper, Inc.","CompCode":"BIG",
            "Zipcode":"78701","Country":"USA","McNumber":"MC1","Notes":"net 30"}'),
          '{"ClientKey":"C1","DebtorKey":"D1","CompCode":"BIG","Name":"Big Shipper, Inc.","Address1":null,
            "Address2":null,"City":null,"State":null,"ZipCode":"78701","Country":"USA","Phone":null,"Fax":null,
            "Email":null,"MCNumber":"MC1","DOTNumber":null,"Notes":"net 30","CreditLimit":null,"BuyStatus":false}'::jsonb,
          'create-debtor echoes the sub-debtor');
SELECT is(posting_create_debtor(:'t', '{"ClientKey":"C1","DebtorKey":"D2","Name":"Big Other","CompCode":"BIG"}') ->> 'CompCode',
          'BIGOTH1', 'a CompCode taken for the client is replaced by a generated one');
SELECT is(posting_get_debtor_master(:'t', '{"DebtorKey":"D2"}') ->> 'CompCode', 'BIGOTH1',
          'and the master that call created has the link''s code, not the refused one (another debtor''s)');
SELECT is(posting_create_debtor(:'t', '{"ClientKey":"C2","DebtorKey":"D1","Name":"Big Shipper, Inc.","CompCode":"BIG"}') ->> 'ClientKey',
          'C2', 'an existing master debtor is linked to a second client');
SELECT is((SELECT count(*) FROM debtors WHERE debtor_key = 'D1'), 1::bigint, 'still one master debtor');
SELECT is((SELECT count(*) FROM client_debtors cd JOIN debtors d ON d.id = cd.debtor_id WHERE d.debtor_key = 'D1'),
          2::bigint, 'two sub-debtors');
SELECT is(posting_create_debtor(:'t', '{"ClientKey":"C1","DebtorKey":"D1","Name":"Big Shipper, Inc.","Notes":"net 45"}') ->> 'Notes',
          'net 45', 'the existing pair is updated');
SELECT is((SELECT count(*) FROM client_debtors), 3::bigint, 'updating a pair creates no link');
SELECT is(posting_get_client_debtor(:'t', '{"ClientKey":"C2","DebtorKey":"D1"}') ->> 'CompCode', 'BIG',
          'get-client-debtor finds the second link with its own CompCode');
SELECT is(posting_get_debtor_master(:'t', '{"DebtorKey":"D1"}') - 'Notes',
          '{"ClientKey":null,"DebtorKey":"D1","CompCode":"BIG","Name":"Big Shipper, Inc.","Address1":null,
            "Address2":null,"City":null,"State":null,"ZipCode":"78701","Country":"USA","Phone":null,"Fax":null,
            "Email":null,"MCNumber":"MC1","DOTNumber":null,"CreditLimit":null,"BuyStatus":false}'::jsonb,
          'get-debtor-master has ClientKey null');
SELECT is(posting_get_debtor_master(:'t', '{"DebtorKey":"D1"}') ->> 'Notes', 'net 45',
          'get-debtor-master: the Notes last written through a link');
SELECT is(posting_create_debtor(:'t', '{"ClientKey":"C2","DebtorKey":"D1","Name":"Big Shipper, Inc."}') ->> 'Notes',
          NULL, 'a link keeps its own Notes (none for C2)');
SELECT is(posting_get_debtor_master(:'t', '{"DebtorKey":"D1"}') ->> 'Notes', 'net 45',
          'get-debtor-master keeps its Notes when a document has none');
SELECT throws_ok(format($$SELECT posting_get_client_debtor(%L, '{"ClientKey":"C2","DebtorKey":"D2"}')$$, :'t'),
                 'FL404', 'Debtor not found', 'a debtor not linked to the client is 404');
SELECT posting_create_vendor(:'t', '{"ClientKey":"C1","DebtorKey":"V1","Name":"Carrier One"}') IS NOT NULL AS x \gset

-- standard schedules
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C1","Amount":"150.00","PaymentMethod":"A",
    "IntegrationBatchId":"S1","InvoiceArray":[{"DebtorKey":"D1","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"},
    {"DebtorKey":"D1","InvoiceNumber":"2","InvoiceAr":"50.01","InvoiceIntegrationId":"I2"}]}')$$, :'t'),
    'FL400', 'Invalid Amount', 'Amount must equal the sum of InvoiceAr');
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C9","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"S1","InvoiceArray":[{"DebtorKey":"D1","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"}]}')$$, :'t'),
    'FL400', 'Invalid ClientKey', 'unknown client');
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C1","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"S1","InvoiceArray":[{"DebtorKey":"DX","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"}]}')$$, :'t'),
    'FL400', 'Invalid DebtorKey DX', 'unknown debtor');
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C2","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"S1","InvoiceArray":[{"DebtorKey":"D2","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"}]}')$$, :'t'),
    'FL400', 'Invalid DebtorKey D2', 'a debtor of another client is refused');
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C1","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"S1","InvoiceArray":[{"DebtorKey":"V1","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"}]}')$$, :'t'),
    'FL400', 'Invalid DebtorKey V1', 'a vendor is not a debtor');
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C1","Amount":"200.00","PaymentMethod":"A",
    "IntegrationBatchId":"S1","InvoiceArray":[{"DebtorKey":"D1","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"},
    {"DebtorKey":"D1","InvoiceNumber":"2","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"}]}')$$, :'t'),
    'FL409', 'Duplicate InvoiceIntegrationId I1', 'duplicate InvoiceIntegrationId in the array');

SELECT posting_create_sched(:'t', '{"ClientKey":"C1","Amount":"150.00","PaymentMethod":"W","Label":"L1",
    "IntegrationBatchId":"S1","RequestHash":"hash-1","InvoiceArray":[
    {"DebtorKey":"D1","InvoiceNumber":"1001","InvoiceAr":"100.00","InvoiceIntegrationId":"I1","InvoiceDate":"2024-01-02",
     "DueDate":"2024-02-01","RefNum":"BOL-1","DocBase64":"JVBERi0xLjQK"},
    {"DebtorKey":"D2","InvoiceNumber":"1002","InvoiceAr":"50","InvoiceIntegrationId":"I2"}]}') AS s1 \gset
SELECT is(:'s1'::jsonb, posting_get_sched(:'t', '{"IntegrationBatchId":"S1"}'), 'create-sched echo equals get-sched');
SELECT is(:'s1'::jsonb #> '{InvoiceArray,0}',
          '{"InvoiceIntegrationId":"I1","ClientKey":"C1","DebtorKey":"D1","InvoiceNumber":"1001","InvoiceAmount":"100.00",
            "InvoiceDate":"2024-01-02","InvoiceDueDate":"2024-02-01","InvoiceStatus":"P","RefNumber":"BOL-1",
            "InvoicePurchaseDate":null,"InvoiceFundDate":null,"EscrowReserveAmount":null,"OpenBalance":"100.00",
            "PaymentMade":"0.00","LastPaymentMadeOn":null,"PaidInFull":false,"PaidInFullOn":null,"DocBase64":12,"DocLength":9}'::jsonb,
          'invoice echo shape: the document''s base64 length (DocBase64) and bytes (DocLength), not the document');
SELECT is((:'s1'::jsonb - 'InvoiceArray'),
          '{"IntegrationBatchId":"S1","ClientKey":"C1","Amount":"150.00","Label":"L1","Notes":null,"PaymentMethod":"W"}'::jsonb,
          'schedule echo shape');
SELECT is(posting_get_invoice(:'t', '{"InvoiceIntegrationId":"I2"}') ->> 'InvoiceDate', current_date::text,
          'InvoiceDate defaults to today');
SELECT is(posting_create_sched(:'t', '{"ClientKey":"C1","Amount":"150.00","IntegrationBatchId":"S1","RequestHash":"hash-1"}'),
          :'s1'::jsonb, 'same IntegrationBatchId and RequestHash replays the stored answer');
SELECT is((SELECT count(*) FROM invoices), 2::bigint, 'the replay wrote nothing');
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C1","Amount":"150.00","IntegrationBatchId":"S1","RequestHash":"hash-2"}')$$, :'t'),
    'FL409', 'Duplicate IntegrationBatchId', 'same IntegrationBatchId with another body is 409');
SELECT throws_ok(format($$SELECT posting_create_sched(%L, '{"ClientKey":"C1","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"S2","InvoiceArray":[{"DebtorKey":"D1","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"I1"}]}')$$, :'t'),
    'FL409', 'Duplicate InvoiceIntegrationId I1', 'InvoiceIntegrationId is unique per tenant');
SELECT throws_ok(format($$SELECT posting_get_broker_sched(%L, '{"IntegrationBatchId":"S1"}')$$, :'t'),
    'FL404', 'Schedule not found', 'a standard schedule is not found through get-broker-sched');

-- broker schedules (client advance rate 0.9000)
SELECT throws_ok(format($$SELECT posting_create_sched_broker(%L, '{"ClientKey":"C1","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"B1","InvoiceArray":[{"DebtorKey":"D1","VendorKey":"D2","AdvanceAmount":"10.00","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"BI1"}]}')$$, :'t'),
    'FL400', 'Invalid VendorKey D2', 'VendorKey must be a vendor of the client');
SELECT throws_ok(format($$SELECT posting_create_sched_broker(%L, '{"ClientKey":"C1","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"B1","InvoiceArray":[{"DebtorKey":"D1","VendorKey":"V1","AdvanceAmount":"90.01","InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"BI1"}]}')$$, :'t'),
    'FL400', 'Invalid AdvanceAmount', 'AdvanceAmount is capped by the advance rate');
SELECT ok((posting_create_sched_broker(:'t', '{"ClientKey":"C1","Amount":"100.00","PaymentMethod":"A",
    "IntegrationBatchId":"B1","InvoiceArray":[{"DebtorKey":"D1","VendorKey":"V1","AdvanceAmount":"90.00","VendorInvoiceNumber":"VI-7",
    "InvoiceNumber":"1","InvoiceAr":"100.00","InvoiceIntegrationId":"BI1"}]}') #> '{InvoiceArray,0}')
    @> '{"VendorKey":"V1","AdvanceAmount":"90.00","VendorInvoiceNumber":"VI-7","InvoiceIntegrationId":"BI1"}'::jsonb,
    'broker invoice echo adds vendor fields');
SELECT throws_ok(format($$SELECT posting_get_sched(%L, '{"IntegrationBatchId":"B1"}')$$, :'t'),
    'FL404', 'Schedule not found', 'a broker schedule is not found through get-sched');
SELECT is((SELECT array_agg(type ORDER BY id) FROM events WHERE type = 'schedule.created'),
          ARRAY['schedule.created', 'schedule.created'], 'schedule.created events are written');

-- get-invoice's view (read by the API in one statement) and the keys invoices carry (0006)
SELECT is((SELECT doc FROM posting_invoice_docs WHERE tenant_id = :'t' AND invoice_integration_id = 'BI1'),
          posting_get_invoice(:'t', '{"InvoiceIntegrationId":"BI1"}'), 'the view gives get-invoice''s answer');
SELECT is((SELECT doc FROM posting_invoice_docs WHERE invoice_integration_id = 'I1'),
          :'s1'::jsonb #> '{InvoiceArray,0}', 'the view and get-sched show an invoice alike');
SELECT is((SELECT array_agg(ARRAY[client_key, debtor_key, coalesce(vendor_key, '-')] ORDER BY invoice_integration_id)
             FROM invoices),
          ARRAY[ARRAY['C1','D1','V1'], ARRAY['C1','D1','-'], ARRAY['C1','D2','-']], 'invoices carry their keys');
SET LOCAL ROLE fl_report;
SELECT is((SELECT doc ->> 'ClientKey' FROM posting_invoice_docs WHERE invoice_integration_id = 'I1'), 'C1',
          'the reporting role reads the view');
RESET ROLE;
UPDATE clients SET client_key = 'C1-RENAMED' WHERE tenant_id = :'t' AND client_key = 'C1';
UPDATE debtors SET debtor_key = 'V1-RENAMED' WHERE tenant_id = :'t' AND debtor_key = 'V1';
SELECT is((SELECT array_agg(DISTINCT client_key) FROM invoices WHERE tenant_id = :'t'), ARRAY['C1-RENAMED'],
          'a renamed client key reaches its invoices (ON UPDATE CASCADE)');
SELECT is((SELECT doc FROM posting_invoice_docs WHERE invoice_integration_id = 'BI1') ->> 'VendorKey', 'V1-RENAMED',
          'a renamed vendor key reaches its invoices');
SELECT throws_ok($$UPDATE invoices SET debtor_key = 'D2' WHERE invoice_integration_id = 'I1'$$, '23503', NULL,
          'an invoice''s key copy cannot differ from its debtor''s key');
SELECT throws_ok($$UPDATE invoices SET vendor_key = NULL WHERE invoice_integration_id = 'BI1'$$, '23514', NULL,
          'a vendor without its key is refused');
SET LOCAL ROLE fl_api;

-- Generated CompCodes: the smallest free counter after the name's first six letters and digits.
SELECT posting_create_client(:'t', '{"ClientKey":"CG","Name":"Codes"}') IS NOT NULL AS x \gset
SELECT is(array_agg(posting_create_debtor(:'t', jsonb_build_object('ClientKey', 'CG', 'DebtorKey', 'G' || g,
                                                                   'Name', 'Gamma Freight ' || g)) ->> 'CompCode' ORDER BY g),
          '{GAMMAF1,GAMMAF2,GAMMAF3}', 'generated CompCodes count up per client')
  FROM generate_series(1, 3) g;
SELECT is(posting_create_debtor(:'t', '{"ClientKey":"CG","DebtorKey":"G5","Name":"Gamma Five","CompCode":"gammaf5"}') ->> 'CompCode',
          'GAMMAF5', 'a requested CompCode that is free is kept');
SELECT is(array_agg(posting_create_debtor(:'t', jsonb_build_object('ClientKey', 'CG', 'DebtorKey', 'G' || g,
                                                                   'Name', 'Gamma Freight ' || g)) ->> 'CompCode' ORDER BY g),
          '{GAMMAF4,GAMMAF6}', 'the next ones fill the gap (4), then go past the requested one (6)')
  FROM generate_series(6, 7) g;

-- an invoice without dates is dated today in UTC, whatever the session's time zone: one of
-- UTC-12 and UTC+14 is on another date than UTC at any hour
SET LOCAL timezone = 'Etc/GMT+12';
SELECT posting_create_sched(:'t', '{"ClientKey":"CG","Amount":"5.00","PaymentMethod":"W","IntegrationBatchId":"STZ1",
    "InvoiceArray":[{"DebtorKey":"G6","InvoiceNumber":"TZ1","InvoiceAr":"5.00","InvoiceIntegrationId":"ITZ1"}]}') IS NOT NULL AS x \gset
SET LOCAL timezone = 'Pacific/Kiritimati';
SELECT posting_create_sched(:'t', '{"ClientKey":"CG","Amount":"5.00","PaymentMethod":"W","IntegrationBatchId":"STZ2",
    "InvoiceArray":[{"DebtorKey":"G6","InvoiceNumber":"TZ2","InvoiceAr":"5.00","InvoiceIntegrationId":"ITZ2"}]}') IS NOT NULL AS x \gset
RESET timezone;
SELECT is((SELECT string_agg(invoice_date::text || '/' || due_date::text, ' ' ORDER BY invoice_number) FROM invoices
            WHERE invoice_integration_id IN ('ITZ1', 'ITZ2')),
          (SELECT format('%1$s/%1$s %1$s/%1$s', (now() AT TIME ZONE 'UTC')::date)),
          'an invoice without dates: today in UTC, in a session at UTC-12 and at UTC+14');

SELECT * FROM finish();
ROLLBACK;
