"""Run plumbing: flags, processes and devices, checkpoints and resume, clean stops, precision."""
