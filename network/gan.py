"""Generators that turn noise z of shape (N, nz, 1, 1) into images.

GeneratorA (32x32, MNIST/CIFAR) and GeneratorB (DCGAN-like, 128x128, Caltech101 and
segmentation). Module names match the reference implementation.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def upsample_nearest_2x(x):
    """Exactly ``F.interpolate(x, scale_factor=2)`` (nearest neighbour).

    On the CPU, PyTorch's nearest-upsampling kernel is about ten times slower on
    NCHW tensors than this broadcast copy, and it dominated the whole DFAD game.
    """
    if x.is_cuda or x.is_contiguous(memory_format=torch.channels_last):
        return F.interpolate(x, scale_factor=2)
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class GeneratorA(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=1, img_size=32):
        super().__init__()
        self.init_size = img_size // 4
        self.l1 = nn.Sequential(nn.Linear(nz, ngf * 2 * self.init_size ** 2))
        self.conv_blocks0 = nn.Sequential(nn.BatchNorm2d(ngf * 2))
        self.conv_blocks1 = nn.Sequential(
            nn.Conv2d(ngf * 2, ngf * 2, 3, stride=1, padding=1),
            nn.BatchNorm2d(ngf * 2),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.conv_blocks2 = nn.Sequential(
            nn.Conv2d(ngf * 2, ngf, 3, stride=1, padding=1),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, nc, 3, stride=1, padding=1),
            nn.Tanh(),
            # Re-standardise the images to the statistics a normalised real input has.
            nn.BatchNorm2d(nc, affine=False),
        )

    def forward(self, z):
        out = self.l1(z.flatten(1))
        img = self.conv_blocks0(out.view(out.shape[0], -1, self.init_size, self.init_size))
        img = self.conv_blocks1(upsample_nearest_2x(img))
        return self.conv_blocks2(upsample_nearest_2x(img))


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class GeneratorB(nn.Module):
    """DCGAN-style generator (Radford et al., arXiv:1511.06434): four x2 up-convolutions."""

    def __init__(self, nz=256, ngf=64, nc=3, img_size=64, slope=0.2):
        super().__init__()
        if isinstance(img_size, (list, tuple)):
            self.init_size = (img_size[0] // 16, img_size[1] // 16)
        else:
            self.init_size = (img_size // 16, img_size // 16)
        self.project = nn.Sequential(
            Flatten(), nn.Linear(nz, ngf * 8 * self.init_size[0] * self.init_size[1])
        )

        def up(cin, cout):
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(cout), nn.LeakyReLU(slope, inplace=True)]

        self.main = nn.Sequential(
            nn.BatchNorm2d(ngf * 8),
            *up(ngf * 8, ngf * 4),
            *up(ngf * 4, ngf * 2),
            *up(ngf * 2, ngf),
            *up(ngf, ngf),
            nn.Conv2d(ngf, nc, 3, 1, 1),
            nn.Tanh(),
        )
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Linear, nn.Conv2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, z):
        proj = self.project(z)
        return self.main(proj.view(proj.shape[0], -1, *self.init_size))
