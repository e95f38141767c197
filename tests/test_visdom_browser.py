"""The visdom dashboard of a DFAD run renders in a real (headless) browser, offline.

The server is started the way users start it, ``python -m visdom.server``, which works
offline once ``python -m utils.tools.install_visdom_assets`` has installed the page's scripts. Needs
npm (or a filled asset cache) and chromium; where either is missing the test fails with
the reason (.ci/run installs both), unless DFAD_SKIP_BROWSER=1 turns that into a skip.
DFAD_UPDATE_SCREENSHOT=1 also copies the screenshot to images/visdom-dashboard.png.
"""
import os
import shutil
import signal
import subprocess
import sys

import pytest

import DFAD_mnist
import train_teacher
from conftest import ROOT, free_port, wait_for_port
from utils.tools import install_visdom_assets as visdom_assets

ENV = "DFAD-digits"
CHROMIUM_TIMEOUT_S = 90
SCREENSHOT = ROOT / "images" / "visdom-dashboard.png"


def unavailable(reason):
    if os.environ.get("DFAD_SKIP_BROWSER") == "1":
        pytest.skip(f"{reason} (skipped: DFAD_SKIP_BROWSER=1)")
    pytest.fail(f"{reason}\nSet DFAD_SKIP_BROWSER=1 to skip the browser test instead.", pytrace=False)


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        unavailable("chromium is not installed. .ci/run installs it (apt-get install -y chromium); "
                    "on Debian/Ubuntu run: apt-get update && apt-get install -y chromium")
    return path


@pytest.fixture(scope="module")
def visdom_page_assets():
    """The installed visdom package's static/ holds every file its page loads."""
    try:
        visdom_assets.install(cache_dir=visdom_assets.DEFAULT_CACHE)
    except visdom_assets.AssetError as e:
        unavailable(f"visdom's web-page assets could not be installed: {e}")
    todo, built_ok, _ = visdom_assets.plan(visdom_assets.visdom_dir() / "static")
    assert not todo and built_ok


def kill_group(proc):
    """Kill a process started with start_new_session=True, with whatever it spawned."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture
def visdom_cli_server(tmp_path, visdom_page_assets):
    """``python -m visdom.server`` on 127.0.0.1:<free port>; yields (port, log file)."""
    port = free_port()
    log = tmp_path / "visdom-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "visdom.server", "-port", str(port), "-bind_local",
             "-env_path", str(tmp_path / "visdom_env")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for_port(port):
            pytest.fail(f"python -m visdom.server did not start; its output:\n{log.read_text()}",
                        pytrace=False)
        yield port, log
    finally:
        kill_group(proc)


def run_chromium(chromium, profile, *args):
    """Headless chromium that may reach 127.0.0.1 only and listens on no port; returns stdout."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--no-first-run", "--no-default-browser-check", "--mute-audio",
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s: {' '.join(cmd)}")
    finally:
        kill_group(proc)   # its renderer and helper processes too
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}"
    return out.decode(errors="replace")


def test_dashboard_renders_plots_and_image_grids(in_tmp_dir, visdom_cli_server, chromium):
    from PIL import Image

    port, server_log = visdom_cli_server
    train_teacher.main(["--dataset", "digits", "--epochs", "1", "--batch_size", "64", "--no_visdom"])
    DFAD_mnist.main(["--dataset", "digits", "--epochs", "2", "--epoch_itrs", "3", "--batch_size", "8",
                     "--log_interval", "1", "--visdom_port", str(port)])

    url = f"http://127.0.0.1:{port}/env/{ENV}"
    dom = run_chromium(chromium, in_tmp_dir / "chromium-dom", "--dump-dom", url)
    assert dom.count('class="trace scatter') >= 5, dom[-3000:]    # Loss_S, Loss_G, Acc, lr_S, lr_G
    assert dom.count('src="data:image/png') >= 2, dom[-3000:]     # Generated, Test_inputs
    for title in ("Loss_S", "Loss_G", "Acc", "lr_S", "lr_G", "Generated", "Test_inputs"):
        assert title in dom, f"window {title} is not on the page"

    shot = in_tmp_dir / "visdom-dashboard.png"
    run_chromium(chromium, in_tmp_dir / "chromium-shot", f"--screenshot={shot}",
                 "--window-size=1400,1150", url)
    image = Image.open(shot).convert("RGB")
    small = image.resize((image.width // 4, image.height // 4))
    pixels = list(small.getdata())
    non_white = sum(1 for p in pixels if min(p) < 240) / len(pixels)
    assert non_white > 0.01, f"the screenshot is blank ({non_white:.2%} non-white pixels)"
    assert len(set(pixels)) >= 20, "the screenshot has almost no colours"

    log = server_log.read_text()
    assert "Downloading scripts" not in log and "while downloading" not in log, log
    if os.environ.get("DFAD_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
