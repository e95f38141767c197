"""train_teacher.py on every CIFAR network of the zoo (network/cifar_zoo.py), its learning-rate
schedules (step, CMI's multistep) across --resume, the model/dataset check, and
checkpoint.load_weights on CMI's published layout ({'state_dict': ..., 'best_acc1': ...})."""
import signal

import pytest
import torch
import torchvision

import network
import train_teacher
from conftest import run_script
from network import cifar_zoo
from test_scripts_cls import cifar_root  # noqa: F401  (a fixture: tiny CIFAR-10/100 in the real format)
from utils.engine import supervised
from utils.runtime import checkpoint
from utils.runtime.errors import UserError

TINY = ["--epochs", "1", "--batch_size", "4", "--test_batch_size", "8", "--no_visdom", "--num_workers", "0"]


def build(*argv):
    """The network train_teacher.py builds for these flags."""
    args = train_teacher.get_args_parser().parse_args(list(argv))
    train_teacher.check_args(args)
    return train_teacher.get_model(args)


def layout(model):
    return type(model), [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("dataset,model,num_classes", [("cifar100", "wrn16_1", 100), ("cifar10", "vgg11", 10)])
def test_zoo_teacher_trains_saves_and_evaluates(cifar_root, dataset, model, num_classes, capsys):
    best = train_teacher.main(["--dataset", dataset, "--model", model, *TINY])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Best Acc={best:.6f}"
    path = cifar_root / "checkpoint" / "teacher" / f"{dataset}-{model}.pt"
    weights = torch.load(path, weights_only=True)
    cifar_zoo.build(model, num_classes).load_state_dict(weights, strict=True)

    # the same weights in CMI's published layout evaluate the same, and say what was unwrapped
    cmi = cifar_root / f"{dataset}_{model}.pth"
    torch.save({"epoch": 1, "arch": model, "state_dict": weights, "best_acc1": 0.5}, cmi)
    scores = []
    for ckpt in (path, cmi):
        train_teacher.main(["--dataset", dataset, "--model", model, "--test_only", "--ckpt", str(ckpt), *TINY])
        scores.append(capsys.readouterr().out.strip().splitlines()[-2:])
    assert scores[0][-1].startswith("Teacher") and scores[1][-1] == scores[0][-1]
    assert scores[1][0] == f"Loaded the 'state_dict' entry of {cmi} (other entries ignored: epoch, arch, best_acc1)"


# ---- learning-rate schedules ---------------------------------------------------------

@pytest.fixture
def lr_seen(monkeypatch):
    """The learning rate each epoch of supervised.fit trains with."""
    seen = []
    stopping_in_epoch(monkeypatch, None, seen)
    return seen


def stopping_in_epoch(monkeypatch, stop_epoch, seen):
    """Record into ``seen`` the learning rate of each epoch supervised.fit trains; stop the
    run (as on SIGTERM) after the first step of epoch ``stop_epoch``, if any."""
    train_epoch = supervised.train_epoch

    def patched(args, model, loader, optimizer, loss_fn, precision, device, epoch, plotter, stop):
        seen.append(optimizer.param_groups[0]["lr"])
        if epoch == stop_epoch:
            stop.signum = signal.SIGTERM
        return train_epoch(args, model, loader, optimizer, loss_fn, precision, device, epoch, plotter, stop)
    monkeypatch.setattr(supervised, "train_epoch", patched)


def run(epochs, *more):
    """A tiny wrn16_1 teacher run on CIFAR-10 with --scheduler, for ``epochs`` epochs."""
    return ["--dataset", "cifar10", "--model", "wrn16_1", "--scheduler", "--lr", "0.1", *TINY[2:],
            "--epochs", str(epochs), *more]


def saved_lr(root):
    last = torch.load(root / "checkpoint" / "teacher" / "cifar10-wrn16_1-last.pt", weights_only=True)
    return last["optimizer"]["param_groups"][0]["lr"]


def test_multistep_is_cmis_recipe_and_decays_at_the_milestones(cifar_root, lr_seen):
    args = train_teacher.get_args_parser().parse_args(run(200, "--lr_schedule", "multistep"))
    train_teacher.check_args(args)
    assert args.milestones == [120, 150, 180]  # CMI's train_scratch.py
    train_teacher.main(run(3, "--lr_schedule", "multistep", "--milestones", "1,2"))
    assert lr_seen == pytest.approx([0.1, 0.01, 0.001])


def test_step_stays_the_default(cifar_root, lr_seen):
    train_teacher.main(run(3, "--step_size", "2"))
    assert lr_seen == pytest.approx([0.1, 0.1, 0.01])


def test_a_run_saved_under_another_schedule_is_refused(cifar_root):
    """A scheduler's saved state only fits a scheduler of the same kind: --lr_schedule and
    --milestones are among the arguments a teacher run resumes under unchanged."""
    train_teacher.main(run(1))  # step, the default
    with pytest.raises(UserError, match="--lr_schedule step \\(saved\\) vs multistep \\(now\\)"):
        train_teacher.main(run(2, "--resume", "--lr_schedule", "multistep"))
    train_teacher.main(run(2, "--resume"))  # the same schedule goes on


# ---- which --model on which --dataset ------------------------------------------------

def test_the_old_commands_build_the_same_networks():
    assert layout(build("--model", "resnet34", "--dataset", "caltech101")) == \
        layout(torchvision.models.resnet34(num_classes=101))
    for dataset, classes in (("cifar10", 10), ("cifar100", 100)):
        assert layout(build("--model", "resnet34_8x", "--dataset", dataset)) == \
            layout(network.resnet_8x.ResNet34_8x(classes))
        # on CIFAR, resnet34 is the zoo's: the same network as resnet34_8x (CMI's resnet34)
        assert layout(build("--model", "resnet34", "--dataset", dataset)) == \
            layout(network.resnet_8x.ResNet34_8x(classes))
    assert layout(build("--model", "lenet5", "--dataset", "digits")) == layout(network.lenet.LeNet5())
    assert layout(build()) == layout(network.lenet.LeNet5())  # the defaults: mnist, lenet5


def test_every_zoo_network_is_a_cifar_choice():
    choices = train_teacher.get_args_parser()._option_string_actions["--model"].choices
    assert set(cifar_zoo.CIFAR_NETWORKS) | {"lenet5"} <= set(choices)
    for name in ("wrn40_2", "wrn40_1", "wrn16_2", "resnet18"):
        assert layout(build("--model", name, "--dataset", "cifar100")) == layout(cifar_zoo.build(name, 100))


CIFAR_MODELS = " or ".join(sorted(cifar_zoo.CIFAR_NETWORKS))


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "caltech101", "--model", "wrn16_1"],
     "--model wrn16_1 is for cifar10, cifar100, not --dataset caltech101, which takes --model resnet34."),
    (["--dataset", "mnist", "--model", "resnet34"],
     "--model resnet34 is for cifar10, cifar100, caltech101, not --dataset mnist, which takes --model lenet5."),
    (["--dataset", "cifar10", "--model", "lenet5"],
     f"--model lenet5 is for mnist, digits, not --dataset cifar10, which takes --model {CIFAR_MODELS}."),
    (["--dataset", "cifar10", "--model", "wrn40_2", "--pretrained"], "--pretrained (ImageNet weights) is only for"),
    (["--dataset", "cifar10", "--model", "wrn40_2", "--lr_schedule", "multistep"], "add --scheduler"),
    (["--dataset", "cifar10", "--model", "wrn40_2", "--scheduler", "--milestones", "60,120"],
     "--milestones is for --lr_schedule multistep"),
])
def test_a_mismatch_is_refused_with_one_message(argv, message):
    with pytest.raises(UserError) as error:
        build(*argv)
    assert message in str(error.value)


