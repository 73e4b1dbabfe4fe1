"""The tiny laser-train setup that the end-to-end tests share: six sums as JSONL data (four
train, two held out) and a CPU-sized config (batches of 2, n=4, 8 new tokens, LoRA r=4)."""

import json

import pytest

from laser_serve.training.config import TrainConfig


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    data = tmp_path_factory.mktemp("data")
    sums = [(2, 3), (4, 5), (7, 1), (6, 6), (1, 1), (3, 4)]
    rows = [json.dumps({"prompt": f"What is {a} + {b}?", "answer": str(a + b)}) for a, b in sums]
    (data / "train.jsonl").write_text("\n".join(rows[:4]))
    (data / "test.jsonl").write_text("\n".join(rows[4:]))
    return TrainConfig(
        data="jsonl",
        data_dir=str(data),
        batch_size=2,
        n=4,
        pairs=1,
        max_new_tokens=8,
        lora_r=4,
        lora_alpha=8,
        lr=1e-3,
        eval_size=2,
        eval_max_new_tokens=8,
        log_candidates=True,
        progress=False,
        threads=1,
        verifier=True,
        generator="hf",
    )
