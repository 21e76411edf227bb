#!/usr/bin/env python3
"""Turns the "key value" lines of bench/pasm_bench.c and bench/torch_bench.py
(the networks; their ckpt modes: the checkpoints) and of bench/attack_bench.c
and bench/torch_attack.py (the attacks) into docs/benchmarks.md (and prints it). Standard library only, so
the tables are written without PyTorch too (pasm's column alone).

Torch keys may carry "@nchw" / "@channels_last": the faster format wins and
its own peak RSS is the one reported. Each part's files carry their own date
and load averages (bench_*, attacks_* and ckpt_* keys), since bench/run.sh can rerun
one part alone.
"""

import argparse
import datetime
import os
import platform


def best(key, old, new):
    """A key measured in several rounds (bench/run.sh's BENCH_ROUNDS): the
    best round, i.e. the lowest time (infer1_*: milliseconds; *_ms*) or the
    highest rate; the largest peak memory; text keeps its first value."""
    if isinstance(old, str) or isinstance(new, str):
        return old
    if "_rss_mb" in key:
        return max(old, new)
    if key.startswith("infer1_") or "_ms" in key:
        return min(old, new)
    return max(old, new)


def read(path):
    vals = {}
    if not path or not os.path.exists(path):
        return vals
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                try:
                    value = float(parts[1])
                except ValueError:
                    value = parts[1]
                key = parts[0]
                vals[key] = best(key, vals[key], value) if key in vals else value
    return vals


def rounds_text(vals):
    """How the nets part's rounds were taken, or nothing for one round."""
    rounds = int(vals.get("bench_rounds", 1))
    if rounds <= 1:
        return ""
    return ("Every measurement ran in %d rounds, each round pasm and then every PyTorch "
            "format, one after another; each keeps its best round (the machine's speed drifts "
            "over minutes). " % rounds)


def load_text(vals, prefix):
    """The load averages around a part's run, "a b c / d e f", or "?"."""
    before, after = vals.get(prefix + "_load_before"), vals.get(prefix + "_load_after")
    if before is None:
        return "?"
    return "%s / %s" % (str(before).replace(",", " "), str(after or "?").replace(",", " "))


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


def previous_parts(path):
    """The networks' part (up to the first "## " heading), the "## Attacks"
    and the "## Checkpoints" sections of an existing document, or None each."""
    if not os.path.exists(path):
        return None, None, None
    with open(path) as f:
        text = f.read()
    nets, sep, rest = text.partition("\n## ")
    sections = {}
    for part in ("## " + rest).split("\n## ") if sep else []:
        part = part if part.startswith("## ") else "## " + part
        sections.setdefault(part[3:].partition("\n")[0].strip(), part)
    return (nets if sep else None), sections.get("Attacks"), sections.get("Checkpoints")


