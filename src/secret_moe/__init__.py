"""secret-moe: reproduce "Secret mixtures of experts inside your LLM" (arXiv 2512.18452)."""

__version__ = "0.1.0"
