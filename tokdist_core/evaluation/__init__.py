"""How good the new rows are and what they do inside the model.

    metrics     held-out hidden-state MSE, cosine, next-token KL and norm percentile per word and method
    views       nearest neighbours, the PCA map and training paths on it, the per-layer lens, generation
    attention   how much attention the positions after a word give to it, per layer
    inspection  one word's snippets: each one's loss, worst first; snippets a person writes
    report      the domain report: tokens saved and bits per byte on held-out documents
"""
