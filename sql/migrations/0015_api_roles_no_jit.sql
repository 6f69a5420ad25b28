-- 0015: the API's and the worker's sessions do not JIT-compile their statements.
--
-- PostgreSQL compiles a statement with LLVM when its estimated cost passes jit_above_cost
-- (100,000 by default), and compiles it again on every execution. The API's statements
-- are short and keyed, but some of reconciliation's are estimated over a whole batch's
-- lines before the plan knows their number, and pass that cost: each execution then spent
-- more time compiling than running. Measured with tests/sql/perf/mixed_batch.sql (one
-- session, 1,000 lines of long MemoLines against 600 invoices): 3,382 ms with JIT, 2,476
-- without; its mixed batch of 2,000 lines: 1,283 against 809 ms; a batch of 100 lines, 23 of
-- them exceptions, against 100,000 invoices: 471 against 53 ms. Reports (fl_report, the
-- owner) keep JIT, where long scans pay for it.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE fl_api IN DATABASE %I SET jit = off', current_database());
    EXECUTE format('ALTER ROLE fl_worker IN DATABASE %I SET jit = off', current_database());
END
$$;