def test_a_mismatch_from_the_command_line_is_one_line(tmp_path):
    result = run_script("train_teacher.py", "--dataset", "caltech101", "--model", "vgg11", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: --model vgg11 is for cifar10, cifar100, not --dataset caltech101, which takes --model resnet34."]


@pytest.mark.parametrize("text", ["", "a,b", "120,60", "0,10", "10,10"])
def test_milestones_must_be_increasing_epochs(text):
    with pytest.raises(SystemExit):
        train_teacher.get_args_parser().parse_args(["--milestones", text])


# ---- load_weights on CMI's published layout ------------------------------------------

@pytest.fixture
def wrn():
    torch.manual_seed(0)
    return cifar_zoo.build("wrn16_1", 10)


def loads_the_same(path, wrn):
    fresh = cifar_zoo.build("wrn16_1", 10)
    checkpoint.load_weights(fresh, str(path), "teacher checkpoint")
    return all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), wrn.state_dict().values()))


def test_state_dict_entry_loads_strictly_and_says_so(tmp_path, wrn, capsys):
    path = tmp_path / "cifar10_wrn16_1.pth"
    torch.save({"state_dict": wrn.state_dict(), "best_acc": 0.9}, path)
    assert loads_the_same(path, wrn)
    assert capsys.readouterr().out == f"Loaded the 'state_dict' entry of {path} (other entries ignored: best_acc)\n"