def ckpt_section(p, t):
    """The "Checkpoints" section: save and load times of each width's
    checkpoint, pasm's (always durable: fsync) against PyTorch's ways, and
    whether each side loaded the other's file."""
    widths = sorted(int(k.rsplit("_w", 1)[1]) for k in p if k.startswith("ckpt_save_ms_w"))
    if not widths:
        return []
    for w in widths:
        best_format(t, "ckpt_save_ms_w%d" % w, True)
        best_format(t, "ckpt_load_ms_w%d" % w, True)
    lines = ["## Checkpoints", ""]
    lines.append("- measured: %s; files in %s (filesystem, as `stat -f` names it: %s); load average before / after: %s"
                 % (str(p.get("ckpt_date", "?")).replace("T", " "), "$BENCH_OUT/ckpt",
                    p.get("ckpt_fs", "?"), load_text(p, "ckpt")))
    lines.append("- reproduce this part alone: `make bench BENCH_ONLY=ckpt`")
    lines.append("")
    lines.append("Saving and loading ResNet-18 (48x48, 1 channel, 7 classes) as a safetensors "
                 "checkpoint. pasm: `pasm_checkpoint_save` (every tensor checked finite, written "
                 "straight from the network into a temporary file, fsynced, renamed over the "
                 "target, the folder fsynced: a crash never leaves a torn checkpoint) and "
                 "`pasm_checkpoint_load_mode` (read, validate every tensor's name, shape, dtype "
                 "and finiteness and the metadata, build an evaluation network for batch 1, fill "
                 "it). PyTorch, as its users write it, with python/pasm_torch.py's model (pasm's "
                 "tensor names): `safetensors.torch.save_file(model.state_dict())` or "
                 "`torch.save` (.pt), neither of which fsyncs, so the durable row adds an fsync "
                 "of the file to save_file; loading builds the model and calls "
                 "`load_state_dict` on `load_file` or `torch.load(weights_only=True)`. The faster "
                 "of PyTorch's ways is shown (last column). Medians of at least 5 repetitions and "
                 "3 s, warm page cache. Ratio: pasm / PyTorch (>1 = pasm faster).")
    lines.append("")
    lines.append("| measure | width | pasm | PyTorch | ratio | PyTorch way |")
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")

    def row(label, w, pv, tv, way):
        ratio = "%.2fx" % (tv / pv) if pv and tv else "-"
        lines.append("| %s | %d | %s | %s | %s | %s |" % (label, w, fmt(pv, 1), fmt(tv, 1), ratio,
                                                          way))

    for w in widths:
        row("save (ms)", w, p.get("ckpt_save_ms_w%d" % w), t.get("ckpt_save_ms_w%d" % w),
            t.get("ckpt_save_ms_w%d_format" % w, ""))
        row("save, durable (ms)", w, p.get("ckpt_save_ms_w%d" % w),
            t.get("ckpt_savesync_ms_w%d@safetensors" % w), "save_file + fsync")
        row("load (ms)", w, p.get("ckpt_load_ms_w%d" % w), t.get("ckpt_load_ms_w%d" % w),
            t.get("ckpt_load_ms_w%d_format" % w, ""))
        row("load PyTorch's safetensors file (ms)", w, p.get("ckpt_load_torch_ms_w%d" % w),
            None, "")
    lines.append("")
    sizes = ", ".join("w%d %.1f MiB" % (w, p["ckpt_mib_w%d" % w]) for w in widths
                      if p.get("ckpt_mib_w%d" % w))
    rss = ", ".join("w%d %s / %s" % (w, fmt(p.get("ckpt_w%d_rss_mb" % w), 0),
                                     fmt(t.get("ckpt_w%d_rss_mb" % w), 0)) for w in widths)
    cross = ", ".join("w%d %s / %s" % (
        w, {1: "yes", 0: "no"}.get(p.get("ckpt_load_torch_ok_w%d" % w), "not measured"),
        "yes" if t.get("ckpt_read_pasm_w%d" % w) == 1 else "no") for w in widths)
    lines.append("File sizes: %s. Peak RSS of the process, MiB, pasm / PyTorch: %s. Each side "
                 "loaded the other's file (pasm loaded PyTorch's save_file output; PyTorch "
                 "loaded pasm's with `load_state_dict(strict=True)`), pasm / PyTorch: %s."
                 % (sizes or "?", rss, cross))
    lines.append("")
    return lines


ATTACK_TAGS = ("grad", "iter", "de", "de_paper")


def attack_widths(vals):
    return sorted({int(k.rsplit("_w", 1)[1]) for k in vals
                   if k.startswith("attack_") and k.rsplit("_w", 1)[-1].isdigit()})


def attack_name(vals, tag, key):
    if vals.get(key + "_pop") is None:
        return tag
    return "de, population %d, %d generations" % (vals[key + "_pop"], vals[key + "_gens"])


