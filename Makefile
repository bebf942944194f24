# One obvious command per job (README). Every target installs what it needs by itself and
# re-running is fast when nothing changed (stamp files under .build/).

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
STAMP := .build

RUST_SRC := Cargo.toml Cargo.lock $(shell find rust -name '*.rs' -o -name Cargo.toml 2>/dev/null)

.PHONY: setup build demo test test-rust test-py lint fmt bench clean vectors protos fuzz

setup: $(STAMP)/apt $(STAMP)/venv $(STAMP)/ext

# Debian packages: swtpm and tpm2-tools for the TPM fixtures (tests/tpm, sealgate.testing.swtpm).
$(STAMP)/apt: scripts/setup-system.sh
	@mkdir -p $(STAMP)
	bash scripts/setup-system.sh
	@touch $@

# pyproject.toml is the one list of Python dependencies: the build backend
# (build-system.requires), the runtime dependencies and the dev extra are read from it and
# installed before the extension is built (maturin develop then finds them satisfied).
$(STAMP)/venv: pyproject.toml Makefile
	@mkdir -p $(STAMP)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
		print(*p["build-system"]["requires"], *p["project"]["dependencies"], \
		*p["project"]["optional-dependencies"]["dev"], sep="\n")' > $(STAMP)/requirements.txt
	$(PY) -m pip install -q -r $(STAMP)/requirements.txt
	@touch $@

# Release build of the extension, installed into the venv in develop mode (python/ is used
# in place, the .so lands in python/sealgate/).
$(STAMP)/ext: $(STAMP)/venv $(RUST_SRC)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH $(BIN)/maturin develop --release -q
	@touch $@

build: setup

demo: setup
	$(PY) scripts/demo.py

test: setup test-rust test-py lint

test-rust:
	cargo test --workspace --release -q

test-py: setup
	$(BIN)/pytest -q

lint: setup
	cargo fmt --all -- --check
	rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs
	cargo clippy --workspace --all-targets --release -q -- -D warnings
	$(BIN)/ruff check python tests scripts
	$(BIN)/ruff format --check python tests scripts
	$(BIN)/mypy
	$(PY) -m mypy.stubtest sealgate._core --allowlist scripts/stubtest-allowlist.txt

fmt: setup
	cargo fmt --all
	rustfmt --edition 2021 fuzz/fuzz_targets/*.rs
	$(BIN)/ruff format python tests scripts
	$(BIN)/ruff check --fix python tests scripts

bench: setup
	$(PY) scripts/bench_tpm.py
	$(PY) scripts/bench_snp.py
	$(PY) scripts/bench_tdx.py
	$(PY) scripts/bench_azure.py
	$(PY) scripts/bench_kek.py
	$(PY) scripts/bench_service.py
	$(PY) scripts/bench_model_hash.py

# A short cargo-fuzz run of every target (FUZZ_TIME seconds each, default 25); not part of
# `make test` (its corpus replay test is). Installs cargo-fuzz when missing.
fuzz:
	bash scripts/fuzz.sh

protos: setup
	$(PY) scripts/gen_protos.py

vectors: setup
	$(PY) scripts/gen_tpm_vectors.py
	$(PY) scripts/gen_snp_vectors.py
	$(PY) scripts/gen_tdx_vectors.py

clean:
	rm -rf $(STAMP) target python/sealgate/*.so
