#!/usr/bin/env python3
"""Tests for pasm_torch (run by hand: python python/test_pasm_torch.py).

Covers the save/load round trip, strict loading, torchvision's state_dict
names and shapes at width 64 (checked against rules written out here, so
torchvision is not needed), inference of the configuration from a file without
metadata, preprocessing, and, when the committed fixtures and the shared data
are present, the fixture script's --check-pasm mode.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import pasm_torch  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
SHARED = Path(os.environ.get("PASM_SHARED", str(REPO.parent / "shared")))
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(width, in_channels, num_classes):
    """torchvision resnet18's state_dict (names in order, shapes) with conv1 3x3,
    written out from torchvision's rules rather than from pasm_torch."""
    keys = [("conv1.weight", [width, in_channels, 3, 3])]

    def bn(prefix, channels):
        for k in BN_KEYS:
            keys.append(("%s.%s" % (prefix, k), [] if k == "num_batches_tracked" else [channels]))

    bn("bn1", width)
    inplanes = width
    for layer in range(1, 5):
        planes = width * 2 ** (layer - 1)
        for block in range(2):
            p = "layer%d.%d" % (layer, block)
            keys.append((p + ".conv1.weight", [planes, inplanes, 3, 3]))
            bn(p + ".bn1", planes)
            keys.append((p + ".conv2.weight", [planes, planes, 3, 3]))
            bn(p + ".bn2", planes)
            if block == 0 and layer > 1:
                keys.append((p + ".downsample.0.weight", [planes, inplanes, 1, 1]))
                bn(p + ".downsample.1", planes)
            inplanes = planes
    keys += [("fc.weight", [num_classes, 8 * width]), ("fc.bias", [num_classes])]
    return keys


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def trained_a_little(width=16, in_channels=1, num_classes=7, seed=3):
    """A network whose running statistics and counters are not the initial ones."""
    torch.manual_seed(seed)
    model = pasm_torch.build(width, in_channels, num_classes)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, in_channels, 32, 32))
    return model.eval()


class Structure(unittest.TestCase):
    def test_width64_matches_torchvision_names_and_shapes(self):
        for channels in (1, 3):
            model = pasm_torch.build(64, channels, 1000)
            got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
            self.assertEqual(got, torchvision_keys(64, channels, 1000))
            self.assertEqual(len(got), 122)
        # torchvision resnet18 has 11,689,512 parameters; a 3x3 conv1 instead
        # of 7x7 has 64*3*(49-9) = 7,680 fewer.
        params = sum(p.numel() for p in pasm_torch.build(64, 3, 1000).parameters())
        self.assertEqual(params, 11689512 - 7680)

    def test_other_widths_follow_the_same_rules(self):
        for width, channels, classes in ((16, 1, 7), (32, 3, 8), (16, 3, 2)):
            model = pasm_torch.build(width, channels, classes)
            got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
            self.assertEqual(got, torchvision_keys(width, channels, classes))

    def test_strides_no_maxpool_and_output_shape(self):
        model = pasm_torch.build(16, 1, 7)
        self.assertEqual(model.conv1.stride, (1, 1))
        self.assertFalse(hasattr(model, "maxpool"))
        for layer, stride in ((model.layer1, 1), (model.layer2, 2), (model.layer3, 2),
                              (model.layer4, 2)):
            self.assertEqual(layer[0].conv1.stride, (stride, stride))
            self.assertEqual(layer[1].conv1.stride, (1, 1))
            if stride == 2:
                self.assertEqual(layer[0].downsample[0].stride, (2, 2))
                self.assertIsNone(layer[0].downsample[0].bias)
        features = {}
        model.layer4.register_forward_hook(lambda m, i, o: features.update(out=o.shape))
        self.assertEqual(tuple(model.eval()(torch.zeros(2, 1, 48, 48)).shape), (2, 7))
        self.assertEqual(tuple(features["out"]), (2, 128, 6, 6))

    def test_initialisation_is_torchvisions(self):
        torch.manual_seed(0)
        model = pasm_torch.build(64, 3, 10)
        w = model.layer4[1].conv2.weight  # fan_out = 512*9: std sqrt(2/4608)
        self.assertAlmostEqual(w.std().item(), (2 / (512 * 9)) ** 0.5, delta=0.0005)
        self.assertTrue(torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0))
        bound = 1 / 512 ** 0.5
        self.assertLessEqual(model.fc.weight.abs().max().item(), bound)
        self.assertLessEqual(model.fc.bias.abs().max().item(), bound)
        torch.manual_seed(0)
        again = pasm_torch.build(64, 3, 10)
        self.assertTrue(torch.equal(again.fc.weight, model.fc.weight))


