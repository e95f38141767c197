"""A folder of unlabelled images as a --method kd transfer set (KD on arbitrary data)."""
import os
import stat

from torch.utils.data import Dataset
from torchvision import transforms

from utils.runtime.errors import UserError

from .checks import open_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def image_paths(root):
    """The image files under ``root``, each once, sorted. Links are followed (a folder of
    links to images is a transfer set too), but a folder or file reached again, through
    a link loop (``ln -s . loop``) or a second link to it, is not counted again."""
    seen, paths = set(), []
    _first_visit(root, seen)
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [d for d in sorted(subfolders) if _first_visit(os.path.join(folder, d), seen)]
        paths += [path for path in (os.path.join(folder, name) for name in sorted(names)
                                    if name.lower().endswith(IMAGE_EXTENSIONS))
                  if _first_visit(path, seen)]
    return sorted(paths)


def _first_visit(path, seen):
    """Whether the file or folder at ``path`` (links followed) is not in ``seen``; adds it.
    One that cannot be looked at (a broken link) counts: reading it names the problem."""
    try:
        status = os.stat(path)
    except OSError:
        return True
    if not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
        raise UserError(f"{path} in the --transfer_set folder is not a regular file (a named pipe, "
                        f"socket or device): reading it could wait forever. Remove it from the folder, "
                        f"then run again.")
    identity = status.st_dev, status.st_ino
    if identity in seen:
        return False
    seen.add(identity)
    return True


class ImageFolderTransferSet(Dataset):
    """Every image under ``root`` (recursively, sorted), presented as the teacher's own test
    images are: ``channels`` (1: greyscale, 3: RGB), resized to ``size`` (height, width),
    normalised with the teacher's data set's ``mean`` and ``std``. Items are (image, -1):
    there are no labels, and kd never reads them."""

    def __init__(self, root, channels, size, mean, std):
        self.paths = image_paths(root)
        if not self.paths:
            raise UserError(f"--transfer_set {root} holds no images (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)} files in it and its sub-folders); "
                            f"name a folder of images or one of the script's data sets.")
        self.mode = "L" if channels == 1 else "RGB"
        self.transform = transforms.Compose([transforms.Resize(tuple(size)), transforms.ToTensor(),
                                             transforms.Normalize(mean, std)])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(open_image(self.paths[i], self.mode)), -1
