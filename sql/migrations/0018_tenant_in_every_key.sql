-- 0018: the tenant in every foreign key, outside posting too.
--
-- A foreign key is checked by PostgreSQL past row-level security: a row may name any row of
-- the parent table, whichever tenant owns it. Posting's keys carry tenant_id since 0002, so a
-- row can only name a row of its own tenant. The webhook, events and leads tables named their
-- parent by id alone, and the API's role may insert into them. The one that could be used: a
-- tenant's session, with webhook_enqueue() or an INSERT into webhook_deliveries, could queue a
-- delivery of another tenant's event (event ids are a sequence) under its own subscription,
-- and the worker sent that event, signed, to the URL the first tenant chose. Likewise an
-- address could name another tenant's contact (a sequence too), and rows could name another
-- tenant's credential, subscription or lead (random uuids that RLS hides, but a key is no place
-- to rely on that).
--
-- Each such key now includes tenant_id (for a lead's address: the lead), against a UNIQUE
-- (tenant_id, id) of the parent, with the same ON DELETE as before. The old keys go: the new
-- ones check all they checked. The claim functions join by these keys and need no change.

-- the parents' (tenant, id)
ALTER TABLE events ADD CONSTRAINT events_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE credentials ADD CONSTRAINT credentials_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE webhook_subscriptions ADD CONSTRAINT webhook_subscriptions_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE leads ADD CONSTRAINT leads_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE lead_contacts ADD CONSTRAINT lead_contacts_lead_id_id_key UNIQUE (lead_id, id);
-- the plain indexes these make redundant (the same columns, or their first)
DROP INDEX events_tenant_idx;
DROP INDEX credentials_tenant_idx;
DROP INDEX webhook_deliveries_tenant;

-- the single-column keys, by table and column (their names are PostgreSQL's defaults)
DO $$
DECLARE
    k record;
BEGIN
    FOR k IN
        SELECT c.conrelid::regclass AS tbl, c.conname
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
           AND (c.conrelid::regclass::text, a.attname) IN (
                ('events', 'audience'), ('webhook_subscriptions', 'credential_id'),
                ('webhook_deliveries', 'event_id'), ('webhook_deliveries', 'subscription_id'),
                ('webhook_attempts', 'delivery_id'), ('leads', 'credential_id'),
                ('lead_stipulations', 'lead_id'), ('lead_accounts', 'lead_id'), ('lead_contacts', 'lead_id'),
                ('lead_addresses', 'lead_id'), ('lead_addresses', 'contact_id'), ('lead_prior_loans', 'lead_id'),
                ('lead_applications', 'lead_id'), ('lead_stage_history', 'lead_id'),
                ('lead_attachments', 'lead_id'))
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', k.tbl, k.conname);
    END LOOP;
END
$$;

ALTER TABLE events ADD CONSTRAINT events_audience_fkey
    FOREIGN KEY (tenant_id, audience) REFERENCES credentials (tenant_id, id);
ALTER TABLE webhook_subscriptions ADD CONSTRAINT webhook_subscriptions_credential_id_fkey
    FOREIGN KEY (tenant_id, credential_id) REFERENCES credentials (tenant_id, id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_id_fkey
    FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_subscription_id_fkey
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES webhook_subscriptions (tenant_id, id);
ALTER TABLE webhook_attempts ADD CONSTRAINT webhook_attempts_delivery_id_fkey
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id);
ALTER TABLE leads ADD CONSTRAINT leads_credential_id_fkey
    FOREIGN KEY (tenant_id, credential_id) REFERENCES credentials (tenant_id, id);
ALTER TABLE lead_attachments ADD CONSTRAINT lead_attachments_credential_id_fkey
    FOREIGN KEY (tenant_id, credential_id) REFERENCES credentials (tenant_id, id);
ALTER TABLE lead_addresses ADD CONSTRAINT lead_addresses_contact_id_fkey
    FOREIGN KEY (lead_id, contact_id) REFERENCES lead_contacts (lead_id, id) ON DELETE CASCADE;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['lead_stipulations', 'lead_accounts', 'lead_contacts', 'lead_addresses',
                             'lead_prior_loans', 'lead_applications', 'lead_stage_history', 'lead_attachments']
    LOOP
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (tenant_id, lead_id) '
                       'REFERENCES leads (tenant_id, id) ON DELETE CASCADE', t, t || '_lead_id_fkey');
    END LOOP;
END
$$;
