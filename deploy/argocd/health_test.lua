-- Table tests for health.lua: `lua5.1 deploy/argocd/health_test.lua` (exit 1 on failure).
local dir = arg[0]:match("(.*/)") or "./"
local check = assert(loadfile(dir .. "health.lua"))

local function conditions(ready, degraded, stalled)
  local function c(t, on) return { type = t, status = on and "True" or "False", reason = t, message = t .. " message" } end
  return { c("Ready", ready), c("Degraded", degraded), c("Stalled", stalled) }
end

local function release(generation, status)
  return { metadata = { name = "movies", generation = generation }, status = status }
end

local cases = {
  { "no status", release(1, nil), "Progressing", "Waiting for the movrek operator" },
  { "empty phase", release(1, { phase = "" }), "Progressing", "Waiting for the movrek operator" },
  { "generation not observed", release(3, { phase = "Stable", observedGeneration = 2, conditions = conditions(true, false, false) }),
    "Progressing", "generation 3" },
  { "stable and ready", release(2, { phase = "Stable", observedGeneration = 2, stable = { version = "v7" }, conditions = conditions(true, false, false) }),
    "Healthy", "Stable (stable v7)" },
  { "succeeded and ready", release(2, { phase = "Succeeded", observedGeneration = 2, stable = { version = "v8" }, canary = { version = "v8" }, conditions = conditions(true, false, false) }),
    "Healthy", "Succeeded (stable v8)" },
  { "stable not ready", release(2, { phase = "Stable", observedGeneration = 2, conditions = conditions(false, true, false) }),
    "Degraded", "Degraded" },
  { "stable, Ready not yet reported", release(2, { phase = "Stable", observedGeneration = 2 }),
    "Progressing", "waiting for the stable track" },
  { "soaking", release(2, { phase = "Soaking", observedGeneration = 2, canaryWeight = 20, message = "soaking until 12:00",
      stable = { version = "v7" }, canary = { version = "v8" }, conditions = conditions(false, false, false) }),
    "Progressing", "Soaking (stable v7, canary v8), canary weight 20%: soaking until 12:00" },
  { "analyzing", release(2, { phase = "Analyzing", observedGeneration = 2, conditions = conditions(false, false, false) }),
    "Progressing", "Analyzing" },
  { "rolling back", release(2, { phase = "RollingBack", observedGeneration = 2, conditions = conditions(false, false, false) }),
    "Progressing", "RollingBack" },
  { "rolled back", release(2, { phase = "RolledBack", observedGeneration = 2, message = "canary too slow",
      stable = { version = "v7" }, canary = { version = "v8" }, conditions = conditions(false, true, true) }),
    "Degraded", "RolledBack (stable v7, canary v8): canary too slow" },
  { "rejected", release(2, { phase = "Rejected", observedGeneration = 2, conditions = conditions(false, true, true) }),
    "Degraded", "Rejected" },
  { "failed", release(2, { phase = "Failed", observedGeneration = 2 }), "Degraded", "Failed" },
  { "progressing but stalled", release(2, { phase = "Progressing", observedGeneration = 2, conditions = conditions(false, false, true) }),
    "Degraded", "Stalled" },
  { "unknown future phase", release(2, { phase = "Paused", observedGeneration = 2 }), "Progressing", "Paused" },
}

local failures = 0
for _, case in ipairs(cases) do
  local name, object, want_status, want_message = case[1], case[2], case[3], case[4]
  obj = object
  local ok, hs = pcall(check)
  if not ok then
    failures = failures + 1
    print("FAIL " .. name .. ": error " .. tostring(hs))
  elseif hs.status ~= want_status or not string.find(hs.message or "", want_message, 1, true) then
    failures = failures + 1
    print(string.format("FAIL %s: got %s %q, want %s containing %q", name, tostring(hs.status), tostring(hs.message), want_status, want_message))
  else
    print(string.format("ok   %-32s %-11s %s", name, hs.status, hs.message))
  end
end
if failures > 0 then
  print(failures .. " of " .. #cases .. " cases failed")
  os.exit(1)
end
print(#cases .. " cases passed")
