-- Case 4: POST /posting/api_factor/post-payments/, 100 lines per batch, each line
-- paying a random open invoice by InvoiceRefNumber with a few cents (so invoices
-- stay open), BatchTotal the exact sum, BatchReference unique per request.
-- Lines are sorted by invoice number: concurrent batches then lock invoices in
-- the same order and cannot deadlock each other.
local c = dofile(os.getenv("FL_BENCH_DIR") .. "/common.lua")
setup = c.setup
done = c.done

local n = tonumber(os.getenv("FL_BENCH_INVOICES") or "100000")
local lines = tonumber(os.getenv("FL_BENCH_LINES") or "100")
local tag = os.getenv("FL_BENCH_TAG") or tostring(os.time())
local tid = 0
local seq = 0
local created = 0

wrk.method = "POST"
wrk.path = "/posting/api_factor/post-payments/"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Auth-FactorID"] = os.getenv("FL_BENCH_FACTOR_ID")
wrk.headers["Auth-SystemKey"] = os.getenv("FL_BENCH_SYSTEM_KEY")
wrk.headers["Auth-APIKey"] = os.getenv("FL_BENCH_API_KEY")

function init(args)
    tid = tonumber(wrk.thread:get("tid")) or 0
    c.seed(tid)
end

function request()
    seq = seq + 1
    local picked, ids = {}, {}
    while #ids < lines do
        local i = math.random(n)
        if not picked[i] then
            picked[i] = true
            ids[#ids + 1] = i
        end
    end
    table.sort(ids)
    local parts, cents = {}, 0
    for k, i in ipairs(ids) do
        local amt = math.random(1, 99)
        cents = cents + amt
        parts[k] = string.format(
            '{"PaymentDate":"%s","PaymentType":"ACH","Amount":"0.%02d","TransactionNumber":"%s-%d-%d-%d",'
            .. '"AccountNumber":"BENCH-ACCT-1","RemitterName":"Bench Debtor Inc","InvoiceRefNumber":"BN%06d"}',
            os.date("%Y-%m-%d"), amt, tag, tid, seq, k, i)
    end
    local body = string.format(
        '{"BatchReference":"bench-%s-%d-%d","BatchTotal":"%d.%02d","AccountNumber":"BENCH-OPS-1",'
        .. '"PaymentDetails":[%s]}',
        tag, tid, seq, math.floor(cents / 100), cents % 100, table.concat(parts, ","))
    return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
    if status == 201 then
        created = created + 1
        wrk.thread:set("created", created)
    elseif os.getenv("FL_BENCH_DEBUG") then
        io.stderr:write(status .. " " .. body .. "\n")
    end
end
