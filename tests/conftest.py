import os

# Everything resolves offline; models materialize under a per-run LASER_HOME unless the
# caller points it at a warm cache (make test keeps one in .cache/laser-home).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite runs on the fast SmolLM2-135M stack (servers it starts inherit this); tests of
# the default Qwen stack ask for it by name.
os.environ.setdefault("LASER_PROFILE", "smollm2-135m")
