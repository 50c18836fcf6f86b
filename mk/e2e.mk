# End-to-end test of the chat page (js-tests/e2e) and the demo.
#
#   make test-e2e   the [bm_chat] page in Debian's headless Chromium
#                   (playwright-core) against a real site on loopback:
#                   private MariaDB, Debian's WordPress with the plugin,
#                   php -S with the built extension (then the pure-PHP
#                   fallback), the real relay; screenshots in run/e2e-artifacts/.
#                   Then (js-tests/e2e/cluster.test.js) a site on two relays
#                   over a real nats-server: Bob's relay SIGKILLed, his page
#                   moves to the other and catches up.
#   make demo       (top-level Makefile) runs scripts/demo.sh

TEST_TARGETS += test-e2e

E2E_EXT_SO := $(CURDIR)/target/release/bm_relay.so
E2E_RELAY  := $(CURDIR)/target/release/bm-relay

.PHONY: test-e2e e2e-deps

e2e-deps:
	@bash scripts/install-deps.sh php wp browser broker
	@$(E2E_RELAY) serve --help 2>/dev/null | grep -q -- --admin-listen || $(CARGO) build --release --locked -p bm-relay
	@if grep -qs '^ext:' mk/*.mk; then $(MAKE) --no-print-directory ext; \
	elif [ ! -f $(E2E_EXT_SO) ]; then $(CARGO) build --release --locked -p bm-relay-ext && cp -f target/release/libbm_relay.so $(E2E_EXT_SO); fi
	@php -n -d extension=$(E2E_EXT_SO) -r 'exit(function_exists("bm_push") && (new ReflectionFunction("bm_push"))->isInternal() ? 0 : 1);' \
	  || { echo "test-e2e: $(E2E_EXT_SO) does not load as the bm_relay extension" >&2; exit 1; }
	@cd js-tests && { [ -d node_modules/playwright-core ] && npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund --loglevel=error; }

test-e2e: e2e-deps plugin-zip ## chat page end to end: two people in Chromium, WordPress, MariaDB, PHP (extension and fallback), relay
	@mkdir -p run/e2e-artifacts
	cd js-tests && BM_PLUGIN_ZIP=$(PLUGIN_ZIP) BM_EXT_SO=$(E2E_EXT_SO) BM_RELAY_BIN=$(E2E_RELAY) \
	  ../scripts/test-floor.sh 40 node --test --test-concurrency=1 --test-timeout=240000 e2e/
	@echo "test-e2e: screenshots in run/e2e-artifacts/"

# The same end-to-end test on the current WordPress (`make wp-latest`).
TEST_TARGETS += test-e2e-latest
.PHONY: test-e2e-latest
test-e2e-latest: e2e-deps plugin-zip wp-latest ## the chat page end to end on the current WordPress (6.7-alpha)
	@mkdir -p run/e2e-artifacts-latest
	cd js-tests && BM_WP_SRC=$(WP_LATEST_DIR) BM_E2E_ARTIFACTS=$(CURDIR)/run/e2e-artifacts-latest BM_PLUGIN_ZIP=$(PLUGIN_ZIP) \
	  BM_EXT_SO=$(E2E_EXT_SO) BM_RELAY_BIN=$(E2E_RELAY) ../scripts/test-floor.sh 36 node --test --test-concurrency=1 --test-timeout=240000 e2e/

# Send→render time on the chat page (issue #16's figure), not part of make
# test: p50/p90 over 50 messages with the extension, then the fallback.
.PHONY: bench-chat
bench-chat: e2e-deps plugin-zip ## chat page: Alice's send → Bob's render, p50/p90 over 50 messages (extension, fallback)
	@mkdir -p run/bench
	cd js-tests && BM_PLUGIN_ZIP=$${BM_PLUGIN_ZIP:-$(PLUGIN_ZIP)} BM_EXT_SO=$(E2E_EXT_SO) BM_RELAY_BIN=$(E2E_RELAY) \
	  node bench/send-render.js --messages $${MESSAGES:-50} --out $(CURDIR)/run/bench/send-render.json
