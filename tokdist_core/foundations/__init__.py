"""The floor everything stands on: loading models, forward passes, words and their splits, snippets,
new rows, cancellation, atomic files and the library's limits. Nothing here imports another sub-package."""
