-- wrk script for the superlike routes through Envoy: POST /api/v1/live-stream/{streamId}/chat/superlike,
-- and GET of the read routes (history, top supporters).
--
-- Every request is real work: it comes from another sender (token), carries its own Idempotency-Key
-- (unless the key prefix is "-") and, in "spread" and "get" modes, goes to another stream. The threads
-- interleave over the senders, so no two requests in flight share a sender.
--
-- wrk ... -s bench/superlike.lua URL -- <tokens file> <targets file> <mode> <key prefix> <threads>
--   mode: spread (POST to all streams of the file), hot (its first stream only), invalid (a malformed
--   stream id: the server answers 400 without touching the database), get (GET every request path
--   of the file in turn, written by bench/reads.py; no body, no key).
-- done() prints one line "BENCH_JSON {...}" that bench/loadgen.py parses.

local thread_number = 0

function setup(thread)
  thread:set("id", thread_number)
  thread_number = thread_number + 1
end

local tokens = {}
local paths = {}
local key_prefix = nil
local threads = 1
local counter = 0
local method = "POST"
local body = "{}"

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  return lines
end

function init(args)
  tokens = read_lines(args[1])
  local targets = read_lines(args[2])
  local mode = args[3]
  if args[4] ~= "-" then
    key_prefix = args[4] .. "-" .. id .. "-"
  end
  threads = tonumber(args[5])
  if mode == "get" then
    method, body, paths = "GET", nil, targets
    return
  elseif mode == "hot" then
    targets = {targets[1]}
  elseif mode == "invalid" then
    targets = {"not-a-stream-id"}
  end
  for i, stream in ipairs(targets) do
    paths[i] = "/api/v1/live-stream/" .. stream .. "/chat/superlike"
  end
end

function request()
  counter = counter + 1
  local n = counter * threads + id
  local headers = {["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]}
  if body ~= nil then
    headers["Content-Type"] = "application/json"
  end
  if key_prefix ~= nil then
    headers["Idempotency-Key"] = key_prefix .. counter
  end
  -- The stream moves on by one every round over the senders, so a sender does not stick to a stream.
  local path = paths[((n + math.floor(n / #tokens)) % #paths) + 1]
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
