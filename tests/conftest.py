import os

# Everything resolves offline; models materialize under a per-run LASER_HOME unless the
# caller points it at a warm cache (make test keeps one in .cache/laser-home).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
