#!/usr/bin/env bash
# Runs the pasm-vs-PyTorch benchmark (see bench/pasm_bench.c and
# bench/torch_bench.py) and writes docs/benchmarks.md through bench/report.py.
# Every measurement is its own process, so each peak RSS is that work's own.
# PyTorch comes from PyPI in the virtual environment $BENCH_VENV (created on
# first use); when that fails the table has pasm's column alone.
#   usage: bench/run.sh PASM_BENCH_BINARY
set -u
BIN=$1
OUT=${BENCH_OUT:-build/bench}
VENV=${BENCH_VENV:-.venv-bench}
SHARED=${PASM_SHARED:-../shared}
FER=$SHARED/data/fer2013/fer2013.csv.gz
WIDTHS=${BENCH_WIDTHS:-16 64}
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
mkdir -p "$OUT"
PASM_TXT=$OUT/pasm.txt TORCH_TXT=$OUT/torch.txt
: >"$PASM_TXT"
: >"$TORCH_TXT"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

PY=""
if [ -n "${TORCH_PYTHON:-}" ]; then
    PY=$TORCH_PYTHON
elif [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    PY=$VENV/bin/python
else
    echo "bench: creating $VENV with PyTorch from PyPI (once; a few GB)" >&2
    if python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet torch &&
        "$VENV/bin/python" -c 'import torch'; then
        PY=$VENV/bin/python
    else
        echo "bench: no PyTorch; the table will have pasm's column alone" >&2
    fi
fi

pasm() { echo "bench: pasm $*" >&2; "$BIN" "$@" >>"$PASM_TXT" || echo "bench: pasm $* failed" >&2; }
# Torch lines get "@FORMAT" appended to their key when a format is given.
torch_run() {
    [ -n "$PY" ] || return 0
    echo "bench: torch $*" >&2
    local tag=""
    [ $# -ge 3 ] && tag="@$3"
    "$PY" bench/torch_bench.py "$@" | sed "s/^\([a-z0-9_]*\) /\1$tag /" >>"$TORCH_TXT" ||
        echo "bench: torch $* failed" >&2
}

pasm sgemm
for w in $WIDTHS; do
    pasm flops "$w"
    for mode in train infer128 infer1; do
        pasm "$mode" "$w"
        torch_run "$mode" "$w" nchw
        torch_run "$mode" "$w" channels_last
    done
done
if [ -f "$FER" ]; then
    pasm load "$FER"
    torch_run load "$FER"
else
    echo "bench: $FER not found; no loading time" >&2
fi
torch_run version
BENCH_APPENDIX=${BENCH_APPENDIX:-bench/notes.md} python3 bench/report.py --pasm "$PASM_TXT" --torch "$TORCH_TXT" --load-before "$LOAD_BEFORE" \
    --load-after "$(cut -d' ' -f1-3 /proc/loadavg)" --out docs/benchmarks.md
