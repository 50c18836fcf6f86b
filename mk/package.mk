# Debian packages (issue 14), built with cargo-deb from the
# [package.metadata.deb] tables of relay/Cargo.toml and ext/Cargo.toml.
#
#   make package       dist/bm-relay_<version>_<arch>.deb and
#                      dist/php<X.Y>-bm-relay_<version>_<arch>.deb, then lintian on both
#   make test-package  builds them, installs them on this machine (dpkg -i),
#                      checks PHP and a push through the packaged relay, then
#                      purges both and checks nothing is left; in make test
#
# One version: the workspace's ([workspace.package] version in Cargo.toml);
# the changelogs are generated from it, and the plugin's header must match it.

TEST_TARGETS += test-package

PKG_VERSION  := $(shell sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)
PKG_PHP_VER  := $(shell php-config --version 2>/dev/null | cut -d. -f1,2)
PKG_ARCH     := $(shell dpkg --print-architecture)
PKG_STAGE    := $(CURDIR)/target/pkg
DEB_RELAY    := $(CURDIR)/dist/bm-relay_$(PKG_VERSION)_$(PKG_ARCH).deb
DEB_EXT      := $(CURDIR)/dist/php$(PKG_PHP_VER)-bm-relay_$(PKG_VERSION)_$(PKG_ARCH).deb
CARGO_DEB_VERSION := 3.8.0

.PHONY: package package-deps package-build package-stage test-package

# cargo-deb from crates.io, pinned; `cargo install --locked` when missing
# (about 2-4 minutes once on this 2-core machine, then cached in ~/.cargo/bin).
package-deps:
	@bash scripts/install-deps.sh build php package
	@$(CARGO) deb --version 2>/dev/null | grep -q ' $(CARGO_DEB_VERSION)$$' \
	  || { echo "package: installing cargo-deb $(CARGO_DEB_VERSION)"; $(CARGO) install --locked cargo-deb --version $(CARGO_DEB_VERSION); }

# The same cargo invocations as `make relay` / `make ext`, so their builds are reused.
package-build: package-deps
	$(CARGO) build --release --locked -p bm-relay
	$(CARGO) build --release --locked -p bm-relay-ext
	$(CARGO) build --release --locked -p bm-relay-gen

# Generated inputs under target/pkg: man pages and completions from the clap
# definitions, changelogs with the workspace version, the extension's
# maintainer scripts with this PHP's version.
package-stage: package-build
	@set -e; rm -rf $(PKG_STAGE); mkdir -p $(PKG_STAGE)/relay $(PKG_STAGE)/ext/scripts; \
	target/release/bm-relay-gen $(PKG_STAGE)/relay; \
	gzip -9n $(PKG_STAGE)/relay/man1/*.1; \
	date=$$(date -R -u -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s)); \
	for p in relay:bm-relay ext:php$(PKG_PHP_VER)-bm-relay; do \
	  sed -e "s/@PACKAGE@/$${p#*:}/" -e "s/@VERSION@/$(PKG_VERSION)/g" -e "s/@DATE@/$$date/" \
	    pkg/debian/changelog.in | gzip -9n > $(PKG_STAGE)/$${p%%:*}/changelog.gz; \
	done; \
	for s in postinst prerm postrm; do \
	  sed "s/@PHP_VERSION@/$(PKG_PHP_VER)/" pkg/debian/php-bm-relay/$$s > $(PKG_STAGE)/ext/scripts/$$s; \
	done; \
	grep -q '^\[package.metadata.deb.variants."php$(PKG_PHP_VER)"\]' ext/Cargo.toml \
	  || { echo "package: ext/Cargo.toml has no variant for PHP $(PKG_PHP_VER); add [package.metadata.deb.variants.\"php$(PKG_PHP_VER)\"]" >&2; exit 1; }; \
	grep -q "\"usr/lib/php/$$(php-config --phpapi)/bm_relay.so\"" ext/Cargo.toml && [ "$$(php-config --extension-dir)" = /usr/lib/php/$$(php-config --phpapi) ] \
	  || { echo "package: the php$(PKG_PHP_VER) variant's .so path is not $$(php-config --extension-dir)/bm_relay.so" >&2; exit 1; }; \
	plugin=$$(sed -n 's/^ \* Version: *//p' wp-plugin-shim/bm-relay.php); \
	[ "$$plugin" = "$(PKG_VERSION)" ] || { echo "package: plugin header Version $$plugin != workspace version $(PKG_VERSION)" >&2; exit 1; }

package: package-stage ## Debian packages of the relay and the extension in dist/, checked by lintian
	@mkdir -p dist
	$(CARGO) deb --no-build --strip --no-dbgsym --locked -p bm-relay -o $(DEB_RELAY)
	$(CARGO) deb --no-build --strip --no-dbgsym --locked -p bm-relay-ext --variant php$(PKG_PHP_VER) -o $(DEB_EXT)
	lintian --fail-on error,warning --suppress-tags-from-file pkg/debian/lintian-suppress $(DEB_RELAY) $(DEB_EXT)
	@echo "package: $(DEB_RELAY)"; echo "package: $(DEB_EXT)"

test-package: package ## install both debs here, check PHP and a push through the packaged relay, purge, check nothing is left
	bash pkg/test-package.sh $(DEB_RELAY) $(DEB_EXT)
