"""How student and generator play one round: one file per method.

A method holds its round (``play_round``), its flags and their defaults, the suffix of
its files and the label of its row in the results table. ``METHODS`` is the one registry
that the scripts' flags, ``benchmarks/paper_table.py``, ``get_results.py`` and the
results table read: a new method is a file here, a line below, and its test.
"""
from ..game import Method
from .dafl import DAFL
from .dfad import DFAD
from .dfq import DFQ
from .kd import KD
from .mad import MAD
from .random_generator import RandomGenerator

METHODS = {method.name: method for method in (DFAD, RandomGenerator, DAFL, DFQ, KD, MAD)}
ROW_ORDER = [method.row_label({}) for method in METHODS.values()]  # the results table's rows

# Options of the round that any method can take, each a row of its own in the results
# table (dfad+ema) and a method of benchmarks/paper_table.py --methods: its name there and
# the argument that turns it on (a number, 0 or absent: off; the bare flag: on).
VARIANTS = {"ema": "student_ema", "replay": "replay"}


def variant_options(args):
    """The options a run's arguments turn on, in ``VARIANTS`` order."""
    return [name for name, dest in VARIANTS.items() if (args.get(dest) or 0) > 0]


def row_label(record):
    """The results table's row of a run record: its method's label, given its arguments,
    then +<option> for each option it ran with (dfad+ema+replay)."""
    args = record.get("args", {})
    return "+".join([METHODS[record.get("method", "dfad")].row_label(args), *variant_options(args)])
