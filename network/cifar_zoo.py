"""CIFAR networks by name: the reference's ResNets and CMI's benchmark zoo.

CMI's ``resnet18``/``resnet34`` are the reference's ResNet18_8x/ResNet34_8x (same
keys, same math), so both names map to the same constructors.
"""
from . import resnet_8x, vgg, wresnet

CIFAR_NETWORKS = {
    "resnet34_8x": resnet_8x.ResNet34_8x,
    "resnet18_8x": resnet_8x.ResNet18_8x,
    "resnet34": resnet_8x.ResNet34_8x,
    "resnet18": resnet_8x.ResNet18_8x,
    "vgg11": vgg.vgg11_bn,
    "wrn40_2": wresnet.wrn_40_2,
    "wrn40_1": wresnet.wrn_40_1,
    "wrn16_2": wresnet.wrn_16_2,
    "wrn16_1": wresnet.wrn_16_1,
}


# How the data a network's published weights were trained on was normalised (dataloader:
# CIFAR-100 with CIFAR-10's statistics for the reference's, its own for CMI's networks).
NORMALIZATION = {name: "reference" if name.endswith("_8x") else "cmi" for name in CIFAR_NETWORKS}


def build(name, num_classes):
    try:
        constructor = CIFAR_NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown CIFAR network {name!r}; choose one of {sorted(CIFAR_NETWORKS)}") from None
    return constructor(num_classes)
