"""A folder of unlabelled images as a --method kd transfer set (KD on arbitrary data)."""
import os

from torch.utils.data import Dataset
from torchvision import transforms

from utils.runtime.errors import UserError

from .checks import open_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolderTransferSet(Dataset):
    """Every image under ``root`` (recursively, sorted), presented as the teacher's own test
    images are: ``channels`` (1: greyscale, 3: RGB), resized to ``size`` (height, width),
    normalised with the teacher's data set's ``mean`` and ``std``. Items are (image, -1):
    there are no labels, and kd never reads them."""

    def __init__(self, root, channels, size, mean, std):
        self.paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root, followlinks=True)
                            for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
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
