# pasm build. `make` builds libpasm (static + shared), the pasm binary and
# the tests; `make test` runs the suite; `make SAN=1 test` the same under
# AddressSanitizer + UBSan; `make check` both (the README's test command).

PREFIX ?= /usr/local
CC ?= cc
SAN ?= 0
VERSION := 0.1.0

ifeq ($(SAN),1)
BUILD ?= build-san
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
BUILD ?= build
OPT := -O2 -g
endif

PKGS := cjson libpng zlib
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation \
  -fPIC -fopenmp -Iinclude -Isrc -I/usr/include/cjson -I/usr/include/x86_64-linux-gnu/openblas-openmp
CFLAGS += $(OPT) $(CFLAGS_BASE)
LDLIBS := -lopenblas -lcjson -ljpeg -lpng -lz -lm -lpthread
LDFLAGS += $(OPT) -fopenmp

LIB_SRC := $(sort $(wildcard src/core/*.c src/ops/*.c src/nn/*.c src/io/*.c src/data/*.c src/train/*.c src/pasm/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/*/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL := $(wildcard tests/util/*.c)
TEST_UTIL_OBJ := $(TEST_UTIL:%.c=$(BUILD)/%.o)
HEADERS := $(wildcard include/pasm/*.h)
$(TEST_UTIL_OBJ): CFLAGS += -Itests

.PHONY: all lib test check clean install fuzz bench demo

all: $(BUILD)/libpasm.a $(BUILD)/libpasm.so $(BUILD)/pasm $(TEST_BIN)

lib: $(BUILD)/libpasm.a $(BUILD)/libpasm.so

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

$(BUILD)/libpasm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libpasm.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libpasm.so.0 $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/pasm: $(CLI_OBJ) $(BUILD)/libpasm.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libpasm.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL_OBJ) $(BUILD)/libpasm.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_UTIL_OBJ) $(BUILD)/libpasm.a $(LDLIBS) -lcmocka $(LDFLAGS)

# Each test binary runs from the repo root; tests find ../shared through
# PASM_SHARED and the pasm binary through PASM_BIN.
test: all
	@PASM_BIN=$(abspath $(BUILD)/pasm) PASM_SHARED=$(abspath ../shared) \
	  OMP_NUM_THREADS=2 ./tests/run-tests.sh $(TEST_BIN)

check:
	$(MAKE) test
	$(MAKE) SAN=1 test

install: $(BUILD)/libpasm.a $(BUILD)/libpasm.so $(BUILD)/pasm
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/pasm $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(BUILD)/libpasm.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libpasm.so $(DESTDIR)$(PREFIX)/lib/libpasm.so.$(VERSION)
	ln -sf libpasm.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libpasm.so.0
	ln -sf libpasm.so.0 $(DESTDIR)$(PREFIX)/lib/libpasm.so
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/pasm/
	install -m 755 $(BUILD)/pasm $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' pasm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/pasm.pc

# libFuzzer targets (clang): tests/fuzz/fuzz_*.c, each linked with the library
# sources built with -fsanitize=fuzzer-no-link,address,undefined.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp -Iinclude -Isrc -I/usr/include/cjson \
  -I/usr/include/x86_64-linux-gnu/openblas-openmp -fsanitize=fuzzer,address,undefined
fuzz: $(FUZZ_BIN)
build-fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(HEADERS)
	@mkdir -p build-fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS)

clean:
	rm -rf build build-san build-fuzz

# The CPU benchmark against PyTorch (bench/run.sh): writes docs/benchmarks.md.
# PyTorch comes from PyPI into $(BENCH_VENV), created on first use.
BENCH_VENV ?= .venv-bench
# BENCH_ONLY=nets or BENCH_ONLY=attacks runs one part (the report keeps the
# other part's last results).
$(BUILD)/bench/%: bench/%.c $(BUILD)/libpasm.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libpasm.a $(LDLIBS) $(LDFLAGS)
bench: $(BUILD)/bench/pasm_bench $(BUILD)/bench/attack_bench
	PASM_SHARED=$${PASM_SHARED:-$(abspath ../shared)} BENCH_VENV=$(BENCH_VENV) \
	  BENCH_OUT=$(BUILD)/bench ./bench/run.sh $(BUILD)/bench/pasm_bench $(BUILD)/bench/attack_bench

# The README's demo: synthetic faces, train, eval, predict.
demo: $(BUILD)/pasm
	./scripts/demo.sh
