#!/usr/bin/env python3
"""PyTorch's side of the GPU benchmark (bench/gpu-check.sh runs it beside pasm's),
printed as "key value" lines like bench/torch_bench.py:

    torch_gpu_bench.py train WIDTH BATCH[,BATCH...] FORMAT [--device D] [--min-s S]
        FORMAT: eager_bf16 (channels-last, torch.autocast bf16, fp32 master weights),
        compiled_bf16 (the same under torch.compile; compiling is not timed) or fp32
        (channels-last eager, TF32 off). One SGD step (momentum 0.9, Nesterov,
        weight decay 5e-4) on cross-entropy per batch of 48x48 grey faces, 7
        classes, drawn in a shuffled order from a FER2013-sized set (28,709 random
        uint8 faces, as pasm's GPU trainer keeps them) resident on the device and
        normalised per batch. Keys: torch_train_ips_FORMAT_bBATCH
        (images/s over the timed steps, after warm-up, synchronised) and
        torch_train_peak_mb_FORMAT_bBATCH (torch.cuda.max_memory_allocated).
    torch_gpu_bench.py grad|iter|de MODEL CSV N [--device D] [torch_attack.py options]
    torch_gpu_bench.py grad,iter,de MODEL CSV NGRAD,NITER,NDE [...]   (one process)
        the point attacks of bench/torch_attack.py (same code, run on the device;
        de with population 32 and 8 generations unless told): keys
        attack_KIND_wWIDTH (images/s) and attack_KIND_wWIDTH_gpu_peak_mb, and the rest
        of torch_attack.py's keys
    torch_gpu_bench.py run --data CSV [--epochs 20 --rounds 2 --round-epochs 10
        --epochs-scale F --width 64 --batch 128 --device D --precision bf16|fp32]
        the whole PASM run (../shared/docs/pasm-method.md, pasm run's defaults,
        --attack grad) in PyTorch: baseline (onecycle to lr 0.1, crop padding 4,
        flip; augmentation on the device), then per round grad-attack mining of every
        Training face with the frozen teacher, and a student (the teacher's copy)
        trained --round-epochs on the originals and the masked faces (union, side
        12, fill the Training mean) with distillation (alpha 0.5, T 4, lr 0.01
        cosine); each phase picks its best epoch on PublicTest. Keys: run_s (wall
        time, loading the CSV excluded), run_load_s, run_PHASE_s per phase,
        run_roundK_val_acc / _test_acc (PublicTest / PrivateTest, no TTA) and
        run_gpu_peak_mb. --epochs-scale 0.05 gives a one-epoch smoke run.
    torch_gpu_bench.py curve MODEL CSV STEPS BATCH [--device D]
        pasm_bench curve's run in PyTorch (fp32, TF32 off): the checkpoint trained
        STEPS SGD steps on the CSV's faces in file order, no augmentation; keys
        torch_curve_loss_S (the loss of step S, before its update)
    torch_gpu_bench.py version

--device defaults to cuda; cpu works too (for checking this script without a GPU:
autocast then runs on the CPU, and peak memory is the RSS).
"""

import argparse
import copy
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_attack  # noqa: E402
from torch_bench import ResNet  # noqa: E402  (the benchmark's copy of pasm's network)

SIZE = 48
CLASSES = 7
TRAIN_FACES = 28709  # FER2013's Training split


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def peak_mb(dev):
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def autocast(dev, on):
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=on)


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def make_opt(model, lr):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4,
                           nesterov=True)


# ---------------------------------------------------------------- train


