-- 0014: deliveries are claimed per subscription, at most a few in flight each.
--
-- webhook_claim took the oldest due deliveries, whoever they were for. One receiver that
-- never answers, with a backlog (a partner's endpoint down for an hour, then a new URL that
-- makes everything it missed due at once), filled every slot of every worker: each transfer
-- held its slot for the 10 s timeout, and curl sent at most 8 of them at a time to one host
-- while the rest waited inside curl, so every other subscription waited too.
-- The claim now takes, for each subscription with due work, at most
-- (p_per_subscription - its deliveries in flight) of its oldest due deliveries, then the
-- oldest of those (sql/functions/60_webhooks.sql).
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
