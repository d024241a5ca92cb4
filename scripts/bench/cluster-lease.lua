-- wrk script for scripts/bench-cluster.sh: a lease taken and given back, as a pair of
-- requests, over and over.
--
--   baton: POST /v1/leases/NAME/acquire {"holder","ttl"}, then
--          POST /v1/leases/NAME/release {"holder","fence"} with the fence it answered
--   etcd:  POST /v3/lease/grant {"TTL"}, then POST /v3/lease/revoke {"ID"} with its ID
--
-- wrk does not say which connection a response belongs to, so the pairs are chained through
-- a queue: each granted lease is queued, and the next request any connection of the thread
-- sends is the release of the oldest queued lease (an acquire when the queue is empty). A
-- release thus always follows its acquire's answer. baton lease names come from a pool per
-- thread, a name going back to the pool once released, so the set of leases stays small.
--
-- Environment: BENCH_SYSTEM ("baton" or "etcd"), BENCH_TOKEN (bearer token for baton),
-- BENCH_TTL (seconds, default 10), BENCH_RUN (a prefix of the lease names, different for
-- every run: a grant left live by an earlier run, cut off at its end, is never met again).
-- done() prints "pairs N", "acquired N", "non2xx N", "anomalies N" and "pairs/sec X".

local system = os.getenv("BENCH_SYSTEM") or "baton"
local token = os.getenv("BENCH_TOKEN") or ""
local ttl = tonumber(os.getenv("BENCH_TTL") or "10")
local run = os.getenv("BENCH_RUN") or "run"

local threads = {}

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

local headers
local queue, qhead, qtail = {}, 1, 0 -- granted, not yet released: {name, fence} or ID
local free = {} -- baton lease names not in use
local fresh = 0
-- globals, for thread:get in done()
acquired, pairs_done, errors, anomalies = 0, 0, 0, 0
local acquire_body

function init(args)
    headers = { ["Content-Type"] = "application/json" }
    if system == "baton" then
        headers["Authorization"] = "Bearer " .. token
    end
    acquire_body = string.format('{"holder":"bench","ttl":"%ds"}', ttl)
end

local function take_name()
    local n = #free
    if n > 0 then
        local name = free[n]
        free[n] = nil
        return name
    end
    fresh = fresh + 1
    return string.format("bench-%s-%d-%d", run, id, fresh)
end

function request()
    if qhead <= qtail then
        local item = queue[qhead]
        queue[qhead] = nil
        qhead = qhead + 1
        if system == "etcd" then
            return wrk.format("POST", "/v3/lease/revoke", headers, '{"ID":"' .. item .. '"}')
        end
        return wrk.format("POST", "/v1/leases/" .. item[1] .. "/release", headers,
            string.format('{"holder":"bench","fence":%s}', item[2]))
    end
    if system == "etcd" then
        return wrk.format("POST", "/v3/lease/grant", headers, string.format('{"TTL":%d}', ttl))
    end
    return wrk.format("POST", "/v1/leases/" .. take_name() .. "/acquire", headers, acquire_body)
end

local function enqueue(item)
    qtail = qtail + 1
    queue[qtail] = item
end

function response(status, headers, body)
    if status < 200 or status > 299 then
        errors = errors + 1
        if errors <= 3 then
            io.stderr:write("non-2xx " .. status .. ": " .. string.sub(body or "", 1, 300) .. "\n")
        end
        return
    end
    if system == "etcd" then
        local lease = string.match(body, '"ID":"(%d+)"')
        if lease then
            acquired = acquired + 1
            enqueue(lease)
        else
            pairs_done = pairs_done + 1 -- a revoke answers with the header alone
        end
        return
    end
    local name = string.match(body, '"name":"([^"]+)"')
    if string.find(body, '"released":', 1, true) then
        if string.find(body, '"released":true', 1, true) then
            pairs_done = pairs_done + 1
        else
            anomalies = anomalies + 1
        end
        if name then
            free[#free + 1] = name
        end
        return
    end
    local fence = string.match(body, '"fence":(%d+)')
    if name and fence then
        acquired = acquired + 1
        if string.find(body, '"renewed":true', 1, true) then
            anomalies = anomalies + 1 -- the name was still held: a pool bug
        end
        enqueue({ name, fence })
    else
        anomalies = anomalies + 1
    end
end

function done(summary, latency, requests)
    local p, a, e, x = 0, 0, 0, 0
    for _, t in ipairs(threads) do
        p = p + t:get("pairs_done")
        a = a + t:get("acquired")
        e = e + t:get("errors")
        x = x + t:get("anomalies")
    end
    local secs = summary.duration / 1e6
    io.write(string.format("pairs %d\nacquired %d\nnon2xx %d\nanomalies %d\npairs/sec %.2f\n",
        p, a, e, x, p / secs))
end
