"""CIFAR and Caltech101 teachers and DFAD scripts end to end on tiny generated data, each
--method included (kd also on a folder of images)."""
import csv
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import datasets

import DFAD_caltech101
import DFAD_cifar
import network
import train_teacher
from datagen import accept_generated_cifar, load_split_module, write_caltech, write_cifar
from test_student_ema import assert_reports_the_average
from utils.reporting import records
from utils.runtime.errors import UserError

TINY = ["--epochs", "1", "--batch_size", "4", "--test_batch_size", "8", "--no_visdom", "--num_workers", "0"]
TINY_DFAD = TINY + ["--epoch_itrs", "2"]


@pytest.fixture
def cifar_root(in_tmp_dir, monkeypatch):
    """Tiny CIFAR-10 and CIFAR-100 in the real format, their generated MD5s accepted."""
    for cls in (datasets.CIFAR10, datasets.CIFAR100):
        _, checksums = write_cifar(in_tmp_dir / "data", cls, n_train=8, n_test=8)
        accept_generated_cifar(monkeypatch, cls, checksums)
    return in_tmp_dir


def csv_rows(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.mark.smoke
@pytest.mark.parametrize("dataset,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_teacher_then_dfad(cifar_root, dataset, num_classes, capsys):
    # the reference README's commands, at tiny sizes
    train_teacher.main(["--dataset", dataset, "--model", "resnet34_8x", "--step_size", "80",
                        "--scheduler", *TINY])
    teacher_path = cifar_root / "checkpoint" / "teacher" / f"{dataset}-resnet34_8x.pt"
    network.resnet_8x.ResNet34_8x(num_classes).load_state_dict(torch.load(teacher_path, weights_only=True))

    best = DFAD_cifar.main(["--dataset", dataset, "--ckpt", str(teacher_path), "--scheduler", *TINY_DFAD])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Best Acc={best:.6f}"
    student = torch.load(cifar_root / "checkpoint" / "student" / f"{dataset}-resnet18_8x.pt", weights_only=True)
    network.resnet_8x.ResNet18_8x(num_classes).load_state_dict(student, strict=True)
    generator = torch.load(cifar_root / "checkpoint" / "student" / f"{dataset}-resnet18_8x-generator.pt",
                           weights_only=True)
    network.gan.GeneratorA(nz=256, nc=3, img_size=32).load_state_dict(generator, strict=True)
    assert len(csv_rows(cifar_root / "log" / f"DFAD-{dataset}.csv")) == 1


@pytest.mark.slow
def test_cifar_teacher_in_reference_layout_loads(cifar_root):
    """A published teacher is a bare state_dict in the reference layout."""
    path = cifar_root / "checkpoint" / "teacher" / "cifar10-resnet34_8x.pt"
    path.parent.mkdir(parents=True)
    torch.save(network.resnet_8x.ResNet34_8x(10).state_dict(), path)
    DFAD_cifar.main(["--dataset", "cifar10", "--ckpt", str(path), *TINY_DFAD])


def test_wrong_class_count_is_named(cifar_root):
    path = cifar_root / "c100.pt"
    torch.save(network.resnet_8x.ResNet34_8x(100).state_dict(), path)
    with pytest.raises(UserError, match="has 100 classes, --dataset cifar10 --teacher resnet34_8x needs 10"):
        DFAD_cifar.main(["--dataset", "cifar10", "--ckpt", str(path), *TINY_DFAD])


def test_a_benchmark_pair_from_a_cmi_teacher_file_with_dfq(cifar_root, capsys):
    """--teacher/--model take the field's pairs; --ckpt takes CMI's {'state_dict': ...}
    files as they are; dfq's BatchNorm term reads the teacher's BatchNorm layers."""
    from network import cifar_zoo
    torch.manual_seed(0)
    teacher = cifar_zoo.build("wrn16_2", 100)
    torch.save({"state_dict": teacher.state_dict(), "best_acc": 0.72, "epoch": 200}, cifar_root / "cifar100_wrn16_2.pth")
    best = DFAD_cifar.main(["--dataset", "cifar100", "--teacher", "wrn16_2", "--model", "wrn16_1", "--method", "dfq",
                            "--ckpt", str(cifar_root / "cifar100_wrn16_2.pth"), *TINY_DFAD])
    assert "'state_dict'" in capsys.readouterr().out  # says what it unwrapped
    files = cifar_root / "checkpoint" / "student"
    cifar_zoo.build("wrn16_1", 100).load_state_dict(torch.load(files / "cifar100-wrn16_2-wrn16_1-dfq.pt",
                                                               weights_only=True))
    run = json.loads((cifar_root / "log" / "DFAD-cifar100-dfq.json").read_text())[-1]
    assert run["best"] == best and run["pair"] == "wrn16_2-wrn16_1"
    assert {k: run["args"][k] for k in ("adv", "bn", "oh", "balance", "act", "adv_loss", "student_loss")} == {
        "adv": 1.0, "bn": 1.0, "oh": 1.0, "balance": 20.0, "act": 0.0, "adv_loss": "kl", "student_loss": "kl"}
    args = DFAD_cifar.get_args_parser().parse_args(["--teacher", "vgg11", "--model", "wrn16_1", "--dataset", "cifar100"])
    assert args.ckpt == "checkpoint/teacher/cifar100-vgg11.pt"
    built = DFAD_cifar.networks(args)
    assert [type(m).__name__ for m in built] == ["VGG", "WideResNet", "GeneratorA"] and built[0].classifier.out_features == 100


def record(root, dataset, method):
    return json.loads((root / "log" / f"DFAD-{dataset}-{method}.json").read_text())[-1]


def write_image_folder(folder, count=6):
    """Unlabelled images of mixed sizes and modes, some in a sub-folder."""
    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / ("more" if i % 2 else "") / f"img{i}.{'png' if i % 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (20 + 3 * i, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert("L" if i == 1 else "RGB").save(path)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.slow
def test_every_method_on_the_cifar_script(cifar_root):
    path = cifar_root / "teacher.pt"
    torch.save(network.resnet_8x.ResNet34_8x(10).state_dict(), path)
    common = ["--dataset", "cifar10", "--ckpt", str(path), *TINY_DFAD]
    folder = write_image_folder(cifar_root / "unlabelled")  # (KD on CIFAR's own images: the MNIST tests)
    for method, extra in (("random", []), ("dafl", []), ("kd", ["--transfer_set", str(folder)])):
        best = DFAD_cifar.main(common + ["--method", method, *extra])
        assert record(cifar_root, "cifar10", method)["best"] == best
        network.resnet_8x.ResNet18_8x(10).load_state_dict(torch.load(
            cifar_root / "checkpoint" / "student" / f"cifar10-resnet18_8x-{method}-labelfree.pt", weights_only=True))
    assert record(cifar_root, "cifar10", "kd")["args"]["transfer_set"] == records.portable(str(folder))


@pytest.mark.slow
def test_student_ema_on_the_cifar_script(cifar_root):
    torch.save(network.resnet_8x.ResNet34_8x(10).state_dict(), cifar_root / "teacher.pt")
    DFAD_cifar.main(["--dataset", "cifar10", "--ckpt", str(cifar_root / "teacher.pt"), *TINY_DFAD, "--student_ema"])
    assert_reports_the_average(cifar_root, "cifar10-resnet18_8x", network.resnet_8x.ResNet18_8x(10), rounds=2)


STABILISED = ["--method", "mad", "--replay", "--replay_every", "1", "--epochs", "2", "--epoch_itrs", "1"]


def mad_with_replay_ran(root, dataset, student):
    last = torch.load(root / "checkpoint" / "student" / f"{dataset}-{student}-mad-last.pt", weights_only=True)
    return record(root, dataset, "mad")["args"]["replay"] == 10 and len(last["replay"][0]["entries"]) == 2 \
        and last["method"]["ema_generator"].keys() == last["generator"].keys()


@pytest.mark.slow
def test_mad_with_replay_on_the_cifar_script(cifar_root):
    path = cifar_root / "teacher.pt"
    torch.save(network.resnet_8x.ResNet34_8x(10).state_dict(), path)
    DFAD_cifar.main(["--dataset", "cifar10", "--ckpt", str(path), *TINY_DFAD, *STABILISED])
    assert mad_with_replay_ran(cifar_root, "cifar10", "resnet18_8x")


def test_a_folder_transfer_set_is_checked(cifar_root, capsys):
    path = cifar_root / "teacher.pt"
    torch.save(network.resnet_8x.ResNet34_8x(10).state_dict(), path)
    common = ["--dataset", "cifar10", "--ckpt", str(path), "--method", "kd", *TINY_DFAD]
    with pytest.raises(SystemExit):
        DFAD_cifar.main(common + ["--transfer_set", str(cifar_root / "missing")])
    assert "is neither a data set of this script (cifar10, cifar100) nor a folder" in capsys.readouterr().err
    (cifar_root / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        DFAD_cifar.main(common + ["--transfer_set", str(cifar_root / "empty")])
    folder = write_image_folder(cifar_root / "damaged")
    (folder / "img0.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match="img0.jpg"):
        DFAD_cifar.main(common + ["--transfer_set", str(folder)])


def test_cifar_defaults_are_the_reference_ones():
    args = DFAD_cifar.get_args_parser().parse_args([])
    assert (args.batch_size, args.test_batch_size, args.epochs, args.epoch_itrs) == (256, 128, 500, 50)
    assert (args.lr_S, args.lr_G, args.weight_decay, args.nz) == (0.1, 1e-3, 5e-4, 256)
    # the reference decays at fixed epochs and ignores --step_size: the help says so
    help_text = " ".join(DFAD_cifar.get_args_parser().format_help().split())
    assert "--scheduler decay the learning rates x0.1 at epochs 100, 200 (default: False)" in help_text
    assert "--step_size STEP_SIZE not read by this script: --scheduler decays at epochs 100, 200" in help_text


@pytest.fixture
def caltech_root(in_tmp_dir, monkeypatch):
    """Generated Caltech101, split; the script's generator draws 64 px images instead of 128
    (a quarter of the pixels through ResNet-34; test_caltech_generator_draws_128_px keeps 128)."""
    write_caltech(in_tmp_dir / "data")
    load_split_module().split(in_tmp_dir / "data" / "caltech101")
    generator = network.gan.GeneratorB
    monkeypatch.setattr(network.gan, "GeneratorB", lambda **kw: generator(**dict(kw, img_size=64)))
    return in_tmp_dir


def test_caltech_generator_draws_128_px():
    args = DFAD_caltech101.get_args_parser().parse_args([])
    assert DFAD_caltech101.networks(args)[2](torch.randn(2, args.nz)).shape == (2, 3, 128, 128)


@pytest.mark.smoke
def test_caltech_teacher_then_dfad(caltech_root, capsys):
    train_teacher.main(["--dataset", "caltech101", "--num_classes", "101", "--step_size", "50",
                        "--model", "resnet34", *TINY])
    teacher_path = caltech_root / "checkpoint" / "teacher" / "caltech101-resnet34.pt"
    torchvision.models.resnet34(num_classes=101).load_state_dict(torch.load(teacher_path, weights_only=True))

    best = DFAD_caltech101.main(["--lr_S", "0.05", "--lr_G", "1e-3", "--scheduler", "--ckpt",
                                 str(teacher_path), *TINY_DFAD])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Best Acc={best:.6f}"
    student = torch.load(caltech_root / "checkpoint" / "student" / "caltech101-resnet18.pt", weights_only=True)
    torchvision.models.resnet18(num_classes=101).load_state_dict(student, strict=True)
    assert (caltech_root / "checkpoint" / "student" / "caltech101-resnet18-generator.pt").exists()
    assert len(csv_rows(caltech_root / "log" / "DFAD-caltech101.csv")) == 1


@pytest.mark.slow
def test_baselines_on_the_caltech_script(caltech_root):
    """torchvision's ResNet-34 returns no features: dafl is refused, random and kd run."""
    path = caltech_root / "teacher.pt"
    torch.save(torchvision.models.resnet34(num_classes=101).state_dict(), path)
    common = ["--ckpt", str(path), *TINY_DFAD]
    with pytest.raises(UserError, match="out_feature"):
        DFAD_caltech101.main(common + ["--method", "dafl"])
    for method in ("random", "kd"):
        best = DFAD_caltech101.main(common + ["--method", method])
        assert record(caltech_root, "caltech101", method)["best"] == best


@pytest.mark.slow
def test_student_ema_on_the_caltech_script(caltech_root):
    torch.save(torchvision.models.resnet34(num_classes=101).state_dict(), caltech_root / "teacher.pt")
    DFAD_caltech101.main(["--ckpt", str(caltech_root / "teacher.pt"), *TINY_DFAD, "--student_ema"])
    assert_reports_the_average(caltech_root, "caltech101-resnet18", torchvision.models.resnet18(num_classes=101),
                               rounds=2)


@pytest.mark.slow
def test_mad_with_replay_on_the_caltech_script(caltech_root):
    path = caltech_root / "teacher.pt"
    torch.save(torchvision.models.resnet34(num_classes=101).state_dict(), path)
    DFAD_caltech101.main(["--ckpt", str(path), *TINY_DFAD, *STABILISED])
    assert mad_with_replay_ran(caltech_root, "caltech101", "resnet18")


def test_caltech_without_split_says_to_run_the_split_script(in_tmp_dir):
    write_caltech(in_tmp_dir / "data")
    with pytest.raises(UserError, match="split_caltech101.py"):
        train_teacher.main(["--dataset", "caltech101", "--model", "resnet34", *TINY])


def test_teacher_model_must_fit_dataset(in_tmp_dir):
    with pytest.raises(UserError, match="--model lenet5 is for mnist, digits"):
        train_teacher.main(["--dataset", "cifar10", "--model", "lenet5", *TINY])


def test_pretrained_offline_fails_clearly(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("offline (test)")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="drop --pretrained"):
        train_teacher.torchvision_resnet34(101, pretrained=True)
