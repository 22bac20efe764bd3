#!/usr/bin/env bash
# The demo (README, first command): from nothing to a served prediction.
#   tools + forja's images -> local cluster (two real nodes: kubelet, containerd,
#   runc) + MinIO -> helm install forja -> TrainingJob (a small YOLO smoke detector
#   on generated data) -> ModelVersion Ready -> InferenceService -> one image -> its
#   detections. Every pod runs from a forja image in a runc container.
# Re-running it reuses the tools, the images, the environment and the cluster, and
# trains a new version (the InferenceService rolls out to it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ns="${FORJA_DEMO_NAMESPACE:-forja-demo}"
start=$SECONDS
step() { printf '\n\033[1m== [%3ds] %s\033[0m\n' "$((SECONDS - start))" "$*"; }

step "1/7 tools (control plane, node components, MinIO, helm: built once from pinned Go modules), the Python environment and forja's images"
bin="$(bash hack/build-tools.sh)"
bash hack/free-go-build-cache.sh
venv="$(bash hack/venv.sh)"
# The operator, the trainer (PyTorch + Ultralytics) and the server; unchanged images
# are not rebuilt.
bash hack/build-images.sh operator server trainer
export PATH="$venv/bin:$bin:$PATH"
export PYTHONPATH="$root/operator:$root/trainer_image:$root/server_image:$root/hack"
# The rest runs inside the cluster's own network namespace (hack/netns.sh says why).
if [[ -z "${FORJA_DEMO_IN_NETNS:-}" ]]; then
  FORJA_DEMO_IN_NETNS=1 exec bash hack/netns.sh bash "$0" "$@"
fi

step "2/7 local cluster: kube-apiserver, etcd, controller-manager, scheduler, two nodes (kubelet + containerd + runc + CNI, kube-proxy), MinIO and an image registry"
# The images are pushed to the cluster's registry and each node's containerd pulls
# them from there; an image a node already has is not pulled again.
python -m forja_localcluster start --nodes 2 \
  --images operator,server,trainer >/dev/null
eval "$(python -m forja_localcluster env)"
kubectl get nodes -o wide

step "3/7 helm install forja (CRDs, operator, RBAC)"
# CRDs first, server-side (as Argo CD does): helm never upgrades CRDs in crds/.
kubectl apply --server-side --force-conflicts -f helm/forja/crds/ >/dev/null
# A rebuilt operator image keeps its tag: its ID in the pod template rolls the
# operator out when the image changed (and only then).
version="$(awk -F'"' '/^appVersion:/ {print $2}' helm/forja/Chart.yaml)"
operator_id="$(podman image inspect --format '{{.Id}}' "localhost/forja/operator:$version" | cut -c1-16)"
# The operator's own namespace enforces the restricted profile too.
kubectl create namespace forja-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace forja-system pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
# Every image by the registry's name ($FORJA_REGISTRY, from `forja_localcluster env`),
# as a cluster's values name its own registry.
helm upgrade --install forja helm/forja --namespace forja-system --skip-crds \
  --set image.repository="$FORJA_REGISTRY/forja/operator" \
  --set config.trainerImage="$FORJA_REGISTRY/forja/trainer:$version" \
  --set config.serverImage="$FORJA_REGISTRY/forja/server:$version" \
  --set config.artifactStore.endpoint="$FORJA_S3_ENDPOINT" \
  --set config.artifactStore.uri="s3://$FORJA_S3_BUCKET" \
  --set-string "podAnnotations.forja\.dev/image-id=$operator_id" \
  --wait --timeout 5m
kubectl -n forja-system get deploy,pods -o wide

# The artifact store's credentials reach pods only through this Secret.
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
kubectl -n "$ns" create secret generic forja-artifact-store \
  --from-literal=accessKey="$AWS_ACCESS_KEY_ID" --from-literal=secretKey="$AWS_SECRET_ACCESS_KEY" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

