#!/usr/bin/env bash
# bench/gpu-check.sh OUTDIR quick|full|tests — all of pasm's GPU work in one script, run
# from the repository root on the GPU machine (one H200, 16 cores, no network, at
# most 10 minutes a call). Logs every step into OUTDIR/logs/STEP.log, records
# each step's status in OUTDIR/steps.tsv and writes OUTDIR/gpu-table.md (pasm
# and PyTorch side by side, with the date, the card, driver and CUDA versions).
# A failing step is recorded and the script goes on; it exits 1 if any step
# failed, and steps that would overrun the mode's time budget are skipped
# (quick ~285 s, full ~530 s, tests ~150 s; GPU_CHECK_BUDGET=SECONDS overrides).
#
#   quick  (under 5 min) unpack the libraries, build with CUDA=1 (build-gpu/), the
#          GPU tests (build-gpu/tests/cuda/*, then tests/cli/*), training images/s
#          of ResNet-18 width 64 at batch 128 and 512 (pasm bf16; PyTorch eager bf16
#          autocast channels-last), grad / iter / de attack images/s (bf16 both
#          sides), peak GPU memory, 20 fp32 SGD steps' training loss from one
#          checkpoint on the same batches in pasm and PyTorch; then, as time allows,
#          pasm's training again with one switch changed each (cuDNN's workspace
#          held to 32 MiB a layer, batch norm's loops one element an index,
#          algorithms ranked by measured time) and PyTorch fp32 and torch.compile
#   full   (under 9 min) the build again (a no-op when the machine kept build-gpu/),
#          the whole PASM run (20 baseline epochs + 2 rounds of 10, --attack grad,
#          batch 128, bf16) in pasm and in PyTorch at full FER2013 size, and the
#          accuracy run on real FER2013 when its two parts are there
#   tests  (under 3 min) quick's build, GPU tests and training rows (pasm at batch
#          128 and 512, and its variants as time allows; PyTorch eager bf16) only: a
#          short call A before full mode's
#          call B, when the throughput table is already in docs/
#
# How a GPU session uses it
# -------------------------
# 1. Here (the machine with apt and ../shared), once:
#        scripts/gpu-deps.sh          # .gpu-deps/root.tar.xz, 5.3 MiB
#        scripts/gpu-data.sh mini     # .gpu-data/fer2013-mini.csv.gz, 5.4 MiB
#    and build the CUDA code here as far as nvcc allows (make CUDA=1 ...).
# 2. One device call (`run` tool), quick:
#        carry   [".gpu-deps/root.tar.xz", ".gpu-data/fer2013-mini.csv.gz"]
#        command bash bench/gpu-check.sh /tmp/gpu quick; cp /tmp/gpu/*.md /tmp/gpu/*.tsv
#                /tmp/gpu/*.log /tmp/gpu/logs.tar.gz $OUT/
#    (at most 8 files come back from a call: the logs travel as logs.tar.gz)
#    Do not carry all of .gpu-deps or .gpu-data: they hold the .debs, the unpacked
#    root and the full-data parts (over the 64 MiB a call carries, checkout included;
#    the checkout alone is ~16 MiB).
# 3. The full-FER2013 accuracy run (full FER2013 is 61 MiB in any lossless form, so
#    it travels in two consecutive calls; the machine keeps ignored files between
#    calls only while warm, so make call B right after call A):
#        here:   scripts/gpu-data.sh all       # + .gpu-data/fer2013.part{1,2}.xz, 31 MiB each
#        call A: carry [".gpu-deps/root.tar.xz", ".gpu-data/fer2013-mini.csv.gz",
#                       ".gpu-data/fer2013.part1.xz"]
#                command bash bench/gpu-check.sh $OUT/gpu quick   (or tests, ~2 min,
#                when the session's 15 minutes must hold both calls)
#        call B: carry [".gpu-deps/root.tar.xz", ".gpu-data/fer2013-mini.csv.gz",
#                       ".gpu-data/fer2013.part2.xz"]
#                command bash bench/gpu-check.sh $OUT/gpu-full full
#    (each call ~58 MiB). Call B decodes the two parts to .gpu-data/fer2013.csv
#    (checked against fer2013.csv's sha256) and the pasm run on it is both the
#    whole-run timing and the accuracy run; PyTorch's run uses the same CSV. If
#    part 1 is gone (the machine was given back), part 2 alone decodes to a smaller
#    FER2013 (10,765 Training faces, both test splits whole): the accuracy is
#    reported for it and the table says so; the timing then uses fer2013-mini
#    repeated to full size (28,709 / 3,589 / 3,589 faces). Without any part, full
#    mode times on the repeated mini and reports no accuracy.
#    To time full mode in one call without the accuracy run: carry the first two
#    paths of step 2 and run `bash bench/gpu-check.sh $OUT/gpu-full full`.
# 4. Copy OUTDIR/gpu-table.md into docs/ with the session's note.
#
# Environment: PY (PyTorch's python; found if unset), CUDA_HOME, CUDNN_HOME (found
# if unset: /usr/local/cuda, /usr, or the nvidia-cudnn pip wheel, for which a
# folder with include/ and lib/libcudnn.so links is made in .gpu-deps/cudnn),
# GPU_CHECK_BUDGET, GPU_CHECK_JOBS (make -j, 16), GPU_CHECK_CLI_TESTS (more test
# folders run after the benchmarks in quick mode, e.g. "cli"; unset: none).
set -u
# shellcheck disable=SC2317  # the sub_ functions run through "--sub"

SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/.." || exit 1
REPO=$PWD

# ------------------------------------------------------------------ sub-steps
# Each step runs as `bash gpu-check.sh --sub FUNCTION ARGS` under timeout.

sub_env() {
    echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host $(hostname 2>/dev/null)"
    echo "cpus $(nproc)"
    echo "git ${PASM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    local ok=0
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi || ok=1
        local q
        q=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
        echo "gpu_name $(echo "$q" | cut -d, -f1 | sed 's/^ *//')"
        echo "gpu_driver $(echo "$q" | cut -d, -f2 | sed 's/^ *//')"
        echo "gpu_memory $(echo "$q" | cut -d, -f3 | sed 's/^ *//')"
        echo "gpu_cuda_driver $(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)"
    else
        echo "nvidia-smi: not found (no GPU here)"
        ok=1
    fi
    if [ -n "${NVCC:-}" ]; then
        echo "nvcc_version $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    else
        echo "nvcc: not found"
    fi
    echo "cuda_home ${CUDA_HOME:-none}"
    echo "cudnn_home ${CUDNN_HOME:-none}"
    echo "cc $(${CC:-cc} --version 2>/dev/null | head -1)"
    if [ -n "$PY" ]; then "$PY" bench/torch_gpu_bench.py version; else echo "torch: not found"; fi
    return $ok
}

