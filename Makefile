# castbus - one non-recursive Makefile for the whole tree.
#
#   make                      libcommon, proto, the eight daemons and tools into build/
#   make test                 bootstrap, build, every check and test (what CI runs)
#   make run                  bootstrap, build, start the dev stack and every daemon
#   make SANITIZE=address,undefined [test]   sanitizer build (in build/sanitize/)
#   make DEVELOPER=1          -Werror and stricter warnings
#   make check-style          clang-format check and banned functions
#   make proto                regenerate proto/gen and docs/bus.md from proto/*.toml
#   make docs                 regenerate docs/config.md from the config tables
#   make k8s                  regenerate the chart's schema and dashboards, deploy/k8s
#   make bench                benchmarks against their anchors (tools/bench/; minutes)
#   make deploy-check         Helm chart, deploy/k8s, compose, Dockerfile, config drift
#   make fuzz                 build libFuzzer harnesses with clang (build/fuzz/)
#   make help                 this text

.DEFAULT_GOAL := all
SHELL := /bin/bash
ifeq ($(V),)
Q := @
QUIET_CC = @echo "  CC      $@";
QUIET_LINK = @echo "  LINK    $@";
QUIET_AR = @echo "  AR      $@";
QUIET_GEN = @echo "  GEN     $@";
endif
.SUFFIXES:
.DELETE_ON_ERROR:
.SECONDARY:

# the release version; the git revision is added at build time (see version.h)
VERSION := 0.1.0
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)$(shell \
	git diff --quiet HEAD -- 2>/dev/null || echo -dirty)

ifneq ($(SANITIZE),)
BUILD ?= build/sanitize
else
BUILD ?= build
endif

CC ?= cc
ifeq ($(origin CC),default)
CC := cc
endif
PYTHON ?= /usr/bin/python3
PKG_CONFIG ?= pkg-config

PKGS := libwebsockets jansson rdkafka libnats libpq hiredis libcurl openssl
# libraries only some daemons link (pkg-config names)
ingest_PKGS := libavformat libavcodec libavutil srt
transcode-worker_PKGS := libavformat libavcodec libavutil libswscale libswresample
packager_PKGS := zlib
SERVICE_PKGS := $(ingest_PKGS) $(transcode-worker_PKGS) $(packager_PKGS)
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) $(SERVICE_PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
SERVICE_PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(SERVICE_PKGS) 2>/dev/null)

WARN := -Wall -Wextra
ifneq ($(DEVELOPER),)
WARN += -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition \
        -Wpointer-arith -Wformat=2 -Wundef -Wvla -Wnull-dereference -Wimplicit-fallthrough
endif

OPT ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(OPT) -g -fno-omit-frame-pointer -pthread $(WARN) \
               -Ilibcommon -Iproto/gen $(PKG_CFLAGS)
LDLIBS_BASE := $(PKG_LIBS) -lm -pthread
LDFLAGS_BASE :=
ifneq ($(SANITIZE),)
CFLAGS_BASE += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDFLAGS_BASE += -fsanitize=$(SANITIZE)
endif
ALL_CFLAGS = $(CFLAGS_BASE) $(CFLAGS)
ALL_LDFLAGS = $(LDFLAGS_BASE) $(LDFLAGS)

