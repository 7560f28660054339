"""Genomic language models: load, embed, store activations, train the default model."""
