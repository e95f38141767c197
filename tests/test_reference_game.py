"""The default DFAD game is step for step the reference implementation's.

``reference_game/*.json`` are fingerprints of the reference's own ``train()`` from a
known start (shared/reference-game, protocol in its README): weights decided by name,
noise from ``torch.manual_seed(123)``, K rounds, everything in float64. Our round must
reproduce them to 1e-6 (relative); changing one thing (4 student steps, the plain L1
generator loss on CamVid) moves them by 1e-5 to 0.4.

Machines differ: matrix kernels sum in another order on another CPU or thread count.
MNIST and CIFAR keep that near 1e-14. The CamVid round amplifies it in the generator's
first Adam step (about 3e-3 on its probe at batch 8), so CamVid's ``G(probe)`` has the
tolerance the protocol gives it (3e-2) while its student keeps 1e-6. The test runs with
whatever threads the machine has: it must hold on any CPU and thread count.
"""
import json
import zlib
from pathlib import Path

import pytest
import torch

import network
from network.segmentation import deeplabv3_mobilenet, deeplabv3_resnet50
from utils.engine import game, objective
from utils.engine.methods import DFAD

FINGERPRINTS = Path(__file__).resolve().parent / "reference_game"
TOLERANCE = 1e-6
# The one key the protocol lets differ more (shared/reference-game/README.md, "Why CamVid is different").
LOOSER = {("camvid", "G(probe)"): 3e-2}


def seeded(key, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))


def set_weights_by_name(model, prefix):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            r = seeded(prefix + name, t.shape)
            if name.endswith("running_var"):
                t.copy_(1 + 0.1 * r.abs())
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.05 * r)
            elif t.dim() == 1:
                t.copy_(1 + 0.1 * r)
            else:
                t.copy_(r / max(1, t[0].numel()) ** 0.5)


def build(config):
    if config == "mnist":
        return (network.lenet.LeNet5(), network.lenet.LeNet5Half(),
                network.gan.GeneratorA(nz=100, nc=1, img_size=32), game.adversarial_loss_l1)
    if config == "cifar":
        return (network.resnet_8x.ResNet34_8x(10), network.resnet_8x.ResNet18_8x(10),
                network.gan.GeneratorA(nz=256, nc=3, img_size=32), game.adversarial_loss_l1)
    return (deeplabv3_resnet50(11, pretrained_backbone=False),
            deeplabv3_mobilenet(11, dropout_p=0.5, pretrained_backbone=False),
            network.gan.GeneratorB(nz=256, nc=3, img_size=128), game.adversarial_loss_log_l1)


def fingerprint(student, generator, nz):
    prints = {}
    for name, t in student.state_dict().items():
        if t.is_floating_point():
            prints["S." + name] = [float((t.flatten() * seeded("v" + name, (t.numel(),))).sum()),
                                   float(t.norm())]
    with torch.no_grad():
        out = generator.train()(seeded("probe", (8, nz, 1, 1)))
    prints["G(probe)"] = [float((out.flatten() * seeded("vG", (out.numel(),))).sum()), float(out.norm())]
    return prints


@pytest.fixture
def float64():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def relative_errors(ours, reference):
    """Per key: max(|projection - ref|, |norm - ref norm|) / ref norm (the protocol's step 7)."""
    return {k: max(abs(ours[k][0] - ref[0]), abs(ours[k][1] - ref[1])) / max(ref[1], 1e-12)
            for k, ref in reference.items()}


@pytest.mark.parametrize("config", ["mnist", "cifar", pytest.param("camvid", marks=pytest.mark.slow)])
def test_rounds_reproduce_the_reference_fingerprints(config, float64):
    reference = json.loads((FINGERPRINTS / f"{config}.json").read_text())
    teacher, student, generator, adversarial_loss = build(config)
    for model, prefix in ((teacher, "T."), (student, "S."), (generator, "G.")):
        set_weights_by_name(model, prefix)
    game.freeze(teacher)
    student.train()
    generator.train()
    players = game.Players(
        teacher, student, generator,
        torch.optim.SGD(student.parameters(), lr=reference["lr_S"], momentum=0.9, weight_decay=reference["wd"]),
        torch.optim.Adam(generator.parameters(), lr=reference["lr_G"]), reference["nz"], torch.device("cpu"),
        objective.dfad_objective(adversarial_loss))

    torch.manual_seed(123)
    for _ in range(reference["K"]):
        DFAD().play_round(players, reference["bs"])

    ours = fingerprint(student, generator, reference["nz"])
    assert set(ours) == set(reference["prints"])
    errors = relative_errors(ours, reference["prints"])
    too_far = {k: e for k, e in errors.items() if not e < LOOSER.get((config, k), TOLERANCE)}
    assert not too_far, f"{len(too_far)} of {len(errors)} fingerprints off: {sorted(too_far.items())[:5]}"
