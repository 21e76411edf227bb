#!/usr/bin/env python3
"""bench/gpu_table.py OUTDIR quick|full|tests: the Markdown table of a bench/gpu-check.sh
run (pasm and PyTorch side by side) from OUTDIR/steps.tsv, OUTDIR/logs/*.log (their
"key value" lines) and OUTDIR/run/summary.json. Standard library only; a
measurement that is missing reads "not run"."""

import glob
import json
import os
import re
import sys

NA = "not run"


def read_steps(out):
    steps = []
    try:
        with open(os.path.join(out, "steps.tsv")) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 5:
                    steps.append(parts[:5])
    except OSError:
        pass
    return steps


def read_logs(out):
    """{step: {key: value string}} from every log's "key value" lines."""
    logs = {}
    for path in sorted(glob.glob(os.path.join(out, "logs", "*.log"))):
        kv = {}
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"^([A-Za-z][A-Za-z0-9_]*) (.+)$", line.rstrip("\n"))
                if m:
                    kv[m.group(1)] = m.group(2).strip()
        logs[os.path.basename(path)[:-4]] = kv
    return logs


def workspace_mb(out, step):
    """What cuDNN's workspace adds to a step's peak by its PASM_CUDA_ALLOC_LOG lines, MiB:
    a training network's plan line ("convolution workspace adds X MiB": its
    workspaces in the arena), or the largest "convolution workspace" allocation
    (a network with one workspace of its own, as training networks had before
    their workspaces went into the arena)."""
    best = None
    try:
        with open(os.path.join(out, "logs", step + ".log"), errors="replace") as f:
            for line in f:
                m = (re.search(r"GPU memory: +([0-9.]+) MiB for convolution workspace", line)
                     or re.search(r"convolution workspace adds ([0-9.]+) MiB", line))
                if m and (best is None or float(m.group(1)) > best):
                    best = float(m.group(1))
    except OSError:
        pass
    return best


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt(v, unit="", digits=0):
    x = num(v)
    if x is None:
        return NA
    return ("{:,.%df}" % digits).format(x) + unit


def ratio(a, b, target=None):
    x, y = num(a), num(b)
    if x is None or y is None or x == 0 or y == 0:
        return ""
    r = x / y
    s = "%.2fx" % r
    if target is not None:
        s += " (target %gx: %s)" % (target, "met" if r >= target else "not met")
    return s


