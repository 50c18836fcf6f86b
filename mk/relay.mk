# The relay (relay/, binary bm-relay). Its unit and integration tests run
# under `cargo test --workspace` (test-rust); these targets are extras.
#
#   make relay        release build: target/release/bm-relay
#   make test-relay   only the relay's tests (unit + integration, real sockets)
#   make bench-relay  criterion benchmark of the fan-out path (not in make test)
#   make demo-relay   keygen, relay, listen, push on loopback (also via make demo)
#   make test-relay-deploy  the deployment files checked by the real tools
#                     (bm-relay serve, nginx -t, systemd-analyze verify); in make test

TEST_TARGETS += test-relay-deploy

.PHONY: relay test-relay bench-relay demo-relay test-relay-deploy

relay: ## build the relay (target/release/bm-relay)
	$(CARGO) build --release --locked -p bm-relay

test-relay: ## relay unit and integration tests only
	$(CARGO) test --locked -p bm-relay

bench-relay: ## criterion benchmark of the relay's fan-out path
	$(CARGO) bench --locked -p bm-relay --bench fanout

demo-relay: relay ## the relay alone: a generated site, a push reaching `bm-relay listen`
	bash scripts/demo-relay.sh

test-relay-deploy: relay ## relay/deploy: sample TOML starts a relay, nginx -t, systemd-analyze verify
	@bash scripts/install-deps.sh package
	bash relay/deploy/check.sh

# The scripted attacker of issue #11 against the release relay on loopback
# (relay/tests/abuse/abuse.py, Python 3 stdlib): floods of silent
# connections, trickled bodies, half h2 prefaces, 1 MiB heads, WebSocket
# floods, while a legitimate client keeps pushing and receiving. About 30 s.
TEST_TARGETS += test-abuse

.PHONY: test-abuse
test-abuse: relay ## scripted attacker against the release relay (loopback, ~30 s); asserts RSS, timers, deliveries, caps
	PYTHONDONTWRITEBYTECODE=1 python3 relay/tests/abuse/abuse.py target/release/bm-relay
