-- webhook_claim: at most p_per_subscription deliveries of a subscription in flight
-- (migration 0014), the oldest due first, expired leases due again; retries wait as
-- 'retrying', outside the claim's scan (0017).
BEGIN;
SELECT plan(32);

-- this test's deliveries only: whatever else is due waits until the rollback
UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 day'
 WHERE state IN ('pending','retrying','delivering');
INSERT INTO tenants (name, factor_id) VALUES ('claim-t', 'CLAIM-T') RETURNING id AS t \gset
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
VALUES (:'t', 'financing', 'a', 'http://127.0.0.1:9/a', ARRAY['a'], 'v1:0000000a:a') RETURNING id AS sa \gset
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
VALUES (:'t', 'financing', 'b', 'http://127.0.0.1:9/b', ARRAY['b'], 'v1:0000000a:b') RETURNING id AS sb \gset
INSERT INTO events (tenant_id, family, type, payload)
SELECT :'t', 'financing', 'a', jsonb_build_object('i', i) FROM generate_series(1, 10) i;
INSERT INTO events (tenant_id, family, type, payload)
SELECT :'t', 'financing', 'b', jsonb_build_object('i', i) FROM generate_series(1, 2) i;
-- a's backlog is older than b's deliveries
UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 minute' WHERE subscription_id = :'sa';

CREATE TEMP TABLE got (n int, delivery_id bigint, url text, attempts int);
INSERT INTO got SELECT 1, delivery_id, url, attempts FROM webhook_claim(1, 60000, 3);
SELECT is((SELECT string_agg(url, ',') FROM got WHERE n = 1), 'http://127.0.0.1:9/a',
          'a limit of 1 takes the oldest due delivery');
INSERT INTO got SELECT 2, delivery_id, url, attempts FROM webhook_claim(32, 60000, 3);
SELECT is((SELECT string_agg(url || ' ' || k, ', ' ORDER BY url)
             FROM (SELECT url, count(*) AS k FROM got GROUP BY url) x),
          'http://127.0.0.1:9/a 3, http://127.0.0.1:9/b 2',
          'at most 3 of a''s backlog in flight; b''s deliveries are claimed beside them');
SELECT is((SELECT count(*)::int FROM webhook_claim(32, 60000, 3)), 0,
          'nothing more while a has 3 in flight and b has nothing due');
SELECT is((SELECT count(*) FILTER (WHERE state = 'pending') || ' ' || count(*) FILTER (WHERE state = 'delivering')
             FROM webhook_deliveries WHERE subscription_id = :'sa'), '7 3', 'a''s other 7 wait, pending');

-- a lease that ran out (a killed worker) is due again and frees its place
UPDATE webhook_deliveries SET next_attempt_at = now() - interval '2 minutes'
 WHERE id = (SELECT min(delivery_id) FROM got WHERE url LIKE '%/a');
SELECT is((SELECT string_agg(c.delivery_id || ' ' || c.attempts, ',') FROM webhook_claim(32, 60000, 3) c),
          (SELECT min(delivery_id) || ' 2' FROM got WHERE url LIKE '%/a'),
          'an expired lease is claimed again first (its second attempt), and a stays at 3');
-- a larger cap lets more of the backlog go
SELECT is((SELECT count(*)::int FROM webhook_claim(32, 60000, 5)), 2, 'with a cap of 5, two more of a''s');

-- a delivery without a subscription could never be signed: refused (0021)
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'c', '{}') RETURNING id AS ev \gset
SELECT throws_ok(format($$INSERT INTO webhook_deliveries (tenant_id, event_id, subscription_id, url)
                          VALUES (%L, %s, NULL, 'http://127.0.0.1:9/none')$$, :'t', :'ev'),
                 '23514', NULL, 'a delivery without a subscription is refused');

-- in turn: every subscription's first before anyone's second, however old a backlog is
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
VALUES (:'t', 'financing', 'c', 'http://127.0.0.1:9/c', ARRAY['c2'], 'v1:0000000a:c'),
       (:'t', 'financing', 'd', 'http://127.0.0.1:9/d', ARRAY['d2'], 'v1:0000000a:d');
