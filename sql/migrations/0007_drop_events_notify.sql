-- events_notify (0001) sent pg_notify('fl_events', id) for every event.  Nothing listens on
-- fl_events: the webhook worker LISTENs on fl_webhooks, which webhook_fanout() notifies only
-- when an event has a delivery.  A NOTIFY is not free: PostgreSQL serialises the commits of
-- notifying transactions on one lock held through the WAL flush, so every post-payments batch
-- (its payment_batch.posted event) waited for the other workers' commits to reach disk.
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS fl_events_notify();
