#!/usr/bin/env python3
"""PyTorch's side of the attack benchmark: pasm's three point attacks (grad,
iter, de; docs/pasm-method.md, src/pasm/attack.c) written for PyTorch as a
PyTorch user would, batched, and timed the way bench/attack_bench.c times
pasm's. Same arguments and the same "key value" lines:

    torch_attack.py grad|iter|de MODEL CSV N [--tag NAME] [--pop P] [--gens G]
        [--no-early-stop] [--iter-max K] [--batch B] [--threads T]
        [--format nchw|channels_last] [--points PATH] [--compare PASM_POINTS]
        [--device cpu|cuda] [--precision fp32|bf16]

MODEL is a pasm checkpoint (attack_bench model writes the seeded one), read
here without the safetensors package and loaded into torch_bench.py's ResNet,
so that this needs torch alone. The faces are the CSV's first N rows.

The semantics follow src/pasm/attack.c exactly: the model in evaluation mode,
normalisation (pixel/255 - mean)/std inside (the same float32 expression, so a
changed pixel's value is bit-identical); per-image cross-entropy gradients;
ties to the first pixel / the lowest candidate. Batches hold up to --batch
images (1024), as pasm's. Only de's random numbers differ (torch's generator
instead of pasm's Philox streams), so de finds other pixels with the same
distribution. What PyTorch is allowed that pasm does not do: forwards that need
no gradient run under torch.inference_mode (iter's last evaluation included,
where pasm computes an unused gradient), parameters do not require gradients,
and the faces are normalised once and indexed instead of normalised per query.

--device cuda runs the attack on the GPU (the faces, the model and every tensor
the attack makes live there; de's generator too, so its random numbers differ
from the CPU's); the timing then synchronises the device, and KEY_gpu_peak_mb
is torch.cuda.max_memory_allocated. The default, cpu, is the CPU benchmark.

--precision bf16 runs the model's passes under torch.autocast(bfloat16), as
attack_bench --precision bf16 runs pasm's in mixed precision; fp32 (the
default) leaves PyTorch's own defaults (on a GPU, cuDNN may use TF32).

--compare reads attack_bench's --points CSV and prints KEY_agree (the share
of faces where both chose the same pixel) and KEY_p_before_maxdiff.
"""

import argparse
import csv
import json
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import ResNet  # noqa: E402  (the benchmark's copy of pasm's network)

SIZE = 48
WARMUP_FACES = 4
DTYPES = {"F32": torch.float32, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    """(tensors by name, string metadata) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    meta = header.pop("__metadata__", {})
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]) if raw else torch.empty(0)
        tensors[name] = t.reshape(info["shape"])
    return tensors, meta


def load_model(path, fmt):
    """The checkpoint in torch_bench's ResNet (its layers are one Sequential:
    pasm's layerS.I is layers.(2(S-1)+I)); returns (model, mean, std)."""
    tensors, meta = read_safetensors(path)
    width = int(meta["width"])
    if meta.get("in_channels", "1") != "1" or meta.get("num_classes", "7") != "7" or \
            meta.get("input_size", "48") != str(SIZE):
        sys.exit("torch_attack: %s: need a grey 48x48 model with 7 classes" % path)
    state = {}
    for name, t in tensors.items():
        if name.startswith("layer"):
            stage, block, rest = name[len("layer"):].split(".", 2)
            name = "layers.%d.%s" % (2 * (int(stage) - 1) + int(block), rest)
        state[name] = t.reshape(()) if name.endswith("num_batches_tracked") else t
    model = ResNet(width)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False).to(memory_format=fmt)
    mean = torch.tensor([float(v) for v in meta["norm_mean"].split(",")], dtype=torch.float32)
    std = torch.tensor([float(v) for v in meta["norm_std"].split(",")], dtype=torch.float32)
    return model, width, mean, std


def load_faces(path, n):
    """The first n faces of a FER2013 CSV: uint8 (n, 1, S, S) and labels."""
    pixels, labels = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if len(labels) == n:
                break
            pixels.append(row["pixels"])
            labels.append(int(row["emotion"]))
    if len(labels) < n:
        sys.exit("torch_attack: %s has %d faces, %d asked" % (path, len(labels), n))
    try:  # the same tensor, parsed faster (tens of thousands of faces on the GPU)
        import numpy as np
        flat = torch.from_numpy(np.array(" ".join(pixels).split(), dtype=np.uint8))
    except ImportError:
        flat = torch.tensor([int(v) for p in pixels for v in p.split()], dtype=torch.uint8)
    return flat.view(n, 1, SIZE, SIZE), torch.tensor(labels)


