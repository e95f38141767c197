"""Every script end to end at tiny sizes, as a user runs them; bad input fails clearly."""
import csv

import pytest
import torch

import DFAD_mnist
import get_results
import network
import train_teacher
from conftest import run_script
from test_student_ema import assert_reports_the_average
from utils.engine.methods import METHODS
from utils.runtime.errors import UserError

TINY_DFAD = ["--dataset", "digits", "--epochs", "1", "--epoch_itrs", "2", "--batch_size", "8",
             "--no_visdom"]


@pytest.fixture
def digits_teacher(in_tmp_dir):
    """A (barely) trained digits teacher in ./checkpoint/teacher."""
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--lr", "0.01",
                        "--no_visdom"])
    return in_tmp_dir / "checkpoint" / "teacher" / "digits-lenet5.pt"


def test_train_teacher_saves_best_and_prints_best_acc(digits_teacher, capsys):
    state = torch.load(digits_teacher, weights_only=True)
    network.lenet.LeNet5().load_state_dict(state, strict=True)  # a bare state_dict, reference layout
    train_teacher.main(["--dataset", "digits", "--test_only", "--no_visdom"])
    assert "Teacher: Acc=" in capsys.readouterr().out


@pytest.mark.smoke
def test_dfad_mnist_end_to_end(digits_teacher, capsys):
    best = DFAD_mnist.main(TINY_DFAD)
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"Best Acc={best:.6f}"
    student_dir = digits_teacher.parents[1] / "student"
    student = torch.load(student_dir / "digits-lenet5_half.pt", weights_only=True)
    generator = torch.load(student_dir / "digits-lenet5_half-generator.pt", weights_only=True)
    network.lenet.LeNet5Half().load_state_dict(student, strict=True)
    network.gan.GeneratorA(nz=100, nc=1, img_size=32).load_state_dict(generator, strict=True)
    with open(digits_teacher.parents[2] / "log" / "DFAD-digits.csv") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 1 and float(rows[0][0]) == pytest.approx(best)

    # --test_only evaluates the saved student
    DFAD_mnist.main(TINY_DFAD + ["--test_only"])
    assert f"Student: Acc={best:.4f}" in capsys.readouterr().out


def test_student_ema_end_to_end(digits_teacher):
    DFAD_mnist.main(TINY_DFAD + ["--student_ema"])
    assert_reports_the_average(digits_teacher.parents[2], "digits-lenet5_half", network.lenet.LeNet5Half(), rounds=2)


STABILISED = ["--epochs", "2", "--replay", "--replay_every", "1"]  # an entry stored after each epoch


def test_replay_with_every_method_that_has_a_generator_and_mad(digits_teacher):
    student_dir = digits_teacher.parents[1] / "student"
    for method in ("dfad", "random", "dafl", "mad"):
        DFAD_mnist.main(TINY_DFAD + STABILISED + ["--method", method])
        last = torch.load(student_dir / f"digits-lenet5_half{METHODS[method].suffix()}-last.pt", weights_only=True)
        assert [e.shape for e in last["replay"][0]["entries"]] == [(1, 1, 32, 32)] * 2  # 1/8 of a batch of 8
        assert last["args"]["replay"] == 10
    ema = network.gan.GeneratorA(nz=100, nc=1, img_size=32)
    ema.load_state_dict(last["method"]["ema_generator"], strict=True)  # mad's moving average
    with pytest.raises(UserError, match="--method kd has no generator"):
        DFAD_mnist.main(TINY_DFAD + ["--method", "kd", "--replay"])


def test_scheduler_decays_both_learning_rates(digits_teacher, capsys):
    DFAD_mnist.main(TINY_DFAD + ["--epochs", "2", "--scheduler", "--step_size", "1"])
    assert "Best Acc=" in capsys.readouterr().out


def test_missing_teacher_names_file_and_command(tmp_path):
    result = run_script("DFAD_mnist.py", *TINY_DFAD, cwd=tmp_path)
    assert result.returncode == 2
    assert "checkpoint/teacher/digits-lenet5.pt" in result.stderr
    assert "python train_teacher.py --dataset digits --model lenet5" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_architecture_lists_mismatched_keys(tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save(network.lenet.LeNet5Half().state_dict(), wrong)
    result = run_script("DFAD_mnist.py", *TINY_DFAD, "--ckpt", wrong, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "conv1.weight: checkpoint (3, 1, 5, 5) vs model (6, 1, 5, 5)" in result.stderr


@pytest.mark.parametrize("flags,expected", [
    (["--dataset", "svhn"], "invalid choice: 'svhn'"),
    (["--batch_size", "0"], "must be a positive integer"),
    (["--epochs", "-1"], "must be a positive integer"),
    (["--epoch_itrs", "0"], "must be a positive integer"),
    (["--lr_S", "0"], "must be a positive number"),
    (["--model", "resnet18"], "invalid choice: 'resnet18'"),
])
def test_invalid_flags_are_argparse_errors(flags, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        DFAD_mnist.get_args_parser().parse_args(flags)
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err


def test_reference_flag_spellings_are_accepted():
    args = DFAD_mnist.get_args_parser().parse_args(["--no-cuda", "--log-interval", "5", "--test-only"])
    assert args.no_cuda and args.log_interval == 5 and args.test_only


def test_reference_defaults():
    args = DFAD_mnist.get_args_parser().parse_args([])
    assert (args.batch_size, args.test_batch_size, args.epochs, args.epoch_itrs) == (512, 256, 40, 50)
    assert (args.lr_S, args.lr_G, args.weight_decay, args.nz, args.step_size) == (0.01, 1e-3, 1e-4, 100, 100)
    assert (args.dataset, args.model, args.visdom_port, args.seed) == ("mnist", "lenet5_half", 15550, 1)


def test_teacher_num_classes_must_match_dataset(tmp_path):
    result = run_script("train_teacher.py", "--dataset", "digits", "--num_classes", "100",
                        "--no_visdom", cwd=tmp_path)
    assert result.returncode == 2 and "has 10 classes" in result.stderr


def test_results_on_disk_without_a_server(digits_teacher, capsys):
    """PNG grids per epoch, the CSV row and a paper-style table, with no visdom at all."""
    for _ in range(2):
        DFAD_mnist.main(TINY_DFAD + ["--epochs", "2"])
    results = digits_teacher.parents[2] / "results" / "DFAD-digits" / "samples"
    assert {p.name for p in results.iterdir()} == {"generated_epoch001.png", "generated_epoch002.png",
                                                  "test_inputs.png"}
    capsys.readouterr()
    summary = get_results.main(["--log", "log/DFAD-digits.csv"])
    assert summary["runs"] == 2 and "Mean=" in capsys.readouterr().out
    get_results.main([])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| dataset | teacher |") and table[2].startswith("| digits | 0.")
    assert table[2].endswith("| 2 | - | - |")
