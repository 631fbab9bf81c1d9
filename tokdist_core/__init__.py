"""tokdist-studio core library: Token Distillation for new token embeddings."""
