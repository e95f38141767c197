"""Damaged, oversized or looping data and a teacher that ignores its input: one message,
exit 2, promptly, and nothing of the run left behind.

The loader cases run the scripts as a user does, as jobs of their own (a session, as a
shell starts them) with real loader workers, under a time limit that only a hang reaches.
"""
import os
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import network
from conftest import ROOT
from utils.engine.methods import kd as methods

ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
HANG = 120  # seconds: these runs end in seconds; only a hang takes this long


def session_processes(sid):
    """Processes of session ``sid`` still running (zombies aside)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(pid))
    return found


def start(cmd, cwd):
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)


def finish(proc):
    """(exit status, stdout, stderr) of a job started by :func:`start`; fails on a hang,
    or if any process of the job outlived it (its loader workers, say)."""
    try:
        out, err = proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        left = session_processes(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"no exit after {HANG} s; processes alive: {left}; stderr: {err[-2000:]}")
    assert session_processes(proc.pid) == [], "processes of the run outlived it"
    return proc.returncode, out, err


def run_job(script, *args, cwd):
    return finish(start([sys.executable, str(ROOT / script), *map(str, args)], cwd))


def assert_one_error(result, *phrases):
    code, _, err = result
    assert code == 2, err[-3000:]
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err


def random_lenet_teacher(folder, name="digits-lenet5.pt"):
    path = folder / "checkpoint" / "teacher" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.lenet.LeNet5().state_dict(), path)
    return path


def write_images(folder, n, size=8, seed=0):
    """``n`` small greyscale PNGs, named so that sorted order is index order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"{i:05d}.png" for i in range(n)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
    return paths


def transfer_set(folder):
    from dataloader.folder import ImageFolderTransferSet
    return ImageFolderTransferSet(str(folder), 1, (32, 32), (0.5,), (0.5,))


# --- loader workers: an error in one ends the run --------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("met_in", ["game", "probe"])
def test_damaged_transfer_image_ends_a_kd_run_with_loader_workers(tmp_path, met_in):
    """Met first by a loader worker in the game, or in the label-free probe (read by the
    main process while the workers already run)."""
    n, batch = methods.PROBE_IMAGES + 16, 40  # 26 batches read every image once
    paths = write_images(tmp_path / "images", n)
    seed = 1  # the scripts' default --seed, which draws the probe
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    probed, unprobed = order[:methods.PROBE_IMAGES], order[methods.PROBE_IMAGES:]
    broken = paths[max(unprobed) if met_in == "game" else probed[-1]]
    broken.write_bytes(b"")
    if met_in == "game":
        methods.probe_subset(methods.ImagesOnly(transfer_set(tmp_path / "images")), seed)  # does not read it
    random_lenet_teacher(tmp_path)
    result = run_job("DFAD_mnist.py", "--dataset", "digits", "--method", "kd", "--transfer_set", "images",
                     "--num_workers", "2", "--batch_size", batch, "--epochs", "1", "--epoch_itrs", "8",
                     "--no_visdom", cwd=tmp_path)
    assert_one_error(result, f"Cannot read the image {os.path.join('images', broken.name)}")
    assert "Epoch 1/1" not in result[1]


@pytest.fixture
def caltech(tmp_path):
    from datagen import load_split_module, write_caltech
    write_caltech(tmp_path / "data")
    load_split_module().split(tmp_path / "data" / "caltech101")
    return tmp_path


CALTECH = ["--dataset", "caltech101", "--data_root", "data", "--num_workers", "2", "--epochs", "1",
           "--no_visdom"]


def damage_caltech_image(root, train, index):
    from dataloader.caltech import Caltech101
    path = Caltech101(str(root / "data"), train=train).samples[index][0]
    open(path, "wb").close()
    return os.path.relpath(path, root)


