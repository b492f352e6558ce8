# Raikoo organization invitations: build, run, test, bench.
# `make` builds every program into bin/; `make asan` builds the same into bin-asan/ with ASan + UBSan.

PKGS    := rdkafka libpq jansson libsodium libesmtp-1.0 openssl
WARN    := -Wall -Wextra -Wmissing-prototypes -Wformat-security -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Ilib -Iproducers -Itests/unit -I$(OBJ)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

OBJ ?= build
BIN ?= bin

LIB_SRC  := $(wildcard lib/*.c)
PROD_SRC := $(wildcard producers/*.c)
PROGRAMS := raikoo raikoo-command-worker raikoo-outbox-relay raikoo-mailer raikoo-expiry-worker raikoo-bench \
            raikoo-parse-check
# Each program's sources: a main.c folder under workers/, producers/ or tests/.
SRC_raikoo                := $(wildcard producers/raikoo/*.c)
SRC_raikoo-command-worker := $(wildcard workers/command-worker/*.c)
SRC_raikoo-outbox-relay   := $(wildcard workers/outbox-relay/*.c)
SRC_raikoo-mailer         := $(wildcard workers/mailer/*.c)
SRC_raikoo-expiry-worker  := $(wildcard workers/expiry-worker/*.c)
SRC_raikoo-bench          := $(wildcard tests/bench/*.c)
SRC_raikoo-parse-check    := $(wildcard tests/parse-check/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)

BUILT_PROGRAMS := $(foreach p,$(PROGRAMS),$(if $(SRC_$(p)),$(BIN)/$(p)))
EMBED_OBJ := $(OBJ)/embedded_sql.o $(OBJ)/embedded_templates.o
LIBRAIKOO := $(OBJ)/libraikoo.a

.PHONY: all asan test test-unit bench run clean setup stack-up stack-down
all: $(BUILT_PROGRAMS) $(BIN)/raikoo-unit-tests

$(OBJ)/%.o: %.c $(wildcard lib/*.h producers/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(OBJ)/embedded_sql.c: $(sort $(wildcard schemas/sql/*.sql)) ops/embed
	@mkdir -p $(OBJ)
	ops/embed embedded_sql $(sort $(wildcard schemas/sql/*.sql)) > $@
$(OBJ)/embedded_templates.c: $(sort $(wildcard lib/templates/*)) ops/embed
	@mkdir -p $(OBJ)
	ops/embed embedded_templates $(sort $(wildcard lib/templates/*)) > $@
$(OBJ)/embedded_%.o: $(OBJ)/embedded_%.c lib/embedded.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBRAIKOO): $(patsubst %.c,$(OBJ)/%.o,$(LIB_SRC) $(PROD_SRC)) $(EMBED_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

define program_rule
$(BIN)/$(1): $(patsubst %.c,$(OBJ)/%.o,$(SRC_$(1))) $(LIBRAIKOO)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $$@ $$^ $(LDLIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program_rule,$(p))))

$(BIN)/raikoo-unit-tests: $(patsubst %.c,$(OBJ)/%.o,$(UNIT_SRC)) $(LIBRAIKOO)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

asan:
	$(MAKE) OBJ=build-asan BIN=bin-asan \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"

setup:
	ops/setup

# Brings up the local stack, prepares it and runs every worker in the foreground (Ctrl-C stops them).
run: setup all
	ops/run

# The whole suite on a stack of its own (var/test, other ports), first with the normal build, then with
# AddressSanitizer + UBSan. Ends with pytest's summary line.
test: setup all asan
	ops/test

bench: setup all
	ops/bench

stack-up:
	ops/stack up
stack-down:
	ops/stack down

clean:
	rm -rf build build-asan bin bin-asan
include tests/chaos/chaos.mk
