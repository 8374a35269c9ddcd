# Makefile -- the one build file: daemons, tools, tests, sanitizer build, lint.
#
# Non-recursive: every object is a target of this file, with dependency files
# (-MMD -MP) so a header change rebuilds what includes it. Objects go under
# $(BUILD), programs under $(BIN). `make asan` builds a second tree with
# AddressSanitizer + UBSan under build/asan and runs the tests against it.

CC        ?= gcc
BUILD     ?= build/release
BIN       ?= bin
SANITIZER ?=
OPT       ?= -O2

WARN   := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS := -std=c11 -D_DEFAULT_SOURCE $(OPT) -g $(WARN) -MMD -MP -Ishared \
          -I/usr/include/hiredis -I/usr/include/cjson -I/usr/include/mariadb \
          -D_FILE_OFFSET_BITS=64 $(EXTRA_CFLAGS)
LDFLAGS_ALL := $(EXTRA_LDFLAGS)
LIB_M := -lm
ifneq ($(SANITIZER),)
CFLAGS      += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS_ALL += -fsanitize=$(SANITIZER)
endif

LIB_EVENT  := -levent_pthreads -levent
LIB_HIREDIS := -lhiredis -lz # zlib: crc32, the audit's detail checksum (sh_audit)
LIB_NNG    := -lnng -pthread
LIB_CJSON  := -lcjson
LIB_INIH   := -linih
LIB_MYSQL  := -lmariadb
LIB_CMOCKA := -lcmocka

