"""genosae: candidate biomarkers from sparse autoencoders on genomic language models."""

__version__ = "0.1.0"
