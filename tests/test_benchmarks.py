"""The speed helpers a user runs: bench_game.py --recommend and run_mnist.sh's estimate."""
import sys

import pytest
import torch

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
    assert bench_game.script_flags("bf16+channels_last+graph") == ["--channels_last", "--amp", "bf16", "--cuda_graph"]
    # "default" is what the script resolves without speed flags on that device
    assert bench_game.script_flags("default", "mnist", torch.device("cuda")) == ["--no_channels_last"]
    assert bench_game.script_flags("default", "mnist", torch.device("cpu")) == ["--channels_last"]


def test_cpu_check_is_the_reference_beside_the_default_at_two_batch_sizes():
    args = bench_game.parse_args(["--cpu_check"])
    assert (args.configs, args.batch_sizes, args.options, args.device) == (
        ["mnist"], [64, 512], ["reference", "default"], "cpu")
    assert bench_game.parse_args(["--cpu_check", "--batch_sizes", "64"]).batch_sizes == [64]
    rows = [dict(config="mnist", batch=64, option=option, seconds=seconds, images_per_s=384 / seconds)
            for option, seconds in (("reference", 1.39), ("default (--channels_last)", 0.91))]
    assert list(bench_game.side_by_side(rows)) == [
        "mnist batch 64: default (--channels_last) 0.910 s per round, 422 images/s; the reference's loop "
        "1.390 s, 276 images/s: 0.65x its time"]


def test_graph_options_need_a_gpu():
    with pytest.raises(SystemExit, match="needs --device cuda"):
        bench_game.make_iteration("mnist", "graph", 4, torch.device("cpu"))


def test_estimate_prints_the_cost_and_a_smaller_run(capsys, monkeypatch):
    monkeypatch.setattr(estimate_run, "LONG_S", 0)  # whatever it measures counts as long
    monkeypatch.setattr(estimate_run, "SMALL_BATCH", 4)
    estimate_run.main(["--batch_size", "8", "--epochs", "40", "--epoch_itrs", "50", "--repeats", "1",
                       "--no_visdom", "--lr_S", "0.1"])  # the run's other flags are ignored
    out = capsys.readouterr().out
    assert "DFAD at batch 8 takes" in out and "x 40 epochs x 50 rounds = about" in out
    assert "channels_last" in out  # the scripts' default layout
    assert "To size it down: BATCH_SIZE=4 EPOCHS=" in out


def test_device_check_refuses_without_cuda(tmp_path):
    import os
    import subprocess
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "device_check"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "no CUDA GPU" in proc.stderr and not out.exists()
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device_check.sh")]).returncode == 0


def test_device_summary_writes_json_and_markdown(tmp_path):
    import json
    import device_summary
    (tmp_path / "steps.tsv").write_text("bench_game\tok\t50\nbench_compile\ttimeout\t210\n")
    row = dict(config="mnist", batch=64, option="plain", seconds=0.01, images_per_s=38400, gflops=11790, of_peak=0.2)
    (tmp_path / "bench_game.json").write_text(json.dumps({"peak_flops": 5e13, "rows": [row]}))
    (tmp_path / "work" / "log").mkdir(parents=True)
    (tmp_path / "work" / "log" / "DFAD-digits.json").write_text(json.dumps([{"seconds": 12.5, "best": 0.9}]))
    result = device_summary.main(str(tmp_path), "digits")
    assert json.loads((tmp_path / "results.json").read_text())["steps"][1]["status"] == "timeout"
    md = (tmp_path / "results.md").read_text()
    assert "| mnist | 64 | plain | 0.0100 | 38400 | 11790 | 0.20 | 1.00x |" in md and "12.5 s" in md
    assert result["dfad_epoch"]["record"]["best"] == 0.9
