# bm-relay — top-level build.  `make help` lists the targets.
#
# Two commands do all set-up on a fresh Debian 12 machine:
#   make demo   run the whole thing on loopback (demo-cluster: two relays over NATS)
#   make test   build everything and run every test

SHELL := /bin/bash
# Add cargo's bin dir once: nested makes must see the very same PATH, since
# ext-php-rs's build script reruns (and the extension rebuilds) when it changes.
ifeq ($(filter $(HOME)/.cargo/bin,$(subst :, ,$(PATH))),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif
CARGO ?= cargo

# Each part of the project adds its own targets in mk/<part>.mk and appends
# its test target to TEST_TARGETS, so `make test` runs them all in order.
TEST_TARGETS := test-rust

.PHONY: help deps build test test-rust lint demo demo-cluster clean

-include mk/*.mk

# Every part's file must be there: a missing mk/<part>.mk would drop its
# suite from `make test` without a word. A new part adds its name here.
MK_PARTS := relay ext wp client e2e bench package
$(foreach m,$(MK_PARTS),$(if $(wildcard mk/$(m).mk),,$(error mk/$(m).mk is missing: its tests would silently not run)))

# Fast, self-contained suites first; the end-to-end test, which needs all
# the others' parts, last. Targets not named here run after these.
TEST_ORDER := test-rust test-relay-deploy test-client test-ext test-fallback test-wp test-e2e
TESTS = $(filter $(TEST_TARGETS),$(TEST_ORDER)) $(filter-out $(TEST_ORDER),$(TEST_TARGETS))

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## install missing Debian packages (idempotent; no-op when all present)
	@bash scripts/install-deps.sh

# One cargo invocation per package, the same ones the targets in mk/*.mk
# use: cargo unifies dependency features per invocation, so a workspace-wide
# build followed by `cargo build -p X` would rebuild the shared dependencies
# (tokio, hyper, …) every time the two alternate.
RUST_PACKAGES := $(shell sed -s -n '0,/^name = / s/^name = "\(bm-[a-z-]*\)"/\1/p' relay/Cargo.toml ext/Cargo.toml $(wildcard bench/Cargo.toml))

build: ## build the Rust workspace (release), package by package
	@set -e; for p in $(RUST_PACKAGES); do echo "cargo build --release --locked -p $$p"; $(CARGO) build --release --locked -p $$p; done

test: deps build ## run every test suite (what CI runs)
	$(MAKE) lint
	@set -e; for t in $(TESTS); do echo "== make $$t"; $(MAKE) --no-print-directory $$t; done

test-rust: ## Rust unit, vector, property and integration tests
	scripts/test-floor.sh 262 $(CARGO) test --workspace --locked

lint: ## rustfmt check, clippy with warnings as errors; phpcs and eslint on the WordPress plugin
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(MAKE) --no-print-directory lint-php lint-js

demo: deps build ## run the whole system on loopback (see README); Ctrl-C stops it
	@if [ -f scripts/demo.sh ]; then bash scripts/demo.sh; else bash scripts/demo-relay.sh; fi

demo-cluster: deps build ## make demo with two relays over three nats-servers (Alice on relay 1, Bob on relay 2); Ctrl-C stops it
	bash scripts/demo-cluster.sh

clean: ## remove build output and run state
	$(CARGO) clean
	rm -rf run
