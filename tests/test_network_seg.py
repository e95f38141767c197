"""DeepLabV3 teacher/student: reference state_dict layout, sizes, forward, download errors."""
import functools
import json
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torch.hub

from network.segmentation import PretrainedWeightsUnavailable, deeplabv3_mobilenet, deeplabv3_resnet50

MANIFESTS = Path(__file__).parent / "manifests"
BUILDERS = {"deeplabv3_resnet50": deeplabv3_resnet50, "deeplabv3_mobilenet": deeplabv3_mobilenet}
CASES = [(arch, n) for arch in BUILDERS for n in (11, 13)]


def manifest(arch, num_classes):
    return json.loads((MANIFESTS / f"{arch}-{num_classes}.json").read_text())


@functools.lru_cache(maxsize=None)
def model(arch, num_classes):
    torch.manual_seed(0)
    return BUILDERS[arch](num_classes=num_classes, pretrained_backbone=False).eval()


@pytest.mark.parametrize("arch,num_classes", CASES)
def test_state_dict_matches_reference(arch, num_classes):
    ref = manifest(arch, num_classes)
    got = {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
           for k, v in model(arch, num_classes).state_dict().items()}
    assert got == ref["state_dict"]


@pytest.mark.parametrize("arch,num_classes", CASES)
def test_sizes_match_reference(arch, num_classes):
    ref, net = manifest(arch, num_classes), model(arch, num_classes)
    assert sum(p.numel() for p in net.parameters()) == ref["num_params"]
    assert sum(b.numel() for b in net.buffers()) == ref["num_buffer_elements"]
    assert len(net.state_dict()) == ref["num_state_dict_entries"]


@pytest.mark.parametrize("arch,num_classes", CASES)
def test_forward_shape(arch, num_classes):
    ref = manifest(arch, num_classes)
    with torch.no_grad():
        out = model(arch, num_classes)(torch.randn(ref["input_shape"]))
    assert isinstance(out, torch.Tensor)
    assert list(out.shape) == ref["output_shape"]


@pytest.mark.parametrize("arch", BUILDERS)
def test_reference_state_dict_loads_strictly(arch):
    ref = manifest(arch, 11)["state_dict"]
    gen = torch.Generator().manual_seed(0)
    sd = {k: (torch.randn(v["shape"], generator=gen) if v["dtype"] == "float32"
              else torch.zeros(v["shape"], dtype=getattr(torch, v["dtype"])))
          for k, v in ref.items()}
    net = BUILDERS[arch](num_classes=11, pretrained_backbone=False)
    net.load_state_dict(sd, strict=True)
    assert torch.equal(net.state_dict()["classifier.4.weight"], sd["classifier.4.weight"])


@pytest.mark.parametrize("arch", BUILDERS)
def test_dropout_p_sets_head_dropout(arch):
    net = BUILDERS[arch](num_classes=11, dropout_p=0.3, pretrained_backbone=False)
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.3]


def test_student_train_mode_forward_on_generator_sized_images():
    net = deeplabv3_mobilenet(num_classes=11, dropout_p=0.5, pretrained_backbone=False).train()
    out = net(torch.randn(2, 3, 128, 128))
    out.mean().backward()
    assert out.shape == (2, 11, 128, 128)


@pytest.mark.parametrize("arch", BUILDERS)
def test_failed_download_raises_user_error(arch, tmp_path, monkeypatch):
    # Empty hub cache, and the download itself fails as it does offline.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        BUILDERS[arch](num_classes=11, pretrained_backbone=True)
    message = str(info.value)
    assert "download" in message
    assert "pretrained_backbone=False" in message and "--no_pretrained_backbone" in message
    assert "\n" not in message
