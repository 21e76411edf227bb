#!/usr/bin/env python3
"""Turns the "key value" lines of bench/pasm_bench.c and bench/torch_bench.py
into docs/benchmarks.md (and prints the table). Standard library only, so the
table is written without PyTorch too (pasm's column alone).

Torch keys may carry "@nchw" / "@channels_last": the faster format wins and
its own peak RSS is the one reported.
"""

import argparse
import datetime
import os
import platform


def read(path):
    vals = {}
    if not path or not os.path.exists(path):
        return vals
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                try:
                    vals[parts[0]] = float(parts[1])
                except ValueError:
                    vals[parts[0]] = parts[1]
    return vals


def best_format(vals, key, lower_is_better):
    """Collapses key@FMT entries into key, key_rss_mb and key_format."""
    cands = [(vals[k], k.split("@")[1]) for k in vals if k.startswith(key + "@")]
    if not cands:
        return
    value, fmt = (min if lower_is_better else max)(cands)
    vals[key] = value
    vals[key + "_format"] = fmt
    rss = vals.get("%s_rss_mb@%s" % (key, fmt))
    if rss is not None:
        vals[key + "_rss_mb"] = rss


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    keep = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"]
                    return ", ".join(k for k in keep if k in flags)
    except OSError:
        pass
    return ""


def fmt(v, digits):
    if v is None:
        return "-"
    return ("%%.%df" % digits) % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pasm", required=True)
    ap.add_argument("--torch")
    ap.add_argument("--out", required=True)
    ap.add_argument("--load-before", default="")
    ap.add_argument("--load-after", default="")
    args = ap.parse_args()
    p, t = read(args.pasm), read(args.torch)
    widths = sorted({int(k.split("_w")[1]) for k in p if k.startswith("flops_w")})
    for w in widths:
        best_format(t, "infer1_w%d" % w, True)
        best_format(t, "train_w%d" % w, False)
        best_format(t, "infer128_w%d" % w, False)
    peak = p.get("sgemm_gflops")
    have_torch = "torch_version" in t

    rows = []  # (label, pasm, torch, digits, higher_is_better, note)

    def add(label, key, digits, higher, note=""):
        rows.append((label, p.get(key), t.get(key), digits, higher, note or t.get(key + "_format", "")))

    for w in widths:
        add("training, width %d, batch 128 (images/s)" % w, "train_w%d" % w, 1, True)
        add("inference, width %d, batch 1 (ms, median)" % w, "infer1_w%d" % w, 2, False)
        add("inference, width %d, batch 128 (images/s)" % w, "infer128_w%d" % w, 1, True)
    for w in widths:
        for mode, name in (("train", "training"), ("infer1", "batch-1 inference"),
                           ("infer128", "batch-128 inference")):
            add("peak memory, %s w%d (MiB)" % (name, w), "%s_w%d_rss_mb" % (mode, w), 0, False)
    add("full FER2013 csv.gz load (s)", "load_s", 2, False)
    add("peak memory, FER2013 load (MiB)", "load_rss_mb", 0, False)

    share_rows = []
    if peak:
        for w in widths:
            f = p.get("flops_w%d" % w)
            if not f:
                continue
            for mode, mult, name in (("train", 3.0, "training"), ("infer128", 1.0, "batch-128 inference")):
                key = "%s_w%d" % (mode, w)
                vals = [None if d.get(key) is None else 100.0 * mult * f * d[key] / 1e9 / peak
                        for d in (p, t)]
                share_rows.append(("%s w%d (%% of sgemm peak)" % (name, w), vals[0], vals[1]))

    lines = []
    lines.append("# Benchmarks: pasm vs PyTorch on the CPU")
    lines.append("")
    lines.append("Written by `make bench` (bench/run.sh); do not edit by hand.")
    lines.append("")
    lines.append("- date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    lines.append("- CPU: %s (%d logical CPUs; %s)" % (cpu_model(), os.cpu_count() or 0, cpu_flags()))
    lines.append("- threads: 2 (OMP_NUM_THREADS=2, torch.set_num_threads(2))")
    lines.append("- PyTorch: %s" % (t["torch_version"] if have_torch else "not available (pasm alone)"))
    lines.append("- load average before / after the run: %s / %s" % (args.load_before, args.load_after))
    note = os.environ.get("BENCH_NOTE")
    if note:
        lines.append("- note: %s" % note)
    lines.append("- reproduce: `make bench` (from the repository root; shared data at $PASM_SHARED, "
                 "default ../shared)")
    lines.append("")
    lines.append("ResNet-18 at 48x48, 1 channel, 7 classes. Training: forward, cross-entropy, "
                 "backward and an SGD step (momentum 0.9, Nesterov, weight decay 5e-4) on one "
                 "fixed batch. PyTorch runs eagerly in NCHW and in channels-last, each in its "
                 "own process; the faster is shown (format in the last column). Peak memory is "
                 "each process's peak RSS (getrusage), including the libraries it loaded. "
                 "Ratio: how many times better pasm is (>1 = pasm faster / smaller).")
    lines.append("")
    lines.append("| measure | pasm | PyTorch | ratio | PyTorch format |")
    lines.append("| --- | ---: | ---: | ---: | --- |")
    for label, pv, tv, digits, higher, note in rows:
        ratio = None
        if pv and tv:
            ratio = pv / tv if higher else tv / pv
        lines.append("| %s | %s | %s | %s | %s |" % (label, fmt(pv, digits), fmt(tv, digits),
                                                    "-" if ratio is None else "%.2fx" % ratio, note))
    lines.append("")
    if peak:
        lines.append("Practical fp32 peak: OpenBLAS sgemm 2048x2048x2048 on 2 threads, "
                     "%.1f GFLOPS (best of 6)." % peak)
        lines.append("FLOPs per image (forward, convolutions and fc, 2 per multiply-add, counted "
                     "from pasm's network): %s; training counted as 3x the forward."
                     % ", ".join("w%d %.3f GFLOP" % (w, p["flops_w%d" % w] / 1e9) for w in widths
                                 if p.get("flops_w%d" % w)))
        lines.append("")
        lines.append("| share of the sgemm peak | pasm | PyTorch |")
        lines.append("| --- | ---: | ---: |")
        for label, pv, tv in share_rows:
            lines.append("| %s | %s | %s |" % (label, fmt(pv, 0) + "%" if pv else "-",
                                                fmt(tv, 0) + "%" if tv else "-"))
        lines.append("")
    lines.append("FER2013 load: pasm's `pasm_dataset_load` on the whole csv.gz (%s images); "
                 "PyTorch's column is a plain Python pipeline (gzip, csv, int parsing, "
                 "torch.tensor), as a PyTorch user would write it."
                 % ("%d" % p["load_images"] if p.get("load_images") else "?"))
    lines.append("")
    text = "\n".join(lines)
    extra = os.environ.get("BENCH_APPENDIX")
    if extra and os.path.exists(extra):
        with open(extra) as f:
            text += "\n" + f.read()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
