# Message search at scale (issue #16), not part of `make test`.
#
#   make bench-search   a private MariaDB (the WordPress suite's harness)
#                       filled with 1,000,000 messages in 10,000 threads,
#                       the FULLTEXT index built by the schema upgrade, then
#                       GET /bm/v1/search timed (p50/p99) for common, rare
#                       and several words, a user with 1,000 threads and one
#                       with 5 → run/bench-search/RESULTS.md. 5-15 minutes.
#                       BENCH_MESSAGES, BENCH_THREADS, BENCH_BUFFER_POOL_MB,
#                       BENCH_SECONDS_PER_CASE change the sizes.

.PHONY: bench-search
bench-search: wp-deps plugin-zip ## search at 1M messages: index build time, REST p50/p99 (run/bench-search/RESULTS.md)
	@mkdir -p run/bench-search
	BM_PLUGIN_ZIP=$(PLUGIN_ZIP) php php-tests/bench/search-bench.php