def train_one(dev, width, batch, fmt, min_s):
    bf16 = fmt != "fp32"
    set_tf32(False if fmt == "fp32" else torch.backends.cudnn.allow_tf32)
    torch.manual_seed(0)
    model = ResNet(width).to(dev).train().to(memory_format=torch.channels_last)
    opt = make_opt(model, 0.01)
    fwd = torch.compile(model) if fmt == "compiled_bf16" else model
    g = torch.Generator(device=dev).manual_seed(0)
    faces = torch.randint(256, (TRAIN_FACES, 1, SIZE, SIZE), generator=g, device=dev,
                          dtype=torch.uint8)
    labels = torch.randint(CLASSES, (TRAIN_FACES,), generator=g, device=dev)
    order = torch.randperm(TRAIN_FACES, generator=g, device=dev)
    at = [0]

    def step():
        if at[0] + batch > TRAIN_FACES:
            order.copy_(torch.randperm(TRAIN_FACES, generator=g, device=dev))
            at[0] = 0
        idx = order[at[0]:at[0] + batch]
        at[0] += batch
        x = ((faces[idx].float() - 128.0) / 64.0).contiguous(memory_format=torch.channels_last)
        y = labels[idx]
        opt.zero_grad(set_to_none=True)
        with autocast(dev, bf16):
            loss = F.cross_entropy(fwd(x), y)
        loss.backward()
        opt.step()

    reset_peak(dev)
    for _ in range(3 if fmt == "compiled_bf16" else 10 if dev.type == "cuda" else 1):
        step()
    sync(dev)
    t0, steps = time.perf_counter(), 0
    while steps < 3 or (time.perf_counter() - t0 < min_s and steps < 2000):
        step()
        steps += 1
        if steps % 10 == 0 or dev.type == "cpu":
            sync(dev)
    sync(dev)
    s = time.perf_counter() - t0
    key = "%s_b%d" % (fmt, batch)
    print("torch_train_ips_%s %.1f\ntorch_train_peak_mb_%s %.0f\ntorch_train_steps_%s %d" % (
        key, batch * steps / s, key, peak_mb(dev), key, steps), flush=True)
    del model, opt, fwd, faces, labels, order


# ---------------------------------------------------------------- attacks


def attack(dev, argv):
    """argv: KIND[,KIND...] MODEL CSV N[,N...] [options]: each kind in turn, in
    this process (one CUDA start-up for all)."""
    kinds, ns = argv[0].split(","), argv[3].split(",")
    if len(ns) == 1:
        ns = ns * len(kinds)
    if len(ns) != len(kinds):
        sys.exit("torch_gpu_bench: %d attacks, %d face counts" % (len(kinds), len(ns)))
    rest = list(argv[4:])
    if "--device" not in rest:
        rest += ["--device", str(dev)]
    for kind, n in zip(kinds, ns):
        torch_attack.main([kind, argv[1], argv[2], n] + rest)
        sys.stdout.flush()
        reset_peak(dev)


# ---------------------------------------------------------------- run


def load_csv(path, dev):
    """FER2013 CSV -> {split: (uint8 (n,1,48,48) on dev, int64 labels on dev)}."""
    import numpy as np
    pix = {"Training": [], "PublicTest": [], "PrivateTest": []}
    lab = {k: [] for k in pix}
    opener = __import__("gzip").open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        f.readline()
        for line in f:
            e, p, u = line.rstrip("\n").split(",")
            pix[u].append(p)
            lab[u].append(int(e))
    out = {}
    for u in pix:
        if not lab[u]:
            continue
        arr = np.fromstring(" ".join(pix[u]), dtype=np.uint8, sep=" ")  # noqa: NPY201
        out[u] = (torch.from_numpy(arr.reshape(-1, 1, SIZE, SIZE)).to(dev),
                  torch.tensor(lab[u], device=dev))
    return out


def augment(x, gen, pad=4):
    """Random crop with zero padding `pad` and horizontal flip, per image, on the
    device (x uint8 (n,1,S,S))."""
    n = x.shape[0]
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=gen, device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=gen, device=x.device)
    r = torch.arange(SIZE, device=x.device).view(1, SIZE, 1) + oy
    j = torch.arange(SIZE, device=x.device).view(1, 1, SIZE)
    flip = torch.rand(n, 1, 1, generator=gen, device=x.device) < 0.5
    c = ox + torch.where(flip, SIZE - 1 - j, j)  # a flipped crop reads its columns backwards
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    return xp[idx, 0, r.expand(n, SIZE, SIZE), c.expand(n, SIZE, SIZE)].unsqueeze(1)


class Norm:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, x):
        return ((x.float() / 255.0 - self.mean) / self.std).contiguous(
            memory_format=torch.channels_last)


def evaluate(model, norm, data, bf16, dev, batch=1024, tta=False):
    if data is None:
        return float("nan")
    x, y = data
    model.eval()
    right = 0
    with torch.inference_mode(), autocast(dev, bf16):
        for s in range(0, x.shape[0], batch):
            xb = norm(x[s:s + batch])
            logits = model(xb).float()
            if tta:
                logits = logits + model(torch.flip(xb, dims=[3])).float()
            right += int((logits.argmax(1) == y[s:s + batch]).sum())
    return right / x.shape[0]


