-- Argo CD health of a forja.dev InferenceService
-- (resource.customizations.health.forja.dev_InferenceService).
-- Healthy only when the version the selector asks for serves (the operator's
-- Ready condition); a canary under way is Progressing; a rollback or a service
-- with no ready replica is Degraded; scaled to zero is Suspended.
local hs = {}
local function condition(status, ctype)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then return c end
  end
  return nil
end
local spec = obj.spec or {}
if spec.replicas == 0 and spec.autoscaling == nil then
  hs.status = "Suspended"
  hs.message = "Scaled to zero replicas"
  return hs
end
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the forja operator"
  return hs
end
local generation = obj.metadata.generation
if status.observedGeneration ~= nil and generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local phase = status.phase
local rolledBack = condition(status, "RolledBack")
local rollout = condition(status, "RolloutProgressing")
if rolledBack ~= nil and rolledBack.status == "True" then
  hs.status = "Degraded"
  hs.message = rolledBack.message or "Rolled back"
  if hs.message == "" then hs.message = "Rolled back: " .. (rolledBack.reason or "") end
elseif phase == "Failed" or phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = status.message or phase
elseif phase == "Ready" and not (rollout ~= nil and rollout.status == "True") then
  hs.status = "Healthy"
  hs.message = "Serving " .. (status.activeVersion or "")
else
  hs.status = "Progressing"
  if status.canaryVersion ~= nil then
    hs.message = "Rolling out " .. status.canaryVersion .. " at " .. (status.canaryPercent or 0)
      .. "% over " .. (status.activeVersion or "nothing")
  else
    hs.message = status.message or phase
  end
end
return hs
