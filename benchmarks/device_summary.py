"""results.json and results.md of benchmarks/device_check.sh, from what its steps left in OUT.

    python benchmarks/device_summary.py OUT DATASET
"""
import json
import os
import sys

import torch


def load_json(path, empty):
    if not os.path.exists(path):
        return empty
    with open(path) as f:
        return json.load(f)


def read_steps(out):
    with open(os.path.join(out, "steps.tsv")) as f:
        return [dict(zip(("step", "status", "seconds"), line.rstrip("\n").split("\t"))) for line in f]


def collect(out, dataset):
    bench = load_json(os.path.join(out, "bench_game.json"), {})
    compiled = load_json(os.path.join(out, "bench_compile.json"), {})
    runs = load_json(os.path.join(out, "work", "log", f"DFAD-{dataset}.json"), [])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {"gpu": gpu, "torch": torch.__version__, "steps": read_steps(out),
            "peak_flops": bench.get("peak_flops"), "game": bench.get("rows", []) + compiled.get("rows", []),
            "dfad_epoch": {"dataset": dataset, "batch_size": 512, "record": runs[-1] if runs else None}}


def game_rows(rows):
    plain = {(r["config"], r["batch"]): r["seconds"] for r in rows if r["option"] == "plain"}
    for r in rows:
        base = plain.get((r["config"], r["batch"]))
        speedup = f"{base / r['seconds']:.2f}x" if base else "-"
        yield (f"| {r['config']} | {r['batch']} | {r['option']} | {r['seconds']:.4f} | {r['images_per_s']:.0f} | "
               f"{r['gflops']:.0f} | {r['of_peak']:.2f} | {speedup} |")


def markdown(result):
    lines = [f"# Device check: {result['gpu']}, torch {result['torch']}", "",
             "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in result["steps"]]
    if result["peak_flops"]:
        lines += ["", f"fp32 matmul peak {result['peak_flops'] / 1e12:.2f} TFLOP/s"]
    lines += ["", "| config | batch | option | s / iteration | images/s | GFLOP/s | of fp32 peak | vs plain |",
              "|---|---|---|---|---|---|---|---|", *game_rows(result["game"])]
    record = result["dfad_epoch"]["record"]
    if record:
        lines += ["", f"DFAD {result['dfad_epoch']['dataset']}, one epoch of 50 rounds at batch 512: "
                      f"{record['seconds']:.1f} s with evaluation, accuracy {record['best']:.4f}"]
    return "\n".join(lines) + "\n"


def main(out, dataset):
    result = collect(out, dataset)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = markdown(result)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print(text)
    return result


if __name__ == "__main__":
    main(*sys.argv[1:3])
