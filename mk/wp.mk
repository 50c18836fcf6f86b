# WordPress plugin (wp-plugin-shim/) and the pure-PHP fallback of the
# bm_relay API.
#
#   make test-wp        the WordPress suite (php-tests/wp): a private MariaDB,
#                       Debian's WordPress in a temp dir, a real relay and real
#                       subscribers; once with the extension
#                       (target/release/bm_relay.so from `make ext`), once with
#                       the fallback; then the same on a multisite network
#                       (php-tests/wp/multisite)
#                       The plugin is installed from `make plugin-zip`.
#   make test-fallback  the shared API suite (php-tests/api, minus its
#                       `ext-only` group) and the vector checks
#                       (php-tests/wp/fallback) WITHOUT the extension

TEST_TARGETS += test-wp test-fallback

WP_EXT_SO   := $(CURDIR)/target/release/bm_relay.so
WP_RELAY    := $(CURDIR)/target/release/bm-relay
WP_PHPUNIT  := /usr/bin/phpunit

.PHONY: test-wp test-wp-ext test-wp-fallback test-fallback wp-deps wp-relay wp-ext

wp-deps:
	@bash scripts/install-deps.sh php wp

wp-relay:
	@$(WP_RELAY) serve --help 2>/dev/null | grep -q -- --admin-listen || $(CARGO) build --release --locked -p bm-relay

# The extension: the extension's own `make ext` when a rule for it exists
# (ext/ is also a directory, so only a rule in mk/*.mk counts), else cargo.
wp-ext:
	@if grep -qs '^ext:' mk/*.mk; then $(MAKE) --no-print-directory ext; \
	else $(CARGO) build --release --locked -p bm-relay-ext && cp -f target/release/libbm_relay.so $(WP_EXT_SO); fi

test-wp: test-wp-ext test-wp-fallback ## WordPress plugin suite, with the extension and with the fallback

# Floors: tests that passed, skipped ones not counted (scripts/test-floor.sh);
# with the extension one single-site test (the fallback's keep-alive) skips.
test-wp-ext: wp-deps wp-relay wp-ext plugin-zip
	@php -n -d extension=$(WP_EXT_SO) -r 'exit(function_exists("bm_push") && (new ReflectionFunction("bm_push"))->isInternal() ? 0 : 1);' \
	  || { echo "test-wp: $(WP_EXT_SO) does not load as the bm_relay extension" >&2; exit 1; }
	@echo "== WordPress suite with the extension ($(WP_EXT_SO))"
	@BM_EXPECT_IMPL=extension BM_PLUGIN_ZIP=$(PLUGIN_ZIP) BM_EXT_SO=$(WP_EXT_SO) BM_RELAY_BIN=$(WP_RELAY) scripts/test-floor.sh 123 php -d extension=$(WP_EXT_SO) $(WP_PHPUNIT) -c php-tests/wp/phpunit.xml
	@echo "== WordPress multisite suite with the extension"
	@BM_EXPECT_IMPL=extension BM_PLUGIN_ZIP=$(PLUGIN_ZIP) BM_EXT_SO=$(WP_EXT_SO) BM_RELAY_BIN=$(WP_RELAY) scripts/test-floor.sh 6 php -d extension=$(WP_EXT_SO) $(WP_PHPUNIT) -c php-tests/wp/multisite/phpunit.xml

test-wp-fallback: wp-deps wp-relay plugin-zip
	@echo "== WordPress suite with the pure-PHP fallback"
	@BM_EXPECT_IMPL=fallback BM_PLUGIN_ZIP=$(PLUGIN_ZIP) BM_RELAY_BIN=$(WP_RELAY) scripts/test-floor.sh 124 php $(WP_PHPUNIT) -c php-tests/wp/phpunit.xml
	@echo "== WordPress multisite suite with the pure-PHP fallback"
	@BM_EXPECT_IMPL=fallback BM_PLUGIN_ZIP=$(PLUGIN_ZIP) BM_RELAY_BIN=$(WP_RELAY) scripts/test-floor.sh 6 php $(WP_PHPUNIT) -c php-tests/wp/multisite/phpunit.xml

test-fallback: wp-deps ## the PHP API suite and vectors without the extension (pure-PHP fallback)
	@echo "== API vectors, pure-PHP fallback"
	BM_EXPECT_IMPL=fallback scripts/test-floor.sh 29 php $(WP_PHPUNIT) -c php-tests/wp/fallback/phpunit.xml
	@echo "== php-tests/api without the extension (fallback), excluding group ext-only"
	@$(MAKE) --no-print-directory wp-relay
	BM_EXPECT_IMPL=fallback BM_RELAY_BIN=$(WP_RELAY) scripts/test-floor.sh 154 php $(WP_PHPUNIT) -c php-tests/api/phpunit.xml --exclude-group ext-only --do-not-cache-result

# Translation template of the plugin (text domain bm-relay), from the
# WordPress i18n functions in its PHP files.
.PHONY: wp-pot
wp-pot: ## regenerate wp-plugin-shim/languages/bm-relay.pot (xgettext)
	@mkdir -p wp-plugin-shim/languages
	cd wp-plugin-shim && xgettext --language=PHP --from-code=UTF-8 --add-comments=translators \
	  --keyword=__ --keyword=_e --keyword=esc_html__ --keyword=esc_html_e --keyword=esc_attr__ \
	  --keyword=_x:1,2c --keyword=_n:1,2 --package-name=bm-relay --msgid-bugs-address= \
	  --sort-by-file -o languages/bm-relay.pot bm-relay.php includes/*.php
	sed -i 's/charset=CHARSET/charset=UTF-8/' wp-plugin-shim/languages/bm-relay.pot

# The installable plugin: wp-plugin-shim/ as bm-relay/ in a zip (Plugins →
# Add New → Upload Plugin). Its tests and node files live in js-tests/, so
# the folder is copied whole; the check after it refuses a zip that holds
# dev files all the same (a stray npm install in the folder).
PLUGIN_VERSION := $(shell sed -n 's/^ \* Version: *//p' wp-plugin-shim/bm-relay.php)
PLUGIN_ZIP     := $(CURDIR)/run/bm-relay-$(PLUGIN_VERSION).zip
# The copy a sysadmin uploads (make package puts the debs beside it).
PLUGIN_DIST_ZIP := $(CURDIR)/dist/bm-relay-plugin-$(PLUGIN_VERSION).zip

