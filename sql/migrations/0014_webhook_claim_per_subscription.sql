-- 0014: deliveries are claimed per subscription, at most a few in flight each.
--
-- webhook_claim took the oldest due deliveries, whoever they were for. One receiver that
-- never answers, with a backlog (a partner's endpoint down for an hour, then a new URL that
-- makes everything it missed due at once), filled every slot of every worker: each transfer
-- held its slot for the 10 s timeout, and curl sent at most 8 of them at a time to one host
-- while the rest waited inside curl, so every other subscription waited too.
-- The claim now takes, for each subscription with due work, at most
-- (p_per_subscription - its deliveries in flight) of its oldest due deliveries, then those
-- in turn (sql/functions/60_webhooks.sql).
--
-- Two partial indexes serve it: the due deliveries of a subscription in the order they are
-- due (this replaces webhook_deliveries_due, which ordered all subscriptions together), and
-- the deliveries in flight per subscription (small: those claimed and not yet recorded).
-- The old two-argument webhook_claim goes; the new one takes the cap as a third argument.
DROP FUNCTION IF EXISTS webhook_claim(int, int);

CREATE INDEX webhook_deliveries_sub_due ON webhook_deliveries (subscription_id, next_attempt_at)
    WHERE state IN ('pending','delivering');
CREATE INDEX webhook_deliveries_in_flight ON webhook_deliveries (subscription_id)
    WHERE state = 'delivering';
DROP INDEX webhook_deliveries_due;

-- The worker's own writes (claims, attempts, outcomes) do not wait for their WAL flush. With
-- the cap, a subscription's backlog is sent 8 at a time and every finished delivery is
-- followed by a claim: about two commits per delivery, each waiting for an fsync, cut the
-- backlog's throughput (bench/webhooks.sh, one subscription's backlog: 1,131 deliveries/s with
-- synchronous commits, 1,741-1,814 without, 2,137 before the cap). What a PostgreSQL
-- crash can lose is the last fraction of a second of that bookkeeping: a delivery recorded
-- as delivered is sent again, a claim's lease is forgotten and the delivery claimed again,
-- an attachment is fetched again. Delivery is at-least-once anyway (receivers drop
-- duplicates by Factorline-Event-Id); the API's transactions keep synchronous commits.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE fl_worker IN DATABASE %I SET synchronous_commit = off', current_database());
END
$$;
