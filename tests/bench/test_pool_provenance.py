"""A pool grown over several machines keeps, row by row, the CPU its candidates were sampled
on: the regeneration check compares only rows this CPU can reproduce."""

from __future__ import annotations

from pathlib import Path

from laser_bench import replay

AVX2 = ["avx", "avx2", "fma"]
AVX512 = ["avx", "avx2", "avx512f", "fma"]


def _record(flags: list[str] | None) -> dict:
    value = {"candidates": [], "greedy": {"text": "x"}, "prompt_tokens": 3, "truncated": False}
    if flags is not None:
        value["cpu_flags"] = flags
    return {
        "generate": {"key": {"g": 1}, "value": value},
        "context": {"key": {"c": 1}, "value": {"x": "AAAA"}},
        "scores": {"rm": {"key": {"s": 1}, "value": {"scores": [0.5]}}},
    }


def _row(key: str) -> replay.Row:
    return replay.Row("gsm8k", key, "p", "q", ("1",), max_new_tokens=8)


def test_rows_keep_the_cpu_they_were_generated_on(tmp_path: Path) -> None:
    cache = replay.Cache(tmp_path)
    old, new = _row("a" * 16), _row("b" * 16)
    # Shipped from an AVX2 machine, before rows carried their flags.
    assert replay.seed_cache(cache, {"cpu_flags": AVX2}, [(old, _record(None))]) == 3
    assert cache.load("generate", "gsm8k", old.key, {"g": 1})["cpu_flags"] == AVX2
    # A row generated on an AVX-512 machine says so, whatever the pool header says.
    assert replay.row_cpu_flags({"cpu_flags": AVX2}, _record(AVX512)) == AVX512
    assert replay.row_cpu_flags({"cpu_flags": AVX2}, _record(None)) == AVX2
    replay.seed_cache(cache, {"cpu_flags": AVX2}, [(new, _record(AVX512))])
    assert cache.load("generate", "gsm8k", new.key, {"g": 1})["cpu_flags"] == AVX512
    # Seeding again adds nothing; an entry cached without flags gets its row's.
    assert replay.seed_cache(cache, {"cpu_flags": AVX2}, [(old, _record(None))]) == 0
    cache.store("generate", "gsm8k", old.key, {"g": 1}, _record(None)["generate"]["value"])
    assert replay.seed_cache(cache, {"cpu_flags": AVX2}, [(old, _record(None))]) == 1
    assert cache.load("generate", "gsm8k", old.key, {"g": 1})["cpu_flags"] == AVX2
