import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = Path(__file__).resolve().parent / "manifests"


def load_manifest(name):
    with open(MANIFESTS / f"{name}.json") as f:
        return json.load(f)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def start_visdom_server(port, env_path):
    """A real visdom server on 127.0.0.1:port.

    ``python -m visdom.server`` first downloads its web page's scripts, which fails
    offline; ``run_server.main()`` skips that step and serves the API all the same.
    """
    code = ("import sys; from visdom.server.run_server import main; "
            f"sys.argv = ['visdom', '-port', '{port}', '-bind_local', '-env_path', {str(env_path)!r}, "
            "'-logging_level', 'WARNING']; main()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_for_port(port):
        proc.kill()
        raise RuntimeError("the visdom server did not start")
    return proc


@pytest.fixture
def visdom_server_proc(tmp_path):
    """Yields (port, process) of a fresh visdom server; the server is stopped afterwards."""
    port = free_port()
    proc = start_visdom_server(port, tmp_path / "visdom_env")
    yield port, proc
    proc.kill()
    proc.wait()


@pytest.fixture
def visdom_server(visdom_server_proc):
    """Yields the port of a fresh visdom server."""
    return visdom_server_proc[0]


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run a script's main() with a fresh working directory (checkpoint/, log/ land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_script(script, *args, cwd, timeout=300, env=None):
    """Run one of the project's scripts as a user would, in ``cwd``."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)
