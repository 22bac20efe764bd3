-- Argo CD health of a forja.dev ModelVersion (resource.customizations.health.forja.dev_ModelVersion).
-- Ready means the artifact's sha256 was verified; Failed (missing artifact, digest
-- mismatch) is Degraded; Pending and Verifying are Progressing.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the forja operator to verify the artifact"
  return hs
end
local generation = obj.metadata.generation
if status.observedGeneration ~= nil and generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local phase = status.phase
if phase == "Ready" then
  hs.status = "Healthy"
  hs.message = "Artifact verified"
  if status.headlineMetric ~= nil then
    hs.message = hs.message .. "; " .. status.headlineMetric
  end
elseif phase == "Failed" then
  hs.status = "Degraded"
  local reason = nil
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == "ArtifactVerified" and c.status == "False" then
        reason = c.message
      end
    end
  end
  hs.message = status.message or reason or "Artifact verification failed"
else
  hs.status = "Progressing"
  hs.message = status.message or phase
end
return hs
