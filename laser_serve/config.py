"""One typed configuration, loaded from TOML; CLI flags override single values.

Sections mirror the pipeline: [server], [generator], [context], [selector] and a list of
[[reward_models]]. Unknown keys are errors, so a typo never silently keeps a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laser_serve.errors import ConfigError
from laser_serve.models import MINILM, QWEN_05B, SMOLLM2, laser_home
from laser_serve.selector import Policy, make_policy
from laser_serve.selector.normalizer import MODES as REWARD_NORMS

# Allowed values, defined once: validation, CLI choices and help read them from here.
RM_KINDS = ("seq-cls", "lm-judge", "lm-loglik", "embedding", "consensus", "grounding", "verifier")
BACKENDS = ("vllm", "hf")
ENCODERS = ("sentence", "policy")
AUTO_FEEDBACK = ("", "nll")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464  # 0 picks a free port, -1 disables the metrics endpoint
    state_dir: str = ""  # empty: $LASER_HOME/state
    snapshot_interval_s: float = 60.0
    pending_ttl_s: float = 3600.0
    max_pending: int = 100_000
    max_n: int = 16
    max_candidates: int = 64
    max_new_tokens: int = 1024
    max_prompt_chars: int = 2_000_000
    max_messages: int = 256
    max_message_bytes: int = 16 * 1024 * 1024
    max_inflight: int = 64
    # A Rerank whose model work (encode or score) has waited this long for the single model
    # worker is refused with RESOURCE_EXHAUSTED; 0: wait as long as it takes.
    max_queue_s: float = 30.0
    # Concurrent requests' encoder and RM work runs in batches of up to max_batch requests;
    # a free worker waits batch_wait_s after the first for others to join. An RM batch also
    # stops at max_batch_tokens (prompt + candidate tokens): past that a CPU forward gets
    # slower per token, not faster (docs/scoring.md); a longer request runs alone.
    max_batch: int = 16
    batch_wait_s: float = 0.002
    max_batch_tokens: int = 3072
    shutdown_grace_s: float = 30.0
    tasks: list[str] = field(default_factory=lambda: ["default"])
    # "nll": reward the chosen RM with the policy's quantile-normalized -NLL of the chosen
    # candidate whenever a request expects no application feedback (the paper's label-free
    # best-of-n reward). Empty: learn only from Feedback.
    auto_feedback: str = ""
    # The decision log's replica id (issue #13); empty: this host's name.
    replica_id: str = ""
    # Journal segments stay this long after a snapshot covers them, as the decision log that
    # `laser-serve --rebuild` replays (and off-policy evaluation reads); 0: delete at once.
    journal_retention_days: float = 7.0
    # Feedback calls per second per bearer token (bursts of 10 s worth pass); above it
    # RESOURCE_EXHAUSTED, so one client cannot outvote the rest by volume. 0: no limit.
    feedback_rate_per_token: float = 0.0
    # Access. TLS when tls_cert and tls_key are set; tls_client_ca also demands client certs.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Bearer tokens (file: one per line; env: the name of a variable holding them). None set:
    # no token check. Health checks stay open unless auth_health_open is false.
    auth_tokens_file: str = ""
    auth_tokens_env: str = ""
    auth_health_open: bool = True


@dataclass
class GeneratorConfig:
    backend: str = "vllm"  # "vllm" or "hf"
    model: str = QWEN_05B  # the default profile's policy
    dtype: str = "auto"  # "auto": bfloat16 on a GPU or a CPU with bf16 in hardware, else float32
    max_model_len: int = 2048
    default_n: int = 4
    default_temperature: float = 0.8
    default_max_tokens: int = 64
    # vLLM on a GPU: fraction of GPU memory for weights + KV cache.
    gpu_memory_utilization: float = 0.3
    # vLLM KV cache in GiB; 0: on a GPU gpu_memory_utilization decides, on a CPU 2 GiB (a
    # share of host memory would count the weights and every other process against it).
    kv_cache_gib: float = 0.0
    enforce_eager: bool = True
    enable_prefix_caching: bool = True


@dataclass
class ContextConfig:
    encoder: str = "sentence"  # "sentence" (MiniLM) or "policy" (policy LM last hidden state)
    model: str = MINILM  # sentence encoder model
    tail_tokens: int = 256  # without context_text, the prompt's last tokens are encoded


@dataclass
class SelectorConfig:
    policy: str = "linucb"
    alpha: float = 0.1
    lam: float = 1.0
    normalize: bool = True
    project_to: int = 0  # 0: no random projection
    reward_norm: str = "none"  # none | quantile | minmax
    window: int = 1000
    seed: int = 0
    # The reward contract with reward_norm = "none": Feedback rewards outside [lo, hi] are
    # INVALID_ARGUMENT. With quantile or minmax any finite reward is accepted (it is mapped
    # into [0, 1] before it reaches the statistics).
    reward_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    # A prior for a fresh state (laser_serve.priors): a laser-serve state dir (its logged
    # decisions) or best-of-n pool files (full information); "" for none. Ignored, with a
    # warning, once the state dir holds selector state: that state already has it.
    warm_start: str = ""
    warm_start_rounds: float = 0.0  # the rounds the whole prior counts as (0: each event once)


@dataclass
class ClusterConfig:
    """Replicas that learn as one (docs/operations.md, "Running N replicas"). Empty
    redis_url: this process learns alone, with its own journal."""

    redis_url: str = ""  # e.g. redis://10.0.0.5:6379/0
    # Every key (pending selections, claims, the update stream, snapshots) starts with this,
    # so several clusters can share one Redis.
    key_prefix: str = "laser"
    # Connect/read timeout of each Redis call: how long Rerank and Feedback wait for a Redis
    # that is down before Rerank answers anyway and Feedback answers UNAVAILABLE.
    timeout_s: float = 0.5
    # A replica writes a shared snapshot every server.snapshot_interval_s, holding the
    # snapshot lock for at most this lease (a writer that dies frees it when it runs out).
    snapshot_lease_s: float = 30.0
    # Shared snapshots kept; the stream is trimmed below the oldest of them.
    snapshots_kept: int = 2


@dataclass
class RewardModelConfig:
    name: str
    kind: str
    model: str
    max_length: int = 1024
    batch_size: int = 8
    device: str = "auto"
    # lm-judge and lm-loglik: "auto" is bfloat16 on a GPU and on a CPU with bf16 in
    # hardware (AVX512_BF16, AMX), float32 elsewhere (devices.pick_dtype); the final
    # logits are computed in fp32 either way.
    dtype: str = "auto"


@dataclass(frozen=True)
class Profile:
    """A named embedded stack: a policy and the RM pool that goes with it."""

    policy: str
    reward_models: tuple[RewardModelConfig, ...]
    about: str


PROFILES: dict[str, Profile] = {
    # Chosen by measurement (README, "Choosing the embedded stack"; `laser-bench stacks`):
    # GSM8K greedy 15% against 2.5% for the 135M, at 18.6 s per default Rerank on 2 cores
    # (the 1.5B: 25% at 49 s).
    "qwen-0.5b": Profile(
        QWEN_05B,
        (
            RewardModelConfig("qwen-judge", "lm-judge", QWEN_05B),
            RewardModelConfig("qwen-loglik", "lm-loglik", QWEN_05B),
            RewardModelConfig("consensus", "consensus", "vote+mbr-f1"),
            RewardModelConfig("grounding", "grounding", "prompt-overlap"),
            RewardModelConfig("minilm-sim", "embedding", MINILM, max_length=256),
        ),
        "Qwen2.5-Coder-0.5B-Instruct policy; judge and log-likelihood RMs on the same weights, "
        "self-consistency, document grounding and MiniLM similarity",
    ),
    # Four times cheaper per token and too weak to gain from reranking: the test suite's stack.
    "smollm2-135m": Profile(
        SMOLLM2,
        (
            RewardModelConfig("smol-judge", "lm-judge", SMOLLM2),
            RewardModelConfig("smol-loglik", "lm-loglik", SMOLLM2),
            RewardModelConfig("minilm-sim", "embedding", MINILM, max_length=256),
        ),
        "SmolLM2-135M-Instruct policy; judge and log-likelihood RMs on it, MiniLM similarity",
    ),
}
DEFAULT_PROFILE = "qwen-0.5b"


def profile_reward_models(profile: str = DEFAULT_PROFILE) -> list[RewardModelConfig]:
    return [dataclasses.replace(rm) for rm in PROFILES[profile].reward_models]


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    reward_models: list[RewardModelConfig] = field(default_factory=profile_reward_models)
    profile: str = DEFAULT_PROFILE  # which stack supplied the model and RM defaults

    @property
    def arms(self) -> tuple[str, ...]:
        """The bandit's arms: the RM names, in config order (the saved state is keyed by them)."""
        return tuple(rm.name for rm in self.reward_models)

    def state_dir(self) -> Path:
        return Path(self.server.state_dir) if self.server.state_dir else laser_home() / "state"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The effective configuration as TOML (what `--print-config` shows)."""
        lines: list[str] = [f"profile = {_toml_value(self.profile)}", ""]
        data = self.to_dict()
        for section in ("server", "generator", "context", "selector", "cluster"):
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in data[section].items()]
            lines.append("")
        for rm in data["reward_models"]:
            lines.append("[[reward_models]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in rm.items()]
            lines.append("")
        return "\n".join(lines)

    def validate(self) -> Config:
        s, g = self.server, self.generator
        check_choice(g.backend, BACKENDS, "generator.backend")
        check_choice(self.context.encoder, ENCODERS, "context.encoder")
        check_choice(self.selector.reward_norm, REWARD_NORMS, "selector.reward_norm")
        check_choice(s.auto_feedback, AUTO_FEEDBACK, "server.auto_feedback")
        rr = self.selector.reward_range
        _check(
            len(rr) == 2 and all(math.isfinite(v) for v in rr) and rr[0] < rr[1],
            f"selector.reward_range must be two finite numbers [lo, hi] with lo < hi, got {rr}",
        )
        wr = self.selector.warm_start_rounds
        _check(math.isfinite(wr) and wr >= 0, "selector.warm_start_rounds must be >= 0")
        c = self.cluster
        _check(c.timeout_s > 0, "cluster.timeout_s must be > 0")
        _check(c.snapshot_lease_s > 0, "cluster.snapshot_lease_s must be > 0")
        _check(c.snapshots_kept >= 1, "cluster.snapshots_kept must be >= 1")
        _check(bool(c.key_prefix), "cluster.key_prefix must not be empty")
        _check(
            not c.redis_url or c.redis_url.startswith(("redis://", "rediss://", "unix://")),
            f"cluster.redis_url must start with redis://, rediss:// or unix://, got "
            f"{c.redis_url!r}",
        )
        _check(
            not (c.redis_url and s.auto_feedback),
            'server.auto_feedback = "nll" is not supported with cluster.redis_url yet; '
            "send Feedback from the application, or run a single replica",
        )
        _check(s.journal_retention_days >= 0, "server.journal_retention_days must be >= 0")
        _check(s.feedback_rate_per_token >= 0, "server.feedback_rate_per_token must be >= 0")
        _check(s.max_n >= 1, "server.max_n must be >= 1")
        _check(1 <= g.default_n <= s.max_n, "generator.default_n must be in 1..server.max_n")
        _check(s.max_inflight >= 1, "server.max_inflight must be >= 1")
        _check(s.max_queue_s >= 0, "server.max_queue_s must be >= 0 (0: no limit)")
        _check(s.max_batch >= 1, "server.max_batch must be >= 1")
        _check(s.batch_wait_s >= 0, "server.batch_wait_s must be >= 0")
        _check(s.max_batch_tokens >= 1, "server.max_batch_tokens must be >= 1")
        _check(s.pending_ttl_s > 0, "server.pending_ttl_s must be > 0")
        _check(bool(s.tasks), "server.tasks must name at least one task")
        _check(bool(self.reward_models), "at least one [[reward_models]] entry is needed")
        names = [rm.name for rm in self.reward_models]
        _check(len(set(names)) == len(names), f"reward model names must be unique: {names}")
        for rm in self.reward_models:
            _check(rm.kind in RM_KINDS, f"reward_models.{rm.name}.kind must be one of {RM_KINDS}")
            _check(
                bool(rm.name) and ":" not in rm.name,
                f"reward model name {rm.name!r} must be non-empty and contain no ':'",
            )
        return self


def make_selector(s: SelectorConfig, arms: Sequence[str], dim: int, spec: str = "") -> Policy:
    """The policy ``spec`` (default ``s.policy``) with the configured parameters: the one
    factory for the server's policy, its per-request overrides and laser-train's selector.
    ValueError names a bad spec."""
    return make_policy(
        spec or s.policy,
        arms,
        dim,
        seed=s.seed,
        alpha=s.alpha,
        lam=s.lam,
        normalize=s.normalize,
        project_to=s.project_to or None,
        reward_norm=s.reward_norm,
        window=s.window,
    )


def apply_warm_start(s: SelectorConfig, policy: Policy) -> str:
    """Initialize a fresh ``policy`` from ``s.warm_start`` (see ``laser_serve.priors``);
    returns what it learned. ConfigError names the file and what is wrong with it."""
    from laser_serve.priors import apply_prior

    try:
        return apply_prior(policy, s.warm_start, s.warm_start_rounds or None)
    except ValueError as exc:
        raise ConfigError(f"selector.warm_start {s.warm_start}: {exc}") from None


def check_choice(value: Any, choices: Sequence[Any], key: str) -> None:
    """ConfigError unless ``value`` is one of ``choices``."""
    _check(value in choices, f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)  # strings and lists of strings are valid TOML in JSON spelling


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(sorted(unknown))}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert TOML values and `--set` strings to the field's type, or say what is wrong."""
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "1")
            return bool(value)
        if hint in (int, float):
            return hint(value)
        if hint is str:
            return str(value)
        if typing.get_origin(hint) is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            (item,) = typing.get_args(hint)
            return [item(v) for v in value]
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{where}: cannot use {value!r} as {getattr(hint, '__name__', hint)}")


