"""The DFAD game (game.py), its training loop (dfad.py) and supervised teacher training."""