# Rebuild everything when the flags change (switching DEVELOPER, OPT, CC...).
FLAGS_FILE := $(BUILD)/.flags
$(shell mkdir -p $(BUILD) && { echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $(FLAGS_FILE) || echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' > $(FLAGS_FILE); })

DAEMONS := ingest transcode-worker packager purge-fanout drm-license entitlement analytics-sink sfu

# ---- libraries ----

LIBCOMMON_SRC := $(sort $(wildcard libcommon/*.c))
LIBCOMMON_OBJ := $(LIBCOMMON_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/version.o

# version.c changes only when the version or the revision does (see version.h)
VERSION_C := $(BUILD)/gen/version.c
VERSION_TEXT := const char cb_version[] = "$(VERSION)";\nconst char cb_revision[] = "$(GIT_REV)";
$(shell mkdir -p $(BUILD)/gen && { printf '$(VERSION_TEXT)\n' | cmp -s - $(VERSION_C) || \
	printf '$(VERSION_TEXT)\n' > $(VERSION_C); })

$(BUILD)/obj/gen/version.o: $(VERSION_C) $(FLAGS_FILE)
	@mkdir -p $(@D)
	$(QUIET_CC)$(CC) $(ALL_CFLAGS) -c -o $@ $<
LIBCOMMON := $(BUILD)/lib/libcastbus.a

PROTO_SRC := proto/gen/cb_proto.c
PROTO_OBJ := $(PROTO_SRC:%.c=$(BUILD)/obj/%.o)
LIBPROTO := $(BUILD)/lib/libcbproto.a

$(BUILD)/obj/%.o: %.c $(FLAGS_FILE)
	@mkdir -p $(@D)
	$(QUIET_CC)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBCOMMON): $(LIBCOMMON_OBJ)
	@mkdir -p $(@D)
	$(QUIET_AR)rm -f $@ && ar rcs $@ $^

$(LIBPROTO): $(PROTO_OBJ)
	@mkdir -p $(@D)
	$(QUIET_AR)rm -f $@ && ar rcs $@ $^

LIBS := $(LIBPROTO) $(LIBCOMMON)

# ---- daemons ----
# services/<d>/main.c, linked with libsvc-<d>.a: the daemon's other sources
# (its job, which unit tests and fuzz harnesses link too) and its SQL
# migrations from services/<d>/migrations/, embedded by tools/embed-sql.

define daemon_rules
$(1)_LIB_SRC := $$(filter-out services/$(1)/main.c,$$(sort $$(wildcard services/$(1)/*.c)))
$(1)_LIB_OBJ := $$($(1)_LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/$(1)_migrations.o
$(1)_LIB := $(BUILD)/lib/libsvc-$(1).a
$(1)_LDLIBS := $$(if $$($(1)_PKGS),$$(shell $(PKG_CONFIG) --libs $$($(1)_PKGS)))
$(1)_SQL := $$(sort $$(wildcard services/$(1)/migrations/*.sql))

# a daemon's sources see its own headers, no other daemon's
$(BUILD)/obj/services/$(1)/%.o: ALL_CFLAGS += -Iservices/$(1)

$$($(1)_LIB): $$($(1)_LIB_OBJ)
	@mkdir -p $$(@D)
	$$(QUIET_AR)rm -f $$@ && ar rcs $$@ $$^

$(BUILD)/gen/$(1)_migrations.c: $$($(1)_SQL) tools/embed-sql
	@mkdir -p $$(@D)
	$$(QUIET_GEN)$(PYTHON) tools/embed-sql --name $(subst -,_,$(1))_migrations --out $$@ $$($(1)_SQL)

$(BUILD)/obj/gen/$(1)_migrations.o: $(BUILD)/gen/$(1)_migrations.c $(FLAGS_FILE)
	@mkdir -p $$(@D)
	$$(QUIET_CC)$(CC) $(ALL_CFLAGS) -c -o $$@ $$<

$(BUILD)/bin/castbus-$(1): $(BUILD)/obj/services/$(1)/main.o $$($(1)_LIB) $(LIBS)
	@mkdir -p $$(@D)
	$$(QUIET_LINK)$(CC) $(ALL_LDFLAGS) -o $$@ $$< $$($(1)_LIB) $(LIBS) $$($(1)_LDLIBS) \
		$(LDLIBS_BASE)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rules,$(d))))

DAEMON_BINS := $(DAEMONS:%=$(BUILD)/bin/castbus-%)
# unit tests and fuzz harnesses may test any daemon's modules
SERVICE_LIBS := $(foreach d,$(DAEMONS),$($(d)_LIB))
SERVICE_INCLUDES := $(foreach d,$(DAEMONS),-Iservices/$(d))
$(BUILD)/obj/tests/%.o: ALL_CFLAGS += $(SERVICE_INCLUDES)

# ---- tools ----

BUSCTL_SRC := $(sort $(wildcard tools/busctl/*.c))
BUSCTL_OBJ := $(BUSCTL_SRC:%.c=$(BUILD)/obj/%.o)
BUSCTL := $(BUILD)/bin/castbus-busctl

$(BUSCTL): $(BUSCTL_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(ALL_LDFLAGS) -o $@ $(BUSCTL_OBJ) $(LIBS) $(LDLIBS_BASE)

# rtmp-loadgen: libc only (the ingest benchmark's publisher; kept light)
LOADGEN_SRC := tools/rtmp-loadgen/rtmp-loadgen.c
LOADGEN := $(BUILD)/bin/rtmp-loadgen

$(LOADGEN): $(LOADGEN_SRC:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(ALL_LDFLAGS) -o $@ $^

.PHONY: all
all: $(DAEMON_BINS) $(BUSCTL) $(LOADGEN)

# ---- unit tests (cmocka): tests/unit/test_<module>.c, one binary each ----

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
CMOCKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(SERVICE_LIBS) $(LIBS)
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(ALL_LDFLAGS) -o $@ $< $(SERVICE_LIBS) $(LIBS) $(CMOCKA_LIBS) \
		$(SERVICE_PKG_LIBS) $(LDLIBS_BASE)

$(BUILD)/obj/tests/unit/%.o: tests/unit/%.c $(FLAGS_FILE)
	@mkdir -p $(@D)
	$(QUIET_CC)$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -MMD -MP -c -o $@ $<

.PHONY: unit
unit: $(UNIT_BINS)
	@tools/run-unit $(UNIT_BINS)

# Third-party leaks LeakSanitizer must not fail us on (see the file).
LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
export LSAN_OPTIONS

# The unit suite and the fuzz corpora again under AddressSanitizer + UBSan
# (build/sanitize/).
.PHONY: unit-sanitize
unit-sanitize:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined unit fuzz-replay

# ---- fuzz harnesses: tests/fuzz/<parser>/harness.c + corpus/ ----
# `make fuzz-replay` runs every corpus through its harness (gcc, no libFuzzer
# needed); `make fuzz` builds real libFuzzer binaries with clang.

FUZZ_NAMES := $(notdir $(patsubst %/,%,$(dir $(wildcard tests/fuzz/*/harness.c))))
FUZZ_REPLAY_BINS := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/%-replay)

