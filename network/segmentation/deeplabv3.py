"""DeepLabV3 teacher (ResNet-50) and student (MobileNetV2) for CamVid / NYUv2.

Assembled from torchvision's ResNet-50, MobileNetV2, IntermediateLayerGetter and
DeepLabHead, re-laid out so that the reference implementation's state_dicts (see
tests/manifests/deeplabv3_*.json) load with strict key matching. Both models use
output stride 8 and return the logits upsampled to the input size as a plain tensor.
"""
import torch.hub
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import MobileNet_V2_Weights, ResNet50_Weights, mobilenet_v2, resnet50
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import deeplabv3 as tv_deeplabv3


class PretrainedWeightsUnavailable(RuntimeError):
    """The ImageNet weights of a backbone could not be downloaded; the message says what to do."""

# The reference head uses rates 12, 24, 32 (torchvision's default is 12, 24, 36).
ATROUS_RATES = (12, 24, 32)

# Reference MobileNetV2 at output stride 8: blocks 7 and 14 lose their stride, and the
# dilation of features[1..17] lags one stage behind (the 64-channel stage stays at 1).
_MOBILENET_UNSTRIDED = {7, 14}
_MOBILENET_DILATIONS = [1] * 10 + [2] * 6 + [4]


class DeepLabV3(tv_deeplabv3.DeepLabV3):
    """torchvision's DeepLabV3 returning the upsampled logits instead of a dict."""

    def forward(self, x):
        return super().forward(x)["out"]


class _PaddedInvertedResidual(nn.Module):
    """A torchvision InvertedResidual in the reference layout.

    The layers sit in one flat ``conv`` Sequential (keys conv.0 ... conv.7), and the
    block zero-pads its input by the dilation once, before the first layer, instead of
    padding inside the depthwise conv. With an expansion layer first, the padded border
    goes through pw-conv + BN + ReLU6, so the depthwise conv sees relu6(BN(0)) there,
    not zeros; this keeps the reference's outputs and BatchNorm statistics.
    """

    def __init__(self, block, stride, dilation):
        super().__init__()
        layers = []
        for m in block.conv:
            layers.extend(m if isinstance(m, nn.Sequential) else [m])
        for m in layers:
            if isinstance(m, nn.Conv2d) and m.groups > 1:  # the depthwise 3x3 conv
                m.stride, m.dilation, m.padding = (stride, stride), (dilation, dilation), (0, 0)
        self.conv = nn.Sequential(*layers)
        self.pad = dilation
        self.use_res_connect = block.use_res_connect

    def forward(self, x):
        out = self.conv(F.pad(x, [self.pad] * 4))
        return x + out if self.use_res_connect else out


def _build(builder, weights, name, pretrained, progress, **kwargs):
    """Call a torchvision builder, explaining a failed weight download."""
    if not pretrained:
        return builder(weights=None, **kwargs)
    try:
        return builder(weights=weights, progress=progress, **kwargs)
    except OSError as exc:  # URLError, timeouts, an unwritable cache
        raise PretrainedWeightsUnavailable(
            f"Could not download the ImageNet weights of the {name} backbone from {weights.url} "
            f"({exc}). Connect to the internet, put the file into {torch.hub.get_dir()}/checkpoints, "
            "or pass pretrained_backbone=False "
            "(scripts: --no_pretrained_backbone) to start the backbone from random weights."
        ) from exc


def _finish(backbone, in_channels, num_classes, dropout_p):
    model = DeepLabV3(backbone, tv_deeplabv3.DeepLabHead(in_channels, num_classes, ATROUS_RATES))
    for m in model.modules():
        if isinstance(m, nn.Dropout):  # only the ASPP projection has one
            m.p = dropout_p
    return model


def deeplabv3_resnet50(num_classes=21, dropout_p=0.0, pretrained_backbone=True, progress=True):
    """DeepLabV3 with a dilated ResNet-50 backbone (layer3 and layer4 dilated)."""
    net = _build(resnet50, ResNet50_Weights.IMAGENET1K_V1, "ResNet-50", pretrained_backbone,
                 progress, replace_stride_with_dilation=[False, True, True])
    backbone = IntermediateLayerGetter(net, return_layers={"layer4": "out"})
    return _finish(backbone, 2048, num_classes, dropout_p)


def deeplabv3_mobilenet(num_classes=21, dropout_p=0.0, pretrained_backbone=True, progress=True):
    """DeepLabV3 on MobileNetV2 ``features[:18]`` (320 channels, the 1x1 conv to 1280 dropped)."""
    net = _build(mobilenet_v2, MobileNet_V2_Weights.IMAGENET1K_V1, "MobileNetV2",
                 pretrained_backbone, progress)
    if not pretrained_backbone:
        # The reference initialises its backbone convs with fan-in Kaiming (torchvision: fan-out).
        for m in net.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
    blocks = [
        _PaddedInvertedResidual(block, 1 if i in _MOBILENET_UNSTRIDED else block.stride, dilation)
        for i, (block, dilation) in enumerate(zip(net.features[1:18], _MOBILENET_DILATIONS), start=1)
    ]
    net.features = nn.Sequential(net.features[0], *blocks)
    backbone = IntermediateLayerGetter(net, return_layers={"features": "out"})  # drops the classifier
    return _finish(backbone, 320, num_classes, dropout_p)
