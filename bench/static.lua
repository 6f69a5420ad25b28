-- Case 1: nginx answering a static string.
local c = dofile(os.getenv("FL_BENCH_DIR") .. "/common.lua")
setup = c.setup
done = c.done
wrk.path = "/bench/static"