sub_deps() {
    if [ -f .gpu-deps/root.tar.xz ] || ls .gpu-deps/debs/*.deb >/dev/null 2>&1; then
        scripts/gpu-deps.sh --unpack-only
    elif [ -d .gpu-deps/root/usr/include ]; then
        echo "no .gpu-deps/root.tar.xz: using the .gpu-deps/root already here"
    else
        echo "no .gpu-deps/root.tar.xz (run scripts/gpu-deps.sh here and carry it)"
        return 1
    fi
}

sub_data() {
    local mini=.gpu-data/shared/data/fer2013/fer2013-mini.csv
    mkdir -p "$(dirname "$mini")"
    if [ -f .gpu-data/fer2013-mini.csv.gz ]; then
        gzip -dc .gpu-data/fer2013-mini.csv.gz > "$mini"
    elif [ -f .gpu-data/fer2013-mini.csv ]; then
        cp .gpu-data/fer2013-mini.csv "$mini"
    else
        echo "no .gpu-data/fer2013-mini.csv.gz (scripts/gpu-data.sh mini)"
        return 1
    fi
    python3 scripts/gpu_data.py sha256 "$mini"
    # the timing workload: mini's rows repeated to FER2013's split sizes
    python3 scripts/gpu_data.py repeat "$mini" .gpu-data/fer-full-size.csv
}

sub_fulldata() {
    rm -f .gpu-data/fer2013.csv .gpu-data/fer2013-part2.csv
    if [ -f .gpu-data/fer2013.part1.xz ] && [ -f .gpu-data/fer2013.part2.xz ]; then
        python3 scripts/gpu_data.py decode .gpu-data/fer2013.csv \
            .gpu-data/fer2013.part1.xz .gpu-data/fer2013.part2.xz || return 1
        echo "full_data full"
    elif [ -f .gpu-data/fer2013.part2.xz ]; then
        python3 scripts/gpu_data.py decode .gpu-data/fer2013-part2.csv .gpu-data/fer2013.part2.xz ||
            return 1
        echo "full_data part2 (part1 missing: 10,765 Training faces, both test splits)"
    else
        echo "full_data none (no .gpu-data/fer2013.part2.xz)"
        return 1
    fi
}

make_args() {
    MAKE_ARGS=(CUDA=1 BUILD=build-gpu "DEPS_ROOT=$REPO/.gpu-deps/root")
    [ -n "${CUDA_HOME:-}" ] && MAKE_ARGS+=("CUDA_HOME=$CUDA_HOME")
    [ -n "${CUDNN_HOME:-}" ] && MAKE_ARGS+=("CUDNN_HOME=$CUDNN_HOME")
    [ -n "${NVCC:-}" ] && MAKE_ARGS+=("NVCC=$NVCC")
}

sub_build() {
    make_args
    make cuda-info "${MAKE_ARGS[@]}"
    make -j"${GPU_CHECK_JOBS:-16}" "${MAKE_ARGS[@]}" all build-gpu/bench/pasm_bench \
        build-gpu/bench/attack_bench
}

sub_tests() {  # DIR or DIR/test_NAME...: test binaries under build-gpu/tests/
    local bins=() d
    for d in "$@"; do
        if [ -f build-gpu/tests/"$d" ]; then
            bins+=("build-gpu/tests/$d")
            continue
        fi
        for t in build-gpu/tests/"$d"/test_*; do
            [ -x "$t" ] && bins+=("$t")
        done
    done
    [ ${#bins[@]} -gt 0 ] || { echo "no test binaries under build-gpu/tests/{$*}"; return 1; }
    # PASM_REQUIRE_GPU: a GPU that does not answer fails the tests instead of
    # letting them fall back to the host emulation
    PASM_BIN=$REPO/build-gpu/pasm PASM_SHARED=$REPO/.gpu-data/shared OMP_NUM_THREADS=2 \
        PASM_REQUIRE_GPU=1 ./tests/run-tests.sh "${bins[@]}"
}

sub_pasm_run() {  # CSV RUNDIR [extra pasm run options]
    local csv=$1 dir=$2
    shift 2
    rm -rf "$dir"
    build-gpu/pasm run --help | sed -n '1,200p' | grep -q -- '--device' ||
        echo "warning: pasm run --help does not list --device"
    local t0 t1
    t0=$(date +%s.%N)
    build-gpu/pasm run --data "$csv" --out "$dir" --device cuda --precision bf16 --width 64 \
        --epochs 20 --rounds 2 --round-epochs 10 --attack grad --batch 128 "$@"
    local rc=$?
    t1=$(date +%s.%N)
    [ $rc -eq 0 ] && echo "pasm_run_wall_s $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')"
    return "$rc"
}

sub_torch_run() {  # CSV SCALE
    local t0 t1 rc
    t0=$(date +%s.%N)
    "$PY" bench/torch_gpu_bench.py run --data "$1" --epochs-scale "$2"
    rc=$?
    t1=$(date +%s.%N)
    [ $rc -eq 0 ] && echo "torch_run_wall_s $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')"
    return "$rc"
}

if [ "${1:-}" = "--sub" ]; then
    shift
    fn=sub_$1
    shift
    "$fn" "$@"
    exit $?
fi

# ------------------------------------------------------------------ driver

if [ $# -ne 2 ] || { [ "$2" != quick ] && [ "$2" != full ] && [ "$2" != tests ]; }; then
    sed -n '2,/^set -u/p' "$SELF" | sed '$d' >&2
    exit 2
fi
OUTDIR=$1
MODE=$2
mkdir -p "$OUTDIR/logs" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
STEPS=$OUTDIR/steps.tsv
: > "$STEPS"
START=$(date +%s)
case $MODE in
quick) BUDGET=${GPU_CHECK_BUDGET:-285} ;;
tests) BUDGET=${GPU_CHECK_BUDGET:-150} ;;
*) BUDGET=${GPU_CHECK_BUDGET:-530} ;;
esac
DEADLINE=$((START + BUDGET))
FAILED=0

# PyTorch's python
if [ -z "${PY:-}" ]; then
    for p in python3 python /opt/conda/bin/python3 /usr/local/bin/python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
            PY=$(command -v "$p"); break
        fi
    done
fi
PY=${PY:-}

# CUDA and cuDNN
if [ -z "${CUDA_HOME:-}" ]; then
    if [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_HOME=/usr/local/cuda
    elif command -v nvcc >/dev/null 2>&1; then CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    fi
fi
NVCC=${NVCC:-}
if [ -z "$NVCC" ]; then
    if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then NVCC=$CUDA_HOME/bin/nvcc
    else NVCC=$(command -v nvcc 2>/dev/null || true)
    fi
fi
CUDNN_LIB=
if [ -z "${CUDNN_HOME:-}" ]; then
    for d in "${CUDA_HOME:-/usr/local/cuda}" /usr/local/cuda /usr; do
        for l in lib64 lib lib/x86_64-linux-gnu; do
            if [ -e "$d/$l/libcudnn.so" ] && { [ -f "$d/include/cudnn.h" ] || [ -f "$d/include/x86_64-linux-gnu/cudnn.h" ]; }; then
                CUDNN_HOME=$d; CUDNN_LIB=$d/$l; break 2
            fi
        done
    done
fi
if [ -z "${CUDNN_HOME:-}" ] && [ -n "$PY" ]; then
    wheel=$("$PY" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
    if [ -n "$wheel" ] && [ -f "$wheel/include/cudnn.h" ]; then
        # the wheel has lib/libcudnn.so.9 but no libcudnn.so to link with
        shim=$REPO/.gpu-deps/cudnn
        rm -rf "$shim"; mkdir -p "$shim/lib"
        ln -s "$wheel/include" "$shim/include"
        for f in "$wheel"/lib/*.so*; do ln -s "$f" "$shim/lib/$(basename "$f")"; done
        so=$(cd "$wheel/lib" && ls libcudnn.so.* 2>/dev/null | head -1)
        [ -n "$so" ] && [ ! -e "$shim/lib/libcudnn.so" ] && ln -s "$wheel/lib/$so" "$shim/lib/libcudnn.so"
        CUDNN_HOME=$shim; CUDNN_LIB=$wheel/lib
    fi
fi
CUDNN_HOME=${CUDNN_HOME:-}
[ -z "$CUDNN_LIB" ] && [ -n "$CUDNN_HOME" ] && CUDNN_LIB=$CUDNN_HOME/lib64
DEPS_LIB=$REPO/.gpu-deps/root/usr/lib/x86_64-linux-gnu
# A system library folder stays off LD_LIBRARY_PATH: there it would come before
# PyTorch's own cuDNN (seen: PyTorch built for cuDNN 9.19 refusing the system's 9.14).
case $CUDNN_LIB in /usr/lib/x86_64-linux-gnu | /usr/lib | /usr/lib64 | /lib/x86_64-linux-gnu) CUDNN_LIB= ;; esac
LD_LIBRARY_PATH=$DEPS_LIB:$DEPS_LIB/openblas-openmp${CUDNN_LIB:+:$CUDNN_LIB}${CUDA_HOME:+:$CUDA_HOME/lib64}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# exported only when known (an empty CUDA_HOME would defeat the Makefile's ?=)
export PY NVCC LD_LIBRARY_PATH REPO
if [ -n "${CUDA_HOME:-}" ]; then export CUDA_HOME; else unset CUDA_HOME; fi
if [ -n "$CUDNN_HOME" ]; then export CUDNN_HOME; else unset CUDNN_HOME; fi

now() { date +%s; }

# step NAME LIMIT_S required|optional [needs:STEP,...] COMMAND...
step() {
    local name=$1 limit=$2 kind=$3
    shift 3
    local needs=""
    case ${1:-} in needs:*) needs=${1#needs:}; shift ;; esac
    local log=$OUTDIR/logs/$name.log
    local dep
    for dep in ${needs//,/ }; do
        if ! grep -q "^$dep	pass" "$STEPS"; then
            echo "not run: step $dep did not pass" > "$log"
            record "$name" "not-run" 0 "$kind" "needs $dep"
            return 1
        fi
    done
    local left=$((DEADLINE - $(now) - 5)) t=$limit cut=0
    [ $left -lt $t ] && t=$left cut=1
    if [ $t -lt 15 ]; then
        echo "skipped: $left s left of the $MODE budget" > "$log"
        record "$name" "skipped" 0 "$kind" "time budget"
        return 1
    fi
    echo "== $name (limit ${t}s): $*" | tee -a "$OUTDIR/gpu-check.log"
    local t0 rc status
    t0=$(date +%s.%N)
    { echo "\$ $*"; echo "limit ${t}s, $(date -u '+%H:%M:%S UTC')"; } > "$log"
    timeout -k 5 "$t" "$@" >> "$log" 2>&1
    rc=$?
    local secs
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    case $rc in
    0) status=pass ;;
    124|137) status=timeout
        # an optional step the budget cut short (it ran to its shortened
        # limit; a crash or the OOM killer's 137 comes sooner): not failed
        if [ $cut = 1 ] && [ "$kind" = optional ] &&
            awk -v s="$secs" -v t="$t" 'BEGIN {exit !(s >= t - 1)}'; then
            status="cut"
        fi ;;
    *) status=fail ;;
    esac
    echo "exit $rc after ${secs}s" >> "$log"
    record "$name" "$status" "$secs" "$kind" "exit $rc"
    tail -3 "$log" | sed 's/^/   /' | tee -a "$OUTDIR/gpu-check.log"
    [ $status = pass ]
}

record() {  # NAME STATUS SECONDS KIND NOTE
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$STEPS"
    if [ "$2" != pass ] && { [ "$4" = required ] || [ "$2" = fail ] || [ "$2" = timeout ]; }; then
        FAILED=1
    fi
}

# Training again with one switch changed each (optional rows, after the
# required steps, as the time budget allows): what each costs or buys
training_variants() {
    local b
    for b in 128 512; do
        # cuDNN's workspace held to 32 MiB a layer (256 by default)
        step pasm_train_ws32_b$b 45 optional needs:build env PASM_CUDA_ALLOC_LOG=1 \
            PASM_CUDA_WORKSPACE_MB=32 build-gpu/bench/pasm_bench gpu-train 64 $b bf16
        # batch norm's and the ReLU's loops one element an index instead of
        # sixteen bytes (PASM_CUDA_VECTOR=0): what the vector loops buy
        step pasm_train_scalar_b$b 45 optional needs:build env PASM_CUDA_VECTOR=0 \
            build-gpu/bench/pasm_bench gpu-train 64 $b bf16
        # algorithms ranked by cuDNN's measured times (cudnnFind*), not its
        # heuristics: each layer's pick and the fastest in the log
        step pasm_train_find_b$b 50 optional needs:build env PASM_CUDA_CONV_FIND=1 \
            PASM_CUDA_CONV_LOG=1 PASM_CUDA_ALLOC_LOG=1 build-gpu/bench/pasm_bench gpu-train 64 \
            $b bf16
    done
}

SUB=(bash "$SELF" --sub)
TORCH=("${PY:-no-pytorch-python-found}" bench/torch_gpu_bench.py)
ATTACK_MODEL=$REPO/.gpu-data/attack_w64.safetensors
TIMING_CSV=$REPO/.gpu-data/fer-full-size.csv
# faces per attack: enough for a second or more at PyTorch's speed on an H200
N_GRAD=28709 N_ITER=8192 N_DE=1024

echo "gpu-check $MODE, budget ${BUDGET}s, into $OUTDIR" | tee "$OUTDIR/gpu-check.log"
step env 60 required "${SUB[@]}" env
step deps 60 required "${SUB[@]}" deps
step data 60 required "${SUB[@]}" data
BUILD_LIMIT=240
[ "$MODE" = full ] && BUILD_LIMIT=200
step build $BUILD_LIMIT required needs:deps "${SUB[@]}" build

if [ "$MODE" = quick ] || [ "$MODE" = tests ]; then
    # the GPU's own tests, PyTorch's parity case on the GPU, --device end to end
    step tests_cuda 150 required needs:build,data "${SUB[@]}" tests cuda nn/test_parity \
        cli/test_device_cli
    # PASM_CUDA_ALLOC_LOG: every allocation in the log, and what cuDNN's
    # workspaces add to the training arena; PASM_CUDA_CONV_LOG: each layer's
    # algorithms and their workspace (chosen once, before the timed epoch)
    for b in 128 512; do
        step pasm_train_b$b 45 required needs:build env PASM_CUDA_ALLOC_LOG=1 \
            PASM_CUDA_CONV_LOG=1 build-gpu/bench/pasm_bench gpu-train 64 $b bf16
    done
    step torch_train_eager_bf16 60 required "${TORCH[@]}" train 64 128,512 eager_bf16
    [ "$MODE" = tests ] && training_variants
fi
if [ "$MODE" = quick ]; then
    step attack_model 30 required needs:build build-gpu/bench/attack_bench model 64 "$ATTACK_MODEL"
    step pasm_attack_grad 30 required needs:attack_model,data \
        build-gpu/bench/attack_bench grad "$ATTACK_MODEL" "$TIMING_CSV" $N_GRAD --device cuda \
        --precision bf16
    step pasm_attack_iter 30 required needs:attack_model,data \
        build-gpu/bench/attack_bench iter "$ATTACK_MODEL" "$TIMING_CSV" $N_ITER --device cuda \
        --precision bf16
    # de on windows, required: were they not to come up (cuDNN, memory), the
    # scorer would fall back to whole forwards and this row would not say so
    step pasm_attack_de 30 required needs:attack_model,data env PASM_PATCH=require \
        build-gpu/bench/attack_bench de "$ATTACK_MODEL" "$TIMING_CSV" $N_DE --device cuda \
        --precision bf16
    # de with whole forwards (no windows): what the windows gain on the GPU
    step pasm_attack_de_whole 30 optional needs:attack_model,data env PASM_PATCH=0 \
        build-gpu/bench/attack_bench de "$ATTACK_MODEL" "$TIMING_CSV" $N_DE --device cuda \
        --precision bf16 --tag de_whole
    step torch_attacks 75 required needs:attack_model,data \
        "${TORCH[@]}" grad,iter,de "$ATTACK_MODEL" "$TIMING_CSV" $N_GRAD,$N_ITER,$N_DE \
        --precision bf16
    # the training loss against PyTorch's: the same checkpoint, batches and SGD, fp32
    # (NVIDIA_TF32_OVERRIDE=0: no TF32 even where cuDNN falls back to its default math)
    step curve_pasm 30 optional needs:attack_model,data env NVIDIA_TF32_OVERRIDE=0 \
        build-gpu/bench/pasm_bench curve "$ATTACK_MODEL" "$TIMING_CSV" 20 128 cuda
    step curve_torch 45 optional needs:attack_model,data env NVIDIA_TF32_OVERRIDE=0 \
        "${TORCH[@]}" curve "$ATTACK_MODEL" "$TIMING_CSV" 20 128
    # GPU_CHECK_CLI_TESTS="" leaves the CLI tests out (they run pasm on the CPU too)
    if [ -n "${GPU_CHECK_CLI_TESTS-}" ]; then
        # shellcheck disable=SC2086  # a list of test folders
        step tests_cli 90 required needs:build,data "${SUB[@]}" tests ${GPU_CHECK_CLI_TESTS-}
    fi
    training_variants
    step torch_train_fp32 40 optional "${TORCH[@]}" train 64 128,512 fp32
    step torch_train_compiled_bf16 90 optional "${TORCH[@]}" train 64 128 compiled_bf16
elif [ "$MODE" = full ]; then
    FULL=none
    if [ -f .gpu-data/fer2013.part2.xz ]; then
        step full_data 90 required "${SUB[@]}" fulldata
        if grep -q '^full_data full' "$OUTDIR/logs/full_data.log"; then FULL=full
        elif grep -q '^full_data part2' "$OUTDIR/logs/full_data.log"; then FULL=part2
        fi
    else
        echo "no .gpu-data/fer2013.part2.xz: no accuracy run" > "$OUTDIR/logs/full_data.log"
        record full_data not-run 0 optional "no parts carried"
    fi
    RUN_CSV=$TIMING_CSV
    [ $FULL = full ] && RUN_CSV=$REPO/.gpu-data/fer2013.csv
    echo "$FULL" > "$OUTDIR/full_data.txt"
    echo "$RUN_CSV" > "$OUTDIR/run_csv.txt"
    # pasm's run: the timing (and, on full FER2013, the accuracy run); its folder
    # stays out of OUTDIR (checkpoints are hundreds of MiB), its summaries are copied
    step pasm_run 240 required needs:build,data "${SUB[@]}" pasm_run "$RUN_CSV" "$REPO/.gpu-data/run-timing"
    mkdir -p "$OUTDIR/run"
    cp .gpu-data/run-timing/summary.* .gpu-data/run-timing/run.json .gpu-data/run-timing/*.metrics.jsonl \
        "$OUTDIR/run/" 2>/dev/null
    # PyTorch's run on the same CSV, with fewer epochs (stated, and extrapolated
    # in the table) when the budget left would not hold all of them
    left=$((DEADLINE - $(now) - 10))
    scale=$(python3 -c "print(1.0 if $left >= 230 else max(0.1, round(($left - 40) / 190.0, 2)))")
    echo "$scale" > "$OUTDIR/torch_run_scale.txt"
    step torch_run 240 required "${SUB[@]}" torch_run "$RUN_CSV" "$scale"
    if [ $FULL = part2 ]; then
        step pasm_run_part2 200 optional needs:build "${SUB[@]}" pasm_run \
            "$REPO/.gpu-data/fer2013-part2.csv" "$REPO/.gpu-data/run-part2"
        mkdir -p "$OUTDIR/run-part2"
        cp .gpu-data/run-part2/summary.* .gpu-data/run-part2/run.json "$OUTDIR/run-part2/" 2>/dev/null
    fi
fi

python3 bench/gpu_table.py "$OUTDIR" "$MODE" > "$OUTDIR/gpu-table.md" 2> "$OUTDIR/logs/table.log" ||
    { echo "gpu_table.py failed (logs/table.log)" >> "$OUTDIR/gpu-table.md"; FAILED=1; }
echo "total $(($(now) - START))s, $(grep -c '	pass	' "$STEPS") steps passed, failed: $FAILED" |
    tee -a "$OUTDIR/gpu-check.log"
# every log in one file: the device tool brings back at most 8 files a call
# (run the script with OUTDIR outside $OUT and copy gpu-table.md, steps.tsv,
# gpu-check.log and logs.tar.gz there)
(cd "$OUTDIR" && tar -czf logs.tar.gz logs $(ls -d run run-part2 2>/dev/null))
cat "$OUTDIR/gpu-table.md"
exit $FAILED
