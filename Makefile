# One obvious command per job (README). Every target installs what it needs by itself and
# re-running is fast when nothing changed (stamp files under .build/).

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
STAMP := .build

RUST_SRC := Cargo.toml Cargo.lock $(shell find rust -name '*.rs' -o -name Cargo.toml 2>/dev/null)

.PHONY: setup build demo test test-rust test-py lint fmt bench clean vectors protos

setup: $(STAMP)/apt $(STAMP)/venv $(STAMP)/ext

# Debian packages: swtpm and tpm2-tools for TPM fixtures (../shared/notes/tpm.md).
$(STAMP)/apt: scripts/setup-system.sh
	@mkdir -p $(STAMP)
	bash scripts/setup-system.sh
	@touch $@

$(STAMP)/venv: pyproject.toml Makefile
	@mkdir -p $(STAMP)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2" "cryptography>=49" "pytest>=8" "pytest-timeout>=2.3" \
		"hypothesis>=6.100" "ruff>=0.6" "mypy>=1.11" \
		"grpcio>=1.80,<2" "grpcio-health-checking>=1.80,<2" "grpcio-reflection>=1.80,<2" \
		"grpcio-status>=1.80,<2" "protobuf>=7.35.1,<8" "cbor2>=5.6" "pyjwt>=2.9" "pyyaml>=6" \
		"prometheus-client>=0.20" \
		"grpcio-tools==1.85.1" "mypy-protobuf==5.1.0" "types-protobuf>=6" "types-grpcio>=1.0" \
		"types-pyyaml>=6" "dcap-qvl>=0.7"
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
	cargo clippy --workspace --all-targets --release -q -- -D warnings
	$(BIN)/ruff check python tests scripts
	$(BIN)/ruff format --check python tests scripts
	$(BIN)/mypy
	$(PY) -m mypy.stubtest sealgate._core --allowlist scripts/stubtest-allowlist.txt

fmt: setup
	cargo fmt --all
	$(BIN)/ruff format python tests scripts
	$(BIN)/ruff check --fix python tests scripts

bench: setup
	$(PY) scripts/bench_tpm.py
	$(PY) scripts/bench_snp.py
	$(PY) scripts/bench_tdx.py
	$(PY) scripts/bench_service.py

protos: setup
	$(PY) scripts/gen_protos.py

vectors: setup
	$(PY) scripts/gen_tpm_vectors.py
	$(PY) scripts/gen_snp_vectors.py
	$(PY) scripts/gen_tdx_vectors.py

clean:
	rm -rf $(STAMP) target python/sealgate/*.so