class Scorer:
    """The model on normalised faces: probabilities, and probabilities with the
    per-image cross-entropy's gradient in pixel (0..255) units."""

    def __init__(self, model, mean, std, fmt, batch, bf16=False):
        self.model, self.fmt, self.batch, self.bf16 = model, fmt, batch, bf16
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    def logits(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(x).float()

    def normalise(self, pixels):
        """uint8 (..., C, S, S) or values (m, C) -> float32, as pasm's scorer."""
        if pixels.dim() == 2:
            return (pixels.float() / 255.0 - self.mean.view(1, -1)) / self.std.view(1, -1)
        return (pixels.float() / 255.0 - self.mean) / self.std

    def probs(self, x):
        with torch.inference_mode():
            return torch.softmax(self.logits(x.contiguous(memory_format=self.fmt)), 1)

    def grad(self, x, labels):
        x = x.contiguous(memory_format=self.fmt).requires_grad_(True)
        logits = self.logits(x)
        loss = F.cross_entropy(logits, labels, reduction="sum")  # per-image gradients
        (dx,) = torch.autograd.grad(loss, x)
        return torch.softmax(logits.detach(), 1), dx / (255.0 * self.std)


def most_salient(d, skip=None):
    """Per image: the pixel with the largest sum over channels of |d| (not
    marked in skip), and the values 255 / 0 where d there is > 0 / not."""
    m, c = d.shape[0], d.shape[1]
    sal = d.abs().sum(1).reshape(m, -1)
    if skip is not None:
        sal = sal.masked_fill(skip, -1.0)
    p = sal.argmax(1)
    at = d.reshape(m, c, -1).gather(2, p.view(m, 1, 1).expand(m, c, 1)).squeeze(2)
    values = torch.where(at > 0, 255, 0).to(torch.uint8)
    return p, values


def set_pixels(sc, x, rows, cols, values):
    """x (m, C, S, S) normalised, in place: pixel (rows[i], cols[i]) = values[i]."""
    x[torch.arange(x.shape[0]), :, rows, cols] = sc.normalise(values)


def eval_changes(sc, faces_n, labels, img, rows, cols, values):
    """Candidates: face img[j] with pixel (rows[j], cols[j]) set to values[j],
    in batches; their true-class probabilities and predictions."""
    p_true, pred = [], []
    for s in range(0, img.numel(), sc.batch):
        sl = slice(s, s + sc.batch)
        x = faces_n[img[sl]]
        set_pixels(sc, x, rows[sl], cols[sl], values[sl])
        pr = sc.probs(x)
        p_true.append(pr.gather(1, labels[img[sl]].view(-1, 1)).squeeze(1))
        pred.append(pr.argmax(1))
    return torch.cat(p_true), torch.cat(pred)


def attack_grad(sc, faces_n, labels, args):
    n = labels.numel()
    p_before, p = torch.empty(n), torch.empty(n, dtype=torch.long)
    values = torch.empty(n, faces_n.shape[1], dtype=torch.uint8)
    for s in range(0, n, sc.batch):
        sl = slice(s, s + sc.batch)
        pr, d = sc.grad(faces_n[sl], labels[sl])
        p_before[sl] = pr.gather(1, labels[sl].view(-1, 1)).squeeze(1)
        p[sl], values[sl] = most_salient(d)
    rows, cols = p // SIZE, p % SIZE
    p_after, pred = eval_changes(sc, faces_n, labels, torch.arange(n), rows, cols, values)
    return dict(row=rows, col=cols, fooled=pred != labels, p_before=p_before, p_after=p_after,
                queries=torch.full((n,), 2))


def attack_iter(sc, faces_n, labels, args):
    n, c = labels.numel(), faces_n.shape[1]
    cur = faces_n.clone()
    changed = torch.zeros(n, SIZE * SIZE, dtype=torch.bool)
    out = dict(row=torch.zeros(n, dtype=torch.long), col=torch.zeros(n, dtype=torch.long),
               fooled=torch.zeros(n, dtype=torch.bool), p_before=torch.zeros(n),
               p_after=torch.zeros(n), queries=torch.zeros(n, dtype=torch.long))
    was_right = torch.zeros(n, dtype=torch.bool)
    active = torch.arange(n)
    # step t evaluates the current images; t = 0 is the clean one
    for t in range(args.iter_max + 1):
        if active.numel() == 0:
            break
        keep = []
        for s in range(0, active.numel(), sc.batch):
            idx = active[s:s + sc.batch]
            lab = labels[idx]
            if t < args.iter_max:
                pr, d = sc.grad(cur[idx], lab)
            else:
                pr = sc.probs(cur[idx])  # the last evaluation needs no gradient
            p_true = pr.gather(1, lab.view(-1, 1)).squeeze(1)
            fooled = pr.argmax(1) != lab
            out["queries"][idx] = t + 1
            out["p_after"][idx], out["fooled"][idx] = p_true, fooled
            if t == 0:
                out["p_before"][idx], was_right[idx] = p_true, ~fooled
            if t == args.iter_max:
                continue
            go = ~(was_right[idx] & fooled) if t > 0 else torch.ones_like(fooled)
            idx, d = idx[go], d[go]
            if idx.numel() == 0:
                continue
            p, values = most_salient(d, changed[idx])
            if t == 0:
                out["row"][idx], out["col"][idx] = p // SIZE, p % SIZE
            changed[idx, p] = True
            cur[idx.view(-1, 1), torch.arange(c).view(1, -1), (p // SIZE).view(-1, 1),
                (p % SIZE).view(-1, 1)] = sc.normalise(values)
            keep.append(idx)
        active = torch.cat(keep) if keep else active[:0]
    return out


def distinct_other(gen, pop, excluded, shape):
    """Uniform indices in 0..pop-1 different from every tensor in excluded
    (which are mutually distinct): draw among pop - k and step over them."""
    r = torch.randint(pop - len(excluded), shape, generator=gen, device=gen.device)
    for e in torch.sort(torch.stack(excluded), 0).values:
        r += (r >= e).long()
    return r


def clamp_round(v, hi):
    return torch.floor(v + 0.5).clamp(0, hi).long()


def attack_de(sc, faces_n, labels, args):
    n, c, pop, f = labels.numel(), faces_n.shape[1], args.pop, args.f
    gen = torch.Generator(device=faces_n.device).manual_seed(0)
    p_before, pred_clean = [], []
    for s in range(0, n, sc.batch):
        pr = sc.probs(faces_n[s:s + sc.batch])
        p_before.append(pr.gather(1, labels[s:s + sc.batch].view(-1, 1)).squeeze(1))
        pred_clean.append(pr.argmax(1))
    p_before = torch.cat(p_before)
    was_right = torch.cat(pred_clean) == labels
    rows = torch.randint(SIZE, (n, pop), generator=gen, device=gen.device)
    cols = torch.randint(SIZE, (n, pop), generator=gen, device=gen.device)
    vals = torch.randint(256, (n, pop, c), generator=gen, dtype=torch.uint8, device=gen.device)
    img = torch.arange(n).repeat_interleave(pop)
    fit, pred = eval_changes(sc, faces_n, labels, img, rows.reshape(-1), cols.reshape(-1),
                             vals.reshape(-1, c))
    fit, pred = fit.view(n, pop), pred.view(n, pop)
    queries = torch.full((n,), 1 + pop)

    def searching(i):
        done = was_right[i] & (pred[i] != labels[i].view(-1, 1)).any(1)
        return i[~done] if args.early_stop else i

    active = searching(torch.arange(n))
    j = torch.arange(pop)
    for _ in range(args.gens):
        a = active.numel()
        if a == 0:
            break
        jj = j.expand(a, pop)
        r1 = distinct_other(gen, pop, [jj], (a, pop))
        r2 = distinct_other(gen, pop, [jj, r1], (a, pop))
        r3 = distinct_other(gen, pop, [jj, r1, r2], (a, pop))
        ar, pr_, pc_, pv_ = active.view(-1, 1), rows[active], cols[active], vals[active].float()

        def mutate(x, hi):
            return clamp_round(x.gather(1, r1).float() +
                               f * (x.gather(1, r2).float() - x.gather(1, r3).float()), hi)
        ch_rows, ch_cols = mutate(pr_, SIZE - 1), mutate(pc_, SIZE - 1)
        ch_vals = torch.stack([mutate(pv_[:, :, k], 255) for k in range(c)], 2).to(torch.uint8)
        ch_fit, ch_pred = eval_changes(sc, faces_n, labels, ar.expand(a, pop).reshape(-1),
                                       ch_rows.reshape(-1), ch_cols.reshape(-1),
                                       ch_vals.reshape(-1, c))
        ch_fit, ch_pred = ch_fit.view(a, pop), ch_pred.view(a, pop)
        # a child replaces its parent when it scores at least as low
        better = ch_fit <= fit[active]
        rows[active] = torch.where(better, ch_rows, rows[active])
        cols[active] = torch.where(better, ch_cols, cols[active])
        vals[active] = torch.where(better.unsqueeze(2), ch_vals, vals[active])
        fit[active] = torch.where(better, ch_fit, fit[active])
        pred[active] = torch.where(better, ch_pred, pred[active])
        queries[active] += pop
        active = searching(active)
    # the answer: the fooling candidate with the lowest probability, else the lowest
    fooled_c = pred != labels.view(-1, 1)
    any_fooled = fooled_c.any(1)
    best = torch.where(any_fooled, fit.masked_fill(~fooled_c, float("inf")).argmin(1),
                       fit.argmin(1)).view(-1, 1)
    return dict(row=rows.gather(1, best).squeeze(1), col=cols.gather(1, best).squeeze(1),
                fooled=any_fooled, p_before=p_before, p_after=fit.gather(1, best).squeeze(1),
                queries=queries)


ATTACKS = {"grad": attack_grad, "iter": attack_iter, "de": attack_de}


def write_points(path, labels, out):
    with open(path, "w") as f:
        f.write("index,label,row,col,fooled,p_true_before,p_true_after,queries\n")
        for i in range(labels.numel()):
            f.write("%d,%d,%d,%d,%d,%.9g,%.9g,%d\n" % (
                i, labels[i], out["row"][i], out["col"][i], out["fooled"][i],
                out["p_before"][i], out["p_after"][i], out["queries"][i]))


def compare(path, key, out):
    """Agreement with pasm's points on the same faces."""
    with open(path, newline="") as f:
        theirs = list(csv.DictReader(f))
    n = min(len(theirs), out["row"].numel())
    same = sum(int(r["row"]) == int(out["row"][i]) and int(r["col"]) == int(out["col"][i])
               for i, r in enumerate(theirs[:n]))
    diff = max(abs(float(r["p_true_before"]) - float(out["p_before"][i]))
               for i, r in enumerate(theirs[:n]))
    print("%s_agree %.4f\n%s_agree_faces %d\n%s_p_before_maxdiff %.3g" % (
        key, same / n, key, n, key, diff))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("attack", choices=sorted(ATTACKS))
    ap.add_argument("model")
    ap.add_argument("csv")
    ap.add_argument("n", type=int)
    ap.add_argument("--tag")
    ap.add_argument("--pop", type=int, default=32)
    ap.add_argument("--gens", type=int, default=8)
    ap.add_argument("--f", type=float, default=0.5)
    ap.add_argument("--no-early-stop", dest="early_stop", action="store_false")
    ap.add_argument("--iter-max", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--format", choices=["nchw", "channels_last"], default="channels_last")
    ap.add_argument("--points")
    ap.add_argument("--compare")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args(argv)
    if args.pop < 4 or args.gens < 0 or args.iter_max < 1 or args.batch < 1 or args.n < 1:
        sys.exit("torch_attack: need --pop >= 4, --gens >= 0, --iter-max >= 1, --batch >= 1, N >= 1")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    fmt = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}[args.format]
    model, width, mean, std = load_model(args.model, fmt)
    faces, labels = load_faces(args.csv, args.n)
    if dev.type != "cpu":
        model.to(dev)
        mean, std, faces, labels = mean.to(dev), std.to(dev), faces.to(dev), labels.to(dev)
    sc = Scorer(model, mean, std, fmt, args.batch, args.precision == "bf16")
    faces_n = sc.normalise(faces)
    key = "attack_%s_w%d" % (args.tag or args.attack, width)
    with torch.device(dev):
        ATTACKS["grad"](sc, faces_n[:WARMUP_FACES], labels[:WARMUP_FACES], args)
        if dev.type == "cuda":  # the kernels of the full batch size too
            w = min(args.n, args.batch)
            ATTACKS[args.attack](sc, faces_n[:w], labels[:w], args)
            torch.cuda.reset_peak_memory_stats(dev)
        sync(dev)
        t0 = time.perf_counter()
        out = ATTACKS[args.attack](sc, faces_n, labels, args)
        sync(dev)
        s = time.perf_counter() - t0
    out = {k: v.cpu() for k, v in out.items()}
    labels = labels.cpu()
    n, queries = args.n, int(out["queries"].sum())
    print("%s %.3f\n%s_faces %d\n%s_s %.3f\n%s_queries %d\n%s_fooled %d" % (
        key, n / s, key, n, key, s, key, queries, key, int(out["fooled"].sum())))
    if args.attack == "de":
        print("%s_pop %d\n%s_gens %d\n%s_evals_per_s %.1f" % (
            key, args.pop, key, args.gens, key, (queries - n) / s))
    print("%s_format %s\n%s_precision %s\n%s_rss_mb %.0f" % (
        key, args.format, key, args.precision, key, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))
    if dev.type == "cuda":
        print("%s_gpu_peak_mb %.0f" % (key, torch.cuda.max_memory_allocated(dev) / 2**20))
    if args.points:
        write_points(args.points, labels, out)
    if args.compare:
        compare(args.compare, key, out)


if __name__ == "__main__":
    main()