INSERT INTO events (tenant_id, family, type, payload)
SELECT :'t', 'financing', 'c2', jsonb_build_object('i', i) FROM generate_series(1, 10) i;
INSERT INTO events (tenant_id, family, type, payload)
SELECT :'t', 'financing', 'd2', jsonb_build_object('i', i) FROM generate_series(1, 2) i;
UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour'
 WHERE subscription_id = (SELECT id FROM webhook_subscriptions WHERE tenant_id = :'t' AND name = 'c');
SELECT is((SELECT string_agg(url, ',' ORDER BY url) FROM webhook_claim(2, 60000, 2)),
          'http://127.0.0.1:9/c,http://127.0.0.1:9/d',
          'a limit of 2: one of the old backlog''s and one of the newer subscription''s, not two of the backlog');

-- a failed attempt waits as 'retrying' until its time, then is claimed again
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
VALUES (:'t', 'financing', 'r', 'http://127.0.0.1:9/r', ARRAY['r'], 'v1:0000000a:r');
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'r', '{}');
SELECT delivery_id AS dr FROM webhook_claim(32, 60000, 3) WHERE url = 'http://127.0.0.1:9/r' \gset
SELECT is(webhook_record(:'dr', 1, 503, 10, 'HTTP 503', 30000, 259200), 'retrying',
          'a failed attempt waits for its next one as retrying');
SELECT is((SELECT count(*)::int FROM webhook_claim(32, 60000, 3) WHERE url = 'http://127.0.0.1:9/r'), 0,
          'a retry is not claimed before its time');

-- the claim's cost does not grow with the subscriptions whose retries are waiting: 50 more
-- failing receivers (each delivery claimed, then its attempt recorded as failed) add no index
-- scan and read no row (as 'pending' they cost three probes each until 0017)
SELECT count(*) FROM webhook_claim(32, 60000, 3) \gset
SELECT coalesce(sum(idx_scan), 0) AS s0, coalesce(sum(idx_tup_fetch), 0) AS f0
  FROM pg_stat_xact_user_tables WHERE relname = 'webhook_deliveries' \gset
SELECT count(*) AS c1 FROM webhook_claim(32, 60000, 3) \gset
SELECT coalesce(sum(idx_scan), 0) AS s1, coalesce(sum(idx_tup_fetch), 0) AS f1
  FROM pg_stat_xact_user_tables WHERE relname = 'webhook_deliveries' \gset
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
SELECT :'t', 'financing', 'w' || i, 'http://127.0.0.1:9/w' || i, ARRAY['w'], 'v1:0000000a:w'
  FROM generate_series(1, 50) i;
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'w', '{}');
-- only these are due now (the earlier subscriptions' work is in flight or at its cap)
SELECT count(*) FILTER (WHERE webhook_record(c.delivery_id, c.attempts, 503, 10, 'HTTP 503', 30000, 259200) = 'retrying') AS w1
  FROM webhook_claim(64, 60000, 3) c WHERE c.url LIKE 'http://127.0.0.1:9/w%' \gset
SELECT coalesce(sum(idx_scan), 0) AS s2, coalesce(sum(idx_tup_fetch), 0) AS f2
  FROM pg_stat_xact_user_tables WHERE relname = 'webhook_deliveries' \gset
SELECT count(*) AS c2 FROM webhook_claim(32, 60000, 3) \gset
SELECT coalesce(sum(idx_scan), 0) AS s3, coalesce(sum(idx_tup_fetch), 0) AS f3
  FROM pg_stat_xact_user_tables WHERE relname = 'webhook_deliveries' \gset
SELECT is(format('%s failed, %s claimed, %s more index scans, %s more rows read', :w1, :c2,
                 (:s3 - :s2) - (:s1 - :s0), (:f3 - :f2) - (:f1 - :f0))::text,
          format('50 failed, %s claimed, 0 more index scans, 0 more rows read', :c1),
          '50 subscriptions with retries waiting: the same claim, no more index scans, no more rows read');
-- a subscription whose work is all in flight costs the skip scan's one probe, no more
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
SELECT :'t', 'financing', 'v' || i, 'http://127.0.0.1:9/v' || i, ARRAY['v'], 'v1:0000000a:v'
  FROM generate_series(1, 50) i;
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'v', '{}');
SELECT count(*) AS v1 FROM webhook_claim(64, 60000, 3) c WHERE c.url LIKE 'http://127.0.0.1:9/v%' \gset
SELECT coalesce(sum(idx_scan), 0) AS s4 FROM pg_stat_xact_user_tables WHERE relname = 'webhook_deliveries' \gset
SELECT count(*) AS c3 FROM webhook_claim(32, 60000, 3) \gset
SELECT coalesce(sum(idx_scan), 0) AS s5 FROM pg_stat_xact_user_tables WHERE relname = 'webhook_deliveries' \gset
SELECT is(format('%s in flight, %s claimed, %s more index scans', :v1, :c3, (:s5 - :s4) - (:s1 - :s0))::text,
          format('50 in flight, %s claimed, 50 more index scans', :c1),
          '50 subscriptions with all their work in flight: one index scan each');

UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 minute' WHERE id = :'dr';
SELECT is((SELECT string_agg(c.delivery_id || ' ' || c.attempts, ',') FROM webhook_claim(32, 60000, 3) c
            WHERE c.url = 'http://127.0.0.1:9/r'),
          :'dr' || ' 2', 'once due, the retry is pending again and claimed (its second attempt)');

-- webhook_requeue: a fresh window for what is not delivered, but never a delivery in flight
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
VALUES (:'t', 'financing', 'q', 'http://127.0.0.1:9/q', ARRAY['q'], 'v1:0000000a:q') RETURNING id AS sq \gset
INSERT INTO events (tenant_id, family, type, payload) SELECT :'t', 'financing', 'q', '{}' FROM generate_series(1, 4);
UPDATE webhook_deliveries SET window_start = now() - interval '3 days', next_attempt_at = now() - interval '1 minute'
 WHERE subscription_id = :'sq';
CREATE TEMP TABLE rq AS SELECT id, row_number() OVER (ORDER BY id) AS k FROM webhook_deliveries WHERE subscription_id = :'sq';
UPDATE webhook_deliveries d SET state = CASE rq.k WHEN 1 THEN 'dead' WHEN 2 THEN 'retrying' ELSE 'delivering' END,
       next_attempt_at = CASE rq.k WHEN 3 THEN now() + interval '1 minute' ELSE d.next_attempt_at END
  FROM rq WHERE rq.id = d.id;
SELECT is((SELECT string_agg(rq.k || ' ' || webhook_requeue(rq.id), ', ' ORDER BY rq.k) FROM rq),
          '1 true, 2 true, 3 false, 4 true',
          'webhook_requeue: dead, retrying and an expired lease are re-queued; a live lease is not');
SELECT is((SELECT string_agg(rq.k || ' ' || d.state || ' ' || (d.window_start > now() - interval '1 minute'), ', '
                             ORDER BY rq.k) FROM rq JOIN webhook_deliveries d ON d.id = rq.id),
          '1 pending true, 2 pending true, 3 delivering false, 4 pending true',
          'a re-queued delivery is pending with a fresh window; the one in flight is untouched');
UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now() WHERE id = (SELECT id FROM rq WHERE k = 1);
SELECT is(webhook_requeue((SELECT id FROM rq WHERE k = 1)), false, 'a delivered delivery is not re-queued');
SELECT is(webhook_requeue(-1), false, 'an unknown id: false');

SELECT is((SELECT array_agg(indexrelid::regclass::text ORDER BY indexrelid::regclass::text) FROM pg_index
            WHERE indrelid = 'webhook_deliveries'::regclass AND indpred IS NOT NULL),
          ARRAY['webhook_deliveries_in_flight', 'webhook_deliveries_retry_due', 'webhook_deliveries_sub_due'],
          'the claim''s partial indexes: by subscription (0014), retries by time (0017)');

SELECT ok((SELECT setconfig @> ARRAY['synchronous_commit=off'] FROM pg_db_role_setting
             WHERE setrole = 'fl_worker'::regrole
               AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())),
          'the worker''s role commits without waiting for the WAL flush, in this database (0014)');
SELECT ok((SELECT l.lanname = 'plpgsql' AND p.proconfig @> ARRAY['enable_seqscan=off', 'jit=off']
             FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.oid = 'webhook_claim(int, int, int)'::regprocedure),
          'webhook_claim keeps its plan (plpgsql) and goes by key whatever the statistics');

