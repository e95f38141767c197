"""Plots reach a real visdom server; a missing server costs one warning, not the run."""
import json

import visdom

import DFAD_mnist
import train_teacher
from conftest import free_port
from utils.reporting.visdom import VisdomPlotter


def window(port, env, win):
    client = visdom.Visdom(server="http://127.0.0.1", port=port, env=env,
                           use_incoming_socket=False, raise_exceptions=True)
    data = client.get_window_data(win=win, env=env)
    return json.loads(data) if data else None


def line_points(port, env, win):
    return len(window(port, env, win)["content"]["data"][0]["x"])


def test_dfad_run_draws_every_window(in_tmp_dir, visdom_server):
    port = visdom_server
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64",
                        "--visdom_port", str(port)])
    DFAD_mnist.main(["--dataset", "digits", "--epochs", "2", "--epoch_itrs", "3", "--batch_size", "8",
                     "--log_interval", "1", "--visdom_port", str(port)])
    env = "DFAD-digits"
    assert line_points(port, env, "Loss_S") == 6  # 2 epochs x 3 iterations
    assert line_points(port, env, "Loss_G") == 6
    assert line_points(port, env, "Acc") == 2     # one point per epoch
    assert line_points(port, env, "lr_S") == 2 and line_points(port, env, "lr_G") == 2
    for win in ("Generated", "Test_inputs"):
        content = window(port, env, win)["content"]
        assert content["src"].startswith("data:image/")
    assert "lr_S" in window(port, env, "Arguments")["content"]
    assert line_points(port, "teacher-digits", "Acc") == 1


def test_unreachable_server_gives_one_warning_and_the_run_completes(in_tmp_dir, capsys):
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--no_visdom"])
    capsys.readouterr()
    port = free_port()  # nothing listens there
    best = DFAD_mnist.main(["--dataset", "digits", "--epochs", "2", "--epoch_itrs", "2",
                            "--batch_size", "8", "--log_interval", "1", "--visdom_port", str(port)])
    captured = capsys.readouterr()
    assert captured.err.count("cannot reach the visdom server") == 1
    assert "Traceback" not in captured.err + captured.out
    assert f"Best Acc={best:.6f}" in captured.out


def test_no_visdom_is_silent_and_never_starts_a_sender(capsys):
    plotter = VisdomPlotter(env="x", port=free_port(), enabled=False)
    plotter.scalar("Loss_S", 0, 1.0)
    plotter.close()
    assert plotter._thread is None and capsys.readouterr().err == ""


def test_nothing_connects_before_the_first_plot():
    plotter = VisdomPlotter(env="x", port=free_port())
    assert plotter._thread is None
