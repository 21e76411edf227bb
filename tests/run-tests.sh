#!/usr/bin/env bash
# Runs each test binary, then prints one closing line: "N passed, N failed".
# Counts come from cmocka's own summary lines of each binary.
set -u
passed=0; failed=0; broken=()
# Under the sanitizers the direct AVX-512 convolution is ~20x slower (its
# register tiles instrumented access by access): the op and network tests
# (tests/ops/, tests/nn/: its shapes, and the memory each mode plans with
# it) run it there, and everything else runs its convolutions through
# im2col + OpenBLAS (PASM_CONV_DIRECT=0), which the normal build's run of
# the same tests leaves to the direct kernel. Likewise the attacks'
# candidates on windows (src/nn/patch.c), whose gathers cost more than they
# save when instrumented: the network, attack and GPU tests (tests/nn/,
# tests/pasm/, tests/cuda/) run them under the sanitizers, everything else
# whole forwards (PASM_PATCH=0).
# Every GPU training network built on the host emulation checks its memory
# plan (src/cuda/net.c, PASM_CUDA_PLAN_CHECK: tensors kept apart and poisoned
# outside their lifetimes); a real GPU ignores it.
export PASM_CUDA_PLAN_CHECK=${PASM_CUDA_PLAN_CHECK-1}
times=()
for t in "$@"; do
  echo "=== $t"
  start=$(date +%s.%N)
  if [ "${PASM_SANITIZED:-0}" = 1 ] && [[ $t != */tests/ops/* && $t != */tests/nn/* ]]; then
    patch=0
    [[ $t == */tests/pasm/* || $t == */tests/cuda/* ]] && patch=1
    out=$(PASM_CONV_DIRECT=0 PASM_PATCH=$patch "$t" 2>&1); rc=$?
  else
    out=$("$t" 2>&1); rc=$?
  fi
  printf '%s\n' "$out"
  times+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%7.1f", b - a}') s  $t")
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p)); failed=$((failed + f))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); broken+=("$t (exit $rc)"); fi
done
echo "=== seconds per test binary, slowest first"
printf '%s\n' "${times[@]+"${times[@]}"}" | sort -rn | head -12
for b in "${broken[@]+"${broken[@]}"}"; do echo "broken: $b"; done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