class Checkpoints(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pasm_torch_test.")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_round_trip(self):
        model = trained_a_little(16, 3, 10)
        path = self.path("m.safetensors")
        pasm_torch.save(model, path, classes=["c%d" % i for i in range(10)],
                        norm_mean=[0.1, 0.2, 1 / 3], norm_std=[0.25], input_size=64,
                        epoch=12, seed=99, round=2, args={"lr": 0.1})
        loaded, meta = pasm_torch.load(path)
        a, b = model.state_dict(), loaded.state_dict()
        self.assertEqual(list(a), list(b))
        for k in a:
            self.assertEqual(a[k].dtype, b[k].dtype, k)
            self.assertTrue(torch.equal(a[k], b[k]), k)
        x = torch.randn(2, 3, 64, 64)
        self.assertTrue(torch.equal(model(x), loaded(x)))
        self.assertEqual((meta["width"], meta["in_channels"], meta["num_classes"]), (16, 3, 10))
        self.assertEqual(meta["classes"], ["c%d" % i for i in range(10)])
        self.assertEqual(meta["input_size"], 64)
        self.assertEqual((meta["epoch"], meta["seed"], meta["round"]), (12, 99, 2))
        self.assertEqual(meta["args"], {"lr": 0.1})
        self.assertTrue(meta["has_metadata"])
        self.assertEqual(meta["norm_std"], [0.25, 0.25, 0.25])
        for got, want in zip(meta["norm_mean"], [0.1, 0.2, 1 / 3]):
            self.assertAlmostEqual(got, want, places=7)

    def test_file_layout_and_metadata_strings(self):
        model = trained_a_little()
        path = self.path("m.safetensors")
        pasm_torch.save(model, path, norm_mean=[0.5], norm_std=[1 / 3])
        header = read_header(path)
        meta = header.pop("__metadata__")
        self.assertEqual(meta, {
            "format": "pasm", "format_version": "1", "arch": "resnet18", "width": "16",
            "in_channels": "1", "num_classes": "7", "input_size": "48",
            "classes": "Angry,Disgust,Fear,Happy,Sad,Surprise,Neutral",
            "norm_mean": "0.5", "norm_std": "0.33333333", "epoch": "0", "seed": "0",
            "round": "0", "created_by": "pasm_torch " + pasm_torch.__version__, "args": "{}"})
        self.assertEqual(header["bn1.num_batches_tracked"]["dtype"], "I64")
        self.assertEqual(header["bn1.num_batches_tracked"]["shape"], [])
        self.assertEqual(header["conv1.weight"]["dtype"], "F32")
        self.assertEqual(load_file(path)["bn1.num_batches_tracked"].item(), 1)
        second = self.path("again.safetensors")
        pasm_torch.save(model, second, norm_mean=[0.5], norm_std=[1 / 3])
        with open(path, "rb") as f1, open(second, "rb") as f2:
            self.assertEqual(f1.read(), f2.read(), "save is not byte-reproducible")
        self.assertEqual(sorted(os.listdir(self.dir)), ["again.safetensors", "m.safetensors"])

    def test_fer_plus_and_generic_default_classes(self):
        for classes, want in ((8, pasm_torch.FERPLUS_CLASSES), (3, ["class0", "class1", "class2"])):
            path = self.path("c%d.safetensors" % classes)
            pasm_torch.save(pasm_torch.build(16, 1, classes), path)
            self.assertEqual(pasm_torch.load(path)[1]["classes"], want)

    def test_inference_without_metadata(self):
        model = trained_a_little(32, 3, 8)
        path = self.path("plain.safetensors")
        save_file(model.state_dict(), path)
        loaded, meta = pasm_torch.load(path)
        self.assertEqual((meta["width"], meta["in_channels"], meta["num_classes"]), (32, 3, 8))
        self.assertEqual(meta["classes"], pasm_torch.FERPLUS_CLASSES)
        self.assertEqual(meta["input_size"], 48)
        self.assertIsNone(meta["norm_mean"])
        self.assertFalse(meta["has_metadata"])
        x = torch.randn(1, 3, 48, 48)
        self.assertTrue(torch.equal(model(x), loaded(x)))
        faces = np.zeros((2, 48, 48, 3), dtype=np.uint8)
        with self.assertRaisesRegex(ValueError, "norm_mean"):
            pasm_torch.preprocess(faces, meta)
        _, meta = pasm_torch.load(path, norm_mean=[0.5], norm_std=[0.2], input_size=40,
                                  classes="a,b,c,d,e,f,g,h")
        self.assertEqual(meta["classes"], list("abcdefgh"))
        self.assertEqual(meta["input_size"], 40)
        self.assertEqual(meta["norm_mean"], [0.5] * 3)

    def test_load_leaves_the_random_stream_alone(self):
        path = self.path("m.safetensors")
        pasm_torch.save(pasm_torch.build(16, 1, 7), path)
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        pasm_torch.load(path)
        self.assertTrue(torch.equal(torch.rand(3), expected))

    def test_strict_loading(self):
        state = {k: v.clone() for k, v in trained_a_little().state_dict().items()}

        def attempt(tensors, error, pattern, metadata=None):
            path = self.path("bad.safetensors")
            save_file(tensors, path, metadata=metadata)
            with self.assertRaisesRegex(error, pattern):
                pasm_torch.load(path)

        missing = dict(state)
        del missing["layer3.1.bn2.running_var"]
        attempt(missing, ValueError, "missing.*layer3.1.bn2.running_var")
        extra = dict(state, **{"layer5.weight": torch.zeros(3)})
        attempt(extra, ValueError, "unexpected.*layer5.weight")
        wrong = dict(state, **{"layer2.0.conv2.weight": torch.zeros(32, 32, 1, 1)})
        attempt(wrong, RuntimeError, "layer2.0.conv2.weight")
        no_counter = dict(state)
        del no_counter["layer4.0.downsample.1.num_batches_tracked"]
        attempt(no_counter, ValueError, "layer4.0.downsample.1.num_batches_tracked")
        stem = dict(state, **{"conv1.weight": torch.zeros(16, 1, 7, 7)})
        attempt(stem, ValueError, "7x7")
        no_fc = {k: v for k, v in state.items() if not k.startswith("fc.")}
        attempt(no_fc, ValueError, "fc.weight")
        attempt(state, ValueError, "width=32", metadata={"format": "pasm", "width": "32"})
        attempt(state, ValueError, "format", metadata={"format": "other"})
        attempt(state, ValueError, "class names", metadata={"classes": "a,b"})

    def test_counter_of_shape_1_loads_as_pytorch_allows(self):
        # PyTorch's load_state_dict reads a [1] tensor into a 0-dim buffer
        # (backward compatibility); pasm writes [] but a [1] file still loads.
        state = dict(trained_a_little().state_dict())
        state["bn1.num_batches_tracked"] = torch.tensor([7], dtype=torch.int64)
        path = self.path("counter.safetensors")
        save_file(state, path)
        model, _ = pasm_torch.load(path)
        self.assertEqual(model.bn1.num_batches_tracked.shape, torch.Size([]))
        self.assertEqual(model.bn1.num_batches_tracked.item(), 7)

    def test_preprocess(self):
        meta = {"in_channels": 3, "input_size": 4, "norm_mean": [0.5, 0.4, 0.3],
                "norm_std": [0.2, 0.25, 0.5]}
        rng = np.random.default_rng(0)
        chw = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
        want = (torch.from_numpy(chw).float()[None] / 255
                - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
                    [0.2, 0.25, 0.5]).view(1, 3, 1, 1)
        for images in (chw, chw.transpose(1, 2, 0), chw[None], chw.transpose(1, 2, 0)[None]):
            got = pasm_torch.preprocess(images, meta)
            self.assertEqual(got.dtype, torch.float32)
            self.assertTrue(torch.allclose(got, want, atol=1e-6), images.shape)
        gray = dict(meta, in_channels=1, norm_mean=[0.5], norm_std=[0.25])
        faces = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)
        got = pasm_torch.preprocess(faces, gray)
        self.assertEqual(tuple(got.shape), (5, 1, 4, 4))
        self.assertAlmostEqual(got[2, 0, 1, 3].item(), (faces[2, 1, 3] / 255 - 0.5) / 0.25, places=5)
        self.assertEqual(tuple(pasm_torch.preprocess(faces[0], gray).shape), (1, 1, 4, 4))
        with self.assertRaisesRegex(ValueError, "uint8"):
            pasm_torch.preprocess(faces.astype(np.float32), gray)
        with self.assertRaisesRegex(ValueError, "resize"):
            pasm_torch.preprocess(np.zeros((8, 8), np.uint8), gray)


