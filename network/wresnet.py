"""Wide ResNets WRN-depth-width for 3x32x32 inputs (CMI's CIFAR teachers and students).

Pre-activation blocks (bn-relu-conv) in three stages of 16k, 32k, 64k channels.
Names (``block*.layer.*``, ``convShortcut``, final ``bn1``/``fc``) match CMI's
``wresnet.py`` so its published checkpoints load with strict matching.
"""
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        # Only the first block of a stage that widens projects (in WRN it is also the strided one);
        # registered last, after conv2, as in CMI's layout.
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(
            in_planes, out_planes, 1, stride=stride, padding=0, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # The identity shortcut carries the raw input; the projection sees the pre-activated one.
        return out + (x if self.equal_in_out else self.convShortcut(pre))


class NetworkBlock(nn.Module):
    """One stage: ``nb_layers`` blocks, the first of which may change width and stride."""

    def __init__(self, nb_layers, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
            for i in range(nb_layers)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes=10, widen_factor=1, drop_rate=0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, channels[1], channels[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, channels[2], channels[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(channels[3])  # the blocks are pre-activation: one last bn-relu
        self.fc = nn.Linear(channels[3], num_classes)
        self.num_features = channels[3]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x, out_feature=False):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        feature = F.avg_pool2d(out, 8).flatten(1)  # 8x8 map at 32x32 input
        logits = self.fc(feature)
        return (logits, feature) if out_feature else logits


def wrn_16_1(num_classes=10, drop_rate=0.0):
    return WideResNet(16, num_classes, widen_factor=1, drop_rate=drop_rate)


def wrn_16_2(num_classes=10, drop_rate=0.0):
    return WideResNet(16, num_classes, widen_factor=2, drop_rate=drop_rate)


def wrn_40_1(num_classes=10, drop_rate=0.0):
    return WideResNet(40, num_classes, widen_factor=1, drop_rate=drop_rate)


def wrn_40_2(num_classes=10, drop_rate=0.0):
    return WideResNet(40, num_classes, widen_factor=2, drop_rate=drop_rate)
