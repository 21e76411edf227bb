#!/usr/bin/env python3
"""PyTorch's side of the benchmark: the same measurements as bench/pasm_bench.c,
one per process (bench/run.sh runs each), printed as "key value" lines.

    torch_bench.py train|infer1|infer128 WIDTH nchw|channels_last|compiled|bf16   (2 threads)
    torch_bench.py load PATH                       (gzip + csv + torch.tensor)
    torch_bench.py ckpt WIDTH DIR                  (checkpoint save and load)
    torch_bench.py ckpt-read WIDTH DIR             (loads pasm's checkpoint, strictly)
    torch_bench.py version

The network is pasm's ResNet-18 (python/pasm_torch.py's structure, written out
here so that the benchmark needs torch alone). bench/run.sh runs each timed mode
in both memory formats, contiguous NCHW and channels-last, each in its own
process, and the report takes the faster. "compiled" is channels-last under torch.compile
(inductor, compiled in the warm-up, which is not timed); bench/run.sh adds it only with
BENCH_TORCH_COMPILE=1, since compiling takes minutes of the benchmark's budget on two cores.
"bf16" is channels-last eager under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's
mixed precision on the CPU (fp32 weights, bf16 convolutions; oneDNN uses AMX where it can),
the counterpart of pasm's --precision bf16; its keys end in "_bf16".
"""

import csv
import gzip
import io
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 128
CLASSES = 7
SIZE = 48
THREADS = 2


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(out + short)


class ResNet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for stage in range(4):
            cout = width << stage
            for i in range(2):
                layers.append(BasicBlock(cin, cout, 2 if (i == 0 and stage > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, CLASSES)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


COMPILED = False
AUTOCAST = False


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=AUTOCAST)


def maybe_compile(model):
    return torch.compile(model) if COMPILED else model


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def batch(n):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, SIZE, SIZE, generator=g) * 4.0 - 2.0
    y = torch.arange(n) % CLASSES
    return x, y


def timed(step, warmup, min_reps, max_reps, min_s):
    for _ in range(warmup):
        step()
    t0, reps = time.perf_counter(), 0
    while reps < max_reps and (reps < min_reps or time.perf_counter() - t0 < min_s):
        step()
        reps += 1
    return (time.perf_counter() - t0) / reps


def train(width, fmt):
    torch.manual_seed(0)
    model = ResNet(width).train().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    fwd = maybe_compile(model)
    x, y = batch(BATCH)
    x = x.contiguous(memory_format=fmt)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(fwd(x), y)
        loss.backward()
        opt.step()

    s = timed(step, 2 if COMPILED else 1, 2, 50, 20.0 if width >= 64 else 8.0)
    return BATCH / s


def infer128(width, fmt):
    torch.manual_seed(0)
    model = ResNet(width).eval().to(memory_format=fmt)
    fwd = maybe_compile(model)
    x = batch(BATCH)[0].contiguous(memory_format=fmt)
    with torch.inference_mode(), autocast():
        s = timed(lambda: fwd(x), 2 if COMPILED else 1, 3, 100, 10.0 if width >= 64 else 5.0)
    return BATCH / s


def infer1(width, fmt):
    torch.manual_seed(0)
    model = ResNet(width).eval().to(memory_format=fmt)
    fwd = maybe_compile(model)
    x = batch(1)[0].contiguous(memory_format=fmt)
    lat = []
    with torch.inference_mode(), autocast():
        for _ in range(10):
            fwd(x)
        t_start = time.perf_counter()
        budget = 8.0 if width >= 64 else 5.0
        while len(lat) < 2000 and (len(lat) < 20 or time.perf_counter() - t_start < budget):
            t0 = time.perf_counter()
            fwd(x)
            lat.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(lat)


def load(path):
    """A typical PyTorch pipeline's loading: gzip, csv, pixels to a uint8 tensor."""
    t0 = time.perf_counter()
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    pixels = torch.tensor([[int(v) for v in r["pixels"].split()] for r in rows],
                          dtype=torch.uint8).reshape(len(rows), 1, SIZE, SIZE)
    labels = torch.tensor([int(r["emotion"]) for r in rows])
    t = time.perf_counter() - t0
    print("load_s %.3f\nload_images %d\nload_rss_mb %.0f" % (t, labels.numel(), peak_rss_mb()))


