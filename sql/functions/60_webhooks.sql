-- Webhooks: fan-out of events into deliveries, the worker's claim and record
-- functions (the retry schedule lives here), DBA views and a re-queue function.

-- One delivery per active subscription of the event's tenant and family whose
-- event_types include the event (NULL: all).  A subscription that belongs to a
-- credential (a leads partner's) gets only the events addressed to it
-- (events.audience).  A partner's trigger_webhook test is delivered only to the
-- URL it names (leads_trigger_webhook), never fanned out.  Runs in the event's
-- transaction.
CREATE OR REPLACE FUNCTION webhook_fanout() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
BEGIN
    INSERT INTO webhook_deliveries (tenant_id, event_id, subscription_id, url)
    SELECT NEW.tenant_id, NEW.id, s.id, s.url
      FROM webhook_subscriptions s
     WHERE s.tenant_id = NEW.tenant_id
       AND s.family = NEW.family
       AND s.active
       AND (s.event_types IS NULL OR NEW.type = ANY (s.event_types))
       AND (s.credential_id IS NULL OR s.credential_id = NEW.audience)
       AND NOT (NEW.family = 'leads' AND NEW.type = 'trigger_webhook');
    IF FOUND THEN
        PERFORM pg_notify('fl_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION webhook_fanout() FROM PUBLIC;

DROP TRIGGER IF EXISTS events_webhook_fanout ON events;
CREATE TRIGGER events_webhook_fanout AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION webhook_fanout();

-- A delivery of an event to a URL of the caller's choosing (leads' trigger_webhook),
-- signed with the family subscription's secret.  For the API role, in its tenant.
CREATE OR REPLACE FUNCTION webhook_enqueue(p_event_id bigint, p_subscription uuid, p_url text)
RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO webhook_deliveries (tenant_id, event_id, subscription_id, url)
    VALUES (fl_current_tenant(), p_event_id, p_subscription, p_url)
    RETURNING id INTO v_id;
    PERFORM pg_notify('fl_webhooks', '');
    RETURN v_id;
END
$$;
REVOKE ALL ON FUNCTION webhook_enqueue(bigint, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_enqueue(bigint, uuid, text) TO fl_api;

-- The retry schedule: base * 2^(attempt-1), at most 6 hours, with +-20 % jitter
-- (jitter in [-1, 1]).  With the default base of 30 s the first retry comes
-- within a minute.
CREATE OR REPLACE FUNCTION webhook_backoff(p_attempt int, p_base_ms int, p_jitter double precision)
RETURNS interval
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT make_interval(secs => least(p_base_ms::double precision * 2 ^ least(greatest(p_attempt, 1) - 1, 30),
                                       6 * 3600 * 1000.0)
                                 * (1 + 0.2 * greatest(-1, least(1, p_jitter))) / 1000.0)
$$;
GRANT EXECUTE ON FUNCTION webhook_backoff(int, int, double precision) TO fl_worker, fl_report;

-- Claims up to p_limit due deliveries for p_lease_ms.  SKIP LOCKED: concurrent
-- workers on any host never claim the same row; an expired lease (a killed
-- worker) makes the row due again.
-- Per subscription, at most p_per_subscription deliveries are in flight (claimed,
-- lease running), so that one receiver that hangs, with a backlog, cannot take
-- every slot (migration 0014): each subscription with due work offers its oldest
-- due deliveries up to what it has left, and those are claimed in turn (every
-- subscription's first before anyone's second, the oldest first in each round).
-- The subscriptions are found with a skip scan of webhook_deliveries_sub_due (one
-- probe each), so a backlog of due deliveries is never read in full.  Two workers
-- claiming at the same moment can together exceed the cap by what each took.
CREATE OR REPLACE FUNCTION webhook_claim(p_limit int, p_lease_ms int, p_per_subscription int DEFAULT 8)
RETURNS TABLE (delivery_id bigint, event_id bigint, event_type text, family text, url text,
               body text, secret_enc text, signature text, attempts int)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp
    SET jit = off
    SET enable_seqscan = off
AS $$
BEGIN
    -- plpgsql keeps the statement's plan for the session (a SQL function that is not
    -- inlined, as a SECURITY DEFINER one never is, plans it again on every call).  A plan
    -- kept is made with the statistics of its time, perhaps of a nearly empty table: every
    -- step goes by key (ids as arrays, which only the primary key can serve, and no
    -- sequential scan), whatever the statistics say, as in reconciliation (docs/sql.md).
    -- jit off: compiling the statement would cost more than running it.  The worker's cap
    -- is at most 64.
    --
    -- First the retries whose time has come are pending again, read in time order from
    -- their own index (webhook_deliveries_retry_due): a retry not yet due is never read,
    -- however many failing subscriptions there are.  At most 1,000 a claim (after a long
    -- outage the next claims take the rest); rows another worker is moving are skipped.
    -- The update goes by key only (a condition on state could let a kept plan read the
    -- retries' index in full); the rows are locked, and were re-checked, by the subquery.
    UPDATE webhook_deliveries d
       SET state = 'pending'
     WHERE d.id = ANY (ARRAY(SELECT r.id FROM webhook_deliveries r
                              WHERE r.state = 'retrying' AND r.next_attempt_at <= now()
                              ORDER BY r.next_attempt_at
                              LIMIT 1000
                                FOR UPDATE SKIP LOCKED));
    RETURN QUERY
    WITH RECURSIVE subs(s, first_at) AS (
        -- each subscription with work, and the earliest next_attempt_at of that work (the
        -- first index entry of the subscription): one probe per subscription
        (SELECT d.subscription_id, d.next_attempt_at FROM webhook_deliveries d
          WHERE d.state IN ('pending','delivering') AND d.subscription_id IS NOT NULL
          ORDER BY d.subscription_id, d.next_attempt_at LIMIT 1)
        UNION ALL
        SELECT n.subscription_id, n.next_attempt_at
          FROM subs
         CROSS JOIN LATERAL (
               SELECT d.subscription_id, d.next_attempt_at FROM webhook_deliveries d
                WHERE d.state IN ('pending','delivering') AND d.subscription_id > subs.s
                ORDER BY d.subscription_id, d.next_attempt_at LIMIT 1) n
    ), offered AS (
        -- per subscription: its deliveries in flight, and its oldest due ones (at most 64
        -- read, a constant, so that the scan stops there and row estimates stay small);
        -- then as many of those as it has room for
        SELECT o.id, o.k, o.due_at
          FROM (SELECT d.id, d.next_attempt_at AS due_at, busy.n,
                       row_number() OVER (PARTITION BY subs.s ORDER BY d.next_attempt_at, d.id) AS k
                  FROM subs
                 CROSS JOIN LATERAL (
                       SELECT count(*) AS n FROM webhook_deliveries b
                        WHERE b.subscription_id = subs.s AND b.state = 'delivering'
                          AND b.next_attempt_at > now()) busy
                 CROSS JOIN LATERAL (
                       SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
                        WHERE d.subscription_id = subs.s AND d.state IN ('pending','delivering')
                          AND d.next_attempt_at <= now()
                        ORDER BY d.next_attempt_at
                        LIMIT 64) d
                 -- nothing due (retries waiting for their time, deliveries in flight): no
                 -- further probe
                 WHERE subs.first_at <= now()) o
         WHERE o.k <= p_per_subscription - o.n
        -- (deliveries without a subscription were one more group until migration 0021, which
        -- refuses them: nothing could sign them)
    ), due AS (
        -- round robin: every subscription's first offered delivery before anyone's second,
        -- so that the subscriptions at their cap do not take the free slots first
        SELECT d.id
          FROM unnest(ARRAY(SELECT o.id FROM offered o ORDER BY o.k, o.due_at, o.id)) WITH ORDINALITY x(id, ord)
          JOIN webhook_deliveries d ON d.id = x.id
         WHERE d.state IN ('pending','delivering')
           AND d.next_attempt_at <= now()
         ORDER BY x.ord
         LIMIT p_limit
           FOR UPDATE OF d SKIP LOCKED
    ), spent AS (
        -- A delivery whose lease ran out with no outcome recorded (its worker died on it, or
        -- could not reach the database) is claimed again; one that has reached 50 attempts so
        -- (past any retry schedule: ~21 in the default 3 days) is dead instead, so that a
        -- delivery that kills its worker every time is not sent for ever.
        UPDATE webhook_deliveries d
           SET state = 'dead', last_error = 'no outcome recorded within the lease of attempt ' || d.attempts
         WHERE d.id = ANY (ARRAY(SELECT id FROM due)) AND d.state = 'delivering' AND d.attempts >= 50
    ), claimed AS (
        UPDATE webhook_deliveries d
           SET state = 'delivering',
               attempts = d.attempts + 1,
               next_attempt_at = now() + make_interval(secs => p_lease_ms / 1000.0)
         WHERE d.id = ANY (ARRAY(SELECT id FROM due))    -- by key: the planner cannot size due
           AND NOT (d.state = 'delivering' AND d.attempts >= 50)
        RETURNING d.id, d.event_id, d.subscription_id, d.url, d.attempts
    )
    SELECT c.id, c.event_id, e.type, e.family, c.url, e.payload::text, s.secret_enc,
           coalesce(s.signature, 'factorline'), c.attempts
      FROM claimed c
      JOIN events e ON e.id = c.event_id
      LEFT JOIN webhook_subscriptions s ON s.id = c.subscription_id;
END
$$;
REVOKE ALL ON FUNCTION webhook_claim(int, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_claim(int, int, int) TO fl_worker;

-- Records one attempt: 2xx is delivered; anything else is retried on the
-- backoff schedule until p_max_age_s after window_start, then the delivery is
-- dead.  Returns the new state.  p_attempt is the claim's attempt number
-- (webhook_claim's attempts): a failure changes the delivery only while that
-- claim is still the current one.  A worker whose lease ran out may record a
-- failure after another worker claimed the delivery again; it is kept in
-- webhook_attempts but leaves the new claim alone (until the twenty-first
-- session it set the delivery back to retrying while the other send was in
-- flight, and a third worker could then send it beside the second).
CREATE OR REPLACE FUNCTION webhook_record(p_delivery bigint, p_attempt int, p_status int, p_latency_ms int,
                                          p_error text, p_base_ms int, p_max_age_s int)
RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
DECLARE
    d webhook_deliveries;
    v_next timestamptz;
    v_state text;
BEGIN
    SELECT * INTO d FROM webhook_deliveries WHERE id = p_delivery FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FL404', MESSAGE = 'Delivery not found';
    END IF;
    INSERT INTO webhook_attempts (tenant_id, delivery_id, status_code, latency_ms, error)
    VALUES (d.tenant_id, d.id, p_status, greatest(p_latency_ms, 0), left(p_error, 500));

    IF p_status BETWEEN 200 AND 299 THEN
        v_state := 'delivered';
        UPDATE webhook_deliveries
           SET state = 'delivered', delivered_at = now(), last_status = p_status, last_error = NULL
         WHERE id = d.id;
        RETURN v_state;
    END IF;
    IF d.state <> 'delivering' OR d.attempts IS DISTINCT FROM p_attempt THEN
        -- another worker finished it, or holds it now, after our lease ran out: its outcome
        RETURN d.state;
    END IF;
    v_next := now() + webhook_backoff(d.attempts, p_base_ms, 2 * random() - 1);
    v_state := CASE WHEN v_next > d.window_start + make_interval(secs => p_max_age_s)
                    THEN 'dead' ELSE 'retrying' END;
    UPDATE webhook_deliveries
       SET state = v_state, next_attempt_at = v_next, last_status = p_status,
           last_error = left(p_error, 500)
     WHERE id = d.id;
    RETURN v_state;
END
$$;
REVOKE ALL ON FUNCTION webhook_record(bigint, int, int, int, text, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_record(bigint, int, int, int, text, int, int) TO fl_worker;

-- The signature of workers built before the twenty-first session (no attempt number): kept so
-- that a worker still on the old build records its attempts while the hosts are upgraded (were
-- it gone, such a worker would send every delivery and record none, and send it again at each
-- lease). It records against the delivery's current claim, as before. Drop it once every
-- fl-worker runs the new build.
CREATE OR REPLACE FUNCTION webhook_record(p_delivery bigint, p_status int, p_latency_ms int,
                                          p_error text, p_base_ms int, p_max_age_s int)
RETURNS text
    LANGUAGE sql SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
    SELECT webhook_record(p_delivery, (SELECT attempts FROM webhook_deliveries WHERE id = p_delivery),
                          p_status, p_latency_ms, p_error, p_base_ms, p_max_age_s)
$$;
REVOKE ALL ON FUNCTION webhook_record(bigint, int, int, text, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_record(bigint, int, int, text, int, int) TO fl_worker;

-- DBA: give a dead (or any undelivered) delivery a fresh 3-day window, due now.
-- A delivery in flight (delivering, its lease not over) is left alone: made due now, a
-- second worker would send it while the first still is.  Returns whether it was re-queued.
CREATE OR REPLACE FUNCTION webhook_requeue(p_delivery bigint) RETURNS boolean
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE webhook_deliveries
       SET state = 'pending', next_attempt_at = now(), window_start = now()
     WHERE id = p_delivery
       AND (state IN ('pending', 'retrying', 'dead')
            OR (state = 'delivering' AND next_attempt_at <= now()));
    IF FOUND THEN
        PERFORM pg_notify('fl_webhooks', '');
    END IF;
    RETURN FOUND;
END
$$;
REVOKE ALL ON FUNCTION webhook_requeue(bigint) FROM PUBLIC;

-- Owner-only: a subscription made from the command line (the families make
-- theirs through their own API functions).
CREATE OR REPLACE FUNCTION webhook_subscription_add(p_tenant_name text, p_family text, p_name text,
                                                    p_url text, p_event_types text[],
                                                    p_secret_enc text, p_signature text)
RETURNS uuid
    LANGUAGE plpgsql
AS $$
DECLARE
    v_tenant uuid;
    v_id uuid;
BEGIN
    v_tenant := fl_tenant_by_name(p_tenant_name);
    INSERT INTO webhook_subscriptions (tenant_id, family, name, url, event_types, secret_enc, signature)
    VALUES (v_tenant, p_family, p_name, p_url, p_event_types, p_secret_enc, coalesce(p_signature, 'factorline'))
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
REVOKE ALL ON FUNCTION webhook_subscription_add(text, text, text, text, text[], text, text) FROM PUBLIC;

-- Deliveries by state, per subscription: the queue at a glance.
CREATE OR REPLACE VIEW webhook_delivery_stats AS
SELECT d.tenant_id, t.name AS tenant, s.family, d.subscription_id, s.name AS subscription,
       d.state, count(*) AS deliveries, min(d.created_at) AS oldest,
       max(d.delivered_at) AS last_delivered, sum(d.attempts) AS attempts
  FROM webhook_deliveries d
  JOIN tenants t ON t.id = d.tenant_id
  LEFT JOIN webhook_subscriptions s ON s.id = d.subscription_id
 GROUP BY d.tenant_id, t.name, s.family, d.subscription_id, s.name, d.state;

-- The latest deliveries with their last attempt (./factorline webhooks).
CREATE OR REPLACE VIEW webhook_recent AS
SELECT d.id, t.name AS tenant, e.family, e.type AS event_type, d.event_id, d.url, d.state,
       d.attempts, d.last_status, d.last_error, d.created_at, d.next_attempt_at, d.delivered_at
  FROM webhook_deliveries d
  JOIN tenants t ON t.id = d.tenant_id
  JOIN events e ON e.id = d.event_id;

GRANT SELECT ON webhook_delivery_stats, webhook_recent TO fl_report;