@unittest.skipUnless((FIXTURES / "gray48_ref.safetensors").exists()
                     and (SHARED / "data" / "fer2013" / "fer2013-mini.csv").exists(),
                     "needs the committed fixtures and $PASM_SHARED/data")
class Fixtures(unittest.TestCase):
    def test_pytorch_file_without_metadata_reproduces_the_reference(self):
        sys.path.insert(0, str(FIXTURES))
        import make_fixtures
        model, meta = pasm_torch.load(str(FIXTURES / "gray48_after.safetensors"),
                                      norm_mean=[0.5], norm_std=[0.25])
        self.assertFalse(meta["has_metadata"])
        self.assertEqual(model.bn1.num_batches_tracked.item(), 5)
        x, _ = make_fixtures.gray48_input(SHARED)
        with torch.no_grad():
            logits = model(x)
        ref = load_file(str(FIXTURES / "gray48_ref.safetensors"))
        self.assertLess((logits - ref["after_eval_logits"]).abs().max().item(), 1e-5)

    def check(self, logits):
        folder = tempfile.mkdtemp(prefix="pasm_check.")
        try:
            model, _ = pasm_torch.load(str(FIXTURES / "gray48_after.safetensors"))
            pasm_torch.save(model, os.path.join(folder, "after5.safetensors"),
                            norm_mean=[0.5], norm_std=[0.25], epoch=1)
            save_file({"eval_logits": logits.contiguous()},
                      os.path.join(folder, "after5_eval_logits.safetensors"))
            return subprocess.run([sys.executable, str(FIXTURES / "make_fixtures.py"),
                                   "--shared", str(SHARED), "--check-pasm", folder],
                                  capture_output=True, text=True)
        finally:
            shutil.rmtree(folder)

    def test_check_pasm_mode(self):
        ref = load_file(str(FIXTURES / "gray48_ref.safetensors"))["after_eval_logits"]
        ok = self.check(ref)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertIn("predicted labels agree: yes", ok.stdout)
        bad = self.check(ref + 0.01)
        self.assertEqual(bad.returncode, 1, bad.stdout + bad.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