def attack_section(p, t):
    """The "Attacks" section: images/s per attack and width, candidate
    evaluations/s of de, and how far PyTorch's points agree with pasm's."""
    widths = attack_widths(p) or attack_widths(t)
    rows = [(tag, w, "attack_%s_w%d" % (tag, w)) for tag in ATTACK_TAGS for w in widths]
    rows = [r for r in rows if r[2] in p or r[2] in t]
    if not rows:
        return []

    def both(key, digits):
        return " / ".join(fmt(d.get(key), digits) for d in (p, t))

    def ratio(key):
        pv, tv = p.get(key), t.get(key)
        return "%.2fx" % (pv / tv) if pv and tv else "-"

    lines = ["## Attacks", ""]
    lines.append("- attacks measured: %s, %s threads; load average before / after: %s"
                 % (str(p.get("attacks_date", "?")).replace("T", " "),
                    fmt(p.get("attacks_threads"), 0), load_text(p, "attacks")))
    if p.get("attacks_total_s") is not None:
        lines.append("- the attack part took %.1f min (both sides)" % (p["attacks_total_s"] / 60.0))
    lines.append("- reproduce this part alone: `make bench BENCH_ONLY=attacks`")
    lines.append("")
    lines.append("The point attacks of pasm-method.md (\"Attacks\"): pasm's `pasm_attack_images` "
                 "(bench/attack_bench.c) against the same attacks written for PyTorch "
                 "(bench/torch_attack.py), on the first faces of fer2013-mini.csv. Both sides "
                 "attack the same weights: an untrained ResNet-18 (`pasm_net_init` seed 1, "
                 "normalisation mean 0.5, std 0.25) that attack_bench writes and the PyTorch side "
                 "loads, unless the row says trained. Early stop is on (the default) on both "
                 "sides, but an untrained network is wrong on most faces, and those run the whole "
                 "budget by design, while one pixel rarely flips the others: these are close to "
                 "worst-case timings (grad 2 queries per face, iter 9, de 1 + population x "
                 "(generations + 1)). Forwards hold up to 1024 images; de sends the candidates of "
                 "all faces still searching together, as pasm does. PyTorch runs eagerly in "
                 "channels-last with frozen parameters and `torch.inference_mode` wherever no "
                 "gradient is needed (iter's last evaluation included, where pasm computes a "
                 "gradient it does not use). grad and iter are deterministic and must choose the "
                 "same pixels on both sides; de's random numbers differ (pasm's Philox streams, "
                 "torch's generator), so its pixels differ but its work is the same, as the "
                 "queries and fooled counts show. pasm computes each of de's candidates only on "
                 "the windows its one changed pixel reaches, from its face's own activations "
                 "(`pasm_net_patch`, src/nn/patch.c: about half of a forward's multiply-adds at "
                 "48x48; `PASM_PATCH=0` gives whole forwards), while the PyTorch side runs a "
                 "whole forward per candidate: the same queries, fewer operations. Only the "
                 "attack is timed, after a warm-up (grad on 4 faces). Ratio: pasm / PyTorch "
                 "(>1 = pasm faster).")
    lines.append("")
    lines.append("| attack | width | faces | pasm images/s | PyTorch images/s | ratio | "
                 "queries pasm / PyTorch | fooled pasm / PyTorch | peak MiB pasm / PyTorch |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tag, w, key in rows:
        trained = " (trained)" if p.get("attacks_model_w%d" % w) == "trained" else ""
        faces = p.get(key + "_faces", t.get(key + "_faces"))
        lines.append("| %s | %d%s | %s | %s | %s | %s | %s | %s | %s |" % (
            attack_name(p if key in p else t, tag, key), w, trained, fmt(faces, 0),
            fmt(p.get(key), 2), fmt(t.get(key), 2), ratio(key), both(key + "_queries", 0),
            both(key + "_fooled", 0), both(key + "_rss_mb", 0)))
    lines.append("")
    de_rows = [r for r in rows if (p.get(r[2] + "_evals_per_s") or t.get(r[2] + "_evals_per_s"))]
    if de_rows:
        lines.append("| de: candidate evaluations/s | width | faces | pasm | PyTorch | ratio |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for tag, w, key in de_rows:
            k = key + "_evals_per_s"
            lines.append("| %s | %d | %s | %s | %s | %s |" % (
                attack_name(p if key in p else t, tag, key), w,
                fmt(p.get(key + "_faces", t.get(key + "_faces")), 0), fmt(p.get(k), 0),
                fmt(t.get(k), 0), ratio(k)))
        lines.append("")
    agree = [(tag, w, key) for tag, w, key in rows if t.get(key + "_agree") is not None]
    if agree:
        lines.append("Agreement: the share of faces where PyTorch's attack chose the same pixel as "
                     "pasm's (iter: its first pixel), and the largest difference of the clean "
                     "true-class probability: %s." % "; ".join(
                         "%s w%d %.1f%% of %d faces (%.2g)" % (
                             tag, w, 100.0 * t[key + "_agree"], t[key + "_agree_faces"],
                             t[key + "_p_before_maxdiff"]) for tag, w, key in agree))
        lines.append("")
    return lines


def bf16_section(p, t, widths):
    """pasm --precision bf16 against PyTorch fp32 (the faster format) and
    against PyTorch's bf16 autocast."""
    keys = [(w, mode) for w in widths for mode in ("train", "infer128", "infer1")
            if "%s_w%d_bf16" % (mode, w) in p]
    if not keys:
        return []
    names = {"train": ("training, width %d, batch 128 (images/s)", 1, True),
             "infer128": ("inference, width %d, batch 128 (images/s)", 1, True),
             "infer1": ("inference, width %d, batch 1 (ms, median)", 2, False)}

    def ratio(pv, tv, higher):
        if not pv or not tv:
            return "-"
        return "%.2fx" % (pv / tv if higher else tv / pv)

    native = p.get("bf16_native")
    lines = ["### bf16 (`--precision bf16`)", ""]
    lines.append("pasm's convolutions with bf16 operands and fp32 sums (%s), fp32 everywhere "
                 "else and fp32 master weights; PyTorch under `torch.autocast(\"cpu\", "
                 "dtype=torch.bfloat16)` in channels-last, eager. Ratios as above, against "
                 "PyTorch fp32 (its faster format, from the table above) and against PyTorch "
                 "bf16." % ("AMX tiles" if native == 1 else
                            "AVX512-BF16 dot products: this CPU has no AMX-BF16"
                            if native == 2 else
                            "emulated with fp32 sgemm: this CPU has neither AMX-BF16 nor "
                            "AVX512-BF16" if native == 0 else "kernel not recorded"))
    lines.append("")
    lines.append("| measure | pasm bf16 | PyTorch fp32 | ratio | PyTorch bf16 | ratio | "
                 "peak MiB pasm / PyTorch bf16 |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for w, mode in keys:
        label, digits, higher = names[mode]
        k = "%s_w%d" % (mode, w)
        pv, tf, tb = p.get(k + "_bf16"), t.get(k), t.get(k + "_bf16")
        lines.append("| %s | %s | %s | %s | %s | %s | %s / %s |" % (
            label % w, fmt(pv, digits), fmt(tf, digits), ratio(pv, tf, higher), fmt(tb, digits),
            ratio(pv, tb, higher), fmt(p.get(k + "_bf16_rss_mb"), 0),
            fmt(t.get(k + "_bf16_rss_mb"), 0)))
    lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pasm", required=True)
    ap.add_argument("--torch")
    ap.add_argument("--out", required=True)
    ap.add_argument("--attacks-pasm")
    ap.add_argument("--attacks-torch")
    ap.add_argument("--ckpt-pasm")
    ap.add_argument("--ckpt-torch")
    ap.add_argument("--only", default="all",
                    help="the part just measured (nets, attacks, ckpt; all): the others keep "
                         "their text from --out where it has them")
    args = ap.parse_args()
    p, t = read(args.pasm), read(args.torch)
    ap_, at = read(args.attacks_pasm), read(args.attacks_torch)
    widths = sorted({int(k.split("_w")[1]) for k in p if k.startswith("flops_w")})
    for w in widths:
        for suffix in ("", "_bf16"):
            best_format(t, "infer1_w%d%s" % (w, suffix), True)
            best_format(t, "train_w%d%s" % (w, suffix), False)
            best_format(t, "infer128_w%d%s" % (w, suffix), False)
    peak = p.get("sgemm_gflops")
    have_torch = "torch_version" in t or "torch_version" in at
    torch_version = t.get("torch_version", at.get("torch_version"))

    compiled = any(k.endswith("@compiled") for k in t)
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
    lines.append("- written: %s; networks measured %s%s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        str(p.get("bench_date", "?")).replace("T", " "),
        "; attacks measured %s" % ap_["attacks_date"].replace("T", " ")
        if "attacks_date" in ap_ else ""))
    lines.append("- CPU: %s (%d logical CPUs; %s)" % (cpu_model(), os.cpu_count() or 0, cpu_flags()))
    lines.append("- threads: 2 (OMP_NUM_THREADS=2, torch.set_num_threads(2))")
    lines.append("- PyTorch: %s" % (torch_version if have_torch else "not available (pasm alone)"))
    lines.append("- load average before / after the networks' run: %s" % load_text(p, "bench"))
    note = os.environ.get("BENCH_NOTE")
    if note:
        lines.append("- note: %s" % note)
    lines.append("- reproduce: `make bench` (from the repository root; shared data at $PASM_SHARED, "
                 "default ../shared); `make bench BENCH_ONLY=nets` for this part alone")
    lines.append("")
    lines.append("ResNet-18 at 48x48, 1 channel, 7 classes. Training: forward, cross-entropy, "
                 "backward and an SGD step (momentum 0.9, Nesterov, weight decay 5e-4) on one "
                 "fixed batch. PyTorch runs eagerly in NCHW and in channels-last%s, each in its "
                 "own process; the fastest is shown (format in the last column). %s"
                 "Peak memory is "
                 "each process's peak RSS (getrusage), including the libraries it loaded. "
                 "Ratio: how many times better pasm is (>1 = pasm faster / smaller)."
                 % (", and channels-last under `torch.compile` (inductor; compiled in the "
                    "untimed warm-up; `BENCH_TORCH_COMPILE=1`)" if compiled else "",
                    rounds_text(p)))
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
    lines += bf16_section(p, t, widths)
    lines.append("FER2013 load: pasm's `pasm_dataset_load` on the whole csv.gz (%s images); "
                 "PyTorch's column is a plain Python pipeline (gzip, csv, int parsing, "
                 "torch.tensor), as a PyTorch user would write it."
                 % ("%d" % p["load_images"] if p.get("load_images") else "?"))
    lines.append("")
    # A part not measured in this run (BENCH_ONLY) keeps its text from the
    # current document, even where $BENCH_OUT holds other (older or newer,
    # unpublished) results of it; a part the document lacks is written from
    # $BENCH_OUT's files if they are there.
    old_nets, old_attacks, old_ckpt = previous_parts(args.out)

    def keep(part, old, new):
        if old and (not new or args.only not in ("all", part)):
            return old.rstrip("\n").split("\n") + [""]
        return new

    lines = keep("nets", old_nets, lines if widths else [])
    lines += keep("attacks", old_attacks, attack_section(ap_, at))
    lines += keep("ckpt", old_ckpt, ckpt_section(read(args.ckpt_pasm), read(args.ckpt_torch)))
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
