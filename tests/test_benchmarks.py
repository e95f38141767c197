"""The speed helpers a user runs: bench_game.py --recommend and run_mnist.sh's estimate."""
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_game  # noqa: E402
import estimate_run  # noqa: E402

TINY = ["--configs", "mnist", "--batch_sizes", "4", "--repeats", "1", "--warmup", "0"]


def test_recommend_prints_a_choice_per_experiment(capsys):
    choices = bench_game.main(["--recommend", *TINY, "--options", "plain", "channels_last", "bf16"])
    out = capsys.readouterr().out
    assert set(choices) == {"mnist"} and choices["mnist"] in ("plain", "channels_last", "bf16")
    line = next(line for line in out.splitlines() if line.startswith("mnist"))
    assert "use: " + " ".join(bench_game.script_flags(choices["mnist"])) in line
    assert "--compile was not measured" in out


def test_script_flags_are_the_scripts_spelling():
    assert bench_game.script_flags("plain") == ["--no_channels_last"]
    assert bench_game.script_flags("bf16+channels_last") == ["--channels_last", "--amp", "bf16"]
    assert bench_game.script_flags("channels_last+compile") == ["--channels_last", "--compile"]


def test_estimate_prints_the_cost_and_a_smaller_run(capsys, monkeypatch):
    monkeypatch.setattr(estimate_run, "LONG_S", 0)  # whatever it measures counts as long
    monkeypatch.setattr(estimate_run, "SMALL_BATCH", 4)
    estimate_run.main(["--batch_size", "8", "--epochs", "40", "--epoch_itrs", "50", "--repeats", "1",
                       "--no_visdom", "--lr_S", "0.1"])  # the run's other flags are ignored
    out = capsys.readouterr().out
    assert "DFAD at batch 8 takes" in out and "x 40 epochs x 50 rounds = about" in out
    assert "channels_last" in out  # the scripts' default layout
    assert "To size it down: BATCH_SIZE=4 EPOCHS=" in out
