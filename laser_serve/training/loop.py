"""LASeR's iterative training loop (arXiv 2410.01735, Algorithm 1) on the selector core.

For each batch of prompts: x = mean last-token hidden state of the policy over the batch;
arm = selector.choose(x); sample n responses per prompt; rank them with that RM; build
best-vs-worst pairs inward; one optimizer step on DPO + λ·NLL against the frozen initial
policy; selector.update(arm, x, −loss) (quantile-normalized inside the selector).
`grouping="instance"` picks an arm per prompt and takes one step per group of prompts that
share an arm, so no prompt is trained on an RM chosen for another prompt.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from laser_serve.config import RewardModelConfig, apply_warm_start, make_selector
from laser_serve.devices import pick
from laser_serve.durable import atomic_write
from laser_serve.errors import ConfigError
from laser_serve.generation.base import Candidate, Prompt, Sampling
from laser_serve.rewards import RewardModel, ScoreRequest
from laser_serve.selector import Policy, batch_context
from laser_serve.training import checkpoint
from laser_serve.training.config import RESUMABLE_CHANGES, TrainConfig
from laser_serve.training.data import Dataset, Example, load_dataset
from laser_serve.training.evaluate import evaluate
from laser_serve.training.losses import build_pairs
from laser_serve.training.policy import Pair, TrainablePolicy
from laser_serve.training.pool import load_pool, pool_configs, score
from laser_serve.training.vllm_sampler import VllmSampler


@dataclass
class Run:
    config: TrainConfig
    data: Dataset
    pool: list[RewardModelConfig]
    rms: list[RewardModel]
    policy: TrainablePolicy
    selector: Policy
    optimizer: Any
    out: Path


def train(
    config: TrainConfig, echo: Callable[[str], None] = print, vllm: VllmSampler | None = None
) -> dict[str, Any]:
    """Run (or resume) training; returns the summary also written to <out>/summary.json.
    `vllm`: an engine to sample with under `--generator vllm` (tests and benches share one
    across runs); without it, the run starts its own and shuts it down at the end."""
    from tqdm import tqdm

    if config.generator == "vllm" and vllm is None:
        with VllmSampler.for_config(config) as own:  # the engine starts on first use
            return train(config, echo, own)
    run, state = _setup(config, echo, vllm)
    cfg, out = run.config, run.out
    batches = -(-len(run.data.train) // cfg.batch_size)
    saved_at = state["step"]
    log = _open_log(out / "log.jsonl", state["log_lines"])
    bar = tqdm(
        total=cfg.iterations * batches,
        initial=state["step"],
        unit="batch",
        desc="laser-train",
        disable=not cfg.progress,
        dynamic_ncols=True,
    )
    stopped = False
    while state["iteration"] < cfg.iterations and not stopped:
        order = np.random.default_rng([cfg.seed, state["iteration"]]).permutation(
            len(run.data.train)
        )
        while state["batch"] < batches:
            if cfg.max_steps and state["step"] >= cfg.max_steps:
                stopped = True
                break
            b = state["batch"]
            examples = [run.data.train[i] for i in order[b * cfg.batch_size :][: cfg.batch_size]]
            for record in train_step(run, examples, state):
                log.write(json.dumps(record) + "\n")
                state["log_lines"] += 1
                if record["loss"] is not None:
                    bar.set_postfix(loss=f"{record['loss']:.3f}", rm=record["rm"])
            log.flush()
            state["step"] += 1
            state["batch"] += 1
            bar.update()
            if state["step"] % max(cfg.checkpoint_every, 1) == 0:
                saved_at = _save(run, state)
        if not stopped:
            state["iteration"] += 1
            state["batch"] = 0
            _evaluate(run, state, echo)
            saved_at = _save(run, state)
    if saved_at != state["step"]:
        _save(run, state)
    bar.close()
    log.close()
    summary = _summary(run, state, completed=not stopped)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
    if not stopped:
        run.policy.save(out / ("model" if cfg.full else "adapter"))
    return summary


def train_step(run: Run, examples: list[Example], state: dict[str, Any]) -> list[dict[str, Any]]:
    """One batch: contexts, choice(s), sampling, scoring, one optimizer step per group."""
    cfg, policy = run.config, run.policy
    started = time.perf_counter()
    prompts = [policy.prompt(ex.messages(), cfg.max_new_tokens) for ex in examples]
    X = policy.contexts(prompts)
    t_context = time.perf_counter()
    groups = choose_groups(run.selector, X, cfg.grouping)
    seed = int(np.random.SeedSequence([cfg.seed, state["step"]]).generate_state(1)[0])
    sampling = Sampling(cfg.n, cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed=seed)
    candidates = policy.sample(prompts, sampling)
    t_generate = time.perf_counter()
    records = []
    for arms, members, x in groups:
        t = time.perf_counter()
        pairs, ranking, rm_seconds = rank(
            run,
            arms,
            [examples[i] for i in members],
            [prompts[i] for i in members],
            [candidates[i] for i in members],
        )
        for entry, i in zip(ranking, members, strict=True):
            entry["prompt"] = i
        t_score = time.perf_counter()
        record: dict[str, Any] = {
            "step": state["step"],
            "iteration": state["iteration"],
            "batch": state["batch"],
            "update": None,
            "arms": [run.rms[a].name for a in arms],
            "rm": run.rms[arms[0]].name if len(arms) == 1 else "ensemble",
            "loss": None,
            "dpo": None,
            "nll": None,
            "reward": None,
            "reward_normalized": None,
            "pairs": len(pairs),
            "ranking": ranking,
        }
        if pairs:
            loss = policy.preference_step(pairs, run.optimizer)
            state["updates"] += 1
            record.update(
                update=state["updates"],
                loss=loss.loss,
                dpo=loss.dpo,
                nll=loss.nll,
                reward=-loss.loss,
                reward_normalized=reward_selector(run.selector, arms, x, -loss.loss, record),
            )
        else:  # every candidate tied: no preference, so no step and no bandit reward
            state["skipped"] += 1
        record["seconds"] = {
            "score": t_score - t,
            "update": time.perf_counter() - t_score,
            "rm": rm_seconds,
        }
        records.append(record)
    total = time.perf_counter() - started
    for record in records:  # batch-wide costs, shared by the batch's groups
        record["batch_seconds"] = {
            "context": t_context - started,
            "generate": t_generate - t_context,
            "total": total,
        }
    return records


def reward_selector(
    selector: Policy, arms: tuple[int, ...], x: np.ndarray, reward: float, record: dict[str, Any]
) -> float | None:
    """Teach the selector the step's reward; returns the normalized reward of the first arm.
    A reward the selector refuses (a NaN or overflowing loss: it would make its state
    non-finite) teaches nothing and is noted in the step's log record."""
    normalized = None
    for a in arms:  # the ensemble learns nothing; updating every arm keeps per-RM stats honest
        try:
            rn = selector.update(a, x, reward)
        except ValueError as exc:
            record["selector_refused"] = str(exc)
            continue
        normalized = rn if normalized is None else normalized
    return normalized


