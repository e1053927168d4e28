#!/usr/bin/env bash
# The benchmark: bulk vs one-by-one vs this machine's limit, in one run on the same data.
# Usage: ./scripts/bench.sh [--count 50000] [--baseline-count 5000] [--memory] [--growth] [--writer]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services
trap stop_started_services EXIT
# The run with tracing on sends to an OTLP collector of its own (rotel, dropping what it gets).
export BENCH_ROTEL_AGENT="${BENCH_ROTEL_AGENT:-$(rotel_agent)}"
export BENCH_ROTEL_LIBDIR="${BENCH_ROTEL_LIBDIR:-$(python_libdir)}"
cargo bench --locked -p bulk-recorder --bench pipeline -- "$@"
