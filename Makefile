# Makefile for pgbank (PGXS).  The file tree is the source of truth: every
# extension/*.c is compiled, every sql_tests/*.sql is a regression test, every
# specs/*.spec an isolation test and every t/*.pl a TAP test.

EXTENSION = pgbank
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = $(EXTENSION)
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard extension/*.c)))
HEADERS_pgbank = extension/pgbank_errcodes.h

DATA = sql/$(EXTENSION)--$(EXTVERSION).sql $(sort $(wildcard sql/$(EXTENSION)--*--*.sql))
EXTRA_CLEAN = sql/$(EXTENSION)--$(EXTVERSION).sql build shim/pgbank-http shim/test/pipeline

# pg_regress reads <inputdir>/sql/<test>.sql; sql/ holds the install scripts,
# so the tests run from build/regress whose sql, specs and expected are links.
REGRESS := $(patsubst sql_tests/%.sql,%,$(sort $(wildcard sql_tests/*.sql)))
REGRESS_OPTS = --inputdir=build/regress --outputdir=build/regress
ISOLATION := $(patsubst specs/%.spec,%,$(sort $(wildcard specs/*.spec)))
ISOLATION_OPTS = --inputdir=build/regress --outputdir=build/isolation
TAP_TESTS = $(if $(wildcard t/*.pl),1)

PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare -Wno-cast-function-type -Werror -Wmissing-prototypes

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: sql/$(EXTENSION)--$(EXTVERSION).sql shim/pgbank-http shim/test/pipeline

# pgbank-http, the HTTP server (shim/): h2o 2.2.5's evloop flavour, whose
# pkg-config file omits -DH2O_USE_LIBUV=0, and libpq.
SHIM_PKGS = libh2o-evloop openssl libpq
SHIM_CFLAGS = -std=gnu11 -O2 -g -pthread -DH2O_USE_LIBUV=0 \
	$(shell pkg-config --cflags $(SHIM_PKGS)) \
	-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers -Werror
SHIM_LIBS = $(shell pkg-config --libs $(SHIM_PKGS)) -pthread

shim/pgbank-http: $(sort $(wildcard shim/*.c)) $(wildcard shim/*.h)
	$(CC) $(SHIM_CFLAGS) -o $@ $(filter %.c,$^) $(SHIM_LIBS)

# the pipeline-semantics check that t/100_http_pipeline.pl runs
shim/test/pipeline: shim/test/pipeline.c
	$(CC) $(SHIM_CFLAGS) -o $@ $< $(SHIM_LIBS)

# libFuzzer targets of pgbank-http's parsers (shim/fuzz/fuzz_*.c), built with
# clang, AddressSanitizer and UndefinedBehaviorSanitizer into build/fuzz;
# `scripts/test fuzz` runs each for a bounded time from its seed corpus.
FUZZ_CC = clang
FUZZ_SRCS = shim/args.c shim/config.c shim/json.c shim/jwt.c shim/routes.c
FUZZ_TARGETS = $(patsubst shim/fuzz/%.c,build/fuzz/%,$(wildcard shim/fuzz/fuzz_*.c))
FUZZ_CFLAGS = -std=gnu11 -g -O1 -pthread -DH2O_USE_LIBUV=0 $(shell pkg-config --cflags $(SHIM_PKGS)) \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

fuzz: $(FUZZ_TARGETS)

build/fuzz/%: shim/fuzz/%.c shim/fuzz/fuzz_common.h $(FUZZ_SRCS) $(wildcard shim/*.h)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRCS) $(SHIM_LIBS)

# every object depends on the module headers
$(OBJS): $(wildcard extension/*.h)

# One editable install script, copied to the versioned name at build time.
sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql $(EXTENSION).control
	cp $< $@

# (re)made before every test run, so a stale build/ cannot break it
test-links:
	mkdir -p build/regress/results build/isolation
	ln -sfn ../../sql_tests build/regress/sql
	ln -sfn ../../specs build/regress/specs
	ln -sfn ../../expected build/regress/expected

installcheck: test-links

bench: shim/pgbank-http
	bench/run.sh

.PHONY: bench test-links fuzz

# the TAP tests' shared module (t/PgbankTest.pm)
PG_PROVE_FLAGS += -I $(srcdir)/t
