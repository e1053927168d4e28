#!/usr/bin/env bash
# The benchmark: bulk vs one-by-one vs this machine's limit, in one run on the same data.
# Usage: ./scripts/bench.sh [--count 50000] [--baseline-count 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services
trap stop_started_services EXIT
cargo bench --locked -p bulk-recorder --bench pipeline -- "$@"