# ---- sources --------------------------------------------------------------
SH_SRC  := $(wildcard shared/*.c)
SCH_SRC := $(wildcard scheduler/*.c)
PN_SRC  := $(wildcard partition-node/*.c)
SW_SRC  := $(wildcard sync-worker/*.c)
CTL_SRC := $(wildcard scheduler/stockctl/*.c)
LG_SRC  := $(wildcard bench/loadgen/*.c)
CL_SRC  := $(wildcard bench/classic/*.c)
SB_SRC  := $(wildcard bench/scriptbench/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
TESTLIB_SRC := $(wildcard tests/lib/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

SH_LIB := $(BUILD)/libsh.a
PROGS  := $(BIN)/stock-scheduler $(BIN)/stock-node $(BIN)/stock-syncd $(BIN)/stockctl \
          $(BIN)/stock-loadgen $(BIN)/stock-classic $(BIN)/stock-scriptbench
FAULT_BINS := $(BIN)/tests/stock-syncd-fault
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BIN)/tests/unit/%,$(UNIT_SRC))
INTEG_BINS := $(patsubst tests/integration/%.c,$(BIN)/tests/integration/%,$(INTEG_SRC))

.PHONY: all test asan lint clean demo bench test-bins deps format
.SECONDARY:
all: $(PROGS) test-bins

test-bins: $(UNIT_BINS) $(INTEG_BINS) $(FAULT_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(SH_LIB): $(call obj,$(SH_SRC))
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BIN)/stock-scheduler: $(call obj,$(SCH_SRC)) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_EVENT) $(LIB_HIREDIS) $(LIB_NNG) $(LIB_CJSON) $(LIB_INIH) $(LIB_M)

$(BIN)/stock-node: $(call obj,$(PN_SRC)) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_HIREDIS) $(LIB_NNG) $(LIB_INIH) $(LIB_M)

# The schema migrations, embedded: sql/migrations/NNN_name.sql -> a C table
# (scripts/gen_migrations.sh), so stock-syncd never reads the source tree at
# run time. migrations.list changes only when a file is added or removed, which
# a wildcard prerequisite alone would not notice.
MIGRATIONS := $(sort $(wildcard sql/migrations/*.sql))
MIG_GEN    := $(BUILD)/gen/sw_migrations.c
MIG_OBJ    := $(BUILD)/gen/sw_migrations.o

.PHONY: FORCE
$(BUILD)/gen/migrations.list: FORCE
	@mkdir -p $(dir $@)
	@echo '$(MIGRATIONS)' | cmp -s - $@ || echo '$(MIGRATIONS)' >$@

$(MIG_GEN): $(MIGRATIONS) $(BUILD)/gen/migrations.list scripts/gen_migrations.sh
	@mkdir -p $(dir $@)
	sh scripts/gen_migrations.sh $(MIGRATIONS) >$@.tmp && mv $@.tmp $@

$(MIG_OBJ): $(MIG_GEN)
	$(CC) $(CFLAGS) -Isync-worker -c $< -o $@

$(BIN)/stock-syncd: $(call obj,$(SW_SRC)) $(MIG_OBJ) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_MYSQL) $(LIB_NNG) $(LIB_INIH) $(LIB_M)

# The sync worker with its test-only fault switches compiled in (STOCK_FAULT_*
# environment variables); only the tests run it.
$(BUILD)/fault/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DSH_FAULT_INJECTION -c $< -o $@

$(BIN)/tests/stock-syncd-fault: $(patsubst %.c,$(BUILD)/fault/%.o,$(SW_SRC)) $(MIG_OBJ) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_MYSQL) $(LIB_NNG) $(LIB_INIH) $(LIB_M)

$(BIN)/stockctl: $(call obj,$(CTL_SRC)) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_CJSON) $(LIB_M)

$(BIN)/stock-loadgen: $(call obj,$(LG_SRC)) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_EVENT) $(LIB_CJSON) $(LIB_M)

# Bench only: the classic single-key Redis and MySQL-row designs behind the
# same HTTP front, for bench/compare.sh.
$(BIN)/stock-classic: $(call obj,$(CL_SRC)) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_EVENT) $(LIB_CJSON) $(LIB_HIREDIS) $(LIB_MYSQL) -pthread $(LIB_M)

# Bench only: the DEDUCT script alone on a scratch redis-server (bench/script_bench.sh).
$(BIN)/stock-scriptbench: $(call obj,$(SB_SRC)) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIB_HIREDIS) $(LIB_M)

TEST_LIBS := $(LIB_CMOCKA) $(LIB_EVENT) $(LIB_HIREDIS) $(LIB_NNG) $(LIB_CJSON) $(LIB_INIH) $(LIB_MYSQL)

$(BUILD)/tests/%.o: CFLAGS += -Itests/lib

$(BIN)/tests/%: $(BUILD)/tests/%.o $(call obj,$(TESTLIB_SRC)) $(SH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(TEST_LIBS) $(LIB_M)

# ---- commands -------------------------------------------------------------
deps:
	bash scripts/deps.sh

# deps, build, unit tests, infra up, integration tests, infra down (in a trap).
test: deps
	$(MAKE) all
	BIN=$(BIN) bash tests/run.sh

asan: deps
	$(MAKE) BUILD=build/asan BIN=build/asan/bin SANITIZER=address,undefined OPT=-O1 all
	BIN=build/asan/bin ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 bash tests/run.sh

LINT_FILES := $(wildcard shared/*.[ch] scheduler/*.[ch] partition-node/*.[ch] sync-worker/*.[ch] \
              scheduler/*/*.[ch] bench/*/*.[ch] tests/*/*.[ch])
lint:
	clang-format --dry-run -Werror $(LINT_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	    -D_Noreturn='__attribute__((noreturn))' \
	    --std=c11 --inline-suppr --suppress=missingIncludeSystem -Ishared -Itests/lib $(LINT_FILES)

format:
	clang-format -i $(LINT_FILES)

# One whole flash sale end to end (scripts/demo.sh); SMALL=1 sells 1k/10k/100k units.
demo: deps
	$(MAKE) all
	bash scripts/demo.sh $(if $(SMALL),--small)

bench:
	@bash bench/compare.sh

clean:
	rm -rf build bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
