"""Outputs that must neither collide nor mislead: a baseline's sample grids beside the DFAD
run's, kd's (absent) generator, the visdom warning of a test-only run, get_results for
one run and for baseline logs, and the reason an MNIST download failed."""
import re
import socket
from urllib.error import HTTPError, URLError

import pytest
import torch
import torchvision

import DFAD_mnist
import get_results
import train_teacher
from conftest import free_port, run_script
from dataloader import mnist as mnist_module
from utils.runtime.errors import UserError

TINY = ["--dataset", "digits", "--epochs", "1", "--epoch_itrs", "2", "--batch_size", "8", "--no_visdom"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One folder holding a digits teacher and one tiny run each of dfad, random and kd;
    returns it and the bytes of the dfad run's sample grid before the baselines ran."""
    folder = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as m:
        m.chdir(folder)
        train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--lr", "0.01",
                            "--no_visdom"])
        DFAD_mnist.main(TINY)
        dfad_grid = (folder / "results" / "DFAD-digits" / "samples" / "generated_epoch001.png").read_bytes()
        for method in ("random", "kd"):
            DFAD_mnist.main(TINY + ["--method", method])
    return folder, dfad_grid


def test_a_baseline_writes_its_own_sample_grids(runs):
    folder, dfad_grid = runs
    dfad, random = (folder / "results" / name / "samples" for name in ("DFAD-digits", "DFAD-digits-random"))
    assert {p.name for p in dfad.iterdir()} == {p.name for p in random.iterdir()} == {
        "generated_epoch001.png", "test_inputs.png"}
    assert (dfad / "generated_epoch001.png").read_bytes() == dfad_grid   # not overwritten by random


def test_kd_saves_and_shows_no_generator(runs):
    folder, _ = runs
    students = folder / "checkpoint" / "student"
    assert (students / "digits-lenet5_half-kd.pt").is_file()
    assert not list(students.glob("*-kd-generator.pt"))
    assert (students / "digits-lenet5_half-random-generator.pt").is_file()   # random's generator played
    assert [p.name for p in (folder / "results" / "DFAD-digits-kd" / "samples").iterdir()] == ["test_inputs.png"]


def test_visdom_warning_of_a_test_only_run_claims_no_training(runs):
    folder, _ = runs
    result = run_script("DFAD_mnist.py", "--dataset", "digits", "--method", "kd", "--test_only",
                        "--visdom_port", free_port(), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "cannot reach the visdom server" in result.stderr
    assert "The run goes on without live plots" in result.stderr and "Training goes on" not in result.stderr


def test_get_results_for_one_run_and_beside_baseline_logs(runs):
    folder, _ = runs
    result = run_script("get_results.py", cwd=folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| digits")]
    assert len(rows) == 1 and "+-" not in rows[0].split("|")[3]            # one run: no fake std
    assert not any(line.startswith("| digits-") for line in lines)
    assert ("Not in this table (baselines): log/DFAD-digits-kd.csv (kd), log/DFAD-digits-random.csv (random)"
            in result.stdout)

    one = run_script("get_results.py", "--log", "log/DFAD-digits.csv", cwd=folder)
    assert one.returncode == 0 and "(1 run" in one.stdout, one.stderr
    assert "Std" not in one.stdout and "+-" not in one.stdout


def test_get_results_refuses_a_table_of_baselines_only(tmp_path, runs):
    folder, _ = runs
    logs = tmp_path / "log"
    logs.mkdir()
    for suffix in (".csv", ".json"):
        (logs / f"DFAD-digits-kd{suffix}").write_bytes((folder / "log" / f"DFAD-digits-kd{suffix}").read_bytes())
    with pytest.raises(UserError, match=r"only baseline logs .*--methods"):
        get_results.main(["--log_dir", str(logs)])


@pytest.mark.parametrize("error,reason", [
    (URLError(socket.gaierror(-3, "Temporary failure in name resolution")), "Temporary failure in name resolution"),
    (HTTPError("https://example.org/x.gz", 403, "Forbidden", None, None), "HTTP Error 403: Forbidden"),
])
def test_mnist_download_failure_names_the_reason(tmp_path, monkeypatch, error, reason):
    """torchvision's own download(), with each mirror failing as an offline or refusing
    machine makes it fail: the reason it puts on later lines reaches the message."""
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", fail)
    with pytest.raises(UserError) as raised:
        mnist_module.mnist(str(tmp_path), download=True)
    assert f"(Error downloading train-images-idx3-ubyte.gz: {reason})" in str(raised.value)


def test_download_failure_reads_chained_reasons():
    try:
        try:
            raise URLError(ConnectionRefusedError(111, "Connection refused"))
        except URLError as cause:
            raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz:") from cause
    except RuntimeError as error:
        assert mnist_module.download_failure(error) == "Error downloading t10k-images-idx3-ubyte.gz: Connection refused"
    assert mnist_module.download_failure(RuntimeError("File not found or corrupted.")) == (
        "RuntimeError: File not found or corrupted.")


def test_mnist_download_failure_black_box(tmp_path):
    """The real download, as a user meets it (offline here; skipped where it succeeds)."""
    result = run_script("train_teacher.py", "--dataset", "mnist", "--test_only", "--no_visdom", cwd=tmp_path)
    if "could not be downloaded" not in result.stderr:
        pytest.skip("MNIST downloaded: no failure to report on this machine")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    match = re.search(r"could not be downloaded \(Error downloading train-images-idx3-ubyte\.gz: ([^)]+)\)",
                      result.stderr)
    assert match and match.group(1).strip(), result.stderr


@pytest.mark.parametrize("shape,nrow", [((64, 1, 32, 32), 8), ((10, 3, 8, 6), 4), ((1, 1, 5, 5), 8), ((3, 3, 4, 4), 8)])
def test_image_grids_are_laid_out_as_torchvisions(shape, nrow, tmp_path):
    """The grids are tiled without importing torchvision (its import costs seconds): the
    same picture as make_grid and save_image."""
    import numpy as np
    from PIL import Image
    from torchvision.utils import make_grid, save_image

    from utils.reporting import images
    batch = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images.grid(batch, nrow), make_grid(batch, nrow=nrow, padding=2))
    images.save_grid(batch, str(tmp_path / "ours.png"), nrow=nrow)
    save_image(batch, str(tmp_path / "torchvision.png"), nrow=nrow, padding=2)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ours.png")), np.asarray(Image.open(tmp_path / "torchvision.png")))
