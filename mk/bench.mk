# Benchmarks (issue 7): bm-relay against Centrifugo v6, Nchan and socket.io 4,
# side by side on this machine. The load generator is bench/ (bm-bench);
# each peer's config and install+start script is in bench/peers/.
#
#   make bench            full run (15–30 min): bench/RESULTS.md, bench/results.json, bench/plots/*.png
#   QUICK=1 make bench    smoke run (about 3 min): the same into run/bench/quick/ (the checked-in results stay)
#   make bench-quick      the same as QUICK=1 make bench
#   make soak             the relay alone under mixed load for SOAK_MINUTES (default 10): leaks, lost deliveries
#
# Peers are installed here, not by `make deps`: the Debian group `bench`
# (nginx-light, libnginx-mod-nchan, gnuplot-nox, nodejs, redis-server),
# Centrifugo with `go install` into run/bench/bin, socket.io with `npm ci`
# from the lock file. The cluster scenario's nats-server is the `broker`
# group of `make deps` (installed here too if missing).

.PHONY: bench bench-quick bench-peers

BENCH_DIR := $(if $(QUICK),run/bench/quick,bench)
BENCH_JSON := $(if $(QUICK),run/bench/quick/results.json,bench/results.json)

bench-peers: ## install the benchmark peers (Debian groups bench and broker, Centrifugo via go install, socket.io via npm ci)
	@bash scripts/install-deps.sh bench broker
	@bash bench/peers/centrifugo.sh install
	@bash bench/peers/socketio.sh install

bench: bench-peers ## benchmarks against Centrifugo, Nchan, socket.io → bench/RESULTS.md (QUICK=1: smoke run into run/bench/quick)
	$(CARGO) build --release --locked -p bm-relay && $(CARGO) build --release --locked -p bm-bench
	@mkdir -p $(BENCH_DIR) run/bench
	@status=0; target/release/bm-bench run $(if $(QUICK),--quick) --out $(BENCH_JSON) || status=$$?; \
	  target/release/bm-bench report --input $(BENCH_JSON) --output $(BENCH_DIR)/RESULTS.md --plots $(BENCH_DIR)/plots && \
	  echo "bench: wrote $(BENCH_DIR)/RESULTS.md" && exit $$status

bench-quick: ## the QUICK=1 smoke run of `make bench` (about 3 minutes)
	@$(MAKE) --no-print-directory bench QUICK=1

# CI smoke: the harness against the relay alone at QUICK sizes, then the
# QUICK cluster scenario against two relays and a nats-server (the broker
# group of `make deps`), checking only correctness (every client connects,
# every event is delivered, to sockets on both nodes, every churn cycle
# completes). It asserts nothing about speed and needs no other peer.
TEST_TARGETS += test-bench
.PHONY: test-bench
test-bench: ## bm-bench smoke against bm-relay only: every event delivered (no speed assertion)
	@test -x target/release/bm-relay -a -x target/release/bm-bench || { $(CARGO) build --release --locked -p bm-relay && $(CARGO) build --release --locked -p bm-bench; }
	target/release/bm-bench run --quick --servers relay --check --run-dir run/bench/test --out run/bench/test/results.json

# Soak (issue #11): the relay under mixed load for SOAK_MINUTES (chat
# sockets with pushes and pubs, abrupt kills and reconnects, connect/auth/
# sub/close churn); fails on any lost or reordered delivery to a live
# socket, on RSS growing faster than the bound after the warm-up, or on a
# relay that is dead or unhealthy at the end. Not part of `make test`: it
# takes minutes by design. Writes run/soak/{summary.json,summary.txt,relay.log}.
SOAK_MINUTES ?= 10
.PHONY: soak
soak: ## soak the relay for SOAK_MINUTES (default 10): fails on lost deliveries or RSS growth → run/soak/
	$(CARGO) build --release --locked -p bm-relay && $(CARGO) build --release --locked -p bm-bench
	@mkdir -p run/soak
	@status=0; target/release/bm-bench soak --minutes $(SOAK_MINUTES) --run-dir run/soak --json run/soak/summary.json \
	  > run/soak/summary.txt || status=$$?; cat run/soak/summary.txt; echo "soak: wrote run/soak/summary.json"; exit $$status
