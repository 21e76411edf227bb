#!/usr/bin/env bash
# Runs the pasm-vs-PyTorch benchmark and writes docs/benchmarks.md through
# bench/report.py. Three parts: the network measurements (bench/pasm_bench.c,
# bench/torch_bench.py), the point attacks (bench/attack_bench.c,
# bench/torch_attack.py) and checkpoint I/O (pasm_bench ckpt, torch_bench.py
# ckpt). BENCH_ONLY=nets, attacks or ckpt runs one part; the report keeps the
# other parts' text from the current docs/benchmarks.md. The networks' part
# runs BENCH_ROUNDS rounds (default 2) and every measurement waits
# BENCH_SETTLE seconds (default 2) first.
# Every measurement is its own process, so each peak RSS is that work's own.
# PyTorch comes from PyPI in the virtual environment $BENCH_VENV (created on
# first use; TORCH_PYTHON=path/to/python uses an existing one); when that
# fails the tables have pasm's column alone.
#   usage: bench/run.sh PASM_BENCH_BINARY [ATTACK_BENCH_BINARY]
set -u
BIN=$1
ABIN=${2:-$(dirname "$BIN")/attack_bench}
OUT=${BENCH_OUT:-build/bench}
VENV=${BENCH_VENV:-.venv-bench}
SHARED=${PASM_SHARED:-../shared}
FER=$SHARED/data/fer2013/fer2013.csv.gz
FACES=$SHARED/data/fer2013/fer2013-mini.csv
WIDTHS=${BENCH_WIDTHS:-16 64}
ONLY=${BENCH_ONLY:-all}
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
mkdir -p "$OUT"
PASM_TXT=$OUT/pasm.txt TORCH_TXT=$OUT/torch.txt
ATTACK_PASM_TXT=$OUT/attacks_pasm.txt ATTACK_TORCH_TXT=$OUT/attacks_torch.txt
CKPT_PASM_TXT=$OUT/ckpt_pasm.txt CKPT_TORCH_TXT=$OUT/ckpt_torch.txt
case $ONLY in
all | nets | attacks | ckpt) ;;
*) echo "bench: BENCH_ONLY=$ONLY: expected nets, attacks or ckpt" >&2; exit 2 ;;
esac

PY=""
if [ -n "${TORCH_PYTHON:-}" ]; then
    PY=$TORCH_PYTHON