def rank(
    run: Run,
    arms: tuple[int, ...],
    examples: list[Example],
    prompts: list[Prompt],
    candidates: list[list[Candidate]],
) -> tuple[list[Pair], list[dict[str, Any]], dict[str, float]]:
    """Score each prompt's candidates with the chosen RM(s) and pair them from the ranking;
    returns the pairs, a log entry per prompt and the seconds per RM."""
    pairs, ranking = [], []
    rm_seconds = dict.fromkeys((run.rms[a].name for a in arms), 0.0)
    for ex, prompt, cands in zip(examples, prompts, candidates, strict=True):
        texts = [c.text for c in cands]
        request = ScoreRequest(ex.messages(), texts, ex.question, reference=ex.answer)
        scores, seconds = score(run.rms, arms, request)
        for name, s in seconds.items():
            rm_seconds[name] += s
        chosen = build_pairs(scores, run.config.pairs, texts)
        ids = [c.extra["token_ids"] for c in cands]
        pairs += [Pair(prompt, ids[c], ids[r]) for c, r in chosen]
        entry: dict[str, Any] = {"scores": scores.tolist(), "pairs": chosen}
        if run.config.log_candidates:
            entry.update(question=ex.question, answer=ex.answer, candidates=texts)
        ranking.append(entry)
    return pairs, ranking, rm_seconds


