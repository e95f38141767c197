"""Segmentation teacher and DFAD scripts (CamVid, NYUv2) end to end on tiny generated data."""
import csv
import functools
import json
from types import SimpleNamespace
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.hub
from PIL import Image
from torch.utils.data import DataLoader

import DFAD_camvid_deeplab
import DFAD_nyu_deeplab
import dataloader
import deeplab_experiment
import train_teacher_seg
from conftest import load_manifest, run_script
from dataloader.camvid import CamVid, camvid
from dataloader.nyu import NYUv2, nyuv2
from datagen import write_camvid, write_nyu
from network.gan import GeneratorB
from network.segmentation import deeplabv3_mobilenet, deeplabv3_resnet50
from test_student_ema import assert_reports_the_average
from test_visdom_plots import line_points, window
from utils.engine import loop
from utils.metrics.segmentation import evaluate_segmentation
from utils.runtime.errors import UserError

TINY = ["--epochs", "1", "--batch_size", "2", "--test_batch_size", "2", "--num_workers", "0"]
TINY_DFAD = TINY + ["--epoch_itrs", "2"]
RESIZE = 48  # test images 48x72 instead of 256x384: ResNet-50 stays quick on a CPU
GENERATED = 64  # generated images 64 px instead of 128 (tests/test_reference_game.py plays at 128)
CASES = {  # dataset: (DFAD script, data set class, builder, writer, classes, README teacher lr)
    "camvid": (DFAD_camvid_deeplab, CamVid, camvid, write_camvid, 11, "0.1"),
    "nyuv2": (DFAD_nyu_deeplab, NYUv2, nyuv2, write_nyu, 13, "0.05"),
}


@pytest.fixture(autouse=True)
def small_images(monkeypatch):
    """The loaders build the sets with the real sizes (resize 256) and the generator draws
    128 px images: make both small (a quarter of the generator's pixels, through ResNet-50)."""
    for name, (_, _, build, *_) in CASES.items():
        info = dataloader.DATASETS[name]
        small = functools.partial(build, crop_size=32, resize=RESIZE)
        monkeypatch.setitem(dataloader.DATASETS, name, info._replace(build=small))
    monkeypatch.setattr(deeplab_experiment, "GeneratorB", lambda **kw: GeneratorB(**dict(kw, img_size=GENERATED)))


def data_root(tmp_dir, dataset):
    root = tmp_dir / "data" / dataset
    root.mkdir(parents=True)
    return CASES[dataset][3](root)


def held_out(dataset, root):
    return CASES[dataset][2](str(root), train=False, crop_size=32, resize=RESIZE)


def argv(*args):
    return [str(a) for a in args]


def load(path):
    return torch.load(path, weights_only=True)


def reference_teacher(num_classes):
    """A state_dict in the reference layout: random values, positive BN variances."""
    rng = torch.Generator().manual_seed(0)

    def tensor(shape, dtype):
        if dtype != "float32":
            return torch.zeros(shape, dtype=getattr(torch, dtype))
        if len(shape) == 1:
            return torch.rand(shape, generator=rng) + 0.5
        return torch.randn(shape, generator=rng) / np.sqrt(np.prod(shape[1:]))
    return {k: tensor(v["shape"], v["dtype"])
            for k, v in load_manifest(f"deeplabv3_resnet50-{num_classes}")["state_dict"].items()}


def colours(path):
    return {tuple(c) for c in np.asarray(Image.open(path)).reshape(-1, 3)}


@torch.no_grad()
def predict(model, image):
    return model.eval()(image[None]).argmax(1)[0]


