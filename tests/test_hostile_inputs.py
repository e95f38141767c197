"""Files, flags and inputs a hostile (or unlucky) user passes: one message, exit 2, nothing written.

Each case runs a script's ``main`` in-process under ``cli.main_guard`` (what ``python
script.py`` runs), so the exit status and the printed message are the user's.
"""
import io
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import DFAD_mnist
import network
import train_teacher
from utils.reporting import records
from utils.runtime import atomic, checkpoint, cli

GAME = ["--dataset", "digits", "--epochs", "1", "--epoch_itrs", "2", "--batch_size", "8", "--no_visdom"]
TEACHER = os.path.join("checkpoint", "teacher", "digits-lenet5.pt")
STUDENT_DIR = os.path.join("checkpoint", "student")
LAST = os.path.join(STUDENT_DIR, "digits-lenet5_half-last.pt")
CSV, JSON = os.path.join("log", "DFAD-digits.csv"), os.path.join("log", "DFAD-digits.json")


def run_main(main, argv, capsys):
    """``(exit status, stdout, stderr)`` of ``main(argv)`` as the command line runs it."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    capsys.readouterr()
    try:
        cli.main_guard(lambda: main(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(result, *phrases):
    code, out, err = result
    assert code == 2, err
    assert err.startswith("Error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for phrase in phrases:
        assert phrase in err
    assert "Epoch 1/" not in out  # nothing was trained


def written_outputs():
    """What a run writes (the planted teacher aside)."""
    found = []
    for folder in (STUDENT_DIR, "log", os.path.join("results")):
        for root, _, files in os.walk(folder):
            found += [os.path.join(root, f) for f in files]
    return sorted(found)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh folder holding a (random, finite) LeNet-5 digits teacher."""
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.dirname(TEACHER))
    torch.save(network.lenet.LeNet5().state_dict(), TEACHER)
    return tmp_path


@pytest.fixture
def finished_run(workdir, capsys):
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0
    return workdir


# --- item 2: checkpoints that are not what they should be ----------------------------

