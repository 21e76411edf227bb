"""pasm_torch: pasm's ResNet-18 as a PyTorch module, and pasm checkpoints.

pasm (a C library and CLI) trains facial-expression classifiers and writes them
as safetensors files. This module is the same network in PyTorch, so weights
move both ways in one line:

    import pasm_torch
    model, meta = pasm_torch.load("fer.safetensors")      # pasm -> PyTorch
    pasm_torch.save(model, "tuned.safetensors", norm_mean=[0.5], norm_std=[0.25])

The network is torchvision's ResNet-18 adapted to small faces: `conv1` is a
3x3 convolution with stride 1 and padding 1 (instead of 7x7 stride 2), there is
no max-pool, and the base width w (16, 32 or 64), the input channels (1 or 3)
and the number of classes are free. At width 64 its state_dict keys and shapes
are exactly torchvision's `resnet18()` with `conv1` replaced by
`Conv2d(in_channels, 64, 3, 1, 1, bias=False)` and `maxpool` removed (the
max-pool has no state, so the keys equal torchvision's; only `conv1.weight`'s
shape differs). Initialisation is torchvision's: convolutions
kaiming_normal_(mode="fan_out", nonlinearity="relu"), BatchNorm weight 1 and
bias 0, `fc` PyTorch's default Linear init.

A pasm checkpoint is a safetensors file holding the state_dict (F32
parameters and running statistics, I64 `num_batches_tracked` of shape [] as
PyTorch has it) and string metadata: format=pasm, format_version, arch, width,
in_channels, num_classes, input_size, classes, norm_mean, norm_std, epoch,
seed, round, created_by, args. Metadata is optional on read: for a file that
PyTorch wrote with `safetensors.torch.save_file(model.state_dict(), path)`,
width, channels and classes are inferred from the tensor shapes, the input
size defaults to 48, class names follow the class count (FER2013's for 7,
FER+'s for 8, else class0..), and the normalisation must be given to `load`
(norm_mean=..., norm_std=...) before `preprocess` can be used.

Needs torch, numpy and safetensors; torchvision is not needed.
"""

import json
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open

__version__ = "0.1.0"
__all__ = ["ResNet", "BasicBlock", "build", "load", "save", "preprocess", "write_safetensors",
           "default_classes", "FER2013_CLASSES", "FERPLUS_CLASSES"]

FORMAT_VERSION = 1
ARCH = "resnet18"
DEFAULT_INPUT_SIZE = 48
FER2013_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
FERPLUS_CLASSES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                   "fear", "contempt"]


