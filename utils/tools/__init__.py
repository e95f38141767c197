"""Commands run by hand, not imported by the scripts."""
