"""laser-serve: best-of-n reranking with a LinUCB-selected reward model (LASeR)."""
