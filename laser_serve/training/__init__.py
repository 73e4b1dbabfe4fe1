"""Offline iterative training (`laser-train`): LASeR's DPO loop on the selector core.

    from laser_serve.training import TrainConfig, train
    summary = train(TrainConfig(batch_size=2, n=4, max_steps=8, out="runs/a"))

Modules: config (every knob), data (GSM8K / JSONL / StrategyQA loaders, answer checks),
losses (pairs, DPO + NLL), policy (the trained model: LoRA, sampling, contexts, the step),
pool (reward models), checkpoint (bit-for-bit resume), evaluate, loop, cli.
"""

from laser_serve.training.config import TrainConfig
from laser_serve.training.loop import train

__all__ = ["TrainConfig", "train"]