@pytest.mark.smoke
@pytest.mark.parametrize("dataset", sorted(CASES))
def test_teacher_then_dfad(dataset, in_tmp_dir, visdom_server, capsys):
    script, dataset_cls, _, _, num_classes, lr = CASES[dataset]
    root = data_root(in_tmp_dir, dataset)
    # the reference README's commands, at tiny sizes
    teacher_args = argv("--dataset", dataset, "--data_root", root, "--no_visdom", *TINY)
    teacher_best = train_teacher_seg.main(["--model", "deeplabv3_resnet50", "--scheduler", "--lr", lr,
                                           "--num_classes", str(num_classes), "--no_pretrained_backbone",
                                           *teacher_args])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Best mIoU={teacher_best:.6f}"
    teacher_path = in_tmp_dir / "checkpoint" / "teacher" / f"{dataset}-deeplabv3_resnet50.pt"
    deeplabv3_resnet50(num_classes, pretrained_backbone=False).load_state_dict(load(teacher_path))
    assert train_teacher_seg.main(teacher_args + ["--test_only"]) == teacher_best

    port = visdom_server
    best = script.main(argv("--ckpt", teacher_path, "--data_root", root, "--scheduler", "--save_img",
                            "--visdom_port", port, *TINY_DFAD))
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Best mIoU={best:.6f}"
    student = deeplabv3_mobilenet(num_classes, pretrained_backbone=False)
    student.load_state_dict(load(f"checkpoint/student/{dataset}-deeplabv3_mobilenet.pt"), strict=True)
    GeneratorB(nz=256, nc=3, img_size=GENERATED).load_state_dict(
        load(f"checkpoint/student/{dataset}-deeplabv3_mobilenet-generator.pt"), strict=True)
    with open(f"log/DFAD-{dataset}.csv") as f:
        assert [float(v) for v in next(csv.reader(f))] == [pytest.approx(best)]

    env = f"DFAD-{dataset}"
    assert line_points(port, env, "mIoU") == 1
    for win in ("Real_target", "Real_teacher", "Real_student", "Fake_images", "Fake_teacher", "Fake_student"):
        assert window(port, env, win)["content"]["src"].startswith("data:image/"), win

    # --save_img: every test image, at the test size, in the data set's colours
    palette = {tuple(c) for c in dataset_cls.decode_target(np.arange(-1, num_classes))}
    images = held_out(dataset, root)
    for i, (image, target) in enumerate(images):
        files = {name: f"results/DFAD-{dataset}/{i}_{name}.png" for name in ("image", "target", "teacher", "student")}
        for path in files.values():
            assert Image.open(path).size == (image.shape[2], image.shape[1]) == (72, RESIZE)
        assert np.array_equal(np.asarray(Image.open(files["target"])), dataset_cls.decode_target(target))
        assert colours(files["teacher"]) <= palette
        # the best (saved) student's predictions
        assert np.array_equal(np.asarray(Image.open(files["student"])),
                              dataset_cls.decode_target(predict(student, image)))
        shown = torch.from_numpy(np.array(Image.open(files["image"]))).permute(2, 0, 1).float()
        assert torch.allclose(shown, (image * 0.5 + 0.5) * 255, atol=0.51)
    assert len(list((in_tmp_dir / "results" / f"DFAD-{dataset}").glob("*.png"))) == 4 * len(images)


def test_reference_teacher_and_warm_start(in_tmp_dir, monkeypatch):
    root = data_root(in_tmp_dir, "camvid")
    teacher = reference_teacher(11)
    (in_tmp_dir / "checkpoint" / "teacher").mkdir(parents=True)
    torch.save(teacher, "checkpoint/teacher/camvid-deeplabv3_resnet50.pt")  # the default --ckpt
    torch.manual_seed(5)
    student, generator = deeplabv3_mobilenet(11, pretrained_backbone=False), GeneratorB(nz=256, img_size=GENERATED)
    torch.save(student.state_dict(), "warm.pt")
    torch.save(generator.state_dict(), "warm-generator.pt")
    args = argv("--stu_ckpt", "warm.pt", "--data_root", root, "--no_visdom", *TINY_DFAD)

    # The players the game starts from: the published teacher, the given student and generator.
    class Started(Exception):
        pass
    seen = {}

    def record(args, exp, device, generator_objective):
        seen["exp"] = exp
        raise Started
    with monkeypatch.context() as m, pytest.raises(Started):
        m.setattr(loop, "build_players", record)
        DFAD_camvid_deeplab.main(args)
    exp = seen["exp"]
    for model, expected in ((exp.teacher, teacher), (exp.student, student.state_dict()),
                            (exp.generator, generator.state_dict())):
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())

    # --test_only evaluates exactly those student weights.
    score = DFAD_camvid_deeplab.main(args + ["--test_only", "--save_img"])
    loader = DataLoader(held_out("camvid", root), batch_size=2)
    assert score == evaluate_segmentation(student, loader, torch.device("cpu"), 11)["mIoU"]
    image = loader.dataset[0][0]
    assert np.array_equal(np.asarray(Image.open("results/DFAD-camvid/0_student.png")),
                          CamVid.decode_target(predict(student, image)))


def test_warm_start_without_generator_file(tmp_path, capsys):
    student, generator = deeplabv3_mobilenet(11, pretrained_backbone=False), GeneratorB(nz=256, img_size=128)
    torch.save(student.state_dict(), tmp_path / "s.pt")
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    exp = SimpleNamespace(student=deeplabv3_mobilenet(11, pretrained_backbone=False), generator=generator)
    loop.warm_start(exp, str(tmp_path / "s.pt"))
    assert "s-generator.pt: the generator starts afresh" in capsys.readouterr().out
    assert all(torch.equal(v, before[k]) for k, v in generator.state_dict().items())


def test_wrong_class_count_is_named(in_tmp_dir):
    result = run_script("train_teacher_seg.py", "--dataset", "camvid", "--num_classes", "13", cwd=in_tmp_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "Error: --num_classes 13 does not match --dataset camvid, which has 11 classes."

    root = data_root(in_tmp_dir, "camvid")
    torch.save(reference_teacher(13), "nyu_teacher.pt")
    with pytest.raises(UserError, match="has 13 classes, --dataset camvid needs 11"):
        DFAD_camvid_deeplab.main(argv("--ckpt", "nyu_teacher.pt", "--data_root", root, *TINY_DFAD))


def test_missing_teacher_names_the_command_that_trains_it(in_tmp_dir):
    root = data_root(in_tmp_dir, "nyuv2")
    with pytest.raises(UserError, match="python train_teacher_seg.py --model deeplabv3_resnet50 --dataset nyuv2"):
        DFAD_nyu_deeplab.main(argv("--data_root", root, *TINY_DFAD))


def test_pretrained_backbone_offline_names_the_switch(in_tmp_dir, monkeypatch):
    root = data_root(in_tmp_dir, "camvid")
    monkeypatch.setenv("TORCH_HOME", str(in_tmp_dir / "hub"))

    def offline(url, *args, **kwargs):
        raise URLError("offline (test)")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match="--no_pretrained_backbone"):
        train_teacher_seg.main(argv("--dataset", "camvid", "--data_root", root, *TINY))


