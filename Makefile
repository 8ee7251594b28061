# spotkeeper: `make demo` runs the whole system locally, `make test` runs every test.
# Each installs what it needs: Python tools pinned in requirements.txt into .venv, the rest by cargo.

SHELL  := bash
.SHELLFLAGS := -eo pipefail -c
VENV   := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
CARGO  ?= cargo

.PHONY: tools browser demo emulator test build lint fuzz bench bench-profiles deploy clean

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

# The dashboard's test drives a real browser: Debian's Chromium (as root, or through sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

build:
	$(CARGO) build --workspace --bins

demo: tools build
	$(CARGO) run --quiet -p spotkeeper-tools --bin demo

emulator: tools build
	$(CARGO) run --quiet -p spotkeeper-tools --bin demo -- --keep

# cargo prints one result line per test binary; the last line here adds them up.
test: tools browser build lint
	cfn-lint template.yaml
	sam validate --lint --region us-east-1
	# --skip-download and BC_SKIP_MAPPING: checkov stays offline (no calls to its vendor).
	BC_SKIP_MAPPING=TRUE .venv-checkov/bin/checkov --skip-download --compact -f template.yaml
	mkdir -p target
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

deploy: tools
	sam build --parameter-overrides Architecture=$${ARCH:-arm64}
	sam deploy --guided

clean:
	rm -rf $(VENV) .venv-checkov .aws-sam
	$(CARGO) clean
