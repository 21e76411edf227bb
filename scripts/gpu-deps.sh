#!/usr/bin/env bash
# The Debian libraries pasm's build needs that the GPU machine lacks (OpenBLAS,
# cJSON, cmocka, libjpeg, libpng, zlib; headers and shared libraries), unpacked
# into a folder of the checkout instead of / (the GPU machine can install
# nothing and reaches no network).
#
#   scripts/gpu-deps.sh                here (Debian 12, apt): apt-get download the
#                                      .debs into .gpu-deps/debs/, unpack them into
#                                      .gpu-deps/root/, trim it (no static libraries,
#                                      docs, LAPACK), pack it as .gpu-deps/root.tar.xz
#                                      (the file a device call carries, ~6 MiB), and
#                                      check that a test program compiles, links and
#                                      runs against .gpu-deps/root alone
#   scripts/gpu-deps.sh --unpack-only  there: rebuild .gpu-deps/root/ from
#                                      .gpu-deps/root.tar.xz (or, without it, from
#                                      .gpu-deps/debs/*.deb); no network
#   scripts/gpu-deps.sh --check        only the test program against .gpu-deps/root
#
# Layout of .gpu-deps/root (what `make DEPS_ROOT=$PWD/.gpu-deps/root` expects):
#   usr/include/{cblas.h via x86_64-linux-gnu/openblas-openmp/, cjson/cJSON.h, png.h,
#                jpeglib.h, zlib.h, cmocka.h}
#   usr/lib/x86_64-linux-gnu/{libcjson,libcmocka,libjpeg,libpng16,libz,libgfortran,
#                libquadmath}.so*
#   usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so{,.0} (real links: Debian's
#                /usr/lib/x86_64-linux-gnu/libopenblas.so.0 is an update-alternatives
#                link made by the postinst, which dpkg -x does not run)
# Link with -Wl,--disable-new-dtags (or run with LD_LIBRARY_PATH=the two lib
# folders): a DT_RUNPATH, ld's default, is not searched for libopenblas.so.0's
# own dependency libgfortran.so.5, a DT_RPATH is.
# Every link inside points inside the root (relative); Debian 12's /lib files
# (zlib) are moved under usr/lib. libgomp (OpenMP) is not shipped: it comes with
# the compiler there.
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=.gpu-deps
ROOT=$DIR/root
TARBALL=$DIR/root.tar.xz
MULTI=x86_64-linux-gnu
PKGS=(libopenblas-openmp-dev libopenblas0-openmp libgfortran5 libquadmath0
      libcjson-dev libcjson1 libcmocka-dev libcmocka0
      libjpeg62-turbo-dev libjpeg62-turbo libjpeg-dev
      libpng-dev libpng16-16 zlib1g-dev zlib1g)

mib() { du -sb "$@" | awk '{s += $1} END {printf "%.1f MiB", s / 1048576}'; }

# A .deb without dpkg: an ar archive holding data.tar.{xz,zst,gz}.
extract_deb() {
    local deb=$1 dest=$2
    if command -v dpkg-deb >/dev/null 2>&1; then
        dpkg-deb -x "$deb" "$dest"
        return
    fi
    python3 - "$deb" "$dest" <<'PY'
import io, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
data = open(deb, "rb").read()
assert data[:8] == b"!<arch>\n", deb
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    pos += 60 + size + (size & 1)
    if name.startswith("data.tar"):
        if name.endswith(".zst"):
            sys.exit("%s: zstd data needs dpkg-deb" % deb)
        tarfile.open(fileobj=io.BytesIO(body)).extractall(dest)
        break
else:
    sys.exit("%s: no data.tar" % deb)
PY
}

