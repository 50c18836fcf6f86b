# Browser client (wp-plugin-shim/assets/bm-client.js): tests in Debian's
# headless Chromium driven by playwright-core (npm, from the checked-in
# js-tests/package-lock.json; no browser download), against the real
# relay. The tests and node files live in js-tests/, outside the plugin
# folder (which holds only what ships).

TEST_TARGETS += test-client

.PHONY: test-client

test-client: ## browser client: protocol vectors and live-relay scenarios in headless Chromium
	@test -x /usr/bin/chromium || bash scripts/install-deps.sh browser
	@test -x target/release/bm-relay || $(CARGO) build --release --locked -p bm-relay
	cd js-tests && npm ci --no-audit --no-fund --loglevel=error
	cd js-tests && BM_RELAY_BIN=$(CURDIR)/target/release/bm-relay \
	  ../scripts/test-floor.sh 40 node --test --test-concurrency=1 --test-timeout=120000 client/
