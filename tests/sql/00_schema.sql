-- Schema guarantees: RLS on every tenant table, roles own nothing, privileges, auth lookup.
BEGIN;
SELECT plan(36);

SELECT ok((SELECT count(*) >= 11 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              AND a.attname = 'tenant_id' AND NOT a.attisdropped),
          'the tenant tables are found (sanity for the next test)');

SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              AND a.attname = 'tenant_id' AND NOT a.attisdropped
              AND NOT (c.relrowsecurity AND c.relforcerowsecurity)),
          NULL, 'every table with a tenant_id column has RLS enabled and forced');

SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              AND a.attname = 'tenant_id' AND NOT a.attisdropped AND c.relname <> 'credentials'
              AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                                 AND 'fl_api'::regrole = ANY (p.polroles)
                                 AND p.polqual IS NOT NULL AND p.polwithcheck IS NOT NULL)),
          NULL, 'every tenant table has an fl_api policy with USING and WITH CHECK');

SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
              AND a.attname = 'tenant_id' AND NOT a.attisdropped
              AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                                 AND 'fl_report'::regrole = ANY (p.polroles) AND p.polcmd = 'r')),
          NULL, 'every tenant table has an fl_report select policy');

SELECT is((SELECT count(*) FROM pg_class WHERE relowner IN ('fl_api'::regrole, 'fl_report'::regrole))
        + (SELECT count(*) FROM pg_proc WHERE proowner IN ('fl_api'::regrole, 'fl_report'::regrole))
        + (SELECT count(*) FROM pg_type WHERE typowner IN ('fl_api'::regrole, 'fl_report'::regrole))
        + (SELECT count(*) FROM pg_namespace WHERE nspowner IN ('fl_api'::regrole, 'fl_report'::regrole)),
          0::bigint, 'fl_api and fl_report own nothing');

SELECT ok((SELECT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls FROM pg_roles WHERE rolname = 'fl_api'),
          'fl_api can log in, is no superuser, does not bypass RLS');
SELECT ok((SELECT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls FROM pg_roles WHERE rolname = 'fl_report'),
          'fl_report can log in, is no superuser, does not bypass RLS');

SELECT ok(NOT has_table_privilege('fl_api', 'tenants', 'SELECT')
          AND NOT has_table_privilege('fl_api', 'credentials', 'SELECT'),
          'fl_api cannot read tenants or credentials');
SELECT ok(NOT has_column_privilege('fl_report', 'credentials', 'secret_hash', 'SELECT'),
          'fl_report cannot read secret hashes');
SELECT ok(NOT has_column_privilege('fl_report', 'webhook_subscriptions', 'secret_enc', 'SELECT')
          AND has_column_privilege('fl_report', 'webhook_subscriptions', 'url', 'SELECT'),
          'fl_report reads webhook subscriptions but not their signing secrets');
SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                 AND d.objid = c.oid AND d.deptype = 'e')      -- pgTAP's own views
              AND (has_table_privilege('fl_worker', c.oid, 'SELECT') OR has_table_privilege('fl_worker', c.oid, 'INSERT')
                   OR has_table_privilege('fl_worker', c.oid, 'UPDATE') OR has_table_privilege('fl_worker', c.oid, 'DELETE'))),
          NULL, 'fl_worker holds no privilege on any table, view or sequence');
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
              AND has_function_privilege('fl_worker', p.oid, 'EXECUTE')),
          ARRAY['attachment_claim(integer,integer,integer)', 'attachment_record(uuid,bytea,text,text,text,boolean)',
                'attachment_record(uuid,integer,bytea,text,text,text,boolean)',
                'webhook_claim(integer,integer,integer)', 'webhook_record(bigint,integer,integer,integer,text,integer,integer)',
                'webhook_record(bigint,integer,integer,text,integer,integer)'],
          'fl_worker may execute the webhook and attachment functions, and no other that acts as the owner');
