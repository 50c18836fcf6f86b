# Benchmarks (issue 7): bm-relay against Centrifugo v6, Nchan and socket.io 4,
# side by side on this machine. The load generator is bench/ (bm-bench);
# each peer's config and install+start script is in bench/peers/.
#
#   make bench            full run (about 25 min): bench/RESULTS.md, bench/results.json, bench/plots/*.png
#   QUICK=1 make bench    smoke run (under 3 min): the same into run/bench/quick/ (the checked-in results stay)
#   make bench-quick      the same as QUICK=1 make bench
#
# Peers are installed here, not by `make deps`: the Debian group `bench`
# (nginx-light, libnginx-mod-nchan, gnuplot-nox), Centrifugo with
# `go install` into run/bench/bin, socket.io with `npm ci` from the lock file.

.PHONY: bench bench-quick bench-peers

BENCH_DIR := $(if $(QUICK),run/bench/quick,bench)
BENCH_JSON := $(if $(QUICK),run/bench/quick/results.json,bench/results.json)

bench-peers: ## install the benchmark peers (Debian group bench, Centrifugo via go install, socket.io via npm ci)
	@bash scripts/install-deps.sh bench
	@bash bench/peers/centrifugo.sh install
	@bash bench/peers/socketio.sh install

bench: bench-peers ## benchmarks against Centrifugo, Nchan, socket.io → bench/RESULTS.md (QUICK=1: smoke run into run/bench/quick)
	$(CARGO) build --release --locked -p bm-relay && $(CARGO) build --release --locked -p bm-bench
	@mkdir -p $(BENCH_DIR) run/bench
	@status=0; target/release/bm-bench run $(if $(QUICK),--quick) --out $(BENCH_JSON) || status=$$?; \
	  target/release/bm-bench report --input $(BENCH_JSON) --output $(BENCH_DIR)/RESULTS.md --plots $(BENCH_DIR)/plots && \
	  echo "bench: wrote $(BENCH_DIR)/RESULTS.md" && exit $$status

bench-quick: ## the QUICK=1 smoke run of `make bench` (under 3 minutes)
	@$(MAKE) --no-print-directory bench QUICK=1

# CI smoke: the harness against the relay alone at QUICK sizes, checking
# only correctness (every client connects, every event is delivered, every
# churn cycle completes). It asserts nothing about speed and needs no peer.
TEST_TARGETS += test-bench
.PHONY: test-bench
test-bench: ## bm-bench smoke against bm-relay only: every event delivered (no speed assertion)
	@test -x target/release/bm-relay -a -x target/release/bm-bench || { $(CARGO) build --release --locked -p bm-relay && $(CARGO) build --release --locked -p bm-bench; }
	target/release/bm-bench run --quick --servers relay --check --run-dir run/bench/test --out run/bench/test/results.json
