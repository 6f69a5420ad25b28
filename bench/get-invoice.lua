-- Case 3: GET /posting/api_factor/get-invoice/ with the three auth headers, on
-- random invoices of the seeded 100,000 (auth + tenant + RLS + lookup + JSON).
-- Optional FL_BENCH_LIMIT: stop after that many responses in total (the RSS soak).
local c = dofile(os.getenv("FL_BENCH_DIR") .. "/common.lua")
setup = c.setup
done = c.done

local n = tonumber(os.getenv("FL_BENCH_INVOICES") or "100000")
local limit = tonumber(os.getenv("FL_BENCH_LIMIT") or "0")
local per_thread = 0
local seen = 0

wrk.headers["Auth-FactorID"] = os.getenv("FL_BENCH_FACTOR_ID")
wrk.headers["Auth-SystemKey"] = os.getenv("FL_BENCH_SYSTEM_KEY")
wrk.headers["Auth-APIKey"] = os.getenv("FL_BENCH_API_KEY")

function init(args)
    c.seed(tonumber(wrk.thread:get("tid")) or 0)
    local threads = tonumber(os.getenv("FL_BENCH_THREADS") or "2")
    per_thread = math.ceil(limit / threads)
end

function request()
    return wrk.format("GET", string.format(
        "/posting/api_factor/get-invoice/?invoiceintegrationid=bench-inv-%06d", math.random(n)))
end

if limit > 0 then
    function response(status, headers, body)
        seen = seen + 1
        if seen >= per_thread then
            wrk.thread:stop()
        end
    end
end
