#!/usr/bin/env bash
# Write every fuzz target's seeds into fuzz/corpus/<target>/ (or DIR/<target>/): the
# project's own vectors/ (TPM quotes, AKs, signatures and event logs, SEV-SNP reports, TDX
# quotes, and their malformed variants), framed as each target reads its input. The mapping
# lives in rust/fuzz-bodies (`seeds`), which the corpus replay test uses too.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run -q --release -p sealgate-fuzz-bodies --bin fuzz-seed -- "${1:-fuzz/corpus}"