def median_ms(step):
    """Median ms of step's reps after one warm-up: at least 5 reps and 3 s, at most 200,
    as pasm_bench's median_ms."""
    step()
    lat, t_start = [], time.perf_counter()
    while len(lat) < 200 and (len(lat) < 5 or time.perf_counter() - t_start < 3.0):
        t0 = time.perf_counter()
        step()
        lat.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(lat)


def pasm_resnet():
    """python/pasm_torch.py's ResNet-18: pasm's tensor names (torchvision's)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import pasm_torch
    return pasm_torch.ResNet


def ckpt(width, folder):
    """A PyTorch user's checkpoint I/O of the same network, medians in ms, keys with the
    way appended: save_file(state_dict) (safetensors, as pasm's files; "+fsync": then the
    file fsynced, the durability pasm_checkpoint_save gives) and torch.save (.pt);
    load: build the model, read the file (load_file; torch.load(weights_only=True)) and
    load_state_dict, as loading a model for inference takes. Writes DIR/torch_wW.safetensors
    for pasm_bench ckpt to load."""
    from safetensors.torch import load_file, save_file
    resnet = pasm_resnet()
    model = resnet(width=width, in_channels=1, num_classes=CLASSES)
    st_path = os.path.join(folder, "torch_w%d.safetensors" % width)
    pt_path = os.path.join(folder, "torch_w%d.pt" % width)

    def save_st():
        save_file(model.state_dict(), st_path)

    def save_st_fsync():
        save_file(model.state_dict(), st_path)
        fd = os.open(st_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save_pt():
        torch.save(model.state_dict(), pt_path)

    def load_st():
        m = resnet(width=width, in_channels=1, num_classes=CLASSES)
        m.load_state_dict(load_file(st_path))
        m.eval()

    def load_pt():
        m = resnet(width=width, in_channels=1, num_classes=CLASSES)
        m.load_state_dict(torch.load(pt_path, weights_only=True))
        m.eval()

    key = "ckpt_%%s_ms_w%d@%%s" % width
    for what, way, step in (("save", "safetensors", save_st), ("save", "pt", save_pt),
                            ("load", "safetensors", load_st), ("load", "pt", load_pt),
                            ("savesync", "safetensors", save_st_fsync)):
        print(key % (what, way), "%.2f" % median_ms(step))
    os.remove(pt_path)
    print("ckpt_w%d_rss_mb %.0f" % (width, peak_rss_mb()))


def ckpt_read(width, folder):
    """pasm's checkpoint (pasm_bench ckpt) into PyTorch's model, strictly: every tensor
    name and shape must match; prints ckpt_read_pasm_wW 1 (or fails)."""
    from safetensors.torch import load_file
    model = pasm_resnet()(width=width, in_channels=1, num_classes=CLASSES)
    model.load_state_dict(load_file(os.path.join(folder, "pasm_w%d.safetensors" % width)),
                          strict=True)
    print("ckpt_read_pasm_w%d 1" % width)


def main():
    torch.set_num_threads(THREADS)
    mode = sys.argv[1]
    if mode == "version":
        print("torch_version %s" % torch.__version__)
        return
    if mode == "load":
        load(sys.argv[2])
        return
    if mode in ("ckpt", "ckpt-read"):
        (ckpt if mode == "ckpt" else ckpt_read)(int(sys.argv[2]), sys.argv[3])
        return
    width, fmt_name = int(sys.argv[2]), sys.argv[3]
    global COMPILED, AUTOCAST
    COMPILED = fmt_name == "compiled"
    AUTOCAST = fmt_name == "bf16"
    fmt = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last,
           "compiled": torch.channels_last, "bf16": torch.channels_last}[fmt_name]
    fn = {"train": train, "infer1": infer1, "infer128": infer128}[mode]
    key = "%s_w%d%s" % (mode, width, "_bf16" if AUTOCAST else "")
    print("%s %.3f\n%s_rss_mb %.0f" % (key, fn(width, fmt), key, peak_rss_mb()))

if __name__ == "__main__":
    main()
