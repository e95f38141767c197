"""Pictures for people: de-normalised image grids (PNG files and visdom) and the
colour-coded label maps of the segmentation experiments.

The grids are tiled here rather than by ``torchvision.utils``: importing torchvision loads
its models and ops, and with them torch._dynamo, about 3 s of every run's start on a
2-core CPU, for a 20-line function (its layout is torchvision's ``make_grid``'s, a test
pins it)."""
import math
import os

import numpy as np
import torch
from PIL import Image

from ..runtime import atomic


def denormalize(images, mean, std):
    """Undo ``transforms.Normalize`` so images can be shown in [0, 1]."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def grid(images, nrow=8, padding=2):
    """A batch (N, C, H, W) as one (3 or C, H', W') image: ``nrow`` images a row, each
    framed by ``padding`` black pixels; grey images become RGB; one image stays as it is."""
    images = images.detach().float().cpu()
    if images.size(1) == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.size(0) == 1:
        return images[0]
    count, channels, height, width = images.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    cell_h, cell_w = height + padding, width + padding
    canvas = torch.zeros(channels, rows * cell_h + padding, columns * cell_w + padding)
    for k, image in enumerate(images):
        top, left = (k // columns) * cell_h + padding, (k % columns) * cell_w + padding
        canvas[:, top:top + height, left:left + width] = image
    return canvas


def save_grid(images, path, nrow=8):
    """Images in [0, 1] as one PNG grid (written atomically: a full disk names the file
    and leaves the previous grid)."""
    pixels = grid(images, nrow).mul(255).add(0.5).clamp(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    atomic.write_bytes(path, lambda f: Image.fromarray(pixels).save(f, format="png"), suffix=".png")


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
