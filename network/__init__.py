"""Networks of the DFAD experiments (torch and torchvision only: no data, no logging).

A submodule is imported when it is first used (``network.lenet.LeNet5()``), so a run loads
only the networks it builds.
"""
import importlib

__all__ = ["cifar_zoo", "gan", "lenet", "resnet_8x", "segmentation", "vgg", "wresnet"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
