# libFuzzer targets for every parser of outside input (included from the Makefile).
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="cmd mail"]  runs each target in turn and prints a table
#   make fuzz-smoke                                         each target briefly; fails on any crash
# Built with clang (Debian's clang package) into build-fuzz/ and bin-fuzz/: the library with
# -fsanitize=fuzzer-no-link,address,undefined, the harnesses linked with -fsanitize=fuzzer.
# Seeds: tests/fuzz/corpus/<name>/ (committed); what the fuzzer adds goes to tests/fuzz/work/<name>/,
# crashes to tests/fuzz/artifacts/ (both ignored by git).

FUZZ_CC      ?= clang
FUZZ_OBJ     := build-fuzz
FUZZ_BIN     := bin-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= cmd mail conf email code smtp smtpreply result redact web bulk dlq rfc3339 template
FUZZ_PKGS    := $(PKGS)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wmissing-prototypes -Wformat-security -Werror \
                -Wno-missing-field-initializers \
                -O1 -g -fno-omit-frame-pointer $(LIB_INC) -Iproducers -Itests/fuzz -I$(FUZZ_OBJ)
FUZZ_LIB_SRC := $(LIB_SRC) $(wildcard producers/*.c)
FUZZ_LIB     := $(FUZZ_OBJ)/libraikoo.a
FUZZ_PROGS   := $(foreach t,$(FUZZ_TARGETS),$(FUZZ_BIN)/fuzz_$(t))

.PHONY: fuzz fuzz-smoke fuzz-build
fuzz-build: $(FUZZ_PROGS)

# pkg-config runs in the recipes (the shell), never when make reads this file.
$(FUZZ_OBJ)/%.o: %.c $(LIB_HDR) $(wildcard producers/*.h tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $$(pkg-config --cflags $(FUZZ_PKGS)) -c -o $@ $<

$(FUZZ_OBJ)/embedded_sql.c: $(sort $(wildcard schemas/sql/*.sql)) ops/embed
	@mkdir -p $(FUZZ_OBJ)
	ops/embed embedded_sql $(sort $(wildcard schemas/sql/*.sql)) > $@
$(FUZZ_OBJ)/embedded_templates.c: $(sort $(wildcard lib/templates/*)) ops/embed
	@mkdir -p $(FUZZ_OBJ)
	ops/embed embedded_templates $(sort $(wildcard lib/templates/*)) > $@
$(FUZZ_OBJ)/embedded_%.o: $(FUZZ_OBJ)/embedded_%.c lib/core/embedded.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_LIB): $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(FUZZ_LIB_SRC)) $(FUZZ_OBJ)/embedded_sql.o $(FUZZ_OBJ)/embedded_templates.o
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BIN)/fuzz_%: $(FUZZ_OBJ)/tests/fuzz/fuzz_%.o $(FUZZ_LIB)
	@mkdir -p $(FUZZ_BIN)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $$(pkg-config --libs $(FUZZ_PKGS)) -lm -lpthread

# Harnesses of parsers that live in programs (not in the library): they include the program's file for its
# static functions and link what else it needs.
$(FUZZ_OBJ)/tests/fuzz/fuzz_web.o: producers/web/session.c producers/web/web.h
$(FUZZ_BIN)/fuzz_web: $(FUZZ_OBJ)/producers/web/form.o
$(FUZZ_OBJ)/tests/fuzz/fuzz_bulk.o: producers/raikoo/bulk.c producers/raikoo/cli.h
$(FUZZ_OBJ)/tests/fuzz/fuzz_dlq.o: producers/raikoo/dlq.c producers/raikoo/cli.h
$(FUZZ_OBJ)/tests/fuzz/fuzz_template.o: tests/fuzz/fuzz_mail.c

fuzz: $(FUZZ_PROGS)
	tests/fuzz/run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: $(FUZZ_PROGS)
	tests/fuzz/run --smoke $(FUZZ_TARGETS)

.PHONY: fuzz-clean
fuzz-clean:
	rm -rf $(FUZZ_OBJ) $(FUZZ_BIN) tests/fuzz/work tests/fuzz/artifacts
clean: fuzz-clean
.PRECIOUS: $(FUZZ_OBJ)/tests/fuzz/%.o
