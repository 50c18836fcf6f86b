# Fuzzing (issue 11): cargo-fuzz targets in fuzz/, one per parser of
# untrusted bytes (envelope, token, client_frame, push_body, users_body,
# signing, config). The target bodies live in fuzz/harness.rs; the stable
# test relay/tests/fuzz_corpus.rs replays fuzz/corpus/ and fuzz/artifacts/
# through them in `make test` (no nightly needed there).
#
#   make fuzz                    every target FUZZ_SECONDS (60) seconds, niced
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=token
#   make fuzz-cmin               minimise the checked-in corpora (cargo fuzz cmin)
#   make fuzz-seed               (re)write the seed inputs (fuzz/seed.py)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz 0.13 when it is missing. New inputs land in fuzz/corpus/<t>/,
# crashes in fuzz/artifacts/<t>/: commit both (a crash file keeps failing
# the replay test until the bug is fixed).

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(shell sed -n 's/^name = "\([a-z_]*\)"$$/\1/p' fuzz/Cargo.toml | grep -v '^bm')
FUZZ_NICE ?= nice -n 10

.PHONY: fuzz fuzz-deps fuzz-cmin fuzz-seed

fuzz-deps:
	@$(CARGO) +nightly --version >/dev/null 2>&1 || { \
	  echo "fuzz: the nightly Rust toolchain is missing; cargo-fuzz needs it (sanitizer flags)." >&2; \
	  echo "fuzz: install it with: rustup toolchain install nightly" >&2; exit 1; }
	@$(CARGO) +nightly fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13' || { \
	  echo "fuzz: installing cargo-fuzz 0.13 (cargo install)"; \
	  $(CARGO) install cargo-fuzz --version '^0.13' --locked; }

fuzz: fuzz-deps ## fuzz every parser FUZZ_SECONDS s each (nightly; cargo-fuzz installed if missing)
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
	  $(FUZZ_NICE) $(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (see fuzz/artifacts/)" >&2; exit 1; fi; \
	echo "fuzz: no crash; commit new inputs in fuzz/corpus/"

fuzz-cmin: fuzz-deps ## minimise the fuzz corpora in place (cargo fuzz cmin)
	@set -e; for t in $(FUZZ_TARGETS); do $(FUZZ_NICE) $(CARGO) +nightly fuzz cmin $$t fuzz/corpus/$$t -- -max_len=8192; done

fuzz-seed: ## write the fuzz seed inputs from the vectors and samples (fuzz/seed.py)
	python3 fuzz/seed.py
