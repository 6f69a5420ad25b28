-- 0023: leads' own key to tenants goes.
--
-- (tenant_id, credential_id) REFERENCES credentials (tenant_id, id) already ties a lead to its
-- tenant: a credential's tenant_id references tenants. The second check locked the tenant's one
-- row from every lead of every partner (a MultiXact whenever two leads were in flight).
--
-- Apart from 0022 because dropping a key locks the table it references, tenants, which every
-- request of every family reads: here that lock lasts only this short transaction. It waits
-- for the requests in flight to finish (and new ones wait behind it); a lock_timeout ends the
-- wait, and the migration, rather than let requests queue: run migrate again.
SET LOCAL lock_timeout = '5s';
ALTER TABLE leads DROP CONSTRAINT leads_tenant_id_fkey;