elif [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    PY=$VENV/bin/python
    # the checkpoint part needs safetensors (and python/pasm_torch.py numpy)
    "$VENV/bin/python" -c 'import safetensors, numpy' 2>/dev/null ||
        "$VENV/bin/pip" install --quiet safetensors numpy ||
        echo "bench: no safetensors in $VENV; PyTorch's checkpoint rows will be empty" >&2
else
    echo "bench: creating $VENV with PyTorch from PyPI (once; a few GB)" >&2
    if python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet torch safetensors numpy &&
        "$VENV/bin/python" -c 'import torch'; then
        PY=$VENV/bin/python
    else
        echo "bench: no PyTorch; the table will have pasm's column alone" >&2
    fi
fi

loadavg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' ','; }

# Each measurement waits BENCH_SETTLE seconds (default 2) first: right after
# a PyTorch process that freed gigabytes, pasm's batch-1 inference once took
# 1.45 ms where it takes 0.98.
settle() { sleep "${BENCH_SETTLE:-2}"; }
pasm() { settle; echo "bench: pasm $*" >&2; "$BIN" "$@" >>"$PASM_TXT" || echo "bench: pasm $* failed" >&2; }
# Torch lines get "@FORMAT" appended to their key when a format is given.
torch_run() {
    [ -n "$PY" ] || return 0
    settle
    echo "bench: torch $*" >&2
    local tag=""
    [ $# -ge 3 ] && tag="@$3"
    "$PY" bench/torch_bench.py "$@" | sed "s/^\([a-z0-9_]*\) /\1$tag /" >>"$TORCH_TXT" ||
        echo "bench: torch $* failed" >&2
}

run_nets() {
    : >"$PASM_TXT"
    : >"$TORCH_TXT"
    echo "bench_date $(date +%Y-%m-%dT%H:%M)" >>"$PASM_TXT"
    echo "bench_load_before $(loadavg)" >>"$PASM_TXT"
    pasm sgemm
    for w in $WIDTHS; do pasm flops "$w"; done
    # BENCH_ROUNDS rounds (default 2), each measuring pasm and every PyTorch
    # format once, one after another: the machine's speed drifts by 5-30%
    # over minutes, so the report takes each side's best round
    # (bench/report.py), measured close in time to the other side's.
    echo "bench_rounds ${BENCH_ROUNDS:-2}" >>"$PASM_TXT"
    for round in $(seq "${BENCH_ROUNDS:-2}"); do
        echo "bench: round $round" >&2
        for w in $WIDTHS; do
            for mode in train infer128 infer1; do
                pasm "$mode" "$w"
                torch_run "$mode" "$w" nchw
                torch_run "$mode" "$w" channels_last
                if [ "${BENCH_TORCH_COMPILE:-0}" = 1 ]; then torch_run "$mode" "$w" compiled; fi
            done
        done
        # --precision bf16 against PyTorch's bf16 autocast (BENCH_BF16=0 skips)
        if [ "${BENCH_BF16:-1}" = 1 ]; then
            for w in $WIDTHS; do
                for mode in train infer128 infer1; do
                    pasm "$mode" "$w" bf16
                    torch_run "$mode" "$w" bf16
                done
            done
        fi
    done
    [ "${BENCH_BF16:-1}" = 1 ] && pasm bf16native
    if [ -f "$FER" ]; then
        pasm load "$FER"
        torch_run load "$FER"
    else
        echo "bench: $FER not found; no loading time" >&2
    fi
    torch_run version
    echo "bench_load_after $(loadavg)" >>"$PASM_TXT"
}

# ---- attacks: issue 9's sizes by default; BENCH_ATTACK_QUICK=1 is a smoke run
# of a minute or two. The face counts can be set one by one (the table shows
# the counts used): BENCH_ATTACK_FACES (grad and iter), BENCH_ITER_FACES_W64,
# BENCH_DE_FACES_W16, BENCH_DE_FACES_W64, BENCH_DE_PAPER_FACES.
if [ "${BENCH_ATTACK_QUICK:-0}" = 1 ]; then
    A_FACES=20 DE_FACES_16=8 DE_FACES_64=2 DE_POP=8 DE_GENS=2
    PAPER_FACES=2 PAPER_POP=16 PAPER_GENS=2
else
    A_FACES=500 DE_FACES_16=200 DE_FACES_64=20 DE_POP=32 DE_GENS=8
    PAPER_FACES=10 PAPER_POP=400 PAPER_GENS=10
fi
A_FACES=${BENCH_ATTACK_FACES:-$A_FACES}
# iter at width 64 runs on 100 faces unless asked (an untrained network is
# wrong on most faces, so nearly every face takes all 8 steps: 500 faces
# would take the whole benchmark past 20 minutes on 2 cores)
ITER_FACES_64=${BENCH_ITER_FACES_W64:-$((A_FACES < 100 ? A_FACES : 100))}
DE_FACES_16=${BENCH_DE_FACES_W16:-$DE_FACES_16}
DE_FACES_64=${BENCH_DE_FACES_W64:-$DE_FACES_64}
PAPER_FACES=${BENCH_DE_PAPER_FACES:-$PAPER_FACES}
A_THREADS=${BENCH_ATTACK_THREADS:-2}

# Both sides get the same arguments; pasm writes its points, which the
# PyTorch side compares with its own where the attack is deterministic.
attack() {
    local kind=$1 model=$2 n=$3 tag=$4
    shift 4
    local args=(--tag "$tag" --threads "$A_THREADS" "$@")
    echo "bench: pasm attack $kind $(basename "$model") $n ${args[*]}" >&2
    "$ABIN" "$kind" "$model" "$FACES" "$n" "${args[@]}" --points "$OUT/points_$tag.csv" \
        >>"$ATTACK_PASM_TXT" || echo "bench: pasm attack $kind failed" >&2
    [ -n "$PY" ] || return 0
    local cmp=()
    [ "$kind" != de ] && [ -f "$OUT/points_$tag.csv" ] && cmp=(--compare "$OUT/points_$tag.csv")
    echo "bench: torch attack $kind $(basename "$model") $n ${args[*]}" >&2
    "$PY" bench/torch_attack.py "$kind" "$model" "$FACES" "$n" "${args[@]}" \
        --format "${BENCH_ATTACK_FORMAT:-channels_last}" "${cmp[@]}" >>"$ATTACK_TORCH_TXT" ||
        echo "bench: torch attack $kind failed" >&2
}

run_attacks() {
    : >"$ATTACK_PASM_TXT"
    : >"$ATTACK_TORCH_TXT"
    if [ ! -f "$FACES" ]; then
        echo "bench: $FACES not found; no attack timings" >&2
        return 0
    fi
    local t0=$SECONDS
    {
        echo "attacks_date $(date +%Y-%m-%dT%H:%M)"
        echo "attacks_load_before $(loadavg)"
        echo "attacks_threads $A_THREADS"
    } >>"$ATTACK_PASM_TXT"
    for w in $WIDTHS; do
        # BENCH_ATTACK_MODEL_W16=path attacks a trained checkpoint instead
        local var=BENCH_ATTACK_MODEL_W$w model=$OUT/attack_w$w.safetensors
        if [ -n "${!var:-}" ]; then
            model=${!var}
            echo "attacks_model_w$w trained" >>"$ATTACK_PASM_TXT"
        elif ! "$ABIN" model "$w" "$model"; then
            echo "bench: cannot write $model" >&2
            continue
        fi
        local de_faces=$DE_FACES_16 iter_faces=$A_FACES
        [ "$w" -ge 64 ] && de_faces=$DE_FACES_64 iter_faces=$ITER_FACES_64
        attack grad "$model" "$A_FACES" grad
        attack iter "$model" "$iter_faces" iter
        attack de "$model" "$de_faces" de --pop "$DE_POP" --gens "$DE_GENS"
        [ "$w" = 16 ] &&
            attack de "$model" "$PAPER_FACES" de_paper --pop "$PAPER_POP" --gens "$PAPER_GENS"
    done
    [ -n "$PY" ] && "$PY" bench/torch_bench.py version >>"$ATTACK_TORCH_TXT"
    echo "attacks_load_after $(loadavg)" >>"$ATTACK_PASM_TXT"
    echo "attacks_total_s $((SECONDS - t0))" >>"$ATTACK_PASM_TXT"
}

# ---- checkpoints: save and load of each width's network, both sides, in
# $OUT/ckpt (its filesystem is in the table: fsync's cost depends on it);
# PyTorch's file goes to pasm and pasm's to PyTorch (strict load_state_dict).
run_ckpt() {
    : >"$CKPT_PASM_TXT"
    : >"$CKPT_TORCH_TXT"
    local dir=$OUT/ckpt
    rm -rf "$dir" && mkdir -p "$dir" || return 0
    {
        echo "ckpt_date $(date +%Y-%m-%dT%H:%M)"
        echo "ckpt_load_before $(loadavg)"
        echo "ckpt_fs $(stat -f -c %T "$dir")"
    } >>"$CKPT_PASM_TXT"
    for w in $WIDTHS; do
        if [ -n "$PY" ]; then
            echo "bench: torch ckpt $w" >&2
            "$PY" bench/torch_bench.py ckpt "$w" "$dir" >>"$CKPT_TORCH_TXT" ||
                echo "bench: torch ckpt $w failed" >&2
        fi
        pasm ckpt "$w" "$dir"
        if [ -n "$PY" ]; then
            "$PY" bench/torch_bench.py ckpt-read "$w" "$dir" >>"$CKPT_TORCH_TXT" ||
                echo "bench: PyTorch could not load pasm's width-$w checkpoint" >&2
        fi
    done
    [ -n "$PY" ] && "$PY" bench/torch_bench.py version >>"$CKPT_TORCH_TXT"
    echo "ckpt_load_after $(loadavg)" >>"$CKPT_PASM_TXT"
    rm -rf "$dir"
}

case $ONLY in all | nets) run_nets ;; esac
case $ONLY in all | attacks) run_attacks ;; esac
# pasm() appends to $PASM_TXT: the checkpoint part points it at its own file
case $ONLY in all | ckpt) PASM_TXT=$CKPT_PASM_TXT run_ckpt ;; esac
BENCH_APPENDIX=${BENCH_APPENDIX:-bench/notes.md} python3 bench/report.py --pasm "$PASM_TXT" \
    --torch "$TORCH_TXT" --attacks-pasm "$ATTACK_PASM_TXT" --attacks-torch "$ATTACK_TORCH_TXT" \
    --ckpt-pasm "$CKPT_PASM_TXT" --ckpt-torch "$CKPT_TORCH_TXT" --only "$ONLY" --out docs/benchmarks.md
