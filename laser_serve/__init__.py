"""laser-serve: best-of-n reranking with a LinUCB-selected reward model (LASeR)."""

__version__ = "0.1.0"