step "4/7 train: kubectl apply -f manifests/smoke-detector-trainingjob.yaml"
kubectl -n "$ns" delete trainingjob smoke-detector --ignore-not-found --wait >/dev/null
kubectl -n "$ns" apply -f manifests/smoke-detector-trainingjob.yaml
last=""
deadline=$((SECONDS + 900))
while :; do
  # Every column but AGE, so a line is printed when something really changed.
  row="$(kubectl -n "$ns" get trainingjob smoke-detector --no-headers 2>/dev/null | sed -E 's/[[:space:]]+[0-9smhd]+$//' || true)"
  if [[ "$row" != "$last" ]]; then
    [[ -z "$last" ]] && kubectl -n "$ns" get trainingjob smoke-detector | sed -n 1p  # not head: SIGPIPE + pipefail
    echo "$row"; last="$row"
  fi
  phase="$(kubectl -n "$ns" get trainingjob smoke-detector -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  [[ "$phase" == Succeeded ]] && break
  if [[ "$phase" == Failed || $SECONDS -gt $deadline ]]; then
    kubectl -n "$ns" describe trainingjob smoke-detector | tail -30
    echo "training did not succeed (phase ${phase:-none})" >&2; exit 1
  fi
  sleep 2
done

step "5/7 the ModelVersion: sha256 verified against MinIO before Ready"
mv="$(kubectl -n "$ns" get trainingjob smoke-detector -o jsonpath='{.status.modelVersion}')"
kubectl -n "$ns" wait --for=condition=Ready "modelversion/$mv" --timeout=300s
kubectl -n "$ns" get modelversions

step "6/7 serve: kubectl apply -f manifests/smoke-detector-inferenceservice.yaml"
kubectl -n "$ns" apply -f manifests/smoke-detector-inferenceservice.yaml
version="$(kubectl -n "$ns" get modelversion "$mv" -o jsonpath='{.spec.version}')"
deadline=$((SECONDS + 600))
until [[ "$(kubectl -n "$ns" get inferenceservice smoke-detector -o jsonpath='{.status.activeVersion}' 2>/dev/null)" == "$version" ]] \
   && kubectl -n "$ns" wait --for=condition=Ready inferenceservice/smoke-detector --timeout=5s >/dev/null 2>&1; do
  if [[ $SECONDS -gt $deadline ]]; then
    kubectl -n "$ns" describe inferenceservice smoke-detector | tail -30
    echo "the InferenceService did not become Ready with $version" >&2; exit 1
  fi
  sleep 2
done
kubectl -n "$ns" get inferenceservice smoke-detector

step "7/7 predict: one generated image with two smoke-like boxes -> POST /predict"
ip="$(kubectl -n "$ns" get service smoke-detector -o jsonpath='{.spec.clusterIP}')"
port="$(kubectl -n "$ns" get service smoke-detector -o jsonpath='{.spec.ports[0].port}')"
python - "http://$ip:$port" <<'PY'
import io, json, sys, time, urllib.error, urllib.request
import numpy as np
from PIL import Image

url = sys.argv[1]
# A scene like the generated training data: bright boxes on dark noise.
rng = np.random.default_rng(7)
image = rng.integers(0, 70, (128, 128, 3), dtype=np.uint8)
boxes = [(20, 24, 58, 60), (76, 70, 114, 104)]
for x1, y1, x2, y2 in boxes:
    image[y1:y2, x1:x2] = 255
buf = io.BytesIO(); Image.fromarray(image).save(buf, format="PNG")
boundary = "forjademo"
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scene.png\"\r\n"
        "Content-Type: image/png\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
req = urllib.request.Request(url + "/predict", data=body, method="POST",
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
# The Service's new endpoints reach the node's proxy within a second or two of Ready
# (kube-proxy lags the same way): a refused or reset first connection is retried.
for attempt in range(30):
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.load(resp)
        break
    except (ConnectionError, urllib.error.URLError) as exc:
        if attempt == 29:
            raise
        print(f"service not reachable yet ({exc}); retrying", file=sys.stderr)
        time.sleep(1)
print("ground truth boxes (x1, y1, x2, y2):", boxes)
print(json.dumps(answer, indent=2)[:2000])
PY

echo
echo "every pod, its node and its image (runc containers under the nodes' kubelets):"
kubectl get pods -A -o custom-columns='NAMESPACE:.metadata.namespace,POD:.metadata.name,NODE:.spec.nodeName,IMAGE:.spec.containers[0].image,PHASE:.status.phase' \
  | grep -E '^(NAMESPACE|forja-system|'"$ns"')'

step "done in $((SECONDS - start)) s"
cat <<EOF
Look around:   bash hack/netns.sh bash   # then: eval "\$(PYTHONPATH=hack python -m forja_localcluster env)"; kubectl get forja -A
Tear down:     helm uninstall forja -n forja-system; kubectl delete namespace $ns
Stop cluster:  bash hack/netns.sh env PYTHONPATH=hack python -m forja_localcluster stop   (add --purge to delete its state)
EOF
