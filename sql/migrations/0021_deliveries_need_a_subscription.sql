-- 0021: every webhook delivery has a subscription.
--
-- A delivery is signed with its subscription's secret. One without a subscription (since 0011
-- only a DBA's INSERT could make one: the API and the fan-out always name theirs) could never
-- be signed: the worker claimed it, failed it ("the signing secret cannot be decrypted") and
-- retried it for the three days of the retry window. Those still waiting are dead now, with
-- the reason, and new ones are refused (NOT VALID: the dead and delivered rows of before stay
-- as they are; webhook_requeue cannot bring one back).
UPDATE webhook_deliveries
   SET state = 'dead', last_error = 'no subscription: nothing to sign it with'
 WHERE subscription_id IS NULL AND state IN ('pending', 'retrying', 'delivering');
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_subscription_required
    CHECK (subscription_id IS NOT NULL) NOT VALID;
