#!/usr/bin/env python3
"""FER2013 in forms that travel to the GPU machine (scripts/gpu-data.sh and
bench/gpu-check.sh call this; python3 standard library only).

    gpu_data.py encode CSV.GZ OUT1 OUT2
        full FER2013 as two independent parts, each the xz of one byte per face
        (emotion | usage << 4) followed by its 48x48 uint8 pixels: part 1 the first
        17,944 rows (Training only), part 2 the other 17,943 (the rest of Training,
        then PublicTest and PrivateTest), about 30.5 MiB each (the CSV's gzip is
        92 MiB; one device call carries 64 MiB in all)
    gpu_data.py decode OUT.csv PART [PART]
        the CSV again, byte for byte (parts in order); with part 2 alone, a smaller
        FER2013 (10,765 Training faces, both test splits whole)
    gpu_data.py repeat MINI.csv[.gz] OUT.csv [--train 28709 --val 3589 --test 3589]
        a full-size timing workload: each split's rows of MINI repeated in order
        until the split has the given number of faces
    gpu_data.py sha256 PATH
"""

import gzip
import hashlib
import lzma
import sys

SIZE = 48 * 48
SPLIT_ROW = 17944
HEADER = b"emotion,pixels,Usage\n"
USAGES = [b"Training", b"PublicTest", b"PrivateTest"]
# the uncompressed fer2013.csv (../shared/data/fer2013/MANIFEST.txt)
FULL_SHA256 = "a6b72466f0155c779897a186cf37ddd4ece289d1917a99607b890450fc6bb2de"


def open_text(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def encode(src, out1, out2):
    labels, pixels = bytearray(), bytearray()
    with open_text(src) as f:
        if f.readline() != HEADER:
            sys.exit("gpu_data: %s: not a FER2013 CSV" % src)
        for line in f:
            e, p, u = line.rstrip(b"\n").split(b",")
            labels.append(int(e) | USAGES.index(u) << 4)
            row = bytes(int(v) for v in p.split(b" "))
            if len(row) != SIZE:
                sys.exit("gpu_data: %s: a row with %d pixels" % (src, len(row)))
            pixels += row
    n = len(labels)
    for out, lo, hi in ((out1, 0, SPLIT_ROW), (out2, SPLIT_ROW, n)):
        with lzma.open(out, "wb", preset=9 | lzma.PRESET_EXTREME) as f:
            f.write(labels[lo:hi])
            f.write(pixels[lo * SIZE:hi * SIZE])
    print("gpu_data: %d faces -> %s (%d), %s (%d)" % (n, out1, SPLIT_ROW, out2, n - SPLIT_ROW))


TEXT = [str(v).encode() for v in range(256)]


def decode(out, parts):
    h = hashlib.sha256()
    n_all = 0
    with open(out, "wb") as f:
        f.write(HEADER)
        h.update(HEADER)
        for part in parts:
            with lzma.open(part, "rb") as p:
                data = p.read()
            if len(data) % (SIZE + 1):
                sys.exit("gpu_data: %s: %d bytes, not whole faces" % (part, len(data)))
            n = len(data) // (SIZE + 1)
            labels, pixels = data[:n], memoryview(data)[n:]
            buf = []
            for i in range(n):
                row = pixels[i * SIZE:(i + 1) * SIZE]
                buf.append(b"%d,%s,%s\n" % (labels[i] & 15, b" ".join(map(TEXT.__getitem__, row)),
                                            USAGES[labels[i] >> 4]))
                if len(buf) == 2048 or i == n - 1:
                    chunk = b"".join(buf)
                    f.write(chunk)
                    h.update(chunk)
                    buf = []
            n_all += n
    digest = h.hexdigest()
    full = digest == FULL_SHA256
    print("gpu_data: %s: %d faces, sha256 %s%s" % (
        out, n_all, digest, " (= full FER2013's)" if full else ""))
    return full


def repeat(src, out, counts):
    rows = {u: [] for u in USAGES}
    with open_text(src) as f:
        if f.readline() != HEADER:
            sys.exit("gpu_data: %s: not a FER2013 CSV" % src)
        for line in f:
            u = line.rstrip(b"\n").rsplit(b",", 1)[1]
            rows[u].append(line if line.endswith(b"\n") else line + b"\n")
    with open(out, "wb") as f:
        f.write(HEADER)
        for u, want in zip(USAGES, counts):
            have = rows[u]
            if not have:
                sys.exit("gpu_data: %s has no %s rows" % (src, u.decode()))
            for i in range(want):
                f.write(have[i % len(have)])
    print("gpu_data: %s: %s" % (out, ", ".join(
        "%d %s" % (c, u.decode()) for u, c in zip(USAGES, counts))))


def main():
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "encode":
        encode(a[1], a[2], a[3])
    elif len(a) in (3, 4) and a[0] == "decode":
        full = decode(a[1], a[2:])
        if len(a) == 4 and not full:
            sys.exit("gpu_data: the two parts do not give full FER2013 (sha256 differs)")
    elif len(a) >= 3 and a[0] == "repeat":
        counts = [28709, 3589, 3589]
        for i, key in enumerate(("--train", "--val", "--test")):
            if key in a:
                counts[i] = int(a[a.index(key) + 1])
        repeat(a[1], a[2], counts)
    elif len(a) == 2 and a[0] == "sha256":
        h = hashlib.sha256()
        with open(a[1], "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        print(h.hexdigest())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
