"""Shared machinery of the scripts, grouped by role.

- ``engine``: the DFAD min-max game (``game``), its training loop (``loop``) and
  supervised teacher training (``supervised``): what is learnt and how.
- ``runtime``: run plumbing: flags, devices and processes, checkpoints and resume,
  clean stops, mixed precision, user-facing errors.
- ``reporting``: what a person sees: visdom plots, CSV/JSON run records, image grids.
- ``metrics``: test-set scores (accuracy, mIoU).
- ``tools``: commands run by hand (``python -m utils.tools.install_visdom_assets``).

Nothing here imports ``network`` or ``dataloader``: scripts build those and hand them over.
"""
