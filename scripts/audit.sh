#!/usr/bin/env bash
# Advisory check, offline: `cargo audit` reads Cargo.lock against a local snapshot of the
# RustSec advisory database (this project's machines cannot fetch it).
#
# The database is the first that exists of: $ADVISORY_DB, ../shared/advisory-db beside the
# repository, /work/shared/advisory-db. Without one the check says so and is skipped.
# cargo-audit (pinned) is installed from crates.io when missing; cargo keeps the binary in
# ~/.cargo/bin, so later runs reuse it (a first install takes ~3 minutes on 2 cores).
#
# Every finding fails the check (vulnerabilities and warnings: unmaintained, unsound, yanked)
# unless it is ignored below with its reason, which docs/reliability.md repeats.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_AUDIT_VERSION=0.22.2

db=""
for candidate in "${ADVISORY_DB:-}" ../shared/advisory-db /work/shared/advisory-db; do
  if [ -n "$candidate" ] && [ -d "$candidate/crates" ]; then db=$candidate; break; fi
done
if [ -z "$db" ]; then
  echo "advisory check skipped: no RustSec advisory database found (set ADVISORY_DB to a copy of it)"
  exit 0
fi

if ! cargo audit --version 2>/dev/null | grep -q " $CARGO_AUDIT_VERSION\$"; then
  echo "installing cargo-audit $CARGO_AUDIT_VERSION (crates.io)"
  cargo install --quiet --locked --no-default-features cargo-audit --version "$CARGO_AUDIT_VERSION"
fi

ignore=()
# RUSTSEC-2023-0071 (rsa, Marvin attack, no fixed release): rsa is in Cargo.lock only because
# sqlx-mysql is an optional dependency of sqlx, and Cargo locks optional dependencies too. This
# project builds sqlx with PostgreSQL only, so rsa is never compiled. Ignored only while that
# stays true:
if [ -z "$(cargo tree --quiet --locked --workspace --target all --edges all --invert rsa 2>/dev/null)" ]; then
  ignore+=(--ignore RUSTSEC-2023-0071)
fi

echo "advisory check against $db ($(grep -o 'commit [0-9a-f]\{12\}' "$db/SNAPSHOT.txt" 2>/dev/null || echo "a local copy"))"
cargo audit --db "$db" --no-fetch --stale --deny warnings "${ignore[@]}"
