#!/usr/bin/env bash
# The README's test command: system packages (idempotent), then formatting, lints and every test, including
# the real builds against the Debian mirror (skipped offline, required under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --tests
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --workspace --locked --no-fail-fast "$@"
