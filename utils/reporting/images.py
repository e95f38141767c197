"""Pictures for people: de-normalised image grids (PNG files and visdom) and the
colour-coded label maps of the segmentation experiments."""
import os

import numpy as np
import torch
from PIL import Image
from torchvision.utils import save_image

from ..runtime import atomic


def denormalize(images, mean, std):
    """Undo ``transforms.Normalize`` so images can be shown in [0, 1]."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def save_grid(images, path, nrow=8):
    """Images in [0, 1] as one PNG grid (written atomically: a full disk names the file
    and leaves the previous grid)."""
    images = images.detach().float().cpu()
    atomic.write_bytes(path, lambda f: save_image(images, f, format="png", nrow=nrow, padding=2),
                       suffix=".png")


def colorize(decode_target, labels):
    """Class ids (N, H, W) -> colour-coded float images (N, 3, H, W) in [0, 1]."""
    colours = torch.from_numpy(np.ascontiguousarray(decode_target(labels)))
    return colours.permute(0, 3, 1, 2).float() / 255


class PredictionPlots:
    """An ``Experiment.extra_plots`` hook: colour-coded teacher and student predictions on
    the first real test batch and on ``num_fake`` generated images from fixed noise."""

    def __init__(self, test_loader, mean, std, nz, num_fake, seed=0):
        self.test_loader, self.mean, self.std = test_loader, mean, std
        self.decode = test_loader.dataset.decode_target
        # A private RNG: the fixed noise does not shift the game's random stream.
        self.z = torch.randn(num_fake, nz, 1, 1, generator=torch.Generator().manual_seed(seed))
        self.real = None  # (images, colour-coded target, colour-coded teacher), computed once

    @torch.no_grad()
    def __call__(self, plotter, teacher, student, draw, device):
        """``draw(z)``: the generator's images for noise ``z`` as the student sees them
        (the loop's ``game.draw_as_trained``); None: the method has no generator (kd)."""
        if not plotter.enabled:
            return
        student.eval()
        if self.real is None:  # the teacher is frozen: its real predictions never change
            images, targets = next(iter(self.test_loader))
            images = images.to(device)
            self.real = images, colorize(self.decode, targets), colorize(self.decode, teacher(images).argmax(1))
        images, target, teacher_colours = self.real
        plotter.color_images("Real_target", target)
        plotter.color_images("Real_teacher", teacher_colours)
        plotter.color_images("Real_student", colorize(self.decode, student(images).argmax(1)))
        if draw is None:
            return
        fake = draw(self.z.to(device))
        plotter.images("Fake_images", fake, mean=self.mean, std=self.std)
        plotter.color_images("Fake_teacher", colorize(self.decode, teacher(fake).argmax(1)))
        plotter.color_images("Fake_student", colorize(self.decode, student(fake).argmax(1)))


@torch.no_grad()
def save_predictions(folder, teacher, student, loader, mean, std, device):
    """Write ``<i>_image.png`` (de-normalised input), ``<i>_target.png``,
    ``<i>_teacher.png`` and ``<i>_student.png`` for every test image of ``loader``."""
    os.makedirs(folder, exist_ok=True)
    decode = loader.dataset.decode_target
    teacher.eval()
    student.eval()
    index = 0
    for images, targets in loader:
        inputs = denormalize(images, mean, std).mul(255).round().byte().permute(0, 2, 3, 1)
        images = images.to(device)
        pictures = {"image": inputs.numpy(), "target": decode(targets),
                    "teacher": decode(teacher(images).argmax(1)), "student": decode(student(images).argmax(1))}
        for k in range(len(targets)):
            for name, batch in pictures.items():
                save_png(Image.fromarray(batch[k]), os.path.join(folder, f"{index + k}_{name}.png"))
        index += len(targets)


def save_png(image, path):
    atomic.write_bytes(path, lambda f: image.save(f, format="png"), suffix=".png")