$(BUILD)/tests/fuzz/%-replay: tests/fuzz/%/harness.c tests/fuzz/replay.c $(SERVICE_LIBS) $(LIBS) \
		$(FLAGS_FILE)
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(ALL_CFLAGS) $(SERVICE_INCLUDES) $(ALL_LDFLAGS) -o $@ tests/fuzz/$*/harness.c \
		tests/fuzz/replay.c $(SERVICE_LIBS) $(LIBS) $(SERVICE_PKG_LIBS) $(LDLIBS_BASE)

.PHONY: fuzz-replay
fuzz-replay: $(FUZZ_REPLAY_BINS)
	@set -e; for n in $(FUZZ_NAMES); do \
		$(BUILD)/tests/fuzz/$$n-replay tests/fuzz/$$n/corpus; done

.PHONY: fuzz
fuzz:
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang \
		CFLAGS='-fsanitize=fuzzer-no-link,address,undefined' libs-only
	@set -e; mkdir -p build/fuzz/bin; for n in $(FUZZ_NAMES); do \
		clang $(CFLAGS_BASE) $(SERVICE_INCLUDES) -fsanitize=fuzzer,address,undefined \
			-o build/fuzz/bin/$$n \
			tests/fuzz/$$n/harness.c $(foreach d,$(DAEMONS),build/fuzz/lib/libsvc-$(d).a) \
			build/fuzz/lib/libcbproto.a build/fuzz/lib/libcastbus.a \
			$(SERVICE_PKG_LIBS) $(LDLIBS_BASE); \
		echo "built build/fuzz/bin/$$n (run: build/fuzz/bin/$$n tests/fuzz/$$n/corpus)"; done

.PHONY: libs-only
libs-only: $(LIBS) $(SERVICE_LIBS)

# ---- integration test helpers (C programs driving libcommon) ----

