# The PHP extension bm_relay (ext/): build, test, install, stubs, benchmark.
#
#   make ext         release build; target/release/bm_relay.so
#   make test-ext    the PHP API suite (php-tests/api) with the extension
#   make install     copy it to `php-config --extension-dir`, write the ini
#                    (mods-available or conf.d) and enable it for CLI and FPM
#   make uninstall   the reverse
#   make stubs       regenerate ext/bm_relay.stub.php from the built module
#   make bench-php   per-event cost of bm_push vs openssl + wp_remote_post

TEST_TARGETS += test-ext

EXT_LIB     := $(CURDIR)/target/release/libbm_relay.so
EXT_SO      := $(CURDIR)/target/release/bm_relay.so
EXT_RELAY   := $(CURDIR)/target/release/bm-relay
PHP         ?= php
PHP_CONFIG  ?= php-config
PHPUNIT     ?= /usr/bin/phpunit

.PHONY: ext test-ext install uninstall stubs bench-php ext-deps

ext-deps:
	@bash scripts/install-deps.sh build php

ext: ext-deps ## build the PHP extension (target/release/bm_relay.so)
	$(CARGO) build --release --locked -p bm-relay-ext
	@cp -f $(EXT_LIB) $(EXT_SO).tmp && mv -f $(EXT_SO).tmp $(EXT_SO)
	@$(PHP) -n -d extension=$(EXT_SO) -r 'exit(extension_loaded("bm_relay") ? 0 : 1);' \
	  || { echo "ext: $(EXT_SO) does not load as bm_relay" >&2; exit 1; }

$(EXT_RELAY):
	$(CARGO) build --release --locked -p bm-relay

test-ext: ext $(EXT_RELAY) ## PHP API suite against the extension and a real relay
	BM_EXPECT_IMPL=extension BM_EXT_SO=$(EXT_SO) BM_RELAY_BIN=$(EXT_RELAY) scripts/test-floor.sh 166 $(PHP) -d extension=$(EXT_SO) $(PHPUNIT) -c php-tests/api/phpunit.xml

stubs: ext ## regenerate ext/bm_relay.stub.php from the built module
	$(PHP) -n -d extension=$(EXT_SO) ext/stubgen.php > ext/bm_relay.stub.php.tmp
	mv -f ext/bm_relay.stub.php.tmp ext/bm_relay.stub.php

# Debian keeps one ini per module in mods-available and links it into each
# SAPI's conf.d with phpenmod; elsewhere the ini goes to the scan dir.
install: ext ## install bm_relay.so for this PHP and enable it (CLI, FPM)
	@set -e; extdir=$$($(PHP_CONFIG) --extension-dir); ver=$$($(PHP_CONFIG) --version | cut -d. -f1,2); \
	install -d "$$extdir"; install -m 0644 $(EXT_SO) "$$extdir/bm_relay.so"; \
	echo "installed $$extdir/bm_relay.so"; \
	mods=/etc/php/$$ver/mods-available; \
	if [ -d "$$mods" ] && command -v phpenmod >/dev/null; then \
	  [ -f "$$mods/bm_relay.ini" ] || install -m 0644 ext/bm_relay.ini "$$mods/bm_relay.ini"; \
	  echo "ini: $$mods/bm_relay.ini"; \
	  phpenmod -v "$$ver" -s cli bm_relay; \
	  if [ -d /etc/php/$$ver/fpm ]; then phpenmod -v "$$ver" -s fpm bm_relay; echo "enabled for cli and fpm (reload php$$ver-fpm)"; \
	  else echo "enabled for cli"; fi; \
	else \
	  scan=$$($(PHP) -r 'echo PHP_CONFIG_FILE_SCAN_DIR;'); \
	  [ -n "$$scan" ] || { echo "install: no conf.d scan dir; add extension=bm_relay.so to php.ini" >&2; exit 1; }; \
	  [ -f "$$scan/30-bm_relay.ini" ] || install -m 0644 ext/bm_relay.ini "$$scan/30-bm_relay.ini"; \
	  echo "ini: $$scan/30-bm_relay.ini"; \
	fi; \
	$(PHP) -r 'exit(extension_loaded("bm_relay") ? 0 : 1);' && echo "php -m lists bm_relay"

uninstall: ## disable and remove bm_relay.so and its ini
	@set -e; extdir=$$($(PHP_CONFIG) --extension-dir); ver=$$($(PHP_CONFIG) --version | cut -d. -f1,2); \
	mods=/etc/php/$$ver/mods-available; \
	if [ -f "$$mods/bm_relay.ini" ] && command -v phpdismod >/dev/null; then \
	  phpdismod -v "$$ver" -s ALL bm_relay || true; rm -f "$$mods/bm_relay.ini"; fi; \
	scan=$$($(PHP) -n -r 'echo PHP_CONFIG_FILE_SCAN_DIR;'); \
	[ -z "$$scan" ] || rm -f "$$scan/30-bm_relay.ini"; \
	rm -f "$$extdir/bm_relay.so"; echo "removed bm_relay"

bench-php: ext $(EXT_RELAY) ## benchmark: bm_push (async, sync) vs openssl_encrypt + wp_remote_post
	@test -f /usr/share/wordpress/wp-includes/class-wp-http.php || bash scripts/install-deps.sh wp
	BM_EXT_SO=$(EXT_SO) BM_RELAY_BIN=$(EXT_RELAY) $(PHP) -d extension=$(EXT_SO) ext/bench/push-cost.php