@pytest.mark.slow
def test_damaged_test_image_met_by_a_worker_in_the_evaluation_ends_the_run(caltech):
    damaged = damage_caltech_image(caltech, train=False, index=2)  # the second batch: the teacher's check passes
    torch.save(torchvision.models.resnet34(num_classes=101).state_dict(), caltech / "teacher.pt")
    result = run_job("DFAD_caltech101.py", *CALTECH, "--ckpt", "teacher.pt", "--test_batch_size", "2",
                     "--batch_size", "2", "--epoch_itrs", "1", cwd=caltech)
    assert_one_error(result, f"Cannot read the image {damaged}")
    assert "Teacher:" not in result[1]  # met while evaluating the teacher


@pytest.mark.slow
def test_damaged_training_image_met_by_a_worker_ends_teacher_training(caltech):
    damaged = damage_caltech_image(caltech, train=True, index=0)
    result = run_job("train_teacher.py", *CALTECH, "--model", "resnet34", "--num_classes", "101",
                     "--batch_size", "64", cwd=caltech)  # one batch: the first one meets it
    assert_one_error(result, f"Cannot read the image {damaged}")


STUCK_WORKER = """
import sys
import time
from torch.utils.data import Dataset, _utils
from utils.runtime import cli, signals
from utils.runtime.errors import UserError

class Items(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 0:
            raise UserError("item 0 is damaged")
        time.sleep(600)  # a worker stuck in one item (a huge image, a slow disk)

def main():
    _utils.MP_STATUS_CHECK_INTERVAL = float(sys.argv[1])  # PyTorch's waits for a busy worker (5 s)
    for _ in signals.Loader(Items(), batch_size=None, num_workers=1):
        pass

cli.main_guard(main)
"""


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["waits", "ctrl-c"])
def test_worker_stuck_in_an_item_is_stopped_after_an_error(tmp_path, ctrl_c):
    """The error ends the run though its worker is stuck in another item; a Ctrl-C
    meanwhile ends it at once, quietly: the run is over, nothing is left to save."""
    wait = 5.0 if ctrl_c else 0.5  # PyTorch's own, or shortened where nothing happens meanwhile
    proc = start([sys.executable, "-c", STUCK_WORKER, str(wait)], tmp_path)
    if ctrl_c:
        assert proc.stderr.readline() == "Error: item 0 is damaged\n"
        time.sleep(0.5)  # into the stop of the workers, which waits 10 s for the stuck one
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: to every process of the job
    code, _, err = finish(proc)
    assert (code, err) == ((130, "") if ctrl_c else (2, "Error: item 0 is damaged\n"))


# --- inputs accepted but wrong ------------------------------------------------------------

def test_a_link_loop_and_second_links_count_each_image_once(tmp_path):
    images = tmp_path / "images"
    write_images(images, 12)
    write_images(images / "sub", 8, seed=1)
    write_images(tmp_path / "elsewhere", 3, seed=2)
    (images / "loop").symlink_to(".")                 # ln -s . loop
    (images / "sub" / "up").symlink_to("..")          # a loop through a subfolder
    (images / "sub again").symlink_to("sub")          # a second link to a folder
    (images / "again.png").symlink_to("00000.png")    # a second link to an image
    (images / "more").symlink_to(tmp_path / "elsewhere")  # a folder elsewhere: followed
    paths = transfer_set(images).paths
    assert len(paths) == 12 + 8 + 3 and len(set(map(os.path.realpath, paths))) == len(paths)
    assert str(images / "00000.png") in paths and str(images / "more" / "00002.png") in paths


def test_script_counts_the_images_of_a_looping_folder_once(tmp_path, monkeypatch, capsys):
    from test_hostile_inputs import GAME, assert_refused, run_main
    import DFAD_mnist
    monkeypatch.chdir(tmp_path)
    random_lenet_teacher(tmp_path)
    write_images(tmp_path / "images", 20)
    (tmp_path / "images" / "loop").symlink_to(".")
    result = run_main(DFAD_mnist.main, GAME + ["--method", "kd", "--transfer_set", "images",
                                               "--num_workers", "0", "--batch_size", "21"], capsys)
    assert_refused(result, "holds 20 images, fewer than one batch (21)")


def test_a_named_pipe_among_the_images_is_refused_before_it_blocks_a_reader(tmp_path):
    from utils.runtime.errors import UserError
    write_images(tmp_path / "images", 2)
    os.mkfifo(tmp_path / "images" / "pipe.png")
    with pytest.raises(UserError, match="pipe.png in the --transfer_set folder is not a regular file"):
        transfer_set(tmp_path / "images")