def test_a_bare_state_dict_loads_silently(tmp_path, wrn, capsys):
    path = tmp_path / "bare.pt"
    torch.save(wrn.state_dict(), path)
    assert loads_the_same(path, wrn)
    assert capsys.readouterr().out == ""


def test_our_own_checkpoint_dicts_still_load(tmp_path, wrn, capsys):
    for key in ("model", "student"):
        path = tmp_path / f"{key}.pt"
        torch.save({"args": {"epochs": 1}, key: wrn.state_dict(), "epoch": 1}, path)
        assert loads_the_same(path, wrn)
        assert capsys.readouterr().out == f"Loaded the '{key}' entry of {path} (other entries ignored: args, epoch)\n"


def test_a_dataparallel_prefix_is_removed_and_said(tmp_path, wrn, capsys):
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in wrn.state_dict().items()}, "best_acc1": 0.9}, path)
    assert loads_the_same(path, wrn)
    assert capsys.readouterr().out == (
        f"Loaded the 'state_dict' entry of {path} (other entries ignored: best_acc1) with the 'module.' prefix "
        f"removed from its keys (saved from a DataParallel or DistributedDataParallel wrapper)\n")


def test_strict_matching_stays_and_names_how_the_file_was_read(tmp_path, capsys):
    path = tmp_path / "other.pth"
    other = cifar_zoo.build("wrn40_1", 10).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in other.items()}, "best_acc1": 0.9}, path)
    with pytest.raises(UserError, match="read as its 'state_dict' entry and its keys without the 'module.' "
                                        "prefix\\) does not fit WideResNet: unexpected keys"):
        checkpoint.load_weights(cifar_zoo.build("wrn16_1", 10), str(path), "teacher checkpoint")
    partial = {k: v for k, v in cifar_zoo.build("wrn16_1", 10).state_dict().items() if not k.startswith("fc")}
    torch.save({"state_dict": partial, "best_acc1": 0.9}, path)
    with pytest.raises(UserError, match="missing keys: fc.weight, fc.bias"):
        checkpoint.load_weights(cifar_zoo.build("wrn16_1", 10), str(path), "teacher checkpoint")
    assert capsys.readouterr().out == ""  # nothing announced when nothing loaded


def test_cmi_cifar100_teacher_into_a_cifar10_network_names_the_class_counts(tmp_path):
    path = tmp_path / "cifar100_wrn40_2.pth"
    torch.save({"state_dict": cifar_zoo.build("wrn40_2", 100).state_dict(), "best_acc1": 75.8}, path)
    with pytest.raises(UserError, match="has 100 classes, --dataset cifar10 needs 10"):
        checkpoint.load_weights(cifar_zoo.build("wrn40_2", 10), str(path), "teacher checkpoint",
                                context="--dataset cifar10")