def fit(model, norm, train_x, train_y, data, epochs, batch, lr, schedule, bf16, dev, seed,
        teacher=None, alpha=0.5, temp=4.0):
    """Trains in place; returns the best epoch's state (on PublicTest) loaded."""
    n = train_x.shape[0]
    steps_per_epoch = n // batch  # drop the last partial batch, as a fixed-shape loop does
    total = max(1, epochs * steps_per_epoch)
    opt = make_opt(model, lr)
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    gen = torch.Generator(device=dev).manual_seed(seed)
    best, best_acc = None, -1.0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen, device=dev)
        for k in range(steps_per_epoch):
            idx = perm[k * batch:(k + 1) * batch]
            xb = norm(augment(train_x[idx], gen))
            yb = train_y[idx]
            with autocast(dev, bf16):
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(xb)
                    kd = F.kl_div(F.log_softmax(out.float() / temp, 1),
                                  F.softmax(t_out.float() / temp, 1), reduction="batchmean")
                    loss = (1 - alpha) * loss + alpha * temp * temp * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(model, norm, data.get("PublicTest"), bf16, dev)
        if acc > best_acc:
            best_acc = acc
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best)
    return model


def mine_grad(model, norm_mean, norm_std, x, y, dev, bf16):
    """pasm mine --attack grad with torch_attack.py's code: per face (row, col);
    under autocast with bf16, as pasm run mines in its precision."""
    model.eval().requires_grad_(False)
    sc = torch_attack.Scorer(model, norm_mean.view(1), norm_std.view(1), torch.channels_last, 1024,
                             bf16)
    with torch.device(dev):
        out = torch_attack.attack_grad(sc, sc.normalise(x), y, None)
    model.requires_grad_(True)
    return out["row"], out["col"], float(out["fooled"].float().mean())


def mask(x, rows, cols, side, fill):
    """x uint8 (n,1,S,S): a side x side square centred on (row, col), clipped, = fill."""
    n = x.shape[0]
    r = torch.arange(SIZE, device=x.device).view(1, SIZE, 1)
    c = torch.arange(SIZE, device=x.device).view(1, 1, SIZE)
    top, left = (rows - side // 2).view(n, 1, 1), (cols - side // 2).view(n, 1, 1)
    inside = (r >= top) & (r < top + side) & (c >= left) & (c < left + side)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, fill), x)


