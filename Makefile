# Raikoo organization invitations: build, run, test, bench.
# `make` builds every program into bin/; `make asan` builds the same into bin-asan/ with ASan + UBSan.
# `make build`, `make run`, `make test` and `make bench` first install what is missing (ops/setup), then build
# in a second make, so nothing is read from pkg-config before the libraries are there.

PKGS    := rdkafka libpq jansson libsodium libesmtp-1.0 openssl libsystemd libmicrohttpd
WARN    := -Wall -Wextra -Wmissing-prototypes -Wformat-security -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS) $(LIB_INC) -Iproducers -Itests/unit -I$(OBJ)
# Expanded in recipes only (never while the Makefile is read): by then ops/check-deps has said what is missing.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
LDLIBS  = $(shell pkg-config --libs $(PKGS)) -lm
SETUP  ?= ops/setup

OBJ ?= build
BIN ?= bin

# lib/ in layers, lowest first: core (infrastructure), msg (message contracts), svc (the services).
# A layer includes only its own headers and those of the layers below it (tests/test_layers.py checks).
LIB_LAYERS := core msg svc
LIB_INC  := $(foreach l,$(LIB_LAYERS),-Ilib/$(l))
LIB_HDR  := $(foreach l,$(LIB_LAYERS),$(wildcard lib/$(l)/*.h))
LIB_SRC  := $(foreach l,$(LIB_LAYERS),$(wildcard lib/$(l)/*.c))
PROD_SRC := $(wildcard producers/*.c)
PROGRAMS := raikoo raikoo-command-worker raikoo-outbox-relay raikoo-mailer raikoo-expiry-worker raikoo-bench \
            raikoo-parse-check raikoo-domain-runner raikoo-audit-worker raikoo-web
# Each program's sources: a main.c folder under workers/, producers/ or tests/.
SRC_raikoo                := $(wildcard producers/raikoo/*.c)
SRC_raikoo-command-worker := $(wildcard workers/command-worker/*.c)
SRC_raikoo-outbox-relay   := $(wildcard workers/outbox-relay/*.c)
SRC_raikoo-mailer         := $(wildcard workers/mailer/*.c)
SRC_raikoo-expiry-worker  := $(wildcard workers/expiry-worker/*.c)
SRC_raikoo-bench          := $(wildcard tests/bench/*.c)
SRC_raikoo-parse-check    := $(wildcard tests/parse-check/*.c)
SRC_raikoo-domain-runner  := $(wildcard tests/domain-runner/*.c)
SRC_raikoo-audit-worker   := $(wildcard workers/audit-worker/*.c)
SRC_raikoo-web            := $(wildcard producers/web/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)

BUILT_PROGRAMS := $(foreach p,$(PROGRAMS),$(if $(SRC_$(p)),$(BIN)/$(p)))
EMBED_OBJ := $(OBJ)/embedded_sql.o $(OBJ)/embedded_templates.o
LIBRAIKOO := $(OBJ)/libraikoo.a

.PHONY: all asan build test test-unit bench run clean setup stack-up stack-down check-deps format format-check
all: $(BUILT_PROGRAMS) $(BIN)/raikoo-unit-tests

# Once per make, before anything is compiled: names a missing library or tool and its Debian package.
check-deps:
	@CC="$(CC)" AR="$(AR)" ops/check-deps $(PKGS)

$(OBJ)/%.o: %.c $(LIB_HDR) $(wildcard producers/*.h) | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(OBJ)/embedded_sql.c: $(sort $(wildcard schemas/sql/*.sql)) ops/embed
	@mkdir -p $(OBJ)
	ops/embed embedded_sql $(sort $(wildcard schemas/sql/*.sql)) > $@
$(OBJ)/embedded_templates.c: $(sort $(wildcard lib/templates/*)) ops/embed
	@mkdir -p $(OBJ)
	ops/embed embedded_templates $(sort $(wildcard lib/templates/*)) > $@
$(OBJ)/embedded_%.o: $(OBJ)/embedded_%.c lib/core/embedded.h | check-deps
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBRAIKOO): $(patsubst %.c,$(OBJ)/%.o,$(LIB_SRC) $(PROD_SRC)) $(EMBED_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(patsubst %.c,$(OBJ)/%.o,$(SRC_raikoo-web)): producers/web/web.h

define program_rule
$(BIN)/$(1): $(patsubst %.c,$(OBJ)/%.o,$(SRC_$(1))) $(LIBRAIKOO)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program_rule,$(p))))

$(BIN)/raikoo-unit-tests: $(patsubst %.c,$(OBJ)/%.o,$(UNIT_SRC)) $(LIBRAIKOO)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

asan:
	$(MAKE) OBJ=build-asan BIN=bin-asan \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"

# ThreadSanitizer build (bin-tsan/); tests/tsan/c11threads.c, linked in, lets it see librdkafka's threads.
.PHONY: tsan
TSAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
tsan:
	$(MAKE) OBJ=build-tsan CFLAGS="$(TSAN_CFLAGS)" build-tsan/tests/tsan/c11threads.o
	$(MAKE) OBJ=build-tsan BIN=bin-tsan CFLAGS="$(TSAN_CFLAGS)" \
	  LDLIBS='build-tsan/tests/tsan/c11threads.o $$(shell pkg-config --libs $$(PKGS)) -lm'

setup:
	$(SETUP)

# Installs what is missing, then builds (the second make reads pkg-config only after the install).
build:
	$(SETUP)
	$(MAKE) all

# Brings up the local stack, prepares it and runs every worker in the foreground (Ctrl-C stops them).
run:
	$(SETUP)
	$(MAKE) all
	ops/run

# The whole suite on a stack of its own (var/test, other ports), first with the normal build, then with
# AddressSanitizer + UBSan, after a short run of every fuzz target (fuzz-smoke). Ends with pytest's summary
# line. The stack it started is stopped at the end.
# The three builds (bin/, bin-asan/, bin-fuzz/) are independent: one make builds them on every core.
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test:
	$(SETUP)
	$(MAKE) format-check
	$(MAKE) -j$(TEST_JOBS) all asan fuzz-build
	$(MAKE) fuzz-smoke
	ops/test

bench:
	$(SETUP)
	$(MAKE) all
	ops/bench

# Every C file in the repository, formatted by .clang-format (make test fails on a file it would change).
C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find lib producers workers tests -name '*.[ch]')
format:
	clang-format -i $(C_FILES)
format-check:
	@clang-format --dry-run -Werror $(C_FILES) || \
	  { echo "format-check: the files above differ from .clang-format; run make format" >&2; exit 1; }

stack-up:
	ops/stack up
stack-down:
	ops/stack down

clean:
	rm -rf build build-asan bin bin-asan
# ---- The producer library for upstream apps, as an artifact of its own ----
# build/libraikoo-producer.a holds producers/producer.c and the message modules it uses (commands, e-mail
# addresses, CloudEvents, uuids and Argon2id, text and strbuf, the mail job's locale and link checks), found by name
# wherever lib/ keeps them: nothing that needs libpq, libesmtp or OpenSSL. Its one header,
# producers/include/raikoo/producer.h, needs only jansson.
# `make install PREFIX=DIR` puts the header, the archive and raikoo-producer.pc under DIR/include,
# DIR/lib and DIR/lib/pkgconfig; an app then builds with `pkg-config --cflags --libs raikoo-producer`
# (producers/examples/ does).
PREFIX  ?= /usr/local
VERSION ?= 0.1.0
PRODUCER_HDR     := producers/include/raikoo/producer.h
PRODUCER_LIB_SRC := producers/producer.c \
                    $(filter %/clock.c %/cmd.c %/email.c %/event.c %/mailjob.c %/rfc3339.c %/secret.c %/strbuf.c %/text.c \
                             %/watermark.c,$(LIB_SRC))
LIBPRODUCER      := $(OBJ)/libraikoo-producer.a

.PHONY: install
all: $(LIBPRODUCER)

# Also rebuilt when the Makefile changes: its member list is written here.
$(LIBPRODUCER): $(patsubst %.c,$(OBJ)/%.o,$(PRODUCER_LIB_SRC)) Makefile
	@rm -f $@
	$(AR) rcs $@ $(filter %.o,$^)

# Every object may include the public header (through producers/producer.h).
$(patsubst %.c,$(OBJ)/%.o,$(LIB_SRC) $(PROD_SRC) $(UNIT_SRC) $(foreach p,$(PROGRAMS),$(SRC_$(p)))): $(PRODUCER_HDR)

install: $(LIBPRODUCER)
	install -d $(DESTDIR)$(abspath $(PREFIX))/include/raikoo $(DESTDIR)$(abspath $(PREFIX))/lib/pkgconfig
	install -m 644 $(PRODUCER_HDR) $(DESTDIR)$(abspath $(PREFIX))/include/raikoo/producer.h
	install -m 644 $(LIBPRODUCER) $(DESTDIR)$(abspath $(PREFIX))/lib/libraikoo-producer.a
	sed -e 's|@PREFIX@|$(abspath $(PREFIX))|g' -e 's|@VERSION@|$(VERSION)|g' producers/raikoo-producer.pc.in \
	  > $(DESTDIR)$(abspath $(PREFIX))/lib/pkgconfig/raikoo-producer.pc

include tests/fuzz/fuzz.mk
include tests/chaos/chaos.mk
