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

# Floors (scripts/test-floor.sh): cargo test exits 0 when a filter or a
# lost `mod` leaves fewer tests; raise them when tests are added.
test-relay: ## relay unit and integration tests only
	scripts/test-floor.sh 116 $(CARGO) test --locked -p bm-relay

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

# WebSocket conformance (RFC 6455, docs/PROTOCOL.md §6) of the release
# relay, from clients that share no code with it: a raw-socket client
# written from the RFC and Debian's python3-websockets (group
# `conformance` of scripts/install-deps.sh). Debian's python3 on purpose:
# that is where the Debian package installs.
TEST_TARGETS += test-conformance
CONFORMANCE_PYTHON ?= /usr/bin/python3
.PHONY: test-conformance

test-conformance: relay ## RFC 6455 conformance of the relay's WebSockets (Python clients, real sockets)
	@$(CONFORMANCE_PYTHON) -c 'import websockets' 2>/dev/null || bash scripts/install-deps.sh conformance
	BM_RELAY_BIN=$(CURDIR)/target/release/bm-relay timeout 600 $(CONFORMANCE_PYTHON) relay/tests/conformance/test_ws_conformance.py

# The cluster suite (relay/tests/relay/cluster.rs): real nats-servers on
# free loopback ports with a private config (one, or three in a NATS
# cluster), two to four relays joined through them; ~10 s. Its tests are
# #[ignore]d under test-rust so they run once, here.
TEST_TARGETS += test-cluster

.PHONY: test-cluster
test-cluster: ## the relay cluster over real nats-servers (installs nats-server if missing)
	@command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || bash scripts/install-deps.sh broker
	scripts/test-floor.sh 11 $(CARGO) test --locked -p bm-relay --test relay cluster:: -- --ignored --test-threads 2

# Two relays over a three-server NATS cluster, a push to relay 1 reaching a
# listener on relay 2 (relay level: no WordPress). Stops on its own.
.PHONY: demo-relay-cluster
demo-relay-cluster: relay ## two relays over three nats-servers: a push to relay 1 reaches Bob on relay 2
	bash scripts/demo-relay-cluster.sh

# The relay's integration suite again, each test against a two-node
# cluster (BM_TEST_CLUSTER=1, relay/tests/relay/common.rs): one
# nats-server and two relays per test, clients and pushes alternating
# between the nodes, metrics summed. Tests single-node by nature (per-node
# caps, per-process reload) say so and return. ~45 s; the cluster suite
# itself stays #[ignore]d here (test-cluster runs it).
TEST_TARGETS += test-relay-on-cluster
.PHONY: test-relay-on-cluster
test-relay-on-cluster: ## the relay integration suite against a two-node cluster (nats-server + two relays per test)
	@command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || bash scripts/install-deps.sh broker
	BM_TEST_CLUSTER=1 scripts/test-floor.sh 84 $(CARGO) test --locked -p bm-relay --test relay
