"""Shared machinery of every script: the DFAD game, evaluation, checkpoints, logging, plots."""
