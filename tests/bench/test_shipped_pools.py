"""The pools shipped under bench/pools are what their header says: a slice re-scored with the
same RMs gives the same scores, and a slice of the rows generated on a CPU with this one's
flags (each row records them), regenerated with the same per-row seeds, gives the same
candidates (their first tokens)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from laser_bench import gsm8k, replay
from laser_bench import longbench_eval as lbe
from laser_bench.bestofn import SHIPPED

SHARED = gsm8k.shared_data_dir()
FILES = sorted(SHIPPED.glob("*.jsonl.gz"))
SLICE = 3  # rows regenerated
RESCORED = 1  # rows re-scored: the 0.5B RMs take ~25 s a row on 2 cores
REGEN_TOKENS = 16

pytestmark = [
    pytest.mark.skipif(not FILES, reason="no pools shipped under bench/pools"),
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"the rows' data is not in {SHARED}"),
]


def _prompts(task: str) -> dict[str, str]:
    """Row key -> prompt text, rebuilt from the data the pools were built from."""
    if task == "gsm8k":
        rows = [r for split in ("test", "train") for r in gsm8k.load_rows(SHARED / "gsm8k", split)]
    else:
        examples = lbe.load_examples(SHARED / "longbench", [task])
        rows = lbe.replay_rows(examples, lbe.load_task_config(), None)
    return {r.key: r.prompt for r in rows}


def _scoring_tokens(record: dict) -> int:
    gen = record["generate"]["value"]
    return gen["prompt_tokens"] + sum(c["tokens"] for c in gen["candidates"])


def shipped_slice(
    path: Path, on_this_cpu: bool = False
) -> tuple[replay.Settings, list[tuple[replay.Row, dict]]]:
    """The pool's settings and its cheapest uncut rows (only those generated on a CPU with
    this one's flags, with `on_this_cpu`)."""
    from laser_serve.config import RewardModelConfig

    header, records = replay.read_pools(path)
    rms = tuple(
        RewardModelConfig(rm["name"], rm["kind"], rm["model"], max_length=rm["max_length"])
        for rm in header["reward_models"]
    )
    settings = replay.Settings(
        policy=header["policy"],
        n=header["n"],
        temperature=header["temperature"],
        top_p=header["top_p"],
        gen_seed=header["gen_seed"],
        max_model_len=header["max_model_len"],
        encoder=header["encoder"],
        reward_models=rms,
    )
    # Rows the policy saw uncut, so that a shorter generation sees the same prompt; the
    # cheapest to score, so that the 0.5B RMs keep the check to seconds on 2 cores.
    uncut = [(r, rec) for r, rec in records if not rec["generate"]["value"]["truncated"]]
    if on_this_cpu:
        flags = replay.cpu_flags()
        uncut = [(r, rec) for r, rec in uncut if replay.row_cpu_flags(header, rec) == flags]
    chosen = sorted(uncut, key=lambda item: _scoring_tokens(item[1]))[:SLICE]
    prompts: dict[str, dict[str, str]] = {}
    out = []
    for row, record in chosen:
        text = prompts.setdefault(row.task, _prompts(row.task)).get(row.key)
        assert text is not None, f"{path}: row {row.task}/{row.key} is not in {SHARED}"
        out.append((dataclasses.replace(row, prompt=text), record))
    return settings, out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_rescored_slice_matches(path: Path, tmp_path: Path) -> None:
    from laser_serve.pipeline import score_candidates
    from laser_serve.rewards import ScoreRequest, make_reward_model

    settings, rows = shipped_slice(path)
    rows = rows[:RESCORED]
    builder = replay.Builder(settings, replay.Cache(tmp_path))
    rms = [make_reward_model(replay.pool_rm(rm)) for rm in settings.reward_models]
    for row, record in rows:
        stages = dict(builder.stages(row))
        # The rebuilt prompt is the one the pool was built from (its ids are in the key).
        assert stages["generate"] == record["generate"]["key"]
        prompt = builder.prompt(row)
        request = ScoreRequest(
            prompt.messages or [{"role": "user", "content": prompt.text}],
            [c["text"] for c in record["generate"]["value"]["candidates"]],
            row.question,
        )
        scores, _ = score_candidates(rms, request)
        for rm in rms:
            assert stages[f"score-{rm.name}"] == record["scores"][rm.name]["key"]
            np.testing.assert_allclose(
                scores[rm.name],
                record["scores"][rm.name]["value"]["scores"],
                rtol=1e-3,
                atol=1e-3,
                err_msg=f"{row.task}/{row.key} {rm.name}",
            )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_regenerated_slice_matches(path: Path) -> None:
    settings, rows = shipped_slice(path, on_this_cpu=True)
    if len(rows) < SLICE:
        pytest.skip(f"fewer than {SLICE} rows were generated on a CPU with this one's flags")
    short = [(dataclasses.replace(r, max_new_tokens=REGEN_TOKENS), rec) for r, rec in rows]
    regenerated = asyncio.run(_regenerate(settings, [r for r, _ in short]))
    for (row, record), (cands, greedy) in zip(short, regenerated, strict=True):
        shipped = record["generate"]["value"]
        pairs = [(greedy, shipped["greedy"]["text"])]
        pairs += list(zip(cands, [c["text"] for c in shipped["candidates"]], strict=True))
        for new, old in pairs:
            # The first tokens of the same seeded sample (the last character of a short
            # decode may still be an incomplete multi-byte sequence).
            assert old.startswith(new[:-1]), (row.task, row.key, new, old[: len(new) + 20])


async def _regenerate(settings: replay.Settings, rows: list[replay.Row]) -> list:
    from laser_serve.generation import Sampling

    builder = replay.Builder(settings, replay.Cache(Path("/nonexistent")))
    generator = await builder._start_generator()
    s = settings

    async def one(row: replay.Row) -> tuple[list[str], str]:
        seed, prompt = s.row_seed(row), builder.prompt(row)
        sampled = Sampling(s.n, s.temperature, s.top_p, row.max_new_tokens, seed)
        greedy = Sampling(1, 0.0, 1.0, row.max_new_tokens, seed)
        # Seeded requests sample the same tokens however vLLM batches them.
        cands, (g,) = await asyncio.gather(
            generator.generate(prompt, sampled, f"{row.key}-s"),
            generator.generate(prompt, greedy, f"{row.key}-g"),
        )
        return [c.text for c in cands], g.text

    try:
        return list(await asyncio.gather(*(one(row) for row in rows)))
    finally:
        await generator.close()