def zip_bomb(path):
    """A small zip declaring a large tensor, its storage deflated (torch.save never compresses)."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4 * 1024 * 1024)}, buffer)  # 16 MiB of zeros
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry.filename))


TEACHER_FILES = {
    "empty": (lambda p: open(p, "wb").close(), "is empty"),
    "text": (lambda p: open(p, "w").write("weights: none\n" * 5), "is a text file"),
    "html page": (lambda p: open(p, "w").write("<!DOCTYPE html><html>404</html>"), "HTML"),
    "random bytes": (lambda p: open(p, "wb").write(bytes(range(1, 256)) * 8), "unknown binary data"),
    "folder": (os.makedirs, "is a folder"),
    "compressed zip": (zip_bomb, "torch.save never compresses"),
}


def last_without(key):
    def damage(state):
        del state[key]
    return damage


def last_with(key, value):
    def damage(state):
        state[key] = value
    return damage


def last_of_another_network(state):
    state["student"] = network.lenet.LeNet5().state_dict()


def progress_with(key, value):
    def damage(state):
        state["progress"][key] = value
    return damage


EARLIER = "Finish that run with the commit that started it, or start afresh with --restart"
LAST_FILES = {  # damage, what the message names, what it advises
    "key missing": (last_without("optimizer_S"), "'optimizer_S' is missing", "without --resume"),
    "wrong type": (progress_with("history", "0.5,0.6"), "'progress.history' is a str", "without --resume"),
    "not a number": (progress_with("epoch", -3), "'progress.epoch' is -3", "without --resume"),
    "another network": (last_of_another_network, "does not fit this run", "without --resume"),
    "optimizer of another shape": (last_with("optimizer_S", {"state": {}, "param_groups": []}),
                                   "does not fit this run", "without --resume"),
    "another version": (lambda state: state.clear() or state.update(args={}, model={}),
                        "an earlier version of this program wrote it", EARLIER),
}


@pytest.mark.parametrize("case", TEACHER_FILES)
def test_malformed_teacher_file_is_named_before_anything_runs(workdir, capsys, case):
    make, phrase = TEACHER_FILES[case]
    bad = str(workdir / "bad.pt")
    make(bad)
    assert_refused(run_main(DFAD_mnist.main, GAME + ["--ckpt", bad], capsys), bad, phrase)
    assert written_outputs() == []


@pytest.mark.parametrize("case", LAST_FILES)
def test_malformed_last_checkpoint_is_named_before_training(finished_run, capsys, case):
    damage, phrase, advice = LAST_FILES[case]
    state = torch.load(LAST, weights_only=True)
    damage(state)
    torch.save(state, LAST)
    before = {p: open(p, "rb").read() for p in written_outputs()}
    result = run_main(DFAD_mnist.main, GAME[:2] + ["--epochs", "2"] + GAME[4:] + ["--resume"], capsys)
    assert_refused(result, LAST, phrase, advice)
    assert {p: open(p, "rb").read() for p in written_outputs()} == before


# --- item 3: outputs checked before the work ------------------------------------------

def plant_folder(path):
    os.makedirs(path)


OUTPUTS = {
    "folder where the CSV log goes": (lambda: plant_folder(CSV), CSV),
    "corrupt JSON record": (lambda: os.makedirs("log") or open(JSON, "w").write('[{"best": 0.9'), JSON),
    "corrupt CSV log": (lambda: os.makedirs("log") or open(CSV, "w").write("0.5,0.6\n<html>\n"), CSV),
    "file named results": (lambda: open("results", "w").close(), "results"),
    "folder where -last.pt goes": (lambda: plant_folder(LAST), LAST),
    "folder where the student goes": (lambda: plant_folder(LAST.replace("-last", "")), STUDENT_DIR),
}


@pytest.mark.parametrize("case", OUTPUTS)
def test_unwritable_output_fails_before_training(workdir, capsys, case):
    plant, named = OUTPUTS[case]
    plant()
    csv_before = open(CSV).read() if os.path.isfile(CSV) else None
    assert_refused(run_main(DFAD_mnist.main, GAME, capsys), named)
    assert (open(CSV).read() if os.path.isfile(CSV) else None) == csv_before  # no row appended
    assert not os.path.isfile(LAST)


def test_get_results_names_a_corrupt_record(finished_run, capsys):
    import get_results
    with open(JSON, "w") as f:
        f.write("{not json")
    assert_refused(run_main(get_results.main, [], capsys), JSON, "not a readable run record")


# --- item 4: flags --------------------------------------------------------------------

FLAGS = [("--seed", "-1", "from 0 to 4294967295"), ("--seed", str(2**32), "from 0 to 4294967295"),
         ("--lr_S", "inf", "finite"), ("--lr_G", "nan", "finite"), ("--momentum", "nan", "finite"),
         ("--momentum", "1.5", "below 1"), ("--weight_decay", "inf", "finite"),
         ("--num_workers", "-1", "zero or a positive integer")]


@pytest.mark.parametrize("flag,value,phrase", FLAGS)
def test_invalid_flag_values_are_refused_where_parsed(workdir, capsys, flag, value, phrase):
    with pytest.raises(SystemExit) as exit:
        DFAD_mnist.get_args_parser().parse_args(GAME + [flag, value])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and f"argument {flag}: must be" in err and phrase in err
    assert written_outputs() == []


def test_resume_applies_changed_hyperparameters_and_keeps_the_schedule(workdir, capsys):
    schedule = ["--scheduler", "--step_size", "1", "--lr_S", "0.01"]
    assert run_main(DFAD_mnist.main, GAME + schedule, capsys)[0] == 0
    code, out, err = run_main(DFAD_mnist.main, GAME[:2] + ["--epochs", "2"] + GAME[4:] + schedule[:3]
                              + ["--lr_S", "0.02", "--momentum", "0.5", "--resume"], capsys)
    assert code == 0, err
    assert "changed hyperparameters, now in effect: --lr_S 0.01 -> 0.02; --momentum 0.9 -> 0.5" in out
    state = torch.load(LAST, weights_only=True)
    group = state["optimizer_S"]["param_groups"][0]
    assert group["lr"] == pytest.approx(0.02 * 0.1 ** 2) and group["momentum"] == 0.5  # decayed twice
    assert state["schedulers"][0]["base_lrs"] == [0.02] and state["args"]["lr_S"] == 0.02


# --- item 5: a diverging or broken teacher ----------------------------------------------

TEACHER_RUN = ["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--no_visdom"]


def test_diverging_teacher_stops_and_never_replaces_a_good_one(workdir, capsys):
    os.remove(TEACHER)
    assert run_main(train_teacher.main, TEACHER_RUN, capsys)[0] == 0
    good = open(TEACHER, "rb").read()
    result = run_main(train_teacher.main, TEACHER_RUN + ["--lr", "1e30"], capsys)
    assert result[0] == 2 and "The teacher diverged in epoch 1" in result[2] and "Traceback" not in result[2]
    assert "lower --lr" in result[2]
    assert open(TEACHER, "rb").read() == good


@pytest.mark.parametrize("scale,phrase", [(float("nan"), "non-finite weights"),
                                          (1e30, "non-finite outputs")])
def test_broken_teacher_is_named_before_the_game(workdir, capsys, scale, phrase):
    state = {k: v * scale for k, v in network.lenet.LeNet5().state_dict().items()}
    torch.save(state, TEACHER)
    assert_refused(run_main(DFAD_mnist.main, GAME, capsys), TEACHER, phrase, "Retrain")
    assert written_outputs() == []


# --- item 6: files left or followed -----------------------------------------------------

def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_runs_are_swept_and_links_never_followed(workdir, capsys):
    os.makedirs(STUDENT_DIR)
    os.makedirs("log")
    stale = os.path.join(STUDENT_DIR, f"{atomic.temp_prefix().replace(str(os.getpid()), str(dead_pid()))}"
                                      f"abcd1234.pt")
    live = os.path.join("log", f"{atomic.temp_prefix()}live0000.txt")  # a run still writing: kept
    victim = workdir / "victim.txt"
    victim.write_text("precious")
    for name in (stale, live):
        open(name, "w").close()
    for old_style in (f"{CSV}.tmp-{os.getpid()}", f"{JSON}.tmp-{os.getpid()}"):
        os.symlink(victim, old_style)  # the names the old writer used
    assert run_main(DFAD_mnist.main, GAME, capsys)[0] == 0
    assert not os.path.exists(stale) and os.path.exists(live)
    assert victim.read_text() == "precious"
    leftovers = [f for d in (STUDENT_DIR, "log") for f in os.listdir(d)
                 if f.startswith(".tmp-") and f != os.path.basename(live)]
    assert leftovers == []


def test_resuming_a_finished_run_does_not_log_it_twice(finished_run, capsys):
    code, out, _ = run_main(DFAD_mnist.main, GAME + ["--resume"], capsys)
    assert code == 0 and "already logged" in out
    assert len(open(CSV).read().splitlines()) == 1 and len(records.read_run_records(JSON)) == 1


# --- item 8: damaged data, label ranges, file modes --------------------------------------

def test_out_of_range_mnist_labels_are_named(workdir, capsys):
    from datagen import write_mnist, write_idx
    write_mnist(workdir / "data")
    labels = workdir / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.array([3, 200, 1]))
    result = run_main(DFAD_mnist.main, ["--dataset", "mnist", "--data_root", "data", "--num_workers", "0",
                                        "--ckpt", TEACHER]
                      + GAME[2:], capsys)
    assert_refused(result, os.path.join("data", "MNIST", "raw", labels.name), "outside 0-9")


@pytest.mark.parametrize("content", [b"", b"<html>not an image</html>", "truncated"],
                         ids=["empty", "html", "truncated"])
def test_damaged_image_is_named_even_from_a_loader_worker(tmp_path, capsys, content):
    from datagen import load_split_module, write_caltech
    from dataloader.caltech import Caltech101
    write_caltech(tmp_path)
    load_split_module().split(str(tmp_path / "caltech101"))
    test_set = Caltech101(str(tmp_path), train=False, transform=None)
    damaged = test_set.samples[1][0]
    data = open(damaged, "rb").read()[:200] if content == "truncated" else content
    open(damaged, "wb").write(data)
    loader = torch.utils.data.DataLoader(test_set, batch_size=None, num_workers=1)

    def read_all():
        for _ in loader:
            pass
    code, _, err = run_main(lambda argv: read_all(), [], capsys)
    assert code == 2 and f"Cannot read the image {damaged}" in err and "Traceback" not in err


def test_a_loader_worker_reads_a_file_pil_cannot_place_without_importing(tmp_path):
    """PIL's plugins are imported in the main process, so a forked worker meeting a file of no
    common format imports nothing: an import in a child of a threaded parent can fail inside
    importlib ("KeyError: <thread id>") instead of naming the file."""
    html = tmp_path / "page.jpg"
    html.write_bytes(b"<html>not an image</html>")
    probe = ("import sys\n"
             "from dataloader.checks import open_image\n"
             "before = set(sys.modules)\n"
             "try:\n    open_image(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__)\n"
             "print(sorted(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", probe, str(html)], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.split("\n")[:2] == ["UserError", "[]"], out.stdout + out.stderr


@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["umask 022", "umask 002"])
def test_checkpoints_and_logs_follow_the_umask(tmp_path, mask):
    previous = os.umask(mask)
    try:
        checkpoint.save_state_dict(network.lenet.LeNet5Half(), tmp_path / "s.pt")
        records.log_run(str(tmp_path / "log.csv"), str(tmp_path / "log.json"), [0.5], {"run_id": "umask"})
    finally:
        os.umask(previous)
    for name in ("s.pt", "log.csv", "log.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
