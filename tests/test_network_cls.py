"""Networks: state_dict layouts equal the reference manifests; forward shapes and math."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

import network
from conftest import load_manifest

CASES = [
    ("lenet5", lambda: network.lenet.LeNet5()),
    ("lenet5_half", lambda: network.lenet.LeNet5Half()),
    ("resnet18_8x-c10", lambda: network.resnet_8x.ResNet18_8x(num_classes=10)),
    ("resnet34_8x-c10", lambda: network.resnet_8x.ResNet34_8x(num_classes=10)),
    ("resnet18_8x-c100", lambda: network.resnet_8x.ResNet18_8x(num_classes=100)),
    ("resnet34_8x-c100", lambda: network.resnet_8x.ResNet34_8x(num_classes=100)),
    ("generatorA-nz100-nc1-32", lambda: network.gan.GeneratorA(nz=100, nc=1, img_size=32)),
    ("generatorA-nz256-nc3-32", lambda: network.gan.GeneratorA(nz=256, nc=3, img_size=32)),
    ("generatorB-nz256-nc3-128", lambda: network.gan.GeneratorB(nz=256, nc=3, img_size=128)),
    ("tv_resnet18-caltech101", lambda: torchvision.models.resnet18(num_classes=101)),
    ("tv_resnet34-caltech101", lambda: torchvision.models.resnet34(num_classes=101)),
]


@pytest.mark.parametrize("name,build", CASES, ids=[c[0] for c in CASES])
def test_state_dict_and_output_match_reference(name, build):
    manifest = load_manifest(name)
    model = build()
    state = model.state_dict()
    assert list(state) == list(manifest["state_dict"])  # same keys, same order
    for key, tensor in state.items():
        assert list(tensor.shape) == manifest["state_dict"][key]["shape"], key
        assert str(tensor.dtype).replace("torch.", "") == manifest["state_dict"][key]["dtype"], key
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]

    model.eval()
    with torch.no_grad():
        out = model(torch.randn(manifest["input_shape"]))
    assert list(out.shape) == manifest["output_shape"]


@pytest.mark.parametrize("name,build", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_reference_layout_loads_strictly(name, build):
    manifest = load_manifest(name)
    reference_state = {k: torch.randn(v["shape"]) for k, v in manifest["state_dict"].items()}
    model = build()
    model.load_state_dict(reference_state, strict=True)
    assert torch.equal(model.conv1.weight, reference_state["conv1.weight"])


def test_out_feature_returns_penultimate_features():
    logits, feature = network.lenet.LeNet5()(torch.randn(3, 1, 32, 32), out_feature=True)
    assert logits.shape == (3, 10) and feature.shape == (3, 120)
    logits, feature = network.resnet_8x.ResNet18_8x()(torch.randn(2, 3, 32, 32), out_feature=True)
    assert logits.shape == (2, 10) and feature.shape == (2, 512)


def test_fast_upsample_is_exactly_nearest_interpolation():
    x = torch.randn(3, 5, 7, 6, requires_grad=True)
    y_ref = F.interpolate(x, scale_factor=2)
    y = network.gan.upsample_nearest_2x(x)
    assert torch.equal(y, y_ref)
    grad = torch.randn_like(y)
    (g_ref,) = torch.autograd.grad(y_ref, x, grad)
    (g,) = torch.autograd.grad(y, x, grad)
    torch.testing.assert_close(g, g_ref)


def test_generator_a_matches_reference_forward():
    """GeneratorA's forward is the reference's (which used F.interpolate)."""
    torch.manual_seed(0)
    g = network.gan.GeneratorA(nz=16, nc=3, img_size=32).train()
    z = torch.randn(4, 16, 1, 1)
    out = g.l1(z.view(4, -1)).view(4, -1, 8, 8)
    out = g.conv_blocks0(out)
    out = g.conv_blocks1(F.interpolate(out, scale_factor=2))
    expected = g.conv_blocks2(F.interpolate(out, scale_factor=2))
    torch.manual_seed(0)
    g2 = network.gan.GeneratorA(nz=16, nc=3, img_size=32).train()
    assert torch.equal(g2(z), expected)


def test_generator_b_initialisation():
    g = network.gan.GeneratorB(nz=256, nc=3, img_size=128)
    w = g.main[1].weight
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 2e-3
    assert abs(g.main[0].weight.mean().item() - 1.0) < 0.01
    assert g(torch.randn(2, 256, 1, 1)).abs().max() <= 1.0  # Tanh output
