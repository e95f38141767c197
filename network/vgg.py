"""VGG-11 with BatchNorm for 3x32x32 inputs (CMI's ``vgg11_bn``, from RepDistiller).

Five conv stages ``block0..block4`` (conv-bn-relu, the last relu of each stage
applied in ``forward``), max-pool between stages, global average pool, one
``classifier`` layer. Names match CMI's ``vgg.py`` so its checkpoints load strictly.
"""
import torch.nn as nn
import torch.nn.functional as F

CFG_A = [[64], [128], [256, 256], [512, 512], [512, 512]]  # VGG-11


def _stage(widths, in_channels, batch_norm):
    layers = []
    for v in widths:
        layers += [nn.Conv2d(in_channels, v, 3, padding=1)]
        layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
        in_channels = v
    # Drop the trailing ReLU: CMI's layout keeps it out of the Sequential (forward applies it),
    # so the Sequential indices, hence the state_dict keys, are 0,1,(2),3,4.
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    def __init__(self, cfg=CFG_A, batch_norm=True, num_classes=10):
        super().__init__()
        in_channels = 3
        for i, widths in enumerate(cfg):
            setattr(self, f"block{i}", _stage(widths, in_channels, batch_norm))
            in_channels = widths[-1]
        self.classifier = nn.Linear(in_channels, num_classes)
        self.num_features = in_channels

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x, out_feature=False):
        h = x.shape[2]
        x = F.max_pool2d(F.relu(self.block0(x)), 2)
        x = F.max_pool2d(F.relu(self.block1(x)), 2)
        x = F.max_pool2d(F.relu(self.block2(x)), 2)
        x = F.relu(self.block3(x))
        if h == 64:  # CMI pools here only for 64x64 inputs: at 32x32, block4 also runs at 4x4
            x = F.max_pool2d(x, 2)
        x = F.relu(self.block4(x))
        feature = F.adaptive_avg_pool2d(x, 1).flatten(1)
        logits = self.classifier(feature)
        return (logits, feature) if out_feature else logits


def vgg11_bn(num_classes=10):
    return VGG(CFG_A, batch_norm=True, num_classes=num_classes)