def png_declaring(path, width, height):
    """A PNG header declaring ``width`` x ``height`` pixels, with no pixel data: a file
    of a few dozen bytes that reads as a huge image until it is decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 13000, 8193])
def test_an_oversized_image_is_named_as_such_before_it_is_decoded(tmp_path, side):
    from dataloader.checks import MAX_PIXELS, open_image
    from utils.runtime.errors import UserError
    path = tmp_path / "huge.png"
    png_declaring(path, side, side)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(UserError) as error:
        warnings.simplefilter("always")
        open_image(str(path), "L")
    # decoding would have failed on the missing pixels ("damaged"): the size came first
    assert f"{path} is oversized: {side} x {side} = {side * side:,} pixels" in str(error.value)
    assert f"limit of {MAX_PIXELS:,} (8192 x 8192)" in str(error.value) and "Shrink it" in str(error.value)
    assert caught == []  # no DecompressionBombWarning


def test_an_image_at_the_size_limit_is_decoded(tmp_path):
    from dataloader.checks import MAX_SIDE, open_image
    from utils.runtime.errors import UserError
    path = tmp_path / "large.png"
    png_declaring(path, MAX_SIDE, MAX_SIDE)
    with pytest.raises(UserError, match="damaged, truncated or not an image"):  # it is decoded: no pixels
        open_image(str(path), "L")


def test_script_names_an_oversized_transfer_image(tmp_path, monkeypatch, capsys):
    from test_hostile_inputs import GAME, assert_refused, run_main
    import DFAD_mnist
    monkeypatch.chdir(tmp_path)
    random_lenet_teacher(tmp_path)
    write_images(tmp_path / "images", 20)
    png_declaring(tmp_path / "images" / "huge.png", 13000, 13000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_main(DFAD_mnist.main, GAME + ["--method", "kd", "--transfer_set", "images",
                                                   "--num_workers", "0"], capsys)
    assert_refused(result, os.path.join("images", "huge.png"), "is oversized: 13000 x 13000")
    assert not [w for w in caught if "Decompression" in w.category.__name__]


# --- a teacher that ignores its input ---------------------------------------------------

def test_a_teacher_whose_outputs_ignore_the_input_is_named_before_the_game(tmp_path, monkeypatch, capsys):
    from test_hostile_inputs import GAME, assert_refused, run_main, written_outputs
    import DFAD_mnist
    monkeypatch.chdir(tmp_path)
    path = random_lenet_teacher(tmp_path)
    torch.save({k: torch.zeros_like(v) for k, v in torch.load(path, weights_only=True).items()}, path)  # test accuracy 0.10
    result = run_main(DFAD_mnist.main, GAME, capsys)
    assert_refused(result, os.path.join("checkpoint", "teacher", "digits-lenet5.pt"),
                   "gives the same outputs for all", "do not depend on its input", "Retrain it")
    assert "Teacher:" not in result[1] and written_outputs() == []


def zero_lenet():
    model = network.lenet.LeNet5()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def dead_lenet():
    """A LeNet-5 whose first ReLU is never active: its outputs are the last layers' biases."""
    model = network.lenet.LeNet5()
    with torch.no_grad():
        model.state_dict()["conv1.bias"].fill_(-1e3)
    return model


@pytest.mark.parametrize("model,constant", [
    (network.lenet.LeNet5, False), (network.lenet.LeNet5Half, False),
    (zero_lenet, True), (dead_lenet, True)], ids=["random", "random half", "all-zero", "dead"])
def test_teachers_that_ignore_their_input_and_teachers_that_do_not(model, constant):
    from utils.engine.diagnostics import ignores_input
    torch.manual_seed(0)
    images = torch.randn(16, 1, 32, 32)
    with torch.no_grad():
        outputs = model().eval()(images)
    assert ignores_input(outputs, 16) is constant
    assert not ignores_input(outputs[:1], 1)  # one image proves nothing
