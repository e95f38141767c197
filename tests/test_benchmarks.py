"""The speed helpers a user runs: bench_game.py --recommend and run_mnist.sh's estimate."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_game  # noqa: E402
import device_check  # noqa: E402
import device_summary  # noqa: E402
import estimate_run  # noqa: E402
from datagen import write_mnist  # noqa: E402

TINY = ["--configs", "mnist", "--batch_sizes", "4", "--repeats", "1", "--warmup", "0"]


def test_recommend_prints_a_choice_per_experiment(capsys):
    choices = bench_game.main(["--recommend", *TINY, "--options", "plain", "channels_last", "bf16"])
    out = capsys.readouterr().out
    assert set(choices) == {"mnist"} and choices["mnist"] in ("plain", "channels_last", "bf16")
    line = next(line for line in out.splitlines() if line.startswith("mnist"))
    assert "use: " + " ".join(bench_game.script_flags(choices["mnist"])) in line
    assert "--compile was not measured" in out


@pytest.mark.slow
def test_a_speed_record_traces_its_figures_and_fills_a_readme_table(tmp_path, capsys):
    from utils.engine import methods
    from utils.reporting import records, table
    path = tmp_path / "speed.json"
    rows = bench_game.main([*TINY, "--options", "plain", "channels_last", "--device", "cpu", "--json", str(path)])
    record = json.loads(path.read_text())
    assert record["rows"] == json.loads(json.dumps(rows)) and record["failures"] == []
    assert record["command"] == "python benchmarks/bench_game.py " + " ".join(
        [*TINY, "--options", "plain", "channels_last", "--device", "cpu", "--json", str(path)])
    assert record["commit"] == records.code_version()["commit"] and record["threads"] == torch.get_num_threads()
    assert (record["repeats"], record["warmup"]) == (1, 0) and record["load_average_end"] >= 0

    lines = table.speed_report(record)
    assert lines[:2] == table.SPEED_HEADER and len(lines) == 2 + len(rows) + 2
    plain = rows[0]
    assert lines[2] == (f"| mnist | 4 | plain | {plain['seconds']:.3f} | {plain['images_per_s']:.0f} | "
                        f"{plain['of_peak']:.2f} | 1.00x |")
    assert record["machine"] in lines[-1] and f"`{record['command']}`" in lines[-1]

    readme = tmp_path / "README.md"
    readme.write_text("Speed here:\n<!-- table: speed.json -->\n<!-- /table -->\n")
    filled = table.fill_marked_tables(readme.read_text(), str(tmp_path), methods)
    assert "\n".join(lines) in filled and table.check_marked_tables(filled, str(tmp_path), methods) == []
    edited = filled.replace(f"| {plain['seconds']:.3f} |", f"| {plain['seconds'] / 2:.3f} |")
    assert table.check_marked_tables(edited, str(tmp_path), methods)[0].startswith("<!-- table: speed.json -->")


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


def test_graph_options_need_a_gpu_and_a_failing_option_does_not_stop_the_others(capsys):
    with pytest.raises(SystemExit):
        bench_game.parse_args(["--options", "plain", "graph", "--device", "cpu"])
    assert "graph replay CUDA graphs and need a CUDA device" in capsys.readouterr().err
    failures = []
    args = bench_game.parse_args(["--repeats", "1", "--warmup", "0", "--device", "cpu"])
    timed = bench_game.time_options("mnist", ["graph", "plain"], 2, torch.device("cpu"), args, failures)
    assert list(timed) == ["plain"]
    assert failures == [dict(config="mnist", batch=2, option="graph",
                             error="RuntimeError: option graph replays CUDA graphs and needs --device cuda")]


def test_estimate_prints_the_cost_and_a_smaller_run(capsys, monkeypatch):
    monkeypatch.setattr(estimate_run, "LONG_S", 0)  # whatever it measures counts as long
    monkeypatch.setattr(estimate_run, "SMALL_BATCH", 4)
    estimate_run.main(["--batch_size", "8", "--epochs", "40", "--epoch_itrs", "50", "--repeats", "1",
                       "--no_visdom", "--lr_S", "0.1"])  # the run's other flags are ignored
    out = capsys.readouterr().out
    assert "DFAD at batch 8 takes" in out and "x 40 epochs x 50 rounds = about" in out
    assert "channels_last" in out  # the scripts' default layout
    assert "To size it down: BATCH_SIZE=4 EPOCHS=" in out


@pytest.mark.slow
def test_device_check_refuses_without_cuda(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "device_check"
    for command in (["bash", str(ROOT / "benchmarks" / "device_check.sh"), str(out)],
                    [sys.executable, str(ROOT / "benchmarks" / "device_check.py"), str(out)]):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and "no CUDA GPU" in proc.stderr and not out.exists()
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device_check.sh")]).returncode == 0


def test_every_device_check_step_parses_and_the_check_covers_the_issue(tmp_path, capsys):
    steps = {step.name: step for step in device_check.main(["--dry_run", str(tmp_path)])}  # parses each
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    names = list(steps)
    assert names[:3] == ["mnist_teacher", "mnist_paper", "mnist_paper_decay"]  # most important first
    teacher = steps["mnist_teacher"].parse()  # run_mnist.sh's recipe
    assert (teacher.batch_size, teacher.epochs, teacher.lr, teacher.weight_decay, teacher.model) == (
        256, 10, 0.01, 1e-4, "lenet5")
    grid = steps["mnist_paper"].parse()  # the paper's Table 2 MNIST row at the paper's schedule
    assert (grid.datasets, grid.methods, grid.seeds) == (["mnist"], ["dfad", "dfad+ema", "random", "dafl", "kd"],
                                                         [1, 2, 3])
    assert (grid.epochs, grid.epoch_itrs, grid.batch_size, grid.jobs) == (40, 50, 512, 15)
    assert grid.records == str(tmp_path / "records" / "mnist-paper")
    decay = steps["mnist_paper_decay"]
    assert decay.beside_previous and decay.parse().extra == ["--scheduler", "--step_size", "20"]
    games = {name: step.parse() for name, step in steps.items() if name.startswith("game_")}
    assert {config for g in games.values() for config in g.configs} == set(bench_game.CONFIGS)
    for name in ("game_mnist", "game_cifar", "game_caltech", "game_camvid"):
        assert {"plain", "channels_last", "bf16", "graph"} <= set(games[name].options)
        assert games[name].json.startswith(str(tmp_path / "bench"))  # speed records to commit
    assert games["game_mnist"].batch_sizes == [64, 512] and games["game_cifar"].batch_sizes == [256]
    assert "--cuda_graph" in steps["cifar_epoch_bf16_graph"].flags
    assert "tests/test_cuda_graph.py" in steps["test_cuda_graph"].flags[-1]
    assert steps["torchrun_nccl"].gpus == 2 and steps["torchrun_nccl"].torchrun == 2
    assert sum(step.limit_s for step in steps.values()) > device_check.TOTAL_S  # the total caps the steps
    assert "python -m torch.distributed.run --standalone --nproc_per_node=2" in capsys.readouterr().out.replace(
        sys.executable, "python")


@pytest.mark.slow
def test_device_check_refuses_to_start_without_mnist(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), str(tmp_path / "out"),
                           "--tiny", "--data_root", str(tmp_path / "nothing")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stdout + proc.stderr
    assert "cp -r ../shared/data/MNIST" in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_device_check_runs_every_step_at_toy_sizes(tmp_path):
    """--tiny: the one device call's code paths, end to end on this machine, so that the
    call works the first time on a lent GPU."""
    write_mnist(tmp_path / "data", n_train=40, n_test=16)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), str(out), "--tiny",
                           "--data_root", str(tmp_path / "data")], capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = dict(line.split("\t")[:2] for line in (out / "steps.tsv").read_text().splitlines())
    assert status.pop("torchrun_nccl").startswith("skipped (0 GPU visible")
    assert set(status.values()) == {"ok"}, status
    paper = {p.name for p in (out / "records" / "mnist-paper").glob("*.json")}
    assert paper == {f"mnist-{m}-e2x2-b8-seed1.json" for m in ("dfad", "dfad_ema", "random", "dafl", "kd")}
    assert [p.name for p in (out / "records" / "mnist-paper-decay").glob("*.json")] == [
        "mnist-dfad-e2x2-b8-seed1-with-scheduler-step_size1.json"]
    for config in bench_game.CONFIGS:
        record = json.loads((out / "bench" / f"{config}-cpu.json").read_text())
        assert record["rows"] and not record["failures"] and record["commit"]
    md = (out / "results.md").read_text()
    assert "## Grid mnist-paper (5 cells" in md and "| mnist | KD-ORI | 1 |" in md
    assert "## Grid mnist-paper-decay (1 cells" in md and "--scheduler --step_size 1" in md
    assert "| mnist | 4 | bf16 |" in md and "500 epochs" in md


@pytest.mark.slow
def test_cifar_epoch_times_epochs_on_generated_cifar(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cifar_epoch.py"), str(tmp_path / "work"),
                           "--epochs", "1", "--test_images", "8", "--batch_size", "4", "--epoch_itrs", "1",
                           "--test_batch_size", "8", "--num_workers", "0", "--no_cuda"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "work" / "epochs.json").read_text())
    assert len(result["epoch_seconds"]) == 1 and result["data"].startswith("generated")
    assert result["projected_paper_s"] == pytest.approx(500 * result["epoch_seconds"][0])
    assert (tmp_path / "work" / "log" / "DFAD-cifar10.json").exists()  # the real script ran


def test_device_summary_writes_json_and_markdown(tmp_path):
    (tmp_path / "steps.tsv").write_text("game_mnist\tok\t50\ntorchrun_nccl\tskipped (1 GPU visible, needs 2)\t0\n")

    def row(option, seconds):
        return dict(config="mnist", batch=64, option=option, seconds=seconds, images_per_s=384 / seconds, of_peak=0.2)
    rows = [row("plain", 0.021), row("channels_last", 0.027), row("graph", 0.004), row("channels_last+graph", 0.005)]
    failures = [dict(config="mnist", batch=256, option="graph", error="RuntimeError: capture failed")]
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "mnist-gpu.json").write_text(json.dumps({"peak_flops": 5e13, "rows": rows,
                                                                   "failures": failures}))
    grid = tmp_path / "records" / "mnist-paper"
    grid.mkdir(parents=True)
    (grid / "paper_table.md").write_text("| dataset | method |\n|---|---|\n| mnist | dfad |\n")
    for seed, seconds in ((1, 120.0), (2, 131.0)):
        (grid / f"mnist-dfad-e40x50-b512-seed{seed}.json").write_text(json.dumps({"seconds": seconds}))
    (tmp_path / "work" / "cifar_default").mkdir(parents=True)
    (tmp_path / "work" / "cifar_default" / "epochs.json").write_text(json.dumps(
        {"flags": [], "data": "generated", "epoch_seconds": [20.0, 16.2], "projected_paper_s": 8100.0}))
    result = device_summary.main(str(tmp_path))
    assert json.loads((tmp_path / "results.json").read_text())["steps"][1]["status"].startswith("skipped")
    md = (tmp_path / "results.md").read_text()
    assert "| mnist | 64 | graph | 0.0040 | 96000 | 0.20 | - | 5.25x | 5.25x |" in md
    assert "| mnist | 64 | channels_last+graph | 0.0050 | 76800 | 0.20 | - | 4.20x | 5.40x |" in md
    assert "| mnist | 64 | plain | 0.0210 | 18286 | 0.20 | - | 1.00x | - |" in md
    assert "## Grid mnist-paper (2 cells, 120-131 s each)\n\n| dataset | method |" in md
    assert "## Grid mnist-paper-decay (no cells)" in md
    assert "| mnist | 64 | plain | 0.0210 | graph | 0.0040 | 5.25x | 5.25x |" in md  # fastest with and without
    assert "| (defaults) | generated | 20.0, 16.2 | 2.2 h |" in md
    assert "\n\n- failed: mnist batch 256 graph: RuntimeError: capture failed\n" in md
    assert result["graph_speedups"][0]["speedup"] == pytest.approx(5.25)