-- docs/sql.md, "Roles and tenancy": what fl_api may change
SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
              AND (has_table_privilege('fl_api', c.oid, 'DELETE') OR has_table_privilege('fl_api', c.oid, 'TRUNCATE'))),
          NULL, 'fl_api may delete from no table');
SELECT is((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                 AND d.objid = c.oid AND d.deptype = 'e')
              AND has_table_privilege('fl_api', c.oid, 'UPDATE')),
          ARRAY['client_debtors', 'clients', 'debtor_accounts', 'debtors', 'invoices', 'payment_applications',
                'payment_batches', 'payment_lines', 'schedules', 'webhook_subscriptions'],
          'fl_api updates the posting tables and webhook subscriptions, no other whole table (leads: the owner''s set_stage, 0022)');
SELECT ok(NOT has_function_privilege('fl_api', 'webhook_requeue(bigint)', 'EXECUTE')
          AND NOT has_function_privilege('fl_worker', 'webhook_requeue(bigint)', 'EXECUTE')
          AND NOT has_function_privilege('fl_report', 'webhook_requeue(bigint)', 'EXECUTE'),
          'webhook_requeue is for the owner only');
SELECT ok(NOT has_table_privilege('fl_report', 'invoices', 'INSERT')
          AND NOT has_table_privilege('fl_report', 'invoices', 'UPDATE')
          AND NOT has_table_privilege('fl_report', 'payment_lines', 'DELETE'),
          'fl_report is read-only');
SELECT ok(NOT has_table_privilege('fl_api', 'invoices', 'DELETE')
          AND NOT has_table_privilege('fl_api', 'payment_applications', 'DELETE'),
          'fl_api cannot delete money rows');
SELECT ok(has_table_privilege('fl_report', 'unapplied_cash', 'SELECT')
          AND has_table_privilege('fl_report', 'payment_exceptions', 'SELECT')
          AND has_table_privilege('fl_report', 'debtor_aging', 'SELECT')
          AND has_table_privilege('fl_report', 'client_aging', 'SELECT'),
          'fl_report reads the DBA views');

SELECT ok(NOT has_function_privilege('fl_api', 'fl_tenant_add(text, text)', 'EXECUTE')
          AND NOT has_function_privilege('fl_api', 'fl_key_add(text, text, text, bytea, text)', 'EXECUTE')
          AND NOT has_function_privilege('fl_api', 'fl_key_revoke(text, text)', 'EXECUTE'),
          'admin functions are not executable by fl_api');
SELECT ok(has_function_privilege('fl_api', 'fl_auth_lookup(text, text)', 'EXECUTE')
          AND NOT has_function_privilege('fl_report', 'fl_auth_lookup(text, text)', 'EXECUTE'),
          'fl_auth_lookup is executable by fl_api only');
SELECT ok((SELECT prosecdef AND proconfig::text LIKE '%search_path=public, pg_temp%'
             FROM pg_proc WHERE oid = 'fl_auth_lookup(text, text)'::regprocedure),
          'fl_auth_lookup is SECURITY DEFINER with a fixed search_path');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'posting\_%'
              AND (p.prosecdef OR NOT has_function_privilege('fl_api', p.oid, 'EXECUTE'))),
          NULL, 'posting_* functions are SECURITY INVOKER and executable by fl_api');

-- Auth lookup and admin functions.
SELECT fl_tenant_add('Schema Test Factor', 'SCHEMA-T1') IS NOT NULL AS t \gset
SELECT throws_ok($$SELECT fl_tenant_add('Schema Test Factor', 'SCHEMA-T2')$$, 'FL409', 'Tenant exists',
                 'fl_tenant_add refuses an existing name');
SELECT throws_ok($$SELECT fl_tenant_add('Schema Long Factor', repeat('F', 65))$$, 'FL400', 'Invalid FactorID',
                 'fl_tenant_add refuses a FactorID over 64 characters (the workers compare 64 at most)');
