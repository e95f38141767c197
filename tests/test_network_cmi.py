"""CMI's CIFAR benchmark networks: layouts and eval-mode math equal CMI's own.

``shared/compat/cmi/*.json`` were made from zju-vipa/CMI's classifiers: the
state_dict manifest, and the logits and penultimate features (float64) of the
network with every floating tensor filled by name (prefix "M.") on seeded("x"),
as a projection on seeded("vout"/"vfeat", shape) and a norm. Equal keys alone
do not prove equal math (bn/relu order, pooling, what the shortcut sees); the
fingerprints do, to 1e-6 relative.
"""
import json
import os
from pathlib import Path

import pytest
import torch

from network import cifar_zoo
from test_reference_game import float64, seeded, set_weights_by_name  # noqa: F401 (float64: fixture)

COMPAT = Path(os.environ.get("DFAD_CMI_COMPAT")
              or Path(__file__).resolve().parents[1].parent / "shared" / "compat" / "cmi")
JSONS = sorted(COMPAT.glob("*.json")) if COMPAT.is_dir() else []
TOLERANCE = 1e-6

needs_compat = pytest.mark.skipif(
    not JSONS, reason=f"no CMI compat manifests under {COMPAT} (set DFAD_CMI_COMPAT)")


def load(path):
    manifest = json.loads(path.read_text())
    return manifest, manifest["output_shape"][1]


def build_unfilled(name, num_classes):
    """The network with storage but without its init (every float is about to be set by name)."""
    with torch.device("meta"):
        model = cifar_zoo.build(name, num_classes)
    model.to_empty(device="cpu")
    for t in model.buffers():
        if not t.is_floating_point():
            t.zero_()  # num_batches_tracked
    return model


def projection_and_norm(t, key):
    return float((t.flatten() * seeded(key, tuple(t.shape)).flatten()).sum()), float(t.norm())


def relative_error(ours, ref):
    return max(abs(ours[0] - ref["projection"]), abs(ours[1] - ref["norm"])) / max(ref["norm"], 1e-12)


@needs_compat
@pytest.mark.parametrize("path", JSONS, ids=[p.stem for p in JSONS])
def test_cmi_network_matches_layout_and_fingerprint(path, float64):
    """Everything in float64 as the default dtype, as the manifests were made: the seeded
    weights and inputs are drawn in float64 (drawn in float32 and cast, they differ)."""
    manifest, num_classes = load(path)
    model = build_unfilled(manifest["name"], num_classes)

    state = model.state_dict()
    assert list(state) == list(manifest["state_dict"])  # same keys, same order
    for key, tensor in state.items():
        assert list(tensor.shape) == manifest["state_dict"][key]["shape"], key
        assert str(tensor.dtype).replace("torch.", "") == manifest["state_dict"][key]["dtype"], key
    assert len(state) == manifest["num_state_dict_entries"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]

    set_weights_by_name(model, "M.")
    model.eval()
    x = seeded("x", tuple(manifest["input_shape"]))
    with torch.no_grad():
        logits, feature = model(x, out_feature=True)
    assert list(logits.shape) == manifest["output_shape"]
    assert list(feature.shape) == manifest["feature_shape"]
    errors = {"logits": relative_error(projection_and_norm(logits, "vout"), manifest["logits"]),
              "features": relative_error(projection_and_norm(feature, "vfeat"), manifest["features"])}
    assert all(e < TOLERANCE for e in errors.values()), errors


@needs_compat
@pytest.mark.parametrize("path", JSONS, ids=[p.stem for p in JSONS])
def test_cmi_checkpoint_state_dict_loads_strictly(path):
    """CMI saves teachers as {'state_dict': model.state_dict(), ...}; that part loads strictly.

    Built on the meta device and loaded with assign=True (the same key and shape checks as a
    plain load, without paying for the init): afterwards every tensor is the checkpoint's.
    """
    manifest, num_classes = load(path)
    # The published checkpoints are float32 (the manifests' float64 is the fingerprint's dtype).
    checkpoint = {"state_dict": {k: torch.zeros(v["shape"], dtype=torch.int64 if v["dtype"] == "int64" else None)
                                 for k, v in manifest["state_dict"].items()}}
    with torch.device("meta"):
        model = cifar_zoo.build(manifest["name"], num_classes)
    model.load_state_dict(checkpoint["state_dict"], strict=True, assign=True)
    state = model.state_dict()
    assert all(state[k].data_ptr() == v.data_ptr() for k, v in checkpoint["state_dict"].items())
    assert not any(t.is_meta for t in model.parameters()) and not any(t.is_meta for t in model.buffers())

    checkpoint["state_dict"].pop(next(iter(checkpoint["state_dict"])))
    with torch.device("meta"):
        model = cifar_zoo.build(manifest["name"], num_classes)
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(checkpoint["state_dict"], strict=True, assign=True)


def test_registry_names_and_unknown_name():
    assert set(cifar_zoo.CIFAR_NETWORKS) == {"resnet34_8x", "resnet18_8x", "resnet34", "resnet18", "vgg11",
                                             "wrn40_2", "wrn40_1", "wrn16_2", "wrn16_1"}
    assert cifar_zoo.CIFAR_NETWORKS["resnet18"] is cifar_zoo.CIFAR_NETWORKS["resnet18_8x"]
    assert cifar_zoo.CIFAR_NETWORKS["resnet34"] is cifar_zoo.CIFAR_NETWORKS["resnet34_8x"]
    with pytest.raises(ValueError, match="wrn40_2"):
        cifar_zoo.build("wrn_40_2", 10)


@pytest.mark.parametrize("name,width", [("wrn16_1", 64), ("wrn16_2", 128), ("vgg11", 512)])
def test_out_feature_only_adds_the_penultimate_feature(name, width):
    model = cifar_zoo.build(name, 100).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, feature = model(x, out_feature=True)
        assert torch.equal(model(x), logits)
    assert logits.shape == (2, 100) and feature.shape == (2, width)
