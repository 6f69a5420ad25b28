-- 0017: a delivery waiting for its next attempt is 'retrying', no longer 'pending'.
--
-- webhook_claim finds the subscriptions with work by a skip scan of
-- webhook_deliveries_sub_due (one index probe per subscription, 0014). A failed delivery
-- stayed 'pending' until its retry time, so every subscription whose receiver was failing
-- cost a probe on every claim, due or not: 16.5 ms a claim with 2,000 such subscriptions and
-- one with due work (pgbench, one session), and a worker claims whenever a slot frees.
-- Retries now wait as 'retrying', outside that index; webhook_claim first moves the retries
-- whose time has come back to 'pending' through an index in time order, which reads only
-- those (docs/webhooks.md, states).
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_state_check,
    ADD CONSTRAINT webhook_deliveries_state_check
        CHECK (state IN ('pending','retrying','delivering','delivered','dead'));

CREATE INDEX webhook_deliveries_retry_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'retrying';

-- The retries already waiting (a failed attempt, not yet due). The new functions, re-applied
-- after the migrations, move them back when due.
UPDATE webhook_deliveries SET state = 'retrying'
 WHERE state = 'pending' AND attempts > 0 AND next_attempt_at > now();