.PHONY: plugin-zip
plugin-zip: ## build the installable plugin: run/bm-relay-VERSION.zip and dist/bm-relay-plugin-VERSION.zip (no tests, no node files)
	@rm -rf run/plugin-zip && mkdir -p run/plugin-zip/bm-relay
	@tar -C wp-plugin-shim -cf - . \
	  | tar -C run/plugin-zip/bm-relay -xf -
	@rm -f $(PLUGIN_ZIP) && cd run/plugin-zip && python3 -m zipfile -c $(PLUGIN_ZIP) bm-relay
	@rm -rf run/plugin-zip
	@if python3 -m zipfile -l $(PLUGIN_ZIP) | grep -E '/(tests|node_modules)/|package(-lock)?\.json|eslint\.config|\.git'; then \
	  echo "plugin-zip: the zip holds the dev files listed above" >&2; exit 1; fi
	@mkdir -p dist && cp -f $(PLUGIN_ZIP) $(PLUGIN_DIST_ZIP)
	@echo "plugin-zip: $(PLUGIN_ZIP)"; echo "plugin-zip: $(PLUGIN_DIST_ZIP) (WordPress: Plugins → Add New → Upload Plugin)"

# A current WordPress besides Debian's 6.1 (2022): the 6.7-alpha nightly
# build of the npm package @wp-playground/wordpress-builds@0.9.19 (its
# SQLite drop-in removed; it runs on MariaDB with an ordinary wp-config).
WP_BUILDS_PKG := @wp-playground/wordpress-builds@0.9.19
WP_LATEST_DIR := $(CURDIR)/run/wordpress-latest

.PHONY: wp-latest test-wp-latest
wp-latest: ## a current WordPress (6.7-alpha, npm @wp-playground/wordpress-builds) in run/wordpress-latest
	@if [ ! -f $(WP_LATEST_DIR)/wp-includes/version.php ]; then \
	  set -e; mkdir -p run/wp-builds; \
	  ls run/wp-builds/wp-playground-wordpress-builds-0.9.19.tgz >/dev/null 2>&1 || (cd run/wp-builds && npm pack --silent $(WP_BUILDS_PKG) >/dev/null); \
	  tar -C run/wp-builds -xzf run/wp-builds/wp-playground-wordpress-builds-0.9.19.tgz package/src/wordpress/wp-nightly.zip; \
	  rm -rf $(WP_LATEST_DIR).tmp && mkdir -p $(WP_LATEST_DIR).tmp; \
	  python3 -m zipfile -e run/wp-builds/package/src/wordpress/wp-nightly.zip $(WP_LATEST_DIR).tmp; \
	  rm -rf $(WP_LATEST_DIR).tmp/wp-content/database $(WP_LATEST_DIR).tmp/wp-content/db.php $(WP_LATEST_DIR).tmp/wp-config.php; \
	  rm -rf $(WP_LATEST_DIR) && mv $(WP_LATEST_DIR).tmp $(WP_LATEST_DIR); \
	fi
	@echo "wp-latest: WordPress $$(php -r 'include "$(WP_LATEST_DIR)/wp-includes/version.php"; echo $$wp_version;') in run/wordpress-latest"

TEST_TARGETS += test-wp-latest

test-wp-latest: wp-latest ## the WordPress suites (extension and fallback, single site and multisite) on the current WordPress
	@BM_WP_SRC=$(WP_LATEST_DIR) $(MAKE) --no-print-directory test-wp

# Lint of the plugin: PHP with PHP_CodeSniffer (Debian's php-codesniffer,
# ruleset phpcs.xml: PSR-12 for a WordPress plugin), JavaScript with ESLint
# (npm in js-tests/, js-tests/eslint.config.js: the recommended rules, on
# wp-plugin-shim/assets/ and js-tests/). Both run in `make lint`.
.PHONY: lint-php lint-js
lint-php: ## PHP lint of the plugin (phpcs, phpcs.xml)
	@command -v phpcs >/dev/null || bash scripts/install-deps.sh lint
	phpcs -q --standard=phpcs.xml

lint-js: ## JavaScript lint of the plugin and its tests (eslint)
	@cd js-tests && { [ -x node_modules/.bin/eslint ] && npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund --loglevel=error; }
	js-tests/node_modules/.bin/eslint --config js-tests/eslint.config.js wp-plugin-shim/assets js-tests
