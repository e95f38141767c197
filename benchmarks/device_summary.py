"""results.json and results.md of benchmarks/device_check.py, from what its steps left in OUT:
steps.tsv, bench/*.json (bench_game.py's speed records), work/*/epochs.json (cifar_epoch.py)
and the grids' records (OUT/records/<grid>/: their tables and each cell's seconds).

    python benchmarks/device_summary.py OUT [RECORDS]
"""
import json
import sys
from pathlib import Path

import torch


def load_json(path, empty):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else empty


def read_steps(out):
    path = Path(out) / "steps.tsv"
    lines = path.read_text().splitlines() if path.exists() else []
    return [dict(zip(("step", "status", "seconds"), line.split("\t"))) for line in lines]


def without_graph(option):
    """The option set a graph option is compared with: the same, run eagerly."""
    return "plain" if option == "graph" else option.removesuffix("+graph")


def graph_speedups(rows):
    """Per config and batch: the fastest option with and without the CUDA graph."""
    cells = {}
    for r in rows:
        cells.setdefault((r["config"], r["batch"]), []).append(r)
    result = []
    for (config, batch), cell in cells.items():
        graphed = [r for r in cell if r["option"].endswith("graph")]
        eager = [r for r in cell if not r["option"].endswith("graph")]
        plain = next((r for r in cell if r["option"] == "plain"), None)
        if not graphed or not eager:
            continue
        best_graph = min(graphed, key=lambda r: r["seconds"])
        best_eager = min(eager, key=lambda r: r["seconds"])
        result.append(dict(config=config, batch=batch, eager=best_eager["option"], eager_s=best_eager["seconds"],
                           graph=best_graph["option"], graph_s=best_graph["seconds"],
                           speedup=best_eager["seconds"] / best_graph["seconds"],
                           vs_plain=plain["seconds"] / best_graph["seconds"] if plain else None))
    return result


GRIDS = ("mnist-paper", "mnist-paper-decay")  # device_check.py's grids, folders of its records


def grids(records):
    """Each grid's table (paper_table.md) and the seconds of each of its cells."""
    found = []
    for folder in (Path(records) / name for name in GRIDS):
        cells = {path.stem: load_json(path, {}) for path in sorted(folder.glob("*.json"))}
        table = folder / "paper_table.md"
        found.append({"grid": folder.name, "table": table.read_text() if table.exists() else "",
                      "cell_seconds": {name: r.get("seconds") for name, r in cells.items()}})
    return found


def collect(out, records=None):
    out = Path(out)
    games = [load_json(path, {}) for path in sorted(out.glob("bench/*.json"))]
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    rows = [row for g in games for row in g.get("rows", [])]
    failures = [failure for g in games for failure in g.get("failures", [])]
    return {"gpu": gpus[0] if gpus else "no GPU", "gpus": len(gpus), "torch": torch.__version__,
            "cuda": torch.version.cuda, "steps": read_steps(out),
            "peak_flops": max((g["peak_flops"] for g in games if g.get("peak_flops")), default=None),
            "game": rows, "game_failures": failures, "graph_speedups": graph_speedups(rows),
            "peak_flops_bf16": max((g["peak_flops_bf16"] for g in games if g.get("peak_flops_bf16")), default=None),
            "cifar_epochs": [load_json(path, {}) for path in sorted(out.glob("work/*/epochs.json"))],
            "grids": grids(records or out / "records")}


def game_rows(rows):
    seconds = {(r["config"], r["batch"], r["option"]): r["seconds"] for r in rows}
    for r in rows:
        cell = (r["config"], r["batch"])
        plain = seconds.get((*cell, "plain"))
        eager = seconds.get((*cell, without_graph(r["option"]))) if r["option"].endswith("graph") else None
        of_bf16 = f"{r['of_bf16_peak']:.3f}" if r.get("of_bf16_peak") else "-"
        yield (f"| {r['config']} | {r['batch']} | {r['option']} | {r['seconds']:.4f} | {r['images_per_s']:.0f} | "
               f"{r['of_peak']:.2f} | {of_bf16} | {ratio(plain, r['seconds'])} | {ratio(eager, r['seconds'])} |")


def ratio(base, seconds):
    return times(base / seconds if base else None)


def times(factor):
    return f"{factor:.2f}x" if factor else "-"


def hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def markdown(result):
    lines = [f"# Device check: {result['gpu']} ({result['gpus']} visible), torch {result['torch']}, "
             f"CUDA {result['cuda']}", "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in result["steps"]]
    for grid in result["grids"]:
        seconds = [s for s in grid["cell_seconds"].values() if s]
        timing = (f"{len(seconds)} cells, {min(seconds):.0f}-{max(seconds):.0f} s each" if seconds else "no cells")
        lines += ["", f"## Grid {grid['grid']} ({timing})", "", grid["table"].strip() or "(no table)"]
    if result["peak_flops"]:
        bf16 = result.get("peak_flops_bf16")
        lines += ["", f"fp32 matmul peak {result['peak_flops'] / 1e12:.1f} TFLOP/s"
                  + (f", bf16 {bf16 / 1e12:.1f} TFLOP/s" if bf16 else "") + " (same runs)"]
    lines += ["", "Seconds per round (5 student steps + 1 generator step), median of the timed rounds:", "",
              "| config | batch | option | s / round | images/s | of fp32 peak | of bf16 peak | vs plain | "
              "graph vs same eager |", "|---|---|---|---|---|---|---|---|---|", *game_rows(result["game"])]
    if result["game_failures"]:
        lines += ["", *(f"- failed: {f['config']} batch {f['batch']} {f['option']}: {f['error']}"
                        for f in result["game_failures"])]
    if result["graph_speedups"]:
        lines += ["", "CUDA graph (--cuda_graph), fastest option with and without it:", "",
                  "| config | batch | fastest eager | s / round | fastest graphed | s / round | speed-up | "
                  "graphed vs plain fp32 |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {g['config']} | {g['batch']} | {g['eager']} | {g['eager_s']:.4f} | {g['graph']} | "
                  f"{g['graph_s']:.4f} | {g['speedup']:.2f}x | {times(g['vs_plain'])} |"
                  for g in result["graph_speedups"]]
    epochs = [e for e in result["cifar_epochs"] if e.get("epoch_seconds")]
    if epochs:
        lines += ["", "DFAD_cifar.py at the paper's settings (batch 256, 50 rounds per epoch, --scheduler, "
                      "evaluation after each epoch), the paper's 500 epochs projected from the last epoch timed:", "",
                  "| flags | data | seconds per epoch | 500 epochs |", "|---|---|---|---|"]
        lines += [f"| {' '.join(e['flags']) or '(defaults)'} | {e['data']} | "
                  f"{', '.join(f'{s:.1f}' for s in e['epoch_seconds'])} | {hours(e['projected_paper_s'])} |"
                  for e in epochs]
    return "\n".join(lines) + "\n"


def main(out, records=None):
    result = collect(out, records)
    (Path(out) / "results.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (Path(out) / "results.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main(*sys.argv[1:3])
