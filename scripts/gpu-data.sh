#!/usr/bin/env bash
# Prepares .gpu-data/ here, from ../shared/data (or $PASM_SHARED/data), for the
# GPU machine, where ../shared does not travel and a device call carries at
# most 64 MiB (checkout, .gpu-deps/root.tar.xz and data together):
#
#   scripts/gpu-data.sh mini    .gpu-data/fer2013-mini.csv.gz (5 MiB; the GPU
#                               tests' data, and bench/gpu-check.sh repeats it
#                               into a full-size timing CSV there)
#   scripts/gpu-data.sh part1   .gpu-data/fer2013.part1.xz  } full FER2013 in two
#   scripts/gpu-data.sh part2   .gpu-data/fer2013.part2.xz  } parts of ~30.5 MiB
#   scripts/gpu-data.sh all     the three (and a check that the parts decode to
#                               fer2013.csv exactly: sha256 from MANIFEST.txt)
#
# The parts are not a split of fer2013.csv.gz (two halves of 46 MiB would not
# fit next to the checkout) but the faces as bytes, xz-compressed (61 MiB in
# all); scripts/gpu_data.py decodes them to the same CSV, byte for byte, and
# checks its sha256. Part 2 alone decodes to a smaller FER2013 (both test
# splits, 10,765 Training faces). The two-call dance is in bench/gpu-check.sh.
# Encoding the parts takes about 3 minutes here (2 cores); it is done once.
set -euo pipefail

cd "$(dirname "$0")/.."
SHARED=${PASM_SHARED:-../shared}
SRC=$SHARED/data/fer2013
OUT=.gpu-data
mkdir -p "$OUT"

mib() { du -sb "$@" | awk '{s += $1} END {printf "%.1f MiB", s / 1048576}'; }

sha_ok() {  # FILE NAME-IN-MANIFEST
    local want
    want=$(awk -v f="$2" '$1 == f {on = 1}
        on && /sha256/ {for (i = 1; i < NF; i++) if ($i == "sha256") {print $(i + 1); exit}}' \
        "$SRC/MANIFEST.txt")
    [ -n "$want" ] || { echo "gpu-data: no sha256 for $2 in MANIFEST.txt" >&2; return 1; }
    [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$want" ] ||
        { echo "gpu-data: $1: sha256 differs from MANIFEST.txt's" >&2; return 1; }
}

mini() {
    sha_ok "$SRC/fer2013-mini.csv" fer2013/fer2013-mini.csv
    gzip -9 -n -c "$SRC/fer2013-mini.csv" > "$OUT/fer2013-mini.csv.gz.tmp"
    mv "$OUT/fer2013-mini.csv.gz.tmp" "$OUT/fer2013-mini.csv.gz"
    echo "gpu-data: $OUT/fer2013-mini.csv.gz $(mib "$OUT/fer2013-mini.csv.gz")"
}

parts() {
    if [ -f "$OUT/fer2013.part1.xz" ] && [ -f "$OUT/fer2013.part2.xz" ] &&
        [ "$OUT/fer2013.part1.xz" -nt "$SRC/fer2013.csv.gz" ]; then
        return
    fi
    sha_ok "$SRC/fer2013.csv.gz" fer2013/fer2013.csv.gz
    python3 scripts/gpu_data.py encode "$SRC/fer2013.csv.gz" \
        "$OUT/fer2013.part1.xz.tmp" "$OUT/fer2013.part2.xz.tmp"
    mv "$OUT/fer2013.part1.xz.tmp" "$OUT/fer2013.part1.xz"
    mv "$OUT/fer2013.part2.xz.tmp" "$OUT/fer2013.part2.xz"
}

case ${1:-} in
mini) mini ;;
part1|part2)
    parts
    echo "gpu-data: $OUT/fer2013.$1.xz $(mib "$OUT/fer2013.$1.xz")" ;;
all)
    mini
    parts
    tmp=$(mktemp -d)
    python3 scripts/gpu_data.py decode "$tmp/fer2013.csv" "$OUT/fer2013.part1.xz" "$OUT/fer2013.part2.xz"
    rm -rf "$tmp"
    echo "gpu-data: part1 $(mib "$OUT/fer2013.part1.xz"), part2 $(mib "$OUT/fer2013.part2.xz")" ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2 ;;
esac
