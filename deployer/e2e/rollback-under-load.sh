#!/usr/bin/env bash
# Real-cluster check of the rollback promise: while load runs through a two-rule HTTPRoute, a
# rollback (killed after each of its steps and rerun) ends with every request on the baseline,
# no request fails, and the ready EndpointSlice endpoints behind the backend that receives
# traffic never drop below what the plan requires.
#
# Needs: a throwaway kind or k3s cluster as the current kubectl context, kubectl, helm, cargo.
# No Kubernetes API server can be installed where Vigil is developed, so this script is for a
# user's machine; see deployer/README.md.
#
#   kind create cluster --name vigil-e2e
#   deployer/e2e/rollback-under-load.sh
#   kind delete cluster --name vigil-e2e
set -euo pipefail

NS=${VIGIL_E2E_NAMESPACE:-vigil-e2e}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.2.1}
ENVOY_GATEWAY_VERSION=${ENVOY_GATEWAY_VERSION:-v1.3.0}

log() { printf '\n== %s\n' "$*"; }

log "Gateway API CRDs $GATEWAY_API_VERSION and Envoy Gateway $ENVOY_GATEWAY_VERSION"
kubectl apply --server-side -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"
helm upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --version "$ENVOY_GATEWAY_VERSION" \
  -n envoy-gateway-system --create-namespace --wait

log "namespace $NS: baseline (2) and canary (4) behind a two-rule route at 50/50"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f - <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: vigil-e2e}
spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway}
spec:
  gatewayClassName: vigil-e2e
  listeners: [{name: http, protocol: HTTP, port: 80}]
YAML
for track in baseline canary; do
  replicas=2; [ "$track" = canary ] && replicas=4
  kubectl -n "$NS" apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop-$track, labels: {app: shop, track: $track}}
spec:
  replicas: $replicas
  minReadySeconds: 5
  selector: {matchLabels: {app: shop, track: $track}}
  template:
    metadata: {labels: {app: shop, track: $track}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [netexec, --http-port=8080]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: shop-$track}
spec:
  selector: {app: shop, track: $track}
  ports: [{port: 80, targetPort: 8080}]
YAML
done
kubectl -n "$NS" apply -f - <<YAML
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: shop-baseline}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: shop-baseline}
  minReplicas: 2
  maxReplicas: 10
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: shop-baseline, port: 80, weight: 50}, {name: shop-canary, port: 80, weight: 50}]
  - matches: [{path: {type: PathPrefix, value: /static}}]
    backendRefs: [{name: shop-baseline, port: 80, weight: 50}, {name: shop-canary, port: 80, weight: 50}]
YAML
kubectl -n "$NS" rollout status deploy/shop-baseline deploy/shop-canary --timeout=180s
kubectl -n "$NS" wait --for=condition=Programmed gateway/gateway --timeout=180s

log "the deployer as its ServiceAccount, bound to deployer/rbac-rollback.yaml"
kubectl -n "$NS" create serviceaccount vigil-rollback --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f "$ROOT/deployer/rbac-rollback.yaml"
kubectl -n "$NS" create rolebinding vigil-rollback --role=vigil-rollback \
  --serviceaccount="$NS:vigil-rollback" --dry-run=client -o yaml | kubectl apply -f -
TOKEN=$(kubectl -n "$NS" create token vigil-rollback --duration=2h)
kubectl config view --raw --minify > "$WORK/kubeconfig"
KUBECONFIG="$WORK/kubeconfig" kubectl config set-credentials vigil-rollback --token="$TOKEN" >/dev/null
KUBECONFIG="$WORK/kubeconfig" kubectl config set-context --current --user=vigil-rollback --namespace="$NS" >/dev/null
cat > "$WORK/deploy.yaml" <<YAML
namespace: $NS
cluster: shop
traffic: {type: http_route, route: shop, port: 80}
strategy: {type: red_black}
rollback: {drain_seconds: 10, retention_seconds: 0, ready_timeout_seconds: 300}
YAML
(cd "$ROOT" && cargo build --release --bin vigil)
VIGIL="$ROOT/target/release/vigil"
ARGS=(rollback --config "$WORK/deploy.yaml" --kubeconfig "$WORK/kubeconfig"
      --canary shop-canary --baseline shop-baseline)
