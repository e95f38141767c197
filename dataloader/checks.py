"""Damaged data named by file, with what to do, instead of a library traceback."""
import numpy as np
from PIL import Image

from utils.runtime.errors import UserError

# Larger images are refused before they are decoded. Every image here is shrunk to 32 px
# (MNIST, CIFAR and kd folders for them) or at most 256 px (Caltech101, CamVid, NYUv2),
# so more pixels add nothing, while decoding costs up to 4 bytes a pixel and as much again
# to convert, in each loading process at once: about 0.5 GB at this limit, 1.6 GB for a
# 13000 x 13000 PNG. Photos of every common camera (up to 60 megapixels) pass.
MAX_SIDE = 8192
MAX_PIXELS = MAX_SIDE * MAX_SIDE
# open_image applies MAX_PIXELS itself and names the image; PIL's own check would come
# first, inside Image.open: a bare DecompressionBombWarning above 89 megapixels, above
# twice that an error we could only call "damaged". Every image is opened by open_image.
Image.MAX_IMAGE_PIXELS = None
# PIL imports its format plugins on the first file it cannot place by its common formats
# (an empty or HTML file, say). Done here, in the main process, so a forked loader worker
# never imports: an import in a child forked from a threaded parent can fail inside
# importlib (seen as "KeyError: <thread id>" in a worker) instead of naming the file.
Image.init()


def check_labels(targets, num_classes, source, fix):
    """Every class label lies in ``0 .. num_classes - 1``; ``source`` names the file."""
    labels = np.asarray(targets)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise UserError(f"{source} holds {bad.size} label(s) outside 0-{num_classes - 1} (item "
                        f"{bad[0]} is labelled {labels[bad[0]]}): the file is damaged or from "
                        f"another data set. {fix}")


def open_image(path, mode=None):
    """A fully decoded PIL image (converted to ``mode``); a damaged or oversized file is named."""
    try:
        with Image.open(path) as image:  # reads the header only
            check_size(image.size, path)
            image.load()
            return image.convert(mode) if mode else image.copy()
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"Cannot read the image {path} ({type(e).__name__}: {e}): it is damaged, "
                        f"truncated or not an image. Replace it with an intact copy or delete it, "
                        f"then run again.") from None


def check_size(size, path):
    """Refuse an image of more than MAX_PIXELS pixels, before decoding it."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise UserError(
            f"The image {path} is oversized: {width} x {height} = {width * height:,} pixels, above the "
            f"limit of {MAX_PIXELS:,} ({MAX_SIDE} x {MAX_SIDE}). Every image is shrunk to 256 px or less "
            f"here, so the extra pixels add nothing but memory (up to {width * height * 8 / 1e9:.1f} GB to "
            f"decode it, in each loading process). Shrink it (to 2048 px on its longer side, say) or "
            f"delete it, then run again.")


def open_rgb(path):
    """The loader of image folders: RGB, like torchvision's ``pil_loader``."""
    return open_image(path, "RGB")
