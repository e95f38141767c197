"""network/ and dataloader/ load only what a run uses."""
import subprocess
import sys

from conftest import ROOT

PROBE = """
import sys
import network, dataloader
network.lenet.LeNet5()
dataloader.get_dataset("digits", train=False)
print(sorted(m for m in sys.modules if m.startswith(("network.", "dataloader."))))
"""


def test_a_digits_run_imports_no_other_network_or_data_set():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(["dataloader.checks", "dataloader.mnist", "network.lenet"])
