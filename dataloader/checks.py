"""Damaged data named by file, with what to do, instead of a library traceback."""
import numpy as np
from PIL import Image

from utils.runtime.errors import UserError


def check_labels(targets, num_classes, source, fix):
    """Every class label lies in ``0 .. num_classes - 1``; ``source`` names the file."""
    labels = np.asarray(targets)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise UserError(f"{source} holds {bad.size} label(s) outside 0-{num_classes - 1} (item "
                        f"{bad[0]} is labelled {labels[bad[0]]}): the file is damaged or from "
                        f"another data set. {fix}")


def open_image(path, mode=None):
    """A fully decoded PIL image (converted to ``mode``); a damaged file is named."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode) if mode else image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"Cannot read the image {path} ({type(e).__name__}: {e}): it is damaged, "
                        f"truncated or not an image. Replace it with an intact copy or delete it, "
                        f"then run again.") from None


def open_rgb(path):
    """The loader of image folders: RGB, like torchvision's ``pil_loader``."""
    return open_image(path, "RGB")
