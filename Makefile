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

# Libraries unpacked into a folder instead of / (the GPU machine, which can
# install nothing: scripts/gpu-deps.sh): DEPS_ROOT=/path/to/root.
ifneq ($(DEPS_ROOT),)
CFLAGS += -I$(DEPS_ROOT)/usr/include -I$(DEPS_ROOT)/usr/include/cjson \
  -I$(DEPS_ROOT)/usr/include/x86_64-linux-gnu -I$(DEPS_ROOT)/usr/include/x86_64-linux-gnu/openblas-openmp
DEPS_LIBDIRS := $(DEPS_ROOT)/usr/lib/x86_64-linux-gnu $(DEPS_ROOT)/usr/lib/x86_64-linux-gnu/openblas-openmp
LDFLAGS += -Wl,--disable-new-dtags $(foreach d,$(DEPS_LIBDIRS),-L$(d) -Wl,-rpath,$(d))
endif

# The CUDA backend (src/cuda/): built when nvcc and cuDNN are found; CUDA=1
# insists on it, CUDA=0 leaves it out. A CUDA build links the CUDA runtime statically
# and cuDNN dynamically, and still runs (on the CPU) where no GPU or driver
# is present. CUDA_HOME and CUDNN_HOME (include/ and lib/ or lib64/) say
# where they are; CUDA_ARCH the GPU code built (Hopper's sm_90 with PTX).
CUDA_HOME ?= /usr/local/cuda
NVCC := $(or $(NVCC),$(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null)))
# (Debian and Ubuntu's cuDNN packages put cudnn.h in /usr/include/x86_64-linux-gnu.)
CUDNN_HOME ?= $(firstword $(patsubst %/include/cudnn.h,%,$(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/local/include/cudnn.h)) $(patsubst %/include/x86_64-linux-gnu/cudnn.h,%,$(wildcard /usr/include/x86_64-linux-gnu/cudnn.h)) $(CUDA_HOME))
CUDNN_H := $(firstword $(wildcard $(CUDNN_HOME)/include/cudnn.h $(CUDNN_HOME)/include/x86_64-linux-gnu/cudnn.h))
ifeq ($(CUDA),)
CUDA := $(if $(and $(NVCC),$(CUDNN_H)),1,0)
endif
ifeq ($(CUDA),1)
ifeq ($(NVCC),)
$(error CUDA=1 but nvcc was not found: set CUDA_HOME or NVCC, or build with CUDA=0)
endif
ifeq ($(CUDNN_H),)
$(error CUDA=1 but cuDNN's cudnn.h is not in $(CUDNN_HOME)/include: set CUDNN_HOME, or build with CUDA=0)
endif
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
CUDA_LIBDIRS := $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib $(CUDNN_HOME)/lib64 $(CUDNN_HOME)/lib)
CFLAGS += -DPASM_HAVE_CUDA
# --fmad=false: the kernels round as the CPU ops do (a*b+c is not fused)
NVCCFLAGS := -std=c++17 -O3 --extended-lambda --fmad=false $(CUDA_ARCH) -DPASM_HAVE_CUDA -Iinclude -Isrc -I$(patsubst %/,%,$(dir $(CUDNN_H))) \
  -Xcompiler -fPIC,-fopenmp,-Wall,-Wextra,-Wno-unused-parameter -Werror all-warnings
