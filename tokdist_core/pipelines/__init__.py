"""Whole jobs built on the facade: many words trained in chunks (scale) and a corpus turned into an
adapted model with a held-out report (adapt)."""