def test_defaults_are_the_reference_ones(monkeypatch):
    monkeypatch.undo()  # the script's own generator, not the tests' smaller one
    for script, test_batch_size, root in ((DFAD_camvid_deeplab, 16, "data/CamVid"),
                                          (DFAD_nyu_deeplab, 9, "data/NYUv2")):
        args = script.get_args_parser().parse_args([])
        assert script.networks(args)[2].init_size == (128 // 16, 128 // 16)  # 128 px images
        assert (args.batch_size, args.test_batch_size, args.epochs, args.epoch_itrs) == (64, test_batch_size, 300, 50)
        assert (args.lr_S, args.lr_G, args.weight_decay, args.nz, args.step_size) == (0.1, 1e-3, 5e-4, 256, 100)
        assert (args.model, args.data_root, args.stu_ckpt, args.save_img) == ("deeplabv3_mobilenet", root, None, False)
    for dataset, lr, root in (("camvid", 0.1, "data/CamVid"), ("nyuv2", 0.05, "data/NYUv2")):
        args = train_teacher_seg.get_args_parser().parse_args(["--dataset", dataset])
        train_teacher_seg.check_args(args)
        assert (args.batch_size, args.epochs, args.lr, args.weight_decay, args.step_size, args.gamma) \
            == (16, 200, lr, 5e-4, 100, 0.1)
        assert (args.data_root, args.model, args.no_pretrained_backbone) == (root, "deeplabv3_resnet50", False)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", CASES)
def test_baselines_end_to_end(dataset, in_tmp_dir):
    """--method random and kd run on each segmentation script; dafl refuses DeepLab, which
    returns no features."""
    script, _, _, _, classes, _ = CASES[dataset]
    root = data_root(in_tmp_dir, dataset)
    torch.save(reference_teacher(classes), "teacher.pt")
    common = argv("--ckpt", "teacher.pt", "--data_root", root, "--no_visdom", *TINY, "--epoch_itrs", "1")
    with pytest.raises(UserError, match="out_feature"):
        script.main(common + ["--method", "dafl"])
    for method in ("random", "kd"):
        best = script.main(common + ["--method", method])
        record = json.loads((in_tmp_dir / "log" / f"DFAD-{dataset}-{method}.json").read_text())[-1]
        assert record["method"] == method and record["best"] == best
        assert 0 <= record["diagnostics"][0]["fraction"] <= 1 and record["labelfree_epoch"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("dataset", CASES)
def test_student_ema_end_to_end(dataset, in_tmp_dir):
    script, _, _, _, classes, _ = CASES[dataset]
    root = data_root(in_tmp_dir, dataset)
    torch.save(reference_teacher(classes), "teacher.pt")
    script.main(argv("--ckpt", "teacher.pt", "--data_root", root, "--no_visdom", *TINY, "--epoch_itrs", "1",
                     "--student_ema"))
    assert_reports_the_average(in_tmp_dir, f"{dataset}-deeplabv3_mobilenet",
                               deeplabv3_mobilenet(classes, pretrained_backbone=False), rounds=1)


# Each epoch costs several seconds here (five steps on 64 px images through ResNet-50): one
# script replays (an entry is stored after epoch 1, replayed in epoch 2); the other, which
# shares its declaration (deeplab_experiment.py), plays one epoch and stores its entry.
@pytest.mark.slow
@pytest.mark.parametrize("dataset,epochs", [("camvid", 2), ("nyuv2", 1)])
def test_mad_with_replay_end_to_end(dataset, epochs, in_tmp_dir):
    script, _, _, _, classes, _ = CASES[dataset]
    root = data_root(in_tmp_dir, dataset)
    torch.save(reference_teacher(classes), "teacher.pt")
    script.main(argv("--ckpt", "teacher.pt", "--data_root", root, "--no_visdom", *TINY, "--epoch_itrs", "1",
                     "--method", "mad", "--replay", "--replay_every", "1", "--epochs", epochs))
    last = load(f"checkpoint/student/{dataset}-deeplabv3_mobilenet-mad-last.pt")
    assert [e.shape for e in last["replay"][0]["entries"]] == [(1, 3, GENERATED, GENERATED)] * epochs  # 1/8 of 2 images: 1
    GeneratorB(nz=256, nc=3, img_size=GENERATED).load_state_dict(last["method"]["ema_generator"], strict=True)
