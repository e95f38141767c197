"""The DFAD game (game.py), its training loop (loop.py) and supervised teacher training."""