-- webhook_record applies a failure only for the claim that is still current (twenty-first
-- session): a worker whose lease ran out and reports late leaves the new claim alone
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
VALUES (:'t', 'financing', 'late', 'http://127.0.0.1:9/late', ARRAY['late'], 'v1:0000000a:l');
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'late', '{}');
SELECT delivery_id AS dl, attempts AS a1 FROM webhook_claim(64, 60000, 8) WHERE url = 'http://127.0.0.1:9/late' \gset
UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 second' WHERE id = :'dl';   -- the lease ran out
SELECT attempts AS a2 FROM webhook_claim(64, 60000, 8) WHERE delivery_id = :'dl' \gset
SELECT next_attempt_at AS lease2 FROM webhook_deliveries WHERE id = :'dl' \gset
SELECT is(ARRAY[:a1, :a2], ARRAY[1, 2], 'claimed again once its lease ran out: attempt 2');
SELECT is(webhook_record(:'dl', :a1, 503, 10, 'HTTP 503', 30000, 259200), 'delivering',
          'the first claim''s late failure: the delivery stays with the second claim');
SELECT is((SELECT state || ' ' || (next_attempt_at = :'lease2') || ' ' || coalesce(last_error, '-')
             FROM webhook_deliveries WHERE id = :'dl'),
          'delivering true -', 'its lease and state unchanged');
SELECT is((SELECT count(*)::int FROM webhook_attempts WHERE delivery_id = :'dl'), 1, 'the late attempt is recorded');
SELECT is(webhook_record(:'dl', :a2, 503, 10, 'HTTP 503', 30000, 259200), 'retrying',
          'the current claim''s failure is applied');
-- a worker of the old build (webhook_record without the attempt) records against the current claim
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'late', '{}');
SELECT delivery_id AS dold FROM webhook_claim(64, 60000, 8) WHERE url = 'http://127.0.0.1:9/late' \gset
SELECT is(webhook_record(:'dold', 503, 10, 'HTTP 503', 30000, 259200), 'retrying',
          'the old signature still records a failure');
-- a delivery a DBA dropped while it was in flight stays dead when that send fails
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'late', '{}') RETURNING id AS ev2 \gset
SELECT delivery_id AS dd, attempts AS ad FROM webhook_claim(64, 60000, 8) WHERE url = 'http://127.0.0.1:9/late' \gset
UPDATE webhook_deliveries SET state = 'dead', last_error = 'dropped' WHERE id = :'dd';
SELECT is(webhook_record(:'dd', :ad, 503, 10, 'HTTP 503', 30000, 259200), 'dead', 'a dropped delivery''s failed send: dead');
SELECT is((SELECT last_error FROM webhook_deliveries WHERE id = :'dd'), 'dropped', 'and its reason stays');
-- a deactivated subscription gets no delivery for events written after that (docs/webhooks.md)
UPDATE webhook_subscriptions SET active = false WHERE tenant_id = :'t' AND name = 'late';
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'late', '{}') RETURNING id AS ev3 \gset
SELECT is((SELECT count(*)::int FROM webhook_deliveries WHERE event_id = :'ev3'), 0,
          'an event after the subscription was deactivated: no delivery');

-- a lease that ran out on the 50th attempt (a delivery whose worker dies on it every time):
-- dead at the next claim, not sent again
INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc)
VALUES (:'t', 'financing', 'z', 'http://127.0.0.1:9/z', ARRAY['z'], 'v1:0000000a:z');
INSERT INTO events (tenant_id, family, type, payload) VALUES (:'t', 'financing', 'z', '{}');
SELECT delivery_id AS dz FROM webhook_claim(64, 60000, 3) WHERE url = 'http://127.0.0.1:9/z' \gset
UPDATE webhook_deliveries SET attempts = 49, next_attempt_at = now() - interval '2 minutes' WHERE id = :'dz';
SELECT is((SELECT string_agg(c.attempts::text, ',') FROM webhook_claim(64, 60000, 3) c WHERE c.delivery_id = :'dz'),
          '50', 'a lease run out on attempt 49: claimed again, attempt 50');
UPDATE webhook_deliveries SET next_attempt_at = now() - interval '2 minutes' WHERE id = :'dz';
SELECT is((SELECT count(*)::int FROM webhook_claim(64, 60000, 3) c WHERE c.delivery_id = :'dz'), 0,
          'a lease run out on attempt 50: not claimed again');
SELECT is((SELECT state || ' ' || attempts || ' ' || last_error FROM webhook_deliveries WHERE id = :'dz'),
          'dead 50 no outcome recorded within the lease of attempt 50', 'but dead, with the reason');

SELECT * FROM finish();
ROLLBACK;