def main():
    out, mode = sys.argv[1], sys.argv[2]
    steps = read_steps(out)
    logs = read_logs(out)
    env = logs.get("env", {})

    def get(step, key):
        return logs.get(step, {}).get(key)

    status = {s[0]: s[1] for s in steps}
    w = print
    w("# pasm on the GPU: bench/gpu-check.sh %s" % mode)
    w()
    w("| | |")
    w("| --- | --- |")
    w("| date | %s |" % env.get("date", NA))
    w("| card | %s (%s) |" % (env.get("gpu_name", "no GPU found (nvidia-smi)"),
                              env.get("gpu_memory", "?")))
    w("| driver, CUDA (driver) | %s, %s |" % (env.get("gpu_driver", NA),
                                              env.get("gpu_cuda_driver", NA)))
    w("| nvcc | %s |" % env.get("nvcc_version", NA))
    w("| cuDNN (PyTorch's) | %s |" % env.get("torch_cudnn", NA))
    w("| PyTorch | %s (CUDA %s) |" % (env.get("torch_version", NA), env.get("torch_cuda", NA)))
    w("| host CPUs | %s |" % env.get("cpus", NA))
    w("| pasm commit | %s |" % env.get("git", NA))
    w()

    if mode in ("quick", "tests"):
        w("## Throughput (ResNet-18 width 64, 48x48 grey, 7 classes)")
        w()
        w("pasm: pasm_train over 28,709 random 48x48 faces kept on the GPU, crop and "
          "flip augmentation on the GPU, the second of two epochs (the GPU trainer); "
          "the host-batch row is the older path (a batch sent and the loss computed on "
          "the host every step). "
          "PyTorch: channels-last, torch.autocast bf16 with fp32 master weights (eager and "
          "torch.compile), and fp32 with TF32 off; batches drawn from 28,709 random uint8 "
          "faces resident on the GPU, as pasm keeps them (the first run, 2026-11-29, "
          "timed one random batch). "
          "Attacks: pasm's attacks and bench/torch_attack.py's code on the GPU, both in "
          "bf16 mixed precision (`--precision bf16`; PyTorch under torch.autocast), on "
          "the first N faces of fer2013-mini repeated to full size, against the same "
          "seeded network.")
        w()
        w("| measurement | pasm (bf16) | PyTorch eager bf16 | PyTorch compiled bf16 | "
          "PyTorch fp32 | pasm / eager |")
        w("| --- | --- | --- | --- | --- | --- |")
        for b in (128, 512):
            p = get("pasm_train_b%d" % b, "gpu_train_ips")
            e = get("torch_train_eager_bf16", "torch_train_ips_eager_bf16_b%d" % b)
            c = get("torch_train_compiled_bf16", "torch_train_ips_compiled_bf16_b%d" % b)
            f = get("torch_train_fp32", "torch_train_ips_fp32_b%d" % b)
            w("| training images/s, batch %d | %s | %s | %s | %s | %s |" % (
                b, fmt(p), fmt(e), fmt(c), fmt(f), ratio(p, e, 2)))
        for b in (128, 512):
            p = get("pasm_train_b%d" % b, "gpu_hoststep_ips")
            e = get("torch_train_eager_bf16", "torch_train_ips_eager_bf16_b%d" % b)
            w("| (pasm's host-batch steps, images/s, batch %d) | %s | %s | | | %s |" % (
                b, fmt(p), fmt(e), ratio(p, e)))
        for b in (128, 512):
            p = get("pasm_train_b%d" % b, "gpu_peak_mb")
            e = get("torch_train_eager_bf16", "torch_train_peak_mb_eager_bf16_b%d" % b)
            c = get("torch_train_compiled_bf16", "torch_train_peak_mb_compiled_bf16_b%d" % b)
            f = get("torch_train_fp32", "torch_train_peak_mb_fp32_b%d" % b)
            r = ratio(p, e)  # pasm's peak as a multiple of PyTorch's
            w("| peak GPU memory MiB, batch %d | %s | %s | %s | %s | %s |" % (
                b, fmt(p), fmt(e), fmt(c), fmt(f),
                "" if not r else "%s of PyTorch's (target: no more: %s)" % (
                    r, "met" if num(p) <= num(e) else "not met")))
        for b in (128, 512):
            w("| (of pasm's peak: what cuDNN's workspace adds, MiB, batch %d) | %s | | | | |" % (
                b, fmt(workspace_mb(out, "pasm_train_b%d" % b), digits=1)))
        for b in (128, 512):
            step = "pasm_train_ws32_b%d" % b
            p = get(step, "gpu_train_ips")
            e = get("torch_train_eager_bf16", "torch_train_ips_eager_bf16_b%d" % b)
            w("| (workspace held to 32 MiB a layer, batch %d: images/s) | %s | %s | | | %s |" % (
                b, fmt(p), fmt(e), ratio(p, e)))
            p = get(step, "gpu_peak_mb")
            e = get("torch_train_eager_bf16", "torch_train_peak_mb_eager_bf16_b%d" % b)
            w("| (workspace held to 32 MiB a layer, batch %d: peak MiB; workspace MiB) | %s; %s "
              "| %s | | | %s |" % (b, fmt(p), fmt(workspace_mb(out, step), digits=1), fmt(e),
                                   ratio(p, e)))
        for b in (128, 512):
            p = get("pasm_train_find_b%d" % b, "gpu_train_ips")
            v = get("pasm_train_b%d" % b, "gpu_train_ips")
            e = get("torch_train_eager_bf16", "torch_train_ips_eager_bf16_b%d" % b)
            w("| (algorithms ranked by cuDNN's measured times, PASM_CUDA_CONV_FIND=1, batch %d: "
              "images/s; against the heuristics' picks) | %s | %s | | | %s |" % (
                  b, fmt(p), fmt(e), "; ".join(r for r in (ratio(p, e), ratio(p, v)) if r)))
        for b in (128, 512):
            p = get("pasm_train_scalar_b%d" % b, "gpu_train_ips")
            v = get("pasm_train_b%d" % b, "gpu_train_ips")
            w("| (batch norm's loops one element an index, PASM_CUDA_VECTOR=0, batch %d: "
              "images/s; the vector loops' gain) | %s | | | | %s |" % (b, fmt(p), ratio(v, p)))
        w()
        w("| attack | faces | pasm images/s | PyTorch images/s | pasm / PyTorch | "
          "pasm peak MiB | PyTorch peak MiB |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        for kind, target in (("grad", 2), ("iter", None), ("de", 10), ("de_whole", None)):
            k = "attack_%s_w64" % kind
            tk = "attack_%s_w64" % kind.replace("_whole", "")  # PyTorch: whole forwards
            p, t = get("pasm_attack_" + kind, k), get("torch_attacks", tk)
            faces = get("pasm_attack_" + kind, k + "_faces") or get("torch_attacks", tk + "_faces")
            label = {"de": "de (32x8, windows)",
                     "de_whole": "de (32x8, whole forwards: PASM_PATCH=0)"}.get(kind, kind)
            w("| %s | %s | %s | %s | %s | %s | %s |" % (
                label, fmt(faces), fmt(p, digits=1),
                fmt(t, digits=1), ratio(p, t, target),
                fmt(get("pasm_attack_" + kind, k + "_gpu_peak_mb")),
                fmt(get("torch_attacks", tk + "_gpu_peak_mb"))))
        w()
        w("### Training loss against PyTorch's on the GPU")
        w()
        w("The same checkpoint (the attacks' width-64 network) trained 20 fp32 SGD steps "
          "(lr 0.001, momentum 0.9, Nesterov, weight decay 5e-4; PyTorch with TF32 off) on "
          "the same batches of 128 faces in file order, no augmentation "
          "(`pasm_bench curve`, `torch_gpu_bench.py curve`). Two runs drift apart as their "
          "rounding differences grow through the steps (on the CPU, pasm with 1 and 2 "
          "threads: 4e-8 at step 2, 7e-4 at step 4 at lr 0.01).")
        w()
        w("| step | pasm loss | PyTorch loss | relative difference |")
        w("| --- | --- | --- | --- |")
        for st in (1, 2, 3, 5, 10, 20):
            p = get("curve_pasm", "curve_loss_%d" % st)
            t = get("curve_torch", "torch_curve_loss_%d" % st)
            d = abs(num(p) - num(t)) / abs(num(t)) if num(p) is not None and num(t) else None
            w("| %d | %s | %s | %s |" % (st, fmt(p, digits=6), fmt(t, digits=6),
                                          "%.2g" % d if d is not None else NA))
        w()
        w("Earlier PyTorch figures on an H200 (issue 10): training 12,400 images/s, grad "
          "29,000 images/s, de (32x8) 340 images/s, the whole run 164 s.")
        w()
    else:
        full = ""
        try:
            full = open(os.path.join(out, "full_data.txt")).read().strip()
        except OSError:
            pass
        run_csv = ""
        try:
            run_csv = os.path.basename(open(os.path.join(out, "run_csv.txt")).read().strip())
        except OSError:
            pass
        scale = num(open(os.path.join(out, "torch_run_scale.txt")).read().strip()) \
            if os.path.exists(os.path.join(out, "torch_run_scale.txt")) else None
        w("## The whole PASM run (width 64, batch 128, bf16; 20 baseline epochs + 2 rounds "
          "of grad mining and 10 student epochs on original + masked faces)")
        w()
        w("Data: `%s` (%s). Wall time of the process (pasm: everything, loading the CSV "
          "included; PyTorch: its run without the CSV loading, and the whole process)." % (
              run_csv or NA,
              "real FER2013, 28,709 Training faces" if full == "full" else
              "fer2013-mini repeated to FER2013's split sizes: timing only"))
        w()
        summary = None
        try:
            with open(os.path.join(out, "run", "summary.json")) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            pass
        t = logs.get("torch_run", {})
        torch_s = num(t.get("run_s"))
        extra = ""
        if scale is not None and scale < 1 and torch_s is not None:
            # baseline and round training scale with their epochs; mining does not
            e, re_ = num(t.get("run_epochs")), num(t.get("run_round_epochs"))
            est = (num(t.get("run_baseline_s")) or 0) * 20 / e
            for k in (1, 2):
                est += (num(t.get("run_mine%d_s" % k)) or 0)
                est += (num(t.get("run_round%d_s" % k)) or 0) * 10 / re_
            extra = (" (ran %d + 2x%d epochs to fit the budget; extrapolated to 20 + 2x10: "
                     "%.1f s)" % (e, re_, est))
            torch_s = est
        pasm_s = num(get("pasm_run", "pasm_run_wall_s"))
        w("| | pasm | PyTorch eager bf16 |")
        w("| --- | --- | --- |")
        w("| whole run, s | %s | %s%s |" % (fmt(pasm_s, digits=1), fmt(t.get("run_s"), digits=1),
                                           extra))
        w("| PyTorch process (import, CUDA start, loading), s | | %s |" % fmt(
            t.get("torch_run_wall_s"), digits=1))
        if summary:
            inside = 0.0
            for r in summary.get("rounds", []):
                k = r.get("round")
                w("| round %s: mining s / training s (pasm: / the round's evaluation s) "
                  "| %s / %s / %s | %s / %s |" % (
                      k, fmt(r.get("seconds_mine"), digits=1), fmt(r.get("seconds_train"), digits=1),
                      fmt(r.get("seconds_eval"), digits=1),
                      fmt(t.get("run_mine%s_s" % k), digits=1) if k else "0",
                      fmt(t.get("run_round%s_s" % k if k else "run_baseline_s"), digits=1)))
                for key in ("seconds_mine", "seconds_train", "seconds_eval"):
                    inside += num(r.get(key)) or 0.0
            if pasm_s:
                w("| pasm outside the phases and evaluations (start, CUDA and cuDNN, exit), s "
                  "| %s | |" % fmt(pasm_s - inside, digits=1))
        w("| peak GPU memory, MiB | %s | %s |" % (fmt(get("pasm_run", "gpu_peak_mb")),
                                                 fmt(t.get("run_gpu_peak_mb"))))
        if pasm_s and torch_s:
            w()
            w("pasm / PyTorch: %.2fx faster; target: the whole run under 80 s (%s)." % (
                torch_s / pasm_s, "met" if pasm_s < 80 else "not met"))
        w()
        w("## Accuracy per round (pasm; PublicTest chooses the epoch, PrivateTest is reported)")
        w()
        if full != "full":
            w("Not the full-FER2013 accuracy run: %s." % (
                "only part 2 of the data arrived (10,765 Training faces; run-part2 below)"
                if full == "part2" else "the data parts were not carried"))
            w()
        for name, title in (("run", "pasm run on `%s`" % (run_csv or NA)),
                            ("run-part2", "pasm run on fer2013-part2.csv (smaller Training set)")):
            try:
                with open(os.path.join(out, name, "summary.json")) as f:
                    s = json.load(f)
            except (OSError, ValueError):
                continue
            precs = sorted({r.get("eval_precision") or "fp32 (pasm before 9472ff2)"
                            for r in s.get("rounds", [])})
            w("%s (pasm evaluated in %s; PyTorch under bf16 autocast):" % (
                title, ", ".join(precs) or NA))
            w()
            w("| round | PublicTest | PublicTest (flip TTA) | PrivateTest | PrivateTest (flip TTA) "
              "| mined fooled | PyTorch PublicTest / PrivateTest |")
            w("| --- | --- | --- | --- | --- | --- | --- |")
            for r in s.get("rounds", []):
                k = r.get("round")
                pct = lambda v: NA if num(v) is None else "%.2f%%" % (100 * num(v))  # noqa: E731
                tv, tt = t.get("run_round%s_val_acc" % k), t.get("run_round%s_test_acc" % k)
                w("| %s | %s | %s | %s | %s | %s | %s |" % (
                    k, pct(r.get("val_accuracy")), pct(r.get("val_accuracy_tta")),
                    pct(r.get("test_accuracy")), pct(r.get("test_accuracy_tta")),
                    pct(r.get("mined_fooled")) if k else "",
                    "%s / %s" % (pct(tv), pct(tt)) if name == "run" else ""))
            w()
        if not os.path.exists(os.path.join(out, "run", "summary.json")):
            w("pasm run: %s (no summary.json)." % status.get("pasm_run", NA))
            w()

    w("## Steps")
    w()
    w("| step | status | seconds | note |")
    w("| --- | --- | --- | --- |")
    for name, st, secs, kind, note in steps:
        w("| %s | %s%s | %s | %s |" % (name, st, "" if kind == "required" else " (optional)",
                                       secs, note))
    w()
    w("Logs: logs/STEP.log beside this file.")


if __name__ == "__main__":
    main()