SELECT ok(fl_tenant_add('Schema Long Factor', repeat('F', 64)) IS NOT NULL, 'a FactorID of 64 characters is taken');
SELECT ok(fl_key_add('Schema Test Factor', 'posting', 'SYS-1', sha256('secret'), 'test key') IS NOT NULL,
          'fl_key_add adds a key');
SET LOCAL ROLE fl_api;
SELECT is((SELECT array_agg(factor_id || ':' || encode(secret_hash, 'hex'))
             FROM fl_auth_lookup('posting', 'SYS-1')),
          ARRAY['SCHEMA-T1:' || encode(sha256('secret'), 'hex')], 'fl_api looks a key up');
SELECT is((SELECT count(*) FROM fl_auth_lookup('leads', 'SYS-1')), 0::bigint, 'the family is part of the key');
RESET ROLE;
SELECT ok(fl_key_revoke('posting', 'SYS-1'), 'fl_key_revoke revokes');
SELECT is((SELECT count(*) FROM fl_auth_lookup('posting', 'SYS-1')), 0::bigint, 'a revoked key is not found');

-- A NOTIFY serialises commits (WAL flush included): events notify only through the fan-out,
-- and only when a webhook delivery was queued (0007).
SELECT is((SELECT array_agg(tgname::text ORDER BY tgname) FROM pg_trigger
            WHERE tgrelid = 'events'::regclass AND NOT tgisinternal),
          ARRAY['events_webhook_fanout'], 'events: the webhook fan-out is the only trigger (no NOTIFY per event)');

-- Every fl_api policy is the tenant rule, in one of its two spellings; reconciliation's tables
-- evaluate fl_current_tenant() once per statement (an InitPlan), not once per row (0008).
SELECT is((SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_policies
            WHERE 'fl_api' = ANY (roles)
              AND NOT (qual = with_check
                       AND qual IN ('(tenant_id = fl_current_tenant())',
                                    '(tenant_id = ( SELECT fl_current_tenant() AS fl_current_tenant))'))),
          NULL, 'every fl_api policy is tenant_id = fl_current_tenant(), USING and WITH CHECK');
SELECT is((SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_policies
            WHERE 'fl_api' = ANY (roles) AND qual LIKE '%SELECT fl_current_tenant()%'),
          ARRAY['invoices', 'payment_applications', 'payment_lines'],
          'invoices, payment_lines and payment_applications: the tenant once per statement');
SELECT is((SELECT array_agg(a.attname::text ORDER BY k.n)
             FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
            WHERE c.conrelid = 'payment_applications'::regclass AND c.contype = 'p'),
          ARRAY['line_id', 'id'], 'payment_applications: primary key (line_id, id)');

-- No BEFORE ROW UPDATE trigger on any table (0010): PostgreSQL locks each row such a trigger
-- may fire for before it reads the trigger's column list, so every invoice post-payments updates
-- was locked first (a write and a WAL record). Row checks on UPDATE are AFTER ... WHEN.
SELECT is((SELECT array_agg(format('%s.%s', t.tgrelid::regclass, t.tgname)
                           ORDER BY format('%s.%s', t.tgrelid::regclass, t.tgname))
             FROM pg_trigger t
            WHERE NOT t.tgisinternal
              AND t.tgtype & 1 = 1     -- ROW
              AND t.tgtype & 2 = 2     -- BEFORE
              AND t.tgtype & 16 = 16), -- UPDATE
          NULL, 'no BEFORE ROW UPDATE trigger (each would lock every updated row)');

SELECT is((SELECT array_agg(r.rolname::text ORDER BY r.rolname) FROM pg_db_role_setting s
             JOIN pg_roles r ON r.oid = s.setrole
            WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND s.setconfig @> ARRAY['jit=off']),
          ARRAY['fl_api', 'fl_worker'],
          'the API''s and the worker''s sessions do not JIT-compile (0015); reports do');

SELECT * FROM finish();
ROLLBACK;
