# spotkeeper: `make demo` runs the whole system locally, `make test` runs every test.
# Each installs what it needs: Python tools pinned in requirements.txt into .venv, the rest by cargo.

SHELL  := bash
.SHELLFLAGS := -eo pipefail -c
VENV   := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
CARGO  ?= cargo

.PHONY: tools browser demo emulator test build lint validate readme fuzz bench bench-profiles sam-build sam-deploy deploy api-token api-token-show clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# checkov lives in a venv of its own: its pins would fight the emulator's.
.venv-checkov/.installed: requirements-checkov.txt
	python3 -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

tools: $(VENV)/.installed .venv-checkov/.installed

# The dashboard's test drives a real browser. A Chromium already here is used: CHROMIUM=/path, or
# one on PATH; otherwise Debian's is installed (as root, or through sudo), waiting for any other
# apt/dpkg run to let go of the lock rather than failing on it.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser || command -v google-chrome || command -v google-chrome-stable)
export CHROMIUM
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT  := $(SUDO) apt-get -o DPkg::Lock::Timeout=600 -qq
browser:
	@if [ -n "$(CHROMIUM)" ] && "$(CHROMIUM)" --version >/dev/null 2>&1; then echo "browser: using $(CHROMIUM)"; \
	elif [ -n "$(CHROMIUM)" ]; then echo "browser: CHROMIUM=$(CHROMIUM) does not run ($(CHROMIUM) --version failed)" >&2; exit 1; else \
	  echo "browser: installing Debian's chromium (about 100 MB, with $(or $(SUDO),root) and apt-get): the dashboard's test"; \
	  echo "         drives it headless. To use a browser you have instead: make test CHROMIUM=/path/to/chromium"; \
	  $(APT) update && $(APT) install -y chromium >/dev/null; fi

build:
	$(CARGO) build --workspace --bins

demo: tools build
	@echo "demo: runs the whole system against a local AWS emulator (about 1 minute once built)"
	$(CARGO) run --quiet -p spotkeeper-tools --bin demo

emulator: tools build
	$(CARGO) run --quiet -p spotkeeper-tools --bin demo -- --keep

# cargo prints one result line per test binary; the last line here adds them up.
test: tools browser build lint validate readme
	mkdir -p target
	@echo "test: unit and end-to-end tests; the load tests (burst, faults, drain_load) say when they start"
	$(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

# Speed and memory of the release binaries: writes BENCHMARKS.md.
bench: tools
	$(CARGO) build --release --workspace --bins
	SPOTKEEPER_BIN_DIR=$${CARGO_TARGET_DIR:-$(CURDIR)/target}/release $(CARGO) run --release -p spotkeeper-tools --bin bench

# The release profile against its candidates in Cargo.toml, built alike and measured in turn:
# writes BENCHMARKS.md's "Release profile" section (make bench keeps it).
PROFILES := release release-s release-z
bench-profiles: tools
	for p in $(PROFILES); do $(CARGO) build --profile $$p --workspace --bins; done
	dir=$${CARGO_TARGET_DIR:-$(CURDIR)/target}; \
	$(CARGO) run --release -p spotkeeper-tools --bin bench -- $(foreach p,$(PROFILES),$(p)=$$dir/$(p))

# The property tests of event parsing and API bodies, far longer than in `make test`.
fuzz:
	PROPTEST_CASES=$${CASES:-50000} $(CARGO) test -p spotkeeper -p api --lib fuzz

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The template, offline: cfn-lint, SAM's own lint, checkov (every skipped check says why there).
# Done again only when the template or the tools change.
validate: target/validated
target/validated: template.yaml $(VENV)/.installed .venv-checkov/.installed
	cfn-lint template.yaml
	sam validate --lint --region us-east-1
	# --skip-download and BC_SKIP_MAPPING: checkov stays offline (no calls to its vendor).
	BC_SKIP_MAPPING=TRUE .venv-checkov/bin/checkov --skip-download --compact --quiet -f template.yaml
	mkdir -p target && touch $@

# The README's shell blocks that run offline, run as written (scripts/readme-snippets.sh).
readme: tools
	scripts/readme-snippets.sh

# Deploy with SAM. sam, cargo-lambda and zig live in .venv/bin; these targets put it on PATH.
# ARCH=x86_64 where arm64 cannot be built (as on a machine without the arm64 Rust target).
ARCH ?= arm64
sam-build: tools
	sam build --parameter-overrides Architecture=$(ARCH)

sam-deploy: tools
	sam deploy --guided --parameter-overrides Architecture=$(ARCH)

deploy: sam-build sam-deploy

# The API token as an SSM SecureString, put with the AWS SDK for Python (boto3, in .venv): no AWS
# CLI needed. The usual AWS_PROFILE / AWS_REGION / credentials apply. An existing token is kept
# (ROTATE=1 replaces it). The value is never printed here: `make api-token-show` prints it.
TOKEN_PARAM ?= /spotkeeper/api-token
api-token: tools
	$(VENV)/bin/python scripts/api_token.py put "$(TOKEN_PARAM)" $(if $(ROTATE),--rotate)

api-token-show: tools
	@$(VENV)/bin/python scripts/api_token.py show "$(TOKEN_PARAM)"

clean:
	rm -rf $(VENV) .venv-checkov .aws-sam
	$(CARGO) clean
