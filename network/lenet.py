"""LeNet-5 teacher and its half-width student (MNIST, 1x32x32 inputs).

Attribute names match the reference implementation so its published state_dicts
load with strict key matching.
"""
import torch.nn as nn


class _LeNet5(nn.Module):
    """LeNet-5 with configurable widths: conv-pool, conv-pool, conv, fc, fc."""

    def __init__(self, widths, num_classes=10):
        super().__init__()
        c1, c2, c3, f1 = widths
        self.conv1 = nn.Conv2d(1, c1, kernel_size=(5, 5))
        self.relu1 = nn.ReLU()
        self.maxpool1 = nn.MaxPool2d(kernel_size=(2, 2), stride=2)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=(5, 5))
        self.relu2 = nn.ReLU()
        self.maxpool2 = nn.MaxPool2d(kernel_size=(2, 2), stride=2)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=(5, 5))
        self.relu3 = nn.ReLU()
        self.fc1 = nn.Linear(c3, f1)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(f1, num_classes)

    def forward(self, img, out_feature=False):
        x = self.maxpool1(self.relu1(self.conv1(img)))
        x = self.maxpool2(self.relu2(self.conv2(x)))
        feature = self.relu3(self.conv3(x)).flatten(1)  # 32x32 input -> 1x1 map
        logits = self.fc2(self.relu4(self.fc1(feature)))
        return (logits, feature) if out_feature else logits


class LeNet5(_LeNet5):
    def __init__(self):
        super().__init__(widths=(6, 16, 120, 84))


class LeNet5Half(_LeNet5):
    def __init__(self):
        super().__init__(widths=(3, 8, 60, 42))
