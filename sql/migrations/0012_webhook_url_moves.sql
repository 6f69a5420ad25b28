-- 0012: a partner's new webhook URL takes the deliveries still owed to the old one.
--
-- POST /webhook (leads_webhook_register) replaced the subscription's URL, but each delivery
-- carries the URL it was made for, so the events queued while a partner's endpoint was down
-- kept retrying the old URL for their three days and never reached the new one. The function
-- now moves the pending ones (sql/functions/70_leads.sql); the API role may change those two
-- columns of its own tenant's deliveries (row-level security as before), nothing else.
GRANT UPDATE (url, next_attempt_at) ON webhook_deliveries TO fl_api;
