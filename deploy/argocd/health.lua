-- Argo CD health check for movrek.dev/RecommenderRelease (Lua 5.1, as Argo CD runs it).
-- Install: see README.md beside this file (argocd-cm key
-- resource.customizations.health.movrek.dev_RecommenderRelease).
--
--   Healthy      phase Stable or Succeeded and the Ready condition is True
--   Progressing  no status yet, spec not yet observed, or a rollout in flight
--                (Initializing, Progressing, Soaking, Analyzing, Promoting, RollingBack)
--   Degraded     phase RolledBack, Rejected or Failed, Stalled=True, or a settled
--                release whose stable track is not ready (Degraded=True)
local hs = {}

local function condition(status, wanted)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the movrek operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local versions = ""
if status.stable ~= nil and status.stable.version ~= nil then
  versions = " (stable " .. status.stable.version
  if status.canary ~= nil and status.canary.version ~= nil and status.canary.version ~= status.stable.version then
    versions = versions .. ", canary " .. status.canary.version
  end
  versions = versions .. ")"
end

if phase == "RolledBack" or phase == "Rejected" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = phase .. versions .. ": " .. describe(status, "see kubectl describe rr")
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = "Stalled" .. versions .. ": " .. (stalled.message or stalled.reason or phase)
  return hs
end

if phase == "Stable" or phase == "Succeeded" then
  local ready = condition(status, "Ready")
  local degraded = condition(status, "Degraded")
  if degraded ~= nil and degraded.status == "True" then
    hs.status = "Degraded"
    hs.message = (degraded.reason or "Degraded") .. versions .. ": " .. (degraded.message or "")
    return hs
  end
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = phase .. versions
    return hs
  end
  hs.status = "Progressing"
  hs.message = phase .. versions .. ": waiting for the stable track to become ready"
  return hs
end

-- Initializing, Progressing, Soaking, Analyzing, Promoting, RollingBack, or a phase this
-- script does not know yet: the operator is still working.
hs.status = "Progressing"
local weight = ""
if status.canaryWeight ~= nil and status.canaryWeight > 0 then
  weight = ", canary weight " .. tostring(status.canaryWeight) .. "%"
end
hs.message = phase .. versions .. weight .. ": " .. describe(status, "rollout in progress")
return hs
