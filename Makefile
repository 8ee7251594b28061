# spotkeeper: `make demo` runs the whole system locally, `make test` runs every test.
# Each installs what it needs: Python tools pinned in requirements.txt into .venv, the rest by cargo.

SHELL  := bash
.SHELLFLAGS := -eo pipefail -c
VENV   := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
CARGO  ?= cargo

.PHONY: tools browser demo emulator test build lint deploy clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

tools: $(VENV)/.installed

# The dashboard's test drives a real browser: Debian's Chromium (as root, or through sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

build:
	$(CARGO) build --workspace --bins

demo: tools build
	$(CARGO) run --quiet -p spotkeeper-tests --bin demo

emulator: tools build
	$(CARGO) run --quiet -p spotkeeper-tests --bin demo -- --keep

# cargo prints one result line per test binary; the last line here adds them up.
test: tools browser build
	cfn-lint template.yaml
	mkdir -p target
	$(CARGO) test --workspace --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

deploy: tools
	sam build --parameter-overrides Architecture=$${ARCH:-arm64}
	sam deploy --guided

clean:
	rm -rf $(VENV) .aws-sam
	$(CARGO) clean
