"""The project files a real run calls into: what a reader following one run has to open.

    python benchmarks/trace_run.py                       # a tiny DFAD_mnist.py run on digits
    python benchmarks/trace_run.py -- --method dafl      # with the script's flags after --

Trains a 1-epoch digits teacher in a scratch folder, then runs ``DFAD_mnist.main`` there
(1 epoch of 2 rounds at batch 8) under ``sys.setprofile`` and lists every project file
(tests and benchmarks aside) in which a function was called, and how many of the
project's modules the run imported. A file only imported is not counted: its top level, the
bodies of its classes and the comprehensions at its top level run at import, they are not
calls into it.
"""
import argparse
import inspect
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TINY = ["--dataset", "digits", "--epochs", "1", "--epoch_itrs", "2", "--batch_size", "8", "--no_visdom",
        "--num_workers", "0"]


def project_file(path):
    path = os.path.abspath(path)
    inside = os.path.relpath(path, ROOT)
    if inside.startswith(os.pardir) or inside.startswith(("tests", ".venv", "benchmarks")):
        return None
    return inside


def runs_at_import(frame):
    """A module's top level, a class body (neither is an optimized function's frame), or a
    comprehension run by a module's top level."""
    code = frame.f_code
    if not code.co_flags & inspect.CO_OPTIMIZED:
        return True
    return code.co_name.startswith("<") and frame.f_back is not None and frame.f_back.f_code.co_name == "<module>"


def trace(flags):
    """(files with a called function, project modules imported) during one run."""
    subprocess.run([sys.executable, os.path.join(ROOT, "train_teacher.py"), "--dataset", "digits", "--epochs", "1",
                    "--no_visdom"], check=True, stdout=subprocess.DEVNULL)
    before = set(sys.modules)
    called = {}  # file -> its functions that were called

    def profile(frame, event, arg):
        if event == "call" and not runs_at_import(frame):
            name = project_file(frame.f_code.co_filename)
            if name:
                called.setdefault(name, set()).add(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        import DFAD_mnist
        DFAD_mnist.main([*TINY, *flags])
    finally:
        sys.setprofile(None)
    imported = {m for m in set(sys.modules) - before
                if getattr(sys.modules[m], "__file__", None) and project_file(sys.modules[m].__file__)}
    return called, sorted(imported)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flags", nargs="*", help="DFAD_mnist.py flags (after --)")
    parser.add_argument("--functions", action="store_true", help="list each file's called functions too")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="trace-run-")
    os.chdir(folder)
    called, imported = trace(args.flags)
    print(f"\n{len(called)} project files with a called function:")
    for name in sorted(called):
        print(f"  {name}" + (f": {', '.join(sorted(called[name]))}" if args.functions else ""))
    print(f"{len(imported)} project modules imported by the run")
    return called


if __name__ == "__main__":
    main()