ifeq ($(SAN),1)
NVCCFLAGS += -g -Xcompiler -fsanitize=address,-fsanitize=undefined,-fno-sanitize-recover=undefined,-fno-omit-frame-pointer
endif
LDLIBS += $(foreach d,$(sort $(CUDA_LIBDIRS)),-L$(d) -Wl,-rpath,$(d)) -lcudnn -lcudart_static -ldl -lrt -lstdc++
CUDA_SRC := $(sort $(wildcard src/cuda/*.cu))
CUDA_C_SRC := $(sort $(wildcard src/cuda/*.c))
else
CUDA_SRC :=
CUDA_C_SRC :=
endif

LIB_SRC := $(sort $(wildcard src/core/*.c src/ops/*.c src/nn/*.c src/io/*.c src/data/*.c src/train/*.c src/pasm/*.c)) $(CUDA_C_SRC)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_SRC:%.cu=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/*/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL := $(wildcard tests/util/*.c)
TEST_UTIL_OBJ := $(TEST_UTIL:%.c=$(BUILD)/%.o)
HEADERS := $(wildcard include/pasm/*.h)
$(TEST_UTIL_OBJ): CFLAGS += -Itests

.PHONY: all lib test check clean install fuzz bench demo cuda-info cpu-only-check

# bench/grad_sensitivity: the floor under tests/util test_gradient_close, built with
# everything so it keeps compiling
all: $(BUILD)/libpasm.a $(BUILD)/libpasm.so $(BUILD)/pasm $(TEST_BIN) $(BUILD)/bench/grad_sensitivity

lib: $(BUILD)/libpasm.a $(BUILD)/libpasm.so

cuda-info:
	@echo "CUDA=$(CUDA) NVCC=$(NVCC) CUDA_HOME=$(CUDA_HOME) CUDNN_HOME=$(CUDNN_HOME)"

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The direct convolution's AVX-512 tiles keep their accumulators in registers
# only when optimised: at the sanitizer build's -O1 they live in memory, every
# access checked, and a 350-face evaluation took 16 s instead of 0.8 (93% in
# this file). Still instrumented, at -O2.
ifeq ($(SAN),1)
$(BUILD)/src/ops/conv2d_direct.o $(BUILD)/src/ops/conv2d_wgrad.o $(BUILD)/src/ops/conv2d_s2.o: CFLAGS += -O2
endif

$(BUILD)/%.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

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

# A CUDA build also compiles the C files that mention the backend as a
# CPU-only build would (the build most users get), so neither breaks the other.
CUDA_COND_SRC = $(shell grep -l PASM_HAVE_CUDA src/*/*.c tests/*/*.c bench/*.c 2>/dev/null)
cpu-only-check:
ifeq ($(CUDA),1)
	@for f in $(CUDA_COND_SRC); do \
	  $(CC) $(filter-out -DPASM_HAVE_CUDA,$(CFLAGS)) -O0 -Itests -c $$f -o /dev/null || exit 1; \
	done; echo "cpu-only-check: $(words $(CUDA_COND_SRC)) files compile without the CUDA backend"
endif

# compiles the CLI's helpers in, to test its data cache
$(BUILD)/tests/cli/test_data_cache: src/cli/cli_util.c src/cli/cli_util.h

# Each test binary runs from the repo root; tests find ../shared through
# PASM_SHARED and the pasm binary through PASM_BIN.
test: all cpu-only-check
	@PASM_BIN=$(abspath $(BUILD)/pasm) PASM_SHARED=$(abspath ../shared) PASM_SANITIZED=$(SAN) \
	  ASAN_OPTIONS=$${ASAN_OPTIONS:-protect_shadow_gap=0} \
	  OMP_NUM_THREADS=2 ./tests/run-tests.sh $(TEST_BIN)

# make check builds each build with one job a core, or as make -jN says (the
# test runs stay one binary at a time: each already keeps both cores busy).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD_JOBS = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(JOBS))
check:
	$(MAKE) $(BUILD_JOBS) all
	$(MAKE) test
	$(MAKE) $(BUILD_JOBS) SAN=1 all
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
FUZZ_LIB_SRC := $(filter-out src/cuda/%,$(LIB_SRC))
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp -Iinclude -Isrc -I/usr/include/cjson \
  -I/usr/include/x86_64-linux-gnu/openblas-openmp -fsanitize=fuzzer,address,undefined
fuzz: $(FUZZ_BIN)
build-fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRC) $(HEADERS)
	@mkdir -p build-fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIB_SRC) -lopenblas -lcjson -ljpeg -lpng -lz -lm -lpthread

clean:
	rm -rf build build-san build-fuzz

# The CPU benchmark against PyTorch (bench/run.sh): writes docs/benchmarks.md.
# PyTorch comes from PyPI into $(BENCH_VENV), created on first use.
BENCH_VENV ?= .venv-bench
# BENCH_ONLY=nets, attacks or ckpt runs one part (the report keeps the other
# parts' text from docs/benchmarks.md); BENCH_TORCH_COMPILE=1 adds PyTorch under
# torch.compile, BENCH_BF16=0 leaves out bf16, BENCH_ROUNDS (2) and
# BENCH_SETTLE (2 s) set the networks' rounds and the pause before each run.
$(BUILD)/bench/%: bench/%.c $(BUILD)/libpasm.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libpasm.a $(LDLIBS) $(LDFLAGS)
bench: $(BUILD)/bench/pasm_bench $(BUILD)/bench/attack_bench
	PASM_SHARED=$${PASM_SHARED:-$(abspath ../shared)} BENCH_VENV=$(BENCH_VENV) \
	  BENCH_OUT=$(BUILD)/bench ./bench/run.sh $(BUILD)/bench/pasm_bench $(BUILD)/bench/attack_bench

# The README's demo: synthetic faces, train, eval, predict.
demo: $(BUILD)/pasm
	./scripts/demo.sh
