-- 0013: the rate limiter's buckets are not written to the WAL.
--
-- fl_rate_take runs on every request of a rate-limited credential (leads partners: 1 request/s
-- by default), and each take, refused ones included, updated a row of a logged table: two WAL
-- records and a WAL flush (fsync) before the answer. A bucket is a few seconds of state that a
-- crash may lose: after one, PostgreSQL empties unlogged tables, and every partner starts
-- again with a full burst, as after `./factorline key limit`. Standbys do not have the
-- buckets either (the API writes them on the primary). The table is small (one row per
-- credential that has made a request), so the rewrite is instant.
ALTER TABLE rate_buckets SET UNLOGGED;