def default_classes(num_classes):
    """Class names pasm assumes for a class count: FER2013's, FER+'s or class0..."""
    if num_classes == 7:
        return list(FER2013_CLASSES)
    if num_classes == 8:
        return list(FERPLUS_CLASSES)
    return ["class%d" % i for i in range(num_classes)]


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions with BN, identity or
    1x1-conv+BN shortcut (`downsample`), ReLU after the sum."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet-18 for small faces (see the module docstring). Attributes
    `width`, `in_channels` and `num_classes` record the configuration."""

    def __init__(self, width=16, in_channels=1, num_classes=7):
        super().__init__()
        if width < 1 or in_channels not in (1, 3) or num_classes < 2:
            raise ValueError("pasm_torch: bad config width=%d in_channels=%d num_classes=%d"
                             " (need width >= 1, in_channels 1 or 3, num_classes >= 2)"
                             % (width, in_channels, num_classes))
        self.width, self.in_channels, self.num_classes = width, in_channels, num_classes
        self.inplanes = width
        # Module creation order follows torchvision's so that the random stream
        # is consumed the same way (conv1, bn1, layers, fc, then re-init).
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(width, 2, stride=1)
        self.layer2 = self._make_layer(2 * width, 2, stride=2)
        self.layer3 = self._make_layer(4 * width, 2, stride=2)
        self.layer4 = self._make_layer(8 * width, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def build(width=16, in_channels=1, num_classes=7):
    """A freshly initialised network (seed with torch.manual_seed first)."""
    return ResNet(width, in_channels, num_classes)


# ---- checkpoints ----

def _floats(text, key, path):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError("%s: metadata %s=%r is not a comma-separated list of numbers"
                         % (path, key, text)) from None


def _int_meta(meta, key, path, default):
    if key not in meta:
        return default
    try:
        return int(meta[key])
    except ValueError:
        raise ValueError("%s: metadata %s=%r is not an integer" % (path, key, meta[key])) from None


def _json_meta(meta, key, path):
    try:
        return json.loads(meta.get(key, "{}"))
    except ValueError:
        raise ValueError("%s: metadata %s is not valid JSON" % (path, key)) from None


def _infer_config(tensors, path):
    """width, in_channels, num_classes from conv1.weight and fc.weight, as pasm does."""
    for name in ("conv1.weight", "fc.weight"):
        if name not in tensors:
            raise ValueError("%s: tensor %s is missing; not a pasm resnet18 checkpoint"
                             % (path, name))
    conv1, fc = tensors["conv1.weight"], tensors["fc.weight"]
    if conv1.dim() != 4 or tuple(conv1.shape[2:]) != (3, 3):
        raise ValueError("%s: conv1.weight has shape %s, expected [width, channels, 3, 3]"
                         " (torchvision's 7x7 stem is not pasm's)" % (path, list(conv1.shape)))
    if fc.dim() != 2:
        raise ValueError("%s: fc.weight has shape %s, expected [classes, 8*width]"
                         % (path, list(fc.shape)))
    return int(conv1.shape[0]), int(conv1.shape[1]), int(fc.shape[0])


def _check_names(model, tensors, path):
    """Every tensor present, nothing extra. load_state_dict(strict=True) alone
    is not enough: for a plain dict (no state_dict version) BatchNorm fills a
    missing num_batches_tracked with 0 instead of failing."""
    expected = set(model.state_dict())
    missing = [k for k in model.state_dict() if k not in tensors]
    unexpected = sorted(k for k in tensors if k not in expected)
    if missing or unexpected:
        raise ValueError("%s: not this network's state_dict: missing %s, unexpected %s"
                         % (path, missing or "none", unexpected or "none"))


def _check_meta_agrees(meta, config, path):
    if meta.get("format", "pasm") != "pasm":
        raise ValueError("%s: metadata format=%r, expected 'pasm'" % (path, meta["format"]))
    if meta.get("arch", ARCH) != ARCH:
        raise ValueError("%s: metadata arch=%r, only %r is known" % (path, meta["arch"], ARCH))
    version = _int_meta(meta, "format_version", path, FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise ValueError("%s: format_version %d is newer than this module's %d"
                         % (path, version, FORMAT_VERSION))
    for key, value in zip(("width", "in_channels", "num_classes"), config):
        stated = _int_meta(meta, key, path, value)
        if stated != value:
            raise ValueError("%s: metadata %s=%d but the tensors say %d"
                             % (path, key, stated, value))


def _norm_list(values, channels, what, source):
    values = [float(v) for v in values]
    if len(values) == 1 and channels > 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError("%s: %s has %d values, the network has %d channels"
                         % (source, what, len(values), channels))
    return values


def load(path, map_location="cpu", **overrides):
    """Loads a pasm checkpoint into a new network in eval mode, strictly:
    every tensor of the network present, none extra, shapes equal
    (load_state_dict(strict=True); as in PyTorch, a [1] num_batches_tracked
    is accepted for the 0-dim buffer).

    Returns (model, meta); meta is a dict with the keys design.md names
    (width, in_channels, num_classes, input_size, classes as a list,
    norm_mean/norm_std as lists or None when unknown, epoch, seed, round,
    created_by, args as a dict) plus has_metadata. overrides replace or
    supply: input_size, classes (list or comma string), norm_mean, norm_std
    (lists in 0..1 pixel units; one value serves every channel).
    """
    allowed = {"input_size", "classes", "norm_mean", "norm_std"}
    unknown = set(overrides) - allowed
    if unknown:
        raise TypeError("pasm_torch.load: unknown override(s) %s; allowed: %s"
                        % (sorted(unknown), sorted(allowed)))
    path = str(path)
    with safe_open(path, framework="pt", device="cpu") as f:
        file_meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = _infer_config(tensors, path)
    _check_meta_agrees(file_meta, config, path)
    width, in_channels, num_classes = config
    # The weights are overwritten at once; keep the caller's random stream as it was.
    with torch.random.fork_rng(devices=[]):
        model = build(width, in_channels, num_classes)
    _check_names(model, tensors, path)
    model.load_state_dict(tensors, strict=True)
    model.to(map_location).eval()

    meta = {
        "format": "pasm", "format_version": FORMAT_VERSION, "arch": ARCH,
        "width": width, "in_channels": in_channels, "num_classes": num_classes,
        "input_size": _int_meta(file_meta, "input_size", path, DEFAULT_INPUT_SIZE),
        "classes": (file_meta["classes"].split(",") if "classes" in file_meta
                    else default_classes(num_classes)),
        "norm_mean": (_floats(file_meta["norm_mean"], "norm_mean", path)
                      if "norm_mean" in file_meta else None),
        "norm_std": (_floats(file_meta["norm_std"], "norm_std", path)
                     if "norm_std" in file_meta else None),
        "epoch": _int_meta(file_meta, "epoch", path, 0),
        "seed": _int_meta(file_meta, "seed", path, 0),
        "round": _int_meta(file_meta, "round", path, 0),
        "created_by": file_meta.get("created_by", ""),
        "args": _json_meta(file_meta, "args", path),
        "has_metadata": bool(file_meta),
    }
    for key, value in overrides.items():
        if key == "classes" and isinstance(value, str):
            value = value.split(",")
        meta[key] = list(value) if key != "input_size" else int(value)
    if len(meta["classes"]) != num_classes:
        raise ValueError("%s: %d class names for a %d-class network"
                         % (path, len(meta["classes"]), num_classes))
    for key in ("norm_mean", "norm_std"):
        if meta[key] is not None:
            meta[key] = _norm_list(meta[key], in_channels, key, path)
    return model, meta


_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_safetensors(tensors, path, metadata=None):
    """Writes a dict of F32/I64 tensors as safetensors, byte-reproducibly.

    safetensors' own writer keeps metadata in a hash map, so the same call
    gives different bytes from run to run; this one sorts everything
    (8-byte types first, then by name, as safetensors lays data out) and
    pads the header with spaces to 8 bytes so every tensor is aligned.
    The write is atomic: a temporary file beside path, then a rename.
    """
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(metadata[k]) for k in sorted(metadata)}
    for name in order:
        tensor = tensors[name].detach().cpu().contiguous()
        if tensor.dtype not in _DTYPES:
            raise ValueError("%s: tensor %s has dtype %s; only float32 and int64 are written"
                             % (path, name, tensor.dtype))
        code, numpy_type = _DTYPES[tensor.dtype]
        data = tensor.numpy().astype(numpy_type, copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for data in chunks:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is shareable
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _state_for_file(model):
    """The state_dict as contiguous CPU tensors: F32 floats, I64 counters."""
    out = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        tensor = tensor.to(torch.int64) if not tensor.is_floating_point() else tensor.float()
        out[name] = tensor.contiguous().clone()
    return out


def save(model, path, classes=None, norm_mean=None, norm_std=None, input_size=48,
         epoch=0, seed=0, round=0, args=None):
    """Writes model as a pasm checkpoint (state_dict + metadata), atomically
    and byte-reproducibly (see write_safetensors).

    norm_mean/norm_std are per channel in 0..1 pixel units (one value serves
    every channel); pasm needs them to read its inputs the way training did.
    classes defaults to default_classes(num_classes). args is a dict (or a
    JSON string) recorded as the run's options.
    """
    in_channels = model.conv1.weight.shape[1]
    width = model.conv1.weight.shape[0]
    num_classes = model.fc.weight.shape[0]
    classes = default_classes(num_classes) if classes is None else list(classes)
    if len(classes) != num_classes:
        raise ValueError("%s: %d class names for a %d-class network"
                         % (path, len(classes), num_classes))
    if any("," in c or not c for c in classes):
        raise ValueError("%s: class names must be non-empty and free of commas" % path)
    meta = {
        "format": "pasm", "format_version": str(FORMAT_VERSION), "arch": ARCH,
        "width": str(width), "in_channels": str(in_channels),
        "num_classes": str(num_classes), "input_size": str(int(input_size)),
        "classes": ",".join(classes),
        "epoch": str(int(epoch)), "seed": str(int(seed)), "round": str(int(round)),
        "created_by": "pasm_torch %s" % __version__,
        "args": json.dumps(json.loads(args) if isinstance(args, str) else (args or {})),
    }
    for key, values in (("norm_mean", norm_mean), ("norm_std", norm_std)):
        if values is not None:
            values = _norm_list(values, in_channels, key, path)
            meta[key] = ",".join("%.8g" % v for v in values)
    write_safetensors(_state_for_file(model), path, meta)


def _to_nchw(images, channels):
    """Accepts (H,W), (C,H,W), (H,W,C), (N,H,W) for one channel, (N,C,H,W), (N,H,W,C)."""
    if images.ndim == 2:
        images = images[None, None]
    elif images.ndim == 3:
        if images.shape[0] == channels:
            images = images[None]
        elif images.shape[-1] == channels:
            images = images.transpose(2, 0, 1)[None]
        elif channels == 1:
            images = images[:, None]
    elif images.ndim == 4 and images.shape[1] != channels and images.shape[-1] == channels:
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError("preprocess: cannot read shape %s as images with %d channel(s)"
                         % (tuple(images.shape), channels))
    return images


def preprocess(images, meta):
    """uint8 image(s) -> normalised float32 tensor (N, C, S, S) for the model.

    images: numpy uint8 (or a tensor), shaped (H,W), (C,H,W), (H,W,C),
    (N,H,W) for grayscale, (N,C,H,W) or (N,H,W,C), already at
    meta["input_size"]. Computes (pixel/255 - mean)/std per channel with the
    checkpoint's normalisation.
    """
    if torch.is_tensor(images):
        images = images.cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError("preprocess: expected uint8 pixels, got %s" % images.dtype)
    if meta.get("norm_mean") is None or meta.get("norm_std") is None:
        raise ValueError("preprocess: the checkpoint has no normalisation; pass "
                         "norm_mean=... and norm_std=... to pasm_torch.load")
    channels = meta["in_channels"]
    images = _to_nchw(images, channels)
    size = meta["input_size"]
    if images.shape[2] != size or images.shape[3] != size:
        raise ValueError("preprocess: images are %dx%d, the model expects %dx%d; resize first"
                         % (images.shape[2], images.shape[3], size, size))
    mean = torch.tensor(meta["norm_mean"], dtype=torch.float32).view(1, channels, 1, 1)
    std = torch.tensor(meta["norm_std"], dtype=torch.float32).view(1, channels, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    return (x - mean) / std