def run(dev, args):
    t_load = time.perf_counter()
    data = load_csv(args.data, dev)
    sync(dev)
    load_s = time.perf_counter() - t_load
    bf16 = args.precision == "bf16"
    train_x, train_y = data["Training"]
    m = train_x.float().mean() / 255.0
    sd = (train_x.float() / 255.0).std()
    norm = Norm(m, sd)
    fill = int(round(float(m) * 255.0))
    scale = args.epochs_scale

    def ep(e):
        return max(1, int(round(e * scale)))

    reset_peak(dev)
    times, accs = {}, {}
    t_all = time.perf_counter()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    teacher = ResNet(args.width).to(dev).to(memory_format=torch.channels_last)
    fit(teacher, norm, train_x, train_y, data, ep(args.epochs), args.batch, 0.1, "onecycle",
        bf16, dev, args.seed)
    accs[0] = (evaluate(teacher, norm, data.get("PublicTest"), bf16, dev),
               evaluate(teacher, norm, data.get("PrivateTest"), bf16, dev))
    sync(dev)
    times["baseline"] = time.perf_counter() - t0
    for k in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        rows, cols, fooled = mine_grad(teacher, m, sd, train_x, train_y, dev, bf16)
        sync(dev)
        times["mine%d" % k] = time.perf_counter() - t0
        print("run_mine%d_fooled %.4f" % (k, fooled), flush=True)
        t0 = time.perf_counter()
        masked = mask(train_x, rows, cols, SIZE // 4, fill)
        ux, uy = torch.cat([train_x, masked]), torch.cat([train_y, train_y])
        student = copy.deepcopy(teacher)
        teacher.eval().requires_grad_(False)
        fit(student, norm, ux, uy, data, ep(args.round_epochs), args.batch, 0.01, "cosine",
            bf16, dev, args.seed + k, teacher=teacher)
        teacher = student
        accs[k] = (evaluate(teacher, norm, data.get("PublicTest"), bf16, dev),
                   evaluate(teacher, norm, data.get("PrivateTest"), bf16, dev))
        sync(dev)
        times["round%d" % k] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    print("run_s %.2f\nrun_load_s %.2f" % (total, load_s))
    for name, s in times.items():
        print("run_%s_s %.2f" % (name, s))
    for k, (va, te) in accs.items():
        print("run_round%d_val_acc %.4f\nrun_round%d_test_acc %.4f" % (k, va, k, te))
    print("run_epochs %d\nrun_round_epochs %d\nrun_rounds %d\nrun_train_faces %d" % (
        ep(args.epochs), ep(args.round_epochs), args.rounds, train_x.shape[0]))
    print("run_gpu_peak_mb %.0f" % peak_mb(dev))


# ---------------------------------------------------------------- main


def curve(dev, args):
    """pasm_bench curve's run in PyTorch: the checkpoint trained args.steps fp32
    SGD steps (lr 0.001, momentum 0.9, Nesterov, weight decay 5e-4; TF32 off) on
    batches of the CSV's faces in file order (batch s: faces s*B .. s*B+B-1,
    wrapping), normalised with the checkpoint's mean and std, no augmentation."""
    import numpy as np
    set_tf32(False)
    torch.backends.cudnn.benchmark = False
    model, _, mean, std = torch_attack.load_model(args.model, torch.contiguous_format)
    model = model.to(dev).train().requires_grad_(True)
    pixels, labels = [], []
    opener = __import__("gzip").open if args.csv.endswith(".gz") else open
    with opener(args.csv, "rt", newline="") as f:
        f.readline()
        for line in f:
            e, p, _ = line.rstrip("\n").split(",")
            pixels.append(p)
            labels.append(int(e))
    x_all = torch.from_numpy(np.fromstring(" ".join(pixels), dtype=np.uint8,  # noqa: NPY201
                                           sep=" ").reshape(-1, 1, SIZE, SIZE)).to(dev)
    y_all = torch.tensor(labels, device=dev)
    n = x_all.shape[0]
    mean, std = mean.to(dev).view(1, -1, 1, 1), std.to(dev).view(1, -1, 1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    print("torch_curve_device %s" % dev)
    for s in range(args.steps):
        idx = (torch.arange(args.batch, device=dev) + s * args.batch) % n
        x = (x_all[idx].float() / 255.0 - mean) / std
        loss = F.cross_entropy(model(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        print("torch_curve_loss_%d %.8f" % (s + 1, loss.item()))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    mode = sys.argv[1]
    if mode == "version":
        print("torch_version %s\ntorch_cuda %s\ntorch_cudnn %s" % (
            torch.__version__, torch.version.cuda, torch.backends.cudnn.version()))
        if torch.cuda.is_available():
            print("torch_device %s" % torch.cuda.get_device_name(0).replace(" ", "_"))
        return
    rest = sys.argv[2:]
    dev_name = "cuda"
    if "--device" in rest:
        dev_name = rest[rest.index("--device") + 1]
    dev = torch.device(dev_name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_gpu_bench: no CUDA device (torch %s)" % torch.__version__)
    torch.backends.cudnn.benchmark = True
    if mode == "train":
        ap = argparse.ArgumentParser(prog="torch_gpu_bench.py train")
        ap.add_argument("width", type=int)
        ap.add_argument("batches")
        ap.add_argument("format", choices=["eager_bf16", "compiled_bf16", "fp32"])
        ap.add_argument("--device", default="cuda")
        ap.add_argument("--min-s", type=float, default=3.0)
        a = ap.parse_args(rest)
        for b in a.batches.split(","):
            train_one(dev, a.width, int(b), a.format, a.min_s)
            reset_peak(dev)
    elif set(mode.split(",")) <= {"grad", "iter", "de"}:
        attack(dev, [mode] + rest)
    elif mode == "curve":
        ap = argparse.ArgumentParser(prog="torch_gpu_bench.py curve")
        ap.add_argument("model")
        ap.add_argument("csv")
        ap.add_argument("steps", type=int)
        ap.add_argument("batch", type=int)
        ap.add_argument("--device", default="cuda")
        curve(dev, ap.parse_args(rest))
    elif mode == "run":
        ap = argparse.ArgumentParser(prog="torch_gpu_bench.py run")
        ap.add_argument("--data", required=True)
        ap.add_argument("--epochs", type=int, default=20)
        ap.add_argument("--rounds", type=int, default=2)
        ap.add_argument("--round-epochs", type=int, default=10)
        ap.add_argument("--epochs-scale", type=float, default=1.0)
        ap.add_argument("--width", type=int, default=64)
        ap.add_argument("--batch", type=int, default=128)
        ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
        ap.add_argument("--seed", type=int, default=0)
        ap.add_argument("--device", default="cuda")
        run(dev, ap.parse_args(rest))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
