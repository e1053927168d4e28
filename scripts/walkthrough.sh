#!/usr/bin/env bash
# Runs docs/kubernetes.md's walk-through exactly as written: every ```sh block of its section
# "Walk-through: install, a first BulkRecorder, publish, scale, uninstall", in order, in one
# bash with -euo pipefail, echoing each command. Against the cluster kubectl points at: it
# installs the chart and the CRD cluster-wide and deletes them at the end, so run it on a
# cluster of its own, not while the cluster tests run. REGISTRY and TAG name the images.
# Usage: scripts/walkthrough.sh [--print]   (--print: show the commands, run nothing)
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1

# The blocks, as the documentation has them.
commands() {
  awk '
    /^## / { inside = ($0 ~ /^## Walk-through: install, a first BulkRecorder, publish, scale, uninstall$/) }
    inside && /^```sh$/ { block = 1; next }
    block && /^```$/ { block = 0; next }
    block { print }
  ' docs/kubernetes.md
}

script=$(commands)
[ -n "$script" ] || { echo "no walk-through found in docs/kubernetes.md" >&2; exit 1; }
if [ "${1:-}" = "--print" ]; then
  printf '%s\n' "$script"
  exit 0
fi
command -v kubectl >/dev/null && command -v helm >/dev/null || { echo "needs kubectl and helm" >&2; exit 1; }
kubectl cluster-info >/dev/null || { echo "kubectl reaches no cluster" >&2; exit 1; }
bash -euo pipefail -x -c "$script"
echo "walk-through: every step passed"