# Links inside the root made relative and pointing inside it; /lib merged into
# /usr/lib; what the build does not need removed.
fixup() {
    if [ -d "$ROOT/lib" ] && [ ! -L "$ROOT/lib" ]; then
        mkdir -p "$ROOT/usr/lib"
        cp -a "$ROOT/lib/." "$ROOT/usr/lib/"
        rm -rf "${ROOT:?}/lib"
    fi
    rm -rf "${ROOT:?}/usr/share" "${ROOT:?}/usr/bin" "${ROOT:?}/etc" \
        "$ROOT/usr/lib/$MULTI/cmake" "$ROOT/usr/lib/$MULTI/openblas-openmp/cmake"
    find "$ROOT" -name '*.a' -delete
    rm -f "$ROOT/usr/lib/$MULTI/openblas-openmp/"{libblas,liblapack}.so*
    local link target base
    while IFS= read -r -d '' link; do
        target=$(readlink "$link")
        case $target in
        /*)
            base=$(basename "$target")
            if [ -e "$(dirname "$link")/$base" ] || [ -L "$(dirname "$link")/$base" ]; then
                ln -sfn "$base" "$link"
            else
                echo "gpu-deps: $link -> $target points outside the root" >&2
                exit 1
            fi ;;
        esac
    done < <(find "$ROOT" -type l -print0)
    # the alternatives links Debian's postinst would have made
    local ob=$ROOT/usr/lib/$MULTI/openblas-openmp real
    real=$(cd "$ob" && ls libopenblasp-r*.so 2>/dev/null | head -1)
    [ -n "$real" ] || { echo "gpu-deps: no libopenblasp-r*.so in $ob" >&2; exit 1; }
    ln -sfn "$real" "$ob/libopenblas.so"
    ln -sfn "$real" "$ob/libopenblas.so.0"
    # dangling links are errors
    local bad
    bad=$(find "$ROOT" -xtype l)
    if [ -n "$bad" ]; then echo "gpu-deps: dangling links: $bad" >&2; exit 1; fi
}

check() {
    local tmp abs
    tmp=$(mktemp -d)
    abs=$(cd "$ROOT" && pwd)
    cat > "$tmp/t.c" <<'C'
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cblas.h>
#include <cJSON.h>
#include <png.h>
#include <jpeglib.h>
#include <zlib.h>
#include <cmocka.h>
static void t_sgemm(void **state) {
    (void)state;
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {0};
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2);
    assert_true(c[0] == 1 && c[3] == 4);
}
static void t_libs(void **state) {
    (void)state;
    cJSON *o = cJSON_Parse("{\"a\": 1}");
    assert_non_null(o);
    assert_int_equal(cJSON_GetObjectItem(o, "a")->valueint, 1);
    cJSON_Delete(o);
    assert_non_null(zlibVersion());
    assert_true(png_access_version_number() > 10600);
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr e;
    d.err = jpeg_std_error(&e);
    jpeg_create_decompress(&d);
    jpeg_destroy_decompress(&d);
}
int main(void) {
    printf("openblas %s, cJSON %s, libpng %s, zlib %s, jpeg %d\n", openblas_get_config(),
           cJSON_Version(), png_get_libpng_ver(NULL), zlibVersion(), JPEG_LIB_VERSION);
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_sgemm), cmocka_unit_test(t_libs)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
C
    local cc=${CC:-cc} libs=("$abs/usr/lib/$MULTI" "$abs/usr/lib/$MULTI/openblas-openmp") flags=()
    local d
    for d in "${libs[@]}"; do flags+=("-L$d" "-Wl,-rpath,$d"); done
    # DT_RPATH, not DT_RUNPATH: a runpath is not searched for the libraries'
    # own dependencies (libopenblas.so.0 -> libgfortran.so.5), an rpath is
    flags+=("-Wl,--disable-new-dtags")
    # the Makefile's DEPS_ROOT include list
    "$cc" -std=c11 -fopenmp -Wall -Werror -I"$abs/usr/include" -I"$abs/usr/include/cjson" \
        -I"$abs/usr/include/$MULTI" -I"$abs/usr/include/$MULTI/openblas-openmp" \
        -o "$tmp/t" "$tmp/t.c" "${flags[@]}" \
        -lopenblas -lcjson -ljpeg -lpng -lz -lcmocka -lm -lpthread
    # the headers came from the root
    "$cc" -std=c11 -M -I"$abs/usr/include" -I"$abs/usr/include/cjson" \
        -I"$abs/usr/include/$MULTI" -I"$abs/usr/include/$MULTI/openblas-openmp" "$tmp/t.c" \
        | tr ' \\' '\n\n' | grep -E '/(cblas|cJSON|png|jpeglib|zlib|cmocka)\.h$' > "$tmp/h"
    if grep -v "^$abs/" "$tmp/h"; then echo "gpu-deps: headers above not from $abs" >&2; exit 1; fi
    # and the libraries too
    if command -v ldd >/dev/null 2>&1; then
        ldd "$tmp/t" | grep -E 'lib(openblas|cjson|jpeg|png16|z|cmocka|gfortran)\.' > "$tmp/l"
        cat "$tmp/l"
        if grep -v "=> $abs/" "$tmp/l"; then echo "gpu-deps: libraries above not from $abs" >&2; exit 1; fi
    fi
    OMP_NUM_THREADS=1 "$tmp/t"
    rm -rf "$tmp"
    echo "gpu-deps: check passed (headers and libraries from $abs)"
}

unpack_tarball() {
    rm -rf "$ROOT"; mkdir -p "$ROOT"
    if command -v xz >/dev/null 2>&1; then
        tar -C "$ROOT" -xJf "$TARBALL"
    else
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            "$TARBALL" "$ROOT"
    fi
}

unpack_debs() {
    rm -rf "$ROOT"; mkdir -p "$ROOT"
    local deb n=0
    for deb in "$DIR"/debs/*.deb; do
        [ -e "$deb" ] || break
        extract_deb "$deb" "$ROOT"; n=$((n + 1))
    done
    [ $n -gt 0 ] || { echo "gpu-deps: no .deb in $DIR/debs" >&2; exit 1; }
    fixup
}

case ${1:-} in
--unpack-only)
    if [ -f "$TARBALL" ]; then unpack_tarball; else unpack_debs; fi
    echo "gpu-deps: $ROOT unpacked ($(mib "$ROOT"))"
    ;;
--check)
    check
    ;;
"")
    mkdir -p "$DIR/debs"
    rm -f "$DIR"/debs/*.deb
    (cd "$DIR/debs" && apt-get download "${PKGS[@]}")
    unpack_debs
    tar -C "$ROOT" --owner=0 --group=0 --numeric-owner -cJf "$TARBALL" .
    check
    echo "gpu-deps: debs $(mib "$DIR/debs"), root $(mib "$ROOT"), $TARBALL $(mib "$TARBALL") (carry this one)"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2
    ;;
esac
