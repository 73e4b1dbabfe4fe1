"""CLI errors for people: one line saying what is wrong and what to do, no traceback."""

import pytest

from laser_serve.training.cli import build_parser, main
from laser_serve.training.config import TrainConfig


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "Traceback" not in err
    return err


def test_missing_data_dir(capsys, tmp_path):
    err = _error(capsys, ["--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert "does not exist" in err and "--data-dir" in err


def test_unknown_rm_in_fixed_policy(capsys, tmp_path):
    err = _error(capsys, ["--policy", "fixed:gpt-judge", "--out", str(tmp_path / "o")])
    assert "gpt-judge" in err and "smol-judge" in err  # names the pool


def test_unknown_rm_in_pool_selection(capsys, tmp_path):
    err = _error(capsys, ["--reward-models", "smol-judge,nope", "--out", str(tmp_path / "o")])
    assert "nope" in err and "--verifier" in err


def test_resume_without_checkpoint(capsys, tmp_path):
    err = _error(capsys, ["--resume", "--out", str(tmp_path / "o")])
    assert "holds no checkpoint" in err and "drop --resume" in err


def test_bad_grouping(capsys, tmp_path):
    err = _error(capsys, ["--grouping", "prompt", "--out", str(tmp_path / "o")])
    assert "--grouping must be one of batch, instance" in err


def test_every_config_field_is_a_flag():
    args = vars(build_parser().parse_args(["--lora-targets", "q_proj,k_proj", "--full"]))
    args.pop("json")
    config = TrainConfig(**args)
    assert config.lora_targets == ["q_proj", "k_proj"] and config.full
    assert set(args) == set(TrainConfig().to_dict())


def test_vllm_generator_needs_lora(capsys, tmp_path):
    err = _error(capsys, ["--generator", "vllm", "--full", "--out", str(tmp_path / "o")])
    assert "--generator vllm samples under a LoRA adapter" in err and "--generator hf" in err


def test_unknown_generator(capsys, tmp_path):
    err = _error(capsys, ["--generator", "tgi", "--out", str(tmp_path / "o")])
    assert "--generator must be one of hf, vllm" in err
