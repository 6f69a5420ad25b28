-- Invoices carry their client's and debtors' keys, so that get-invoice reads one row instead
-- of joining four tables (posting_invoice_docs: ~25 us of the ~90 us PostgreSQL spent on it),
-- and reconciliation, its events and the payment echo name an invoice's client without a
-- look-up of clients per line.
--
-- The copies cannot drift: each is part of the foreign key to the row it copies, and that key
-- cascades on update.  A DBA who renames a client key (UPDATE clients SET client_key = ...)
-- renames it on its invoices in the same statement.  The old two-column foreign keys are
-- replaced by the three-column ones, which check the same rows.
--
-- A broker invoice is one with a vendor (create-sched-broker requires VendorKey and checks it
-- exists): invoices.vendor_id IS NOT NULL is the broker flag, and vendor_key comes with it.

ALTER TABLE clients ADD CONSTRAINT clients_tenant_id_id_client_key_key UNIQUE (tenant_id, id, client_key);
ALTER TABLE debtors ADD CONSTRAINT debtors_tenant_id_id_debtor_key_key UNIQUE (tenant_id, id, debtor_key);

ALTER TABLE invoices
    ADD COLUMN client_key text,
    ADD COLUMN debtor_key text,
    ADD COLUMN vendor_key text;

UPDATE invoices i
   SET client_key = c.client_key, debtor_key = d.debtor_key,
       vendor_key = (SELECT v.debtor_key FROM debtors v WHERE v.id = i.vendor_id)
  FROM clients c, debtors d
 WHERE c.id = i.client_id AND d.id = i.debtor_id;

ALTER TABLE invoices
    ALTER COLUMN client_key SET NOT NULL,
    ALTER COLUMN debtor_key SET NOT NULL,
    ADD CONSTRAINT invoices_vendor_key_check CHECK ((vendor_id IS NULL) = (vendor_key IS NULL)),
    DROP CONSTRAINT invoices_tenant_id_client_id_fkey,
    DROP CONSTRAINT invoices_tenant_id_debtor_id_fkey,
    DROP CONSTRAINT invoices_tenant_id_vendor_id_fkey,
    ADD CONSTRAINT invoices_client_fkey FOREIGN KEY (tenant_id, client_id, client_key)
        REFERENCES clients (tenant_id, id, client_key) ON UPDATE CASCADE,
    ADD CONSTRAINT invoices_debtor_fkey FOREIGN KEY (tenant_id, debtor_id, debtor_key)
        REFERENCES debtors (tenant_id, id, debtor_key) ON UPDATE CASCADE,
    ADD CONSTRAINT invoices_vendor_fkey FOREIGN KEY (tenant_id, vendor_id, vendor_key)
        REFERENCES debtors (tenant_id, id, debtor_key) ON UPDATE CASCADE;

COMMENT ON COLUMN invoices.client_key IS 'clients.client_key, kept by invoices_client_fkey (ON UPDATE CASCADE)';
COMMENT ON COLUMN invoices.debtor_key IS 'debtors.debtor_key, kept by invoices_debtor_fkey (ON UPDATE CASCADE)';
COMMENT ON COLUMN invoices.vendor_key IS 'the vendor''s debtors.debtor_key (broker invoices), kept by invoices_vendor_fkey';