def load(
    path: str | Path | None = None, overrides: list[str] | None = None, profile: str | None = None
) -> Config:
    """Load a TOML file (or the defaults) and apply `section.key=value` overrides.

    The profile (the argument, else the file's top-level `profile`, else $LASER_PROFILE,
    else the default) supplies generator.model and the RM pool unless the file sets them."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    sections = {
        "server": ServerConfig,
        "generator": GeneratorConfig,
        "context": ContextConfig,
        "selector": SelectorConfig,
        "cluster": ClusterConfig,
    }
    in_file = data.pop("profile", None)
    profile = profile or in_file or os.environ.get("LASER_PROFILE") or DEFAULT_PROFILE
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    unknown = set(data) - set(sections) - {"reward_models"}
    if unknown:
        raise ConfigError(f"unknown section(s) in {path}: {', '.join(sorted(unknown))}")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in sections:
            raise ConfigError(
                f"override {item!r} must look like section.key=value with section one of "
                f"{', '.join(sections)}"
            )
        data.setdefault(section, {})[name] = value
    data.setdefault("generator", {}).setdefault("model", PROFILES[profile].policy)
    config = Config(**{s: _build(cls, data.get(s, {}), s) for s, cls in sections.items()})
    config.profile = profile
    config.reward_models = profile_reward_models(profile)
    if "reward_models" in data:
        config.reward_models = [
            _build(RewardModelConfig, rm, f"reward_models[{i}]")
            for i, rm in enumerate(data["reward_models"])
        ]
    return config.validate()