def choose_groups(
    selector: Policy, X: np.ndarray, grouping: str
) -> list[tuple[tuple[int, ...], list[int], np.ndarray]]:
    """(arms, member prompt indices, context) per optimizer step of a batch."""
    if grouping == "batch":
        x = batch_context(X)
        return [(selector.choose(x), list(range(len(X))), x)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, arms in enumerate(selector.choose_batch(X)):
        groups.setdefault(arms, []).append(i)
    return [(arms, members, batch_context(X[members])) for arms, members in groups.items()]


# --- setup, evaluation, checkpoints, summary -------------------------------------------------


def _validate(cfg: TrainConfig) -> None:
    checks = [
        (
            not (cfg.full and cfg.generator == "vllm"),
            "--generator vllm samples under a LoRA adapter; use --generator hf with --full",
        ),
        (cfg.n >= 2, "--n must be at least 2 (a pair needs two responses)"),
        (cfg.pairs >= 1, "--pairs must be at least 1"),
        (cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (cfg.iterations >= 1, "--iterations must be at least 1"),
        (cfg.temperature > 0, "--temperature must be > 0 (sampling needs variety)"),
        (cfg.max_new_tokens >= 1, "--max-new-tokens must be at least 1"),
        (
            not cfg.warm_start or Path(cfg.warm_start).exists(),
            f"--warm-start {cfg.warm_start}: no such file or folder",
        ),
        (cfg.warm_start_rounds >= 0, "--warm-start-rounds must be >= 0 (0: each event once)"),
    ]
    for f in dataclasses.fields(cfg):  # the allowed values each field declares
        choices = f.metadata["choices"]
        flag = "--" + f.name.replace("_", "-")
        checks.append(
            (
                not choices or getattr(cfg, f.name) in choices,
                f"{flag} must be one of " + ", ".join(choices),
            )
        )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _make_selector(cfg: TrainConfig, arms: list[str], dim: int) -> Policy:
    try:
        return make_selector(cfg.selector(), arms, dim)
    except ValueError as exc:
        raise ConfigError(f"--policy {cfg.policy}: {exc}") from None


def _setup(
    cfg: TrainConfig, echo: Callable[[str], None], vllm: VllmSampler | None
) -> tuple[Run, dict[str, Any]]:
    import torch

    _validate(cfg)
    out = Path(cfg.out)
    saved = checkpoint.latest(out)
    if cfg.resume and saved is None:
        raise ConfigError(f"--resume: {out} holds no checkpoint; drop --resume to start a run")
    if not cfg.resume and saved is not None:
        raise ConfigError(
            f"{out} already holds a run ({saved.name}); pass --resume to continue it or choose "
            "another --out"
        )
    if saved is not None:
        _check_same_run(json.loads((saved / "state.json").read_text())["config"], cfg)
    pool = pool_configs(cfg)
    arms = [rm.name for rm in pool]
    _make_selector(cfg, arms, 1)  # a bad --policy fails before any model loads
    data = load_dataset(cfg.data, cfg.data_dir, cfg.train_size, cfg.eval_size, cfg.seed)
    echo(f"data: {data.name} from {data.source}: {len(data.train)} train, {len(data.eval)} eval")
    echo("reward-model pool: " + ", ".join(f"{rm.name} ({rm.kind}, {rm.model})" for rm in pool))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # LoRA's initialization
    device = pick(cfg.device)
    policy = TrainablePolicy(cfg, device, vllm if cfg.generator == "vllm" else None)
    rms = load_pool(pool)
    selector = _make_selector(cfg, arms, policy.context.dim)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(cfg, data, pool, rms, policy, selector, optimizer, out)
    if saved is not None:
        state = checkpoint.load(saved, policy, optimizer, selector)
        state["config"] = cfg.to_dict()
        echo(f"resumed from {saved} at batch {state['step']}")
        return run, state
    if cfg.warm_start:  # a resumed run has the prior in its checkpoint's selector
        echo(f"selector warm-started from {apply_warm_start(cfg.selector(), selector)}")
    out.mkdir(parents=True, exist_ok=True)
    state = {
        "step": 0,
        "iteration": 0,
        "batch": 0,
        "updates": 0,
        "skipped": 0,
        "log_lines": 0,
        "config": cfg.to_dict(),
        "history": [],
    }
    _evaluate(run, state, echo)
    return run, state


def _check_same_run(saved: dict[str, Any], cfg: TrainConfig) -> None:
    now = cfg.to_dict()
    diffs = [
        f"--{k.replace('_', '-')} (checkpoint: {saved.get(k)!r}, now: {now[k]!r})"
        for k in now
        if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]
    ]
    if diffs:
        raise ConfigError(
            "--resume needs the settings the run started with; these differ: "
            + "; ".join(diffs)
            + ". Pass the original values or start a new --out."
        )


def _evaluate(run: Run, state: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Held-out accuracy now (before training, or after the iteration just finished)."""
    cfg, iteration = run.config, state["iteration"]
    if not run.data.eval:
        return
    t = time.perf_counter()
    result = evaluate(run.policy, run.data.eval, cfg.eval_max_new_tokens, cfg.eval_batch_size)
    state["history"].append({"iteration": iteration, **result, "seconds": time.perf_counter() - t})
    when = "before training" if iteration == 0 else f"after iteration {iteration}"
    echo(
        f"eval {when}: accuracy {result['accuracy']:.3f}, "
        f"format {result['format_rate']:.3f} on {result['n']} held-out examples"
    )


def _save(run: Run, state: dict[str, Any]) -> int:
    checkpoint.save(run.out, state["step"], run.policy, run.optimizer, run.selector, state)
    return state["step"]


def _open_log(path: Path, keep_lines: int) -> TextIO:
    """The step log, cut back to what the checkpoint had seen (a resumed run rewrites the
    steps after it)."""
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)[:keep_lines]
        atomic_write(path, "".join(lines).encode())
    return open(path, "a", encoding="utf-8")


def _summary(run: Run, state: dict[str, Any], completed: bool) -> dict[str, Any]:
    records = [json.loads(line) for line in (run.out / "log.jsonl").read_text().splitlines()]
    step_seconds = {r["step"]: r["batch_seconds"]["total"] for r in records}
    losses = [r["loss"] for r in records if r["loss"] is not None]
    return {
        "completed": completed,
        "policy": run.selector.name,
        "grouping": run.config.grouping,
        "pool": [{"name": rm.name, "kind": rm.kind, "model": rm.model} for rm in run.pool],
        "data": {
            "name": run.data.name,
            "source": run.data.source,
            "train": len(run.data.train),
            "eval": len(run.data.eval),
        },
        "accuracy": state["history"],
        "selections": {
            s.name: {
                "selections": s.selections,
                "pulls": s.pulls,
                "mean_reward": s.mean_reward,
                "mean_normalized_reward": s.mean_normalized_reward,
            }
            for s in run.selector.stats()
        },
        "steps": state["step"],
        "updates": state["updates"],
        "skipped": state["skipped"],
        "mean_loss": statistics.fmean(losses) if losses else None,
        "median_step_seconds": statistics.median(step_seconds.values()) if step_seconds else None,
        "config": run.config.to_dict(),
    }
