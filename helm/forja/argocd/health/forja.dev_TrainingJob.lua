-- Argo CD health of a forja.dev TrainingJob (resource.customizations.health.forja.dev_TrainingJob).
-- Succeeded is Healthy, Failed Degraded, suspended Suspended, anything else still
-- training (Progressing): a sync waits for the model, not just for the object.
local hs = {}
local function condition(status, ctype)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then return c end
  end
  return nil
end
local status = obj.status
if status == nil or status.phase == nil then
  if obj.spec ~= nil and obj.spec.suspend == true then
    hs.status = "Suspended"
    hs.message = "Suspended before its first attempt"
    return hs
  end
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
if phase == "Succeeded" then
  hs.status = "Healthy"
  if status.modelVersion ~= nil then
    hs.message = "Produced ModelVersion " .. status.modelVersion
  else
    hs.message = "Succeeded"
  end
elseif phase == "Failed" then
  hs.status = "Degraded"
  local failed = condition(status, "Failed")
  if status.message ~= nil then
    hs.message = status.message
  elseif failed ~= nil and failed.message ~= nil and failed.message ~= "" then
    hs.message = failed.message
  else
    hs.message = "Failed"
  end
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = status.message or "Suspended; the last checkpoint is kept"
else
  hs.status = "Progressing"
  local progress = status.progress
  if progress ~= nil and progress.totalEpochs ~= nil and progress.totalEpochs > 0 then
    hs.message = phase .. ": epoch " .. (progress.epoch or 0) .. "/" .. progress.totalEpochs
      .. " (" .. (progress.percent or 0) .. "%)"
  else
    hs.message = status.message or phase
  end
end
return hs
