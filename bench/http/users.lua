-- wrk script: GET /recommend/{id} over many user ids, and a machine-readable summary.
-- WRK_USERS (default 671) ids are visited as 1..N in a stride-7919 permutation; each wrk
-- thread starts at a different offset so connections do not ask for the same user at once.
-- WRK_THINK_MS, when set, makes every connection wait that long after each answer before
-- its next request (a closed loop with think time, as users behave): the offered rate is
-- then about connections / (think time + latency), below the server's capacity, which is
-- where a latency percentile says something about the server rather than about its queue.
local users = tonumber(os.getenv("WRK_USERS") or "671")
local threads = {}
local counter = 0
local think_ms = tonumber(os.getenv("WRK_THINK_MS") or "")

function setup(thread)
  thread:set("offset", #threads * 104729)
  table.insert(threads, thread)
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  local id = (counter * 7919) % users + 1
  return wrk.format("GET", "/recommend/" .. id)
end

if think_ms then
  function delay()
    return think_ms
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d seconds=%.3f rps=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