ITEST_HELPERS_SRC := $(sort $(wildcard tests/integration/helpers/*.c))
ITEST_HELPERS := $(ITEST_HELPERS_SRC:tests/integration/helpers/%.c=$(BUILD)/tests/helpers/%)
ITEST_SQL := $(sort $(wildcard tests/integration/helpers/migrations/*.sql))

$(BUILD)/gen/itest_migrations.c: $(ITEST_SQL) tools/embed-sql
	@mkdir -p $(@D)
	$(QUIET_GEN)$(PYTHON) tools/embed-sql --name itest_migrations --out $@ $(ITEST_SQL)

$(BUILD)/tests/helpers/%: $(BUILD)/obj/tests/integration/helpers/%.o $(BUILD)/obj/gen/itest_migrations.o $(LIBS)
	@mkdir -p $(@D)
	$(QUIET_LINK)$(CC) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/obj/gen/itest_migrations.o $(LIBS) \
		$(SERVICE_PKG_LIBS) $(LDLIBS_BASE)

$(BUILD)/obj/gen/itest_migrations.o: $(BUILD)/gen/itest_migrations.c $(FLAGS_FILE)
	@mkdir -p $(@D)
	$(QUIET_CC)$(CC) $(ALL_CFLAGS) -c -o $@ $<

.PHONY: helpers
helpers: $(ITEST_HELPERS)

# ---- generated code and docs, and their staleness checks ----

PROTO_DEFS := $(sort $(wildcard proto/*.toml))

.PHONY: proto proto-check
proto:
	$(PYTHON) tools/protogen --out-dir proto/gen --docs docs/bus.md $(PROTO_DEFS)

proto-check:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) tools/protogen --out-dir "$$tmp" --docs "$$tmp/bus.md" $(PROTO_DEFS) && \
	if ! diff -q "$$tmp/cb_proto.h" proto/gen/cb_proto.h >/dev/null || \
	   ! diff -q "$$tmp/cb_proto.c" proto/gen/cb_proto.c >/dev/null || \
	   ! diff -q "$$tmp/bus.md" docs/bus.md >/dev/null; then \
		echo "proto-check: proto/gen or docs/bus.md is stale: run 'make proto' and commit" >&2; \
		exit 1; fi; echo "proto-check: generated code and docs/bus.md are current"

.PHONY: docs docs-check
docs: $(DAEMON_BINS)
	tools/gen-config-doc $(BUILD)/bin > docs/config.md

docs-check: $(DAEMON_BINS)
	@tools/gen-config-doc $(BUILD)/bin | diff -q - docs/config.md >/dev/null || \
		{ echo "docs-check: docs/config.md is stale: run 'make docs' and commit" >&2; exit 1; }
	@echo "docs-check: docs/config.md matches the config tables"

# ---- deployment files (docs/deployment.md) ----

.PHONY: k8s deploy-check
k8s: $(DAEMON_BINS)
	CASTBUS_BUILD=$(BUILD) tools/render-k8s

deploy-check: $(DAEMON_BINS) $(BUSCTL)
	@CASTBUS_BUILD=$(BUILD) tools/check-deploy
	@tools/check-compose --bin $(BUILD)/bin
	@.venv/bin/python tools/check-config-drift --bin $(BUILD)/bin

# ---- style ----

STYLE_FILES = $(shell git ls-files -co --exclude-standard '*.c' '*.h' | grep -v '^proto/gen/')

.PHONY: check-style format
check-style:
	@tools/check-style $(STYLE_FILES)

format:
	clang-format -i $(STYLE_FILES)

# ---- the two commands ----

.PHONY: bootstrap
bootstrap:
	@tools/bootstrap

.PHONY: test
test: bootstrap
	@$(MAKE) --no-print-directory all helpers
	@$(MAKE) --no-print-directory proto-check docs-check check-style deploy-check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-sanitize
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory integration-sanitize

.PHONY: integration integration-sanitize
integration: all helpers e2e-deps
	CASTBUS_BUILD=$(BUILD) .venv/bin/python -m pytest -q tests/integration $(PYTEST_ARGS)

# ---- browser playback (tests/integration/test_browser_playback.py) ----
# playwright-core, hls.js, dash.js and Shaka Player, pinned in
# tests/e2e/package-lock.json; Debian's chromium plays.
E2E_STAMP := tests/e2e/node_modules/.package-lock.json

$(E2E_STAMP): tests/e2e/package.json tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund

.PHONY: e2e-deps browser-test
e2e-deps:
	@$(MAKE) --no-print-directory $(E2E_STAMP) || \
		echo "e2e-deps: npm ci failed: the browser playback test will skip" >&2

browser-test: all helpers e2e-deps
	CASTBUS_BUILD=$(BUILD) .venv/bin/python -m pytest -q tests/integration/test_browser_playback.py $(PYTEST_ARGS)

# The integration suite again with every daemon and tool built with ASan + UBSan.
integration-sanitize:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined integration

.PHONY: run
run: bootstrap
	@$(MAKE) --no-print-directory all
	@CASTBUS_BUILD=$(BUILD) tools/run

# ---- benchmarks (not part of make test: they take minutes and want a quiet machine) ----

.PHONY: bench bench-ingest bench-transcode bench-packager bench-origin bench-purge bench-latency
bench: bench-ingest bench-transcode bench-packager bench-origin bench-purge bench-latency

bench-ingest: bootstrap all
	CASTBUS_BUILD=$(BUILD) .venv/bin/python tools/bench/ingest $(BENCH_ARGS)

bench-transcode: bootstrap all
	CASTBUS_BUILD=$(BUILD) .venv/bin/python tools/bench/transcode $(BENCH_ARGS)

bench-packager: bootstrap all
	CASTBUS_BUILD=$(BUILD) .venv/bin/python tools/bench/packager $(BENCH_ARGS)

bench-origin: bootstrap all
	CASTBUS_BUILD=$(BUILD) .venv/bin/python tools/bench/origin $(BENCH_ARGS)

bench-purge: bootstrap all
	CASTBUS_BUILD=$(BUILD) .venv/bin/python tools/bench/purge $(BENCH_ARGS)

bench-latency: bootstrap all e2e-deps
	CASTBUS_BUILD=$(BUILD) .venv/bin/python tools/bench/latency $(BENCH_ARGS)

.PHONY: clean
clean:
	rm -rf build

.PHONY: help
help:
	@sed -n '2,17p' Makefile | sed 's/^# \{0,1\}//'

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
