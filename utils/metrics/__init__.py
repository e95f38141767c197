"""Test-set scores: each evaluator returns a dict of named scores."""
