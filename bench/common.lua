-- Shared by the wrk scripts: one machine-readable summary line per run, which
-- bench/run parses.  Loaded with dofile() from each case's script.
local M = {}

M.threads = {}

-- Per-thread counters reach done() through thread:get().
function M.setup(thread)
    thread:set("tid", #M.threads + 1)
    table.insert(M.threads, thread)
end

function M.done(summary, latency, requests)
    local created = 0
    for _, t in ipairs(M.threads) do
        created = created + (tonumber(t:get("created")) or 0)
    end
    local e = summary.errors
    io.write(string.format(
        "FLBENCH requests=%d duration_us=%d status_errors=%d connect=%d read=%d write=%d timeout=%d "
        .. "p50_us=%d p99_us=%d mean_us=%d max_us=%d created=%d\n",
        summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(99), latency.mean, latency.max, created))
    -- the latency at every tenth of a percentile, so that bench/run can merge the
    -- distributions of several runs of one case (its alternated slices)
    -- (wrk's percentile(100) is 0: its rank, count + 1, is never reached; the 100th is the max)
    local q = {}
    for i = 1, 999 do
        q[i] = string.format("%d", latency:percentile(i / 10))
    end
    q[1000] = string.format("%d", latency.max)
    io.write("FLBENCHQ " .. table.concat(q, " ") .. "\n")
end

-- Random integer in [1, n]; the generator is seeded per thread in init().
function M.seed(tid)
    math.randomseed(os.time() * 1000 + tid * 7919 + math.floor(os.clock() * 1e6))
end

return M
