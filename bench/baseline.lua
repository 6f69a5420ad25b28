-- Case 2: the bare libfcgi baseline, on random invoices of the seeded 100,000.
local c = dofile(os.getenv("FL_BENCH_DIR") .. "/common.lua")
setup = c.setup
done = c.done

local n = tonumber(os.getenv("FL_BENCH_INVOICES") or "100000")

function init(args)
    c.seed(tonumber(wrk.thread:get("tid")) or 0)
end

function request()
    return wrk.format("GET", string.format("/bench/baseline?id=bench-inv-%06d", math.random(n)))
end
