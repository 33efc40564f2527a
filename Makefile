# homehub — the two commands of README.md:
#   make demo   installs what is missing, builds, starts the hub with simulated cameras
#   make test   installs what is missing, runs every test, and checks the arm64 build
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: bench-crypto deps web web-check build demo test lint test-rust browser-deps arm64 bench-record bench-motion bench-mqtt clean

deps:
	@bash packaging/deps.sh

# The web app (web/, TypeScript + Preact, bundled by esbuild) into web/dist/, which the
# binary embeds: every cargo build below needs it. `npm ci` runs only when the lockfile
# is newer than the last install (a stamp in node_modules); the bundle is rebuilt only
# when a source changed, so cargo does not re-embed an unchanged one.
WEB_STAMP := web/node_modules/.installed
WEB_SOURCES := $(shell find web/src web/static web/away -type f 2>/dev/null) web/index.html web/build.mjs web/tsconfig.json

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	cd web && npm run build

web: deps web/dist/index.html

# The app's types (tsc --noEmit, strict).
web-check: web
	cd web && npm run check
	node tests/browser/sigv4-check.mjs

build: deps web
	$(CARGO) build --release --locked --bins

demo: build
	./target/release/homehub demo --cameras 2

test: deps lint web-check test-rust arm64

# The house style and the lints, before anything runs: rustfmt.toml, clippy with warnings
# as errors on every target (tests included).
lint: deps web
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Built with the network, run without it: the tests live in a network namespace of their
# own (only loopback), see packaging/in-netns.sh.
# The S3 server of the cloud tests (moto, from PyPI) goes into a venv first, while the
# network is there.
MOTO_VENV := $(CURDIR)/target/moto-venv

# The browser tests' node packages (playwright-core, axe-core; exact versions in the
# committed lockfile), installed again only when the lockfile changes.
BROWSER_STAMP := tests/browser/node_modules/.installed

browser-deps: $(BROWSER_STAMP)

$(BROWSER_STAMP): tests/browser/package-lock.json tests/browser/package.json
	cd tests/browser && npm ci --no-audit --no-fund
	touch $@

test-rust: web browser-deps
	$(CARGO) build --locked --bins --tests
	bash packaging/moto-venv.sh $(MOTO_VENV)
	@# cargo-nextest (on the machine image) runs the test binaries side by side; see
	@# .config/nextest.toml. Plain cargo test where it is missing.
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  HOMEHUB_MOTO_VENV=$(MOTO_VENV) bash packaging/in-netns.sh $(CARGO) nextest run --locked --offline --no-fail-fast -j 4; \
	else \
	  HOMEHUB_MOTO_VENV=$(MOTO_VENV) bash packaging/in-netns.sh $(CARGO) test --locked --offline -- --test-threads=4; \
	fi

arm64: deps web
	bash packaging/arm64.sh

bench-record: build
	bash tests/bench/record.sh

bench-motion: build
	bash tests/bench/motion.sh

bench-crypto: build
	bash tests/bench/crypto.sh

bench-mqtt: build
	bash tests/bench/mqtt.sh

clean:
	$(CARGO) clean
	rm -rf web/dist web/node_modules
