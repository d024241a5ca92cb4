-- wrk script for scripts/bench-cluster.sh: credential writes (baton) or key puts (etcd).
--
-- Environment:
--   BENCH_SYSTEM  "baton": PUT /v1/credentials/NAME with BENCH_VALUE as the body
--                 "etcd":  POST /v3/kv/put with key NAME and value BENCH_VALUE (base64)
--   BENCH_VALUE   the credential spec (JSON); etcd stores the same bytes as the value
--   BENCH_NAMES   "cycle" (default): each thread writes its own BENCH_KEYS names in turn,
--                 so every write after the first replaces an existing entry;
--                 "unique": every write goes to a new name (prefixed with BENCH_RUN, which
--                 differs for every run)
--   BENCH_KEYS    names per thread in "cycle" mode (default 16)
--   BENCH_TOKEN   bearer token sent to baton
--
-- done() prints "writes N", "non2xx N" and "writes/sec X" for the script to parse.

local system = os.getenv("BENCH_SYSTEM") or "baton"
local value = os.getenv("BENCH_VALUE") or '{"issuer":{"kind":"static","token":"x"}}'
local names_mode = os.getenv("BENCH_NAMES") or "cycle"
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "16")
local token = os.getenv("BENCH_TOKEN") or ""
local run = os.getenv("BENCH_RUN") or "run"

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local c1 = math.floor(n / 262144) % 64
        local c2 = math.floor(n / 4096) % 64
        local c3 = math.floor(n / 64) % 64
        local c4 = n % 64
        out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1)
            .. (b and b64chars:sub(c3 + 1, c3 + 1) or "=")
            .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
    end
    return table.concat(out)
end

local threads = {}

function setup(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
end

local headers
local value64
local cached = {}
local counter = 0
-- globals, for thread:get in done()
responses = 0
errors = 0

local function build(name)
    if system == "etcd" then
        local body = '{"key":"' .. base64(name) .. '","value":"' .. value64 .. '"}'
        return wrk.format("POST", "/v3/kv/put", headers, body)
    end
    return wrk.format("PUT", "/v1/credentials/" .. name, headers, value)
end

function init(args)
    headers = { ["Content-Type"] = "application/json" }
    if system == "baton" then
        headers["Authorization"] = "Bearer " .. token
    end
    value64 = base64(value)
    if names_mode == "cycle" then
        for i = 1, nkeys do
            cached[i] = build(string.format("bench-%d-%d", id, i))
        end
    end
end

function request()
    counter = counter + 1
    if names_mode == "cycle" then
        return cached[(counter - 1) % nkeys + 1]
    end
    return build(string.format("bench-%s-%d-u%d", run, id, counter))
end

function response(status, headers, body)
    responses = responses + 1
    if status < 200 or status > 299 then
        errors = errors + 1
        if errors <= 3 then
            io.stderr:write("non-2xx " .. status .. ": " .. string.sub(body or "", 1, 300) .. "\n")
        end
    end
end

function done(summary, latency, requests)
    local n, e = 0, 0
    for _, t in ipairs(threads) do
        n = n + t:get("responses")
        e = e + t:get("errors")
    end
    local secs = summary.duration / 1e6
    io.write(string.format("writes %d\nnon2xx %d\nwrites/sec %.2f\n", n - e, e, (n - e) / secs))
end
