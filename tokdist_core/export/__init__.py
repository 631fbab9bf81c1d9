"""Where an adapted model goes: the `hf` folder (or its zip), the new rows alone, reproduce.py, and the store
that keeps a server's exports on disk (store: locks, owners, a size cap, clean-up after a kill)."""

from .card import model_card
from .hf import estimate_model_bytes, export_model_zip, save_model, zip_folder
from .reproduce import reproduce_snippet
from .rows import META_FILE, ROWS_FILE, load_rows, save_rows

__all__ = ["META_FILE", "ROWS_FILE", "estimate_model_bytes", "export_model_zip", "load_rows", "model_card", "reproduce_snippet",
           "save_model", "save_rows", "zip_folder"]