REQUIRED=$("$VIGIL" "${ARGS[@]}" --dry-run --json | sed -n 's/.*"required_replicas": *\([0-9]*\).*/\1/p' | head -1)
echo "required ready baseline endpoints: $REQUIRED"

log "load through both rules, and the ready endpoints behind shop-baseline, every 200 ms"
GW_SVC=$(kubectl -n envoy-gateway-system get svc -l "gateway.envoyproxy.io/owning-gateway-name=gateway,gateway.envoyproxy.io/owning-gateway-namespace=$NS" -o jsonpath='{.items[0].metadata.name}')
kubectl -n "$NS" run load --image=curlimages/curl:8.11.1 --restart=Never --command -- sh -c "
  ok=0; bad=0
  while [ ! -f /tmp/stop ]; do
    for p in / /static; do
      code=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://$GW_SVC.envoy-gateway-system.svc\$p)
      if [ \"\$code\" = 200 ]; then ok=\$((ok+1)); else bad=\$((bad+1)); echo \"FAIL \$p \$code\"; fi
    done
    echo \"ok=\$ok bad=\$bad\" > /tmp/count
  done"
kubectl -n "$NS" wait --for=condition=Ready pod/load --timeout=120s
# Each sample: the canary's weight in the route's first rule, then the ready endpoints behind
# shop-baseline.
(
  while true; do
    w=$(kubectl -n "$NS" get httproute shop -o jsonpath="{.spec.rules[0].backendRefs[?(@.name=='shop-canary')].weight}")
    n=$(kubectl -n "$NS" get endpointslices -l kubernetes.io/service-name=shop-baseline \
      -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready}{"\n"}{end}' | grep -c true || true)
    echo "${w:-0} $n"
    sleep 0.2
  done
) > "$WORK/endpoints" &
SAMPLER=$!

log "rollback, killed after each step and rerun until it finishes"
kill_after=1
while :; do
  "$VIGIL" "${ARGS[@]}" > "$WORK/run.log" 2>&1 &
  pid=$!
  # Kill once the run has reported $kill_after more steps; the last run goes to the end.
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(grep -c '^  \[' "$WORK/run.log" || true)" -ge "$kill_after" ] && [ "$kill_after" -le 8 ]; then
      kill -9 "$pid"; echo "killed after step $kill_after"; break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null && status=0 || status=$?
  cat "$WORK/run.log"
  if grep -q "^Rolled back" "$WORK/run.log"; then break; fi
  if grep -q "is locked by" "$WORK/run.log"; then
    # A killed run cannot release its Lease; it expires after the run's longest duration.
    kubectl -n "$NS" delete lease vigil-traffic-shop --ignore-not-found
  fi
  kill_after=$((kill_after + 1))
  [ "$kill_after" -gt 20 ] && { echo "rollback did not finish"; exit 1; }
done
# The rollback handed the baseline back to its HPA: stop sampling before it may scale down.
kill "$SAMPLER"
sleep 15
kubectl -n "$NS" exec load -- touch /tmp/stop
COUNT=$(kubectl -n "$NS" exec load -- cat /tmp/count)
echo "$COUNT"
# Once the canary's weight is 0, the baseline carries everything: never fewer than required.
MIN_ENDPOINTS=$(awk '$1 == 0 {print $2}' "$WORK/endpoints" | sort -n | head -1)
echo "fewest ready baseline endpoints with all traffic on it: ${MIN_ENDPOINTS:-none} (required $REQUIRED)"
for rule in 0 1; do
  w=$(kubectl -n "$NS" get httproute shop -o jsonpath="{.spec.rules[$rule].backendRefs[?(@.name=='shop-canary')].weight}")
  [ "${w:-0}" = 0 ] || { echo "FAIL: rule $rule still sends weight $w to the canary"; exit 1; }
done
case "$COUNT" in *"bad=0"*) ;; *) echo "FAIL: requests failed during the rollback"; exit 1 ;; esac
[ -n "$MIN_ENDPOINTS" ] && [ "$MIN_ENDPOINTS" -ge "$REQUIRED" ] || {
  echo "FAIL: with all traffic on it the baseline had ${MIN_ENDPOINTS:-no} ready endpoints, $REQUIRED required"; exit 1; }
echo "PASS: every request answered, all traffic on the baseline"
