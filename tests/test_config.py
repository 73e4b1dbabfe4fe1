from pathlib import Path

import pytest

from laser_serve import config
from laser_serve.errors import ConfigError


def test_defaults_are_the_embedded_cpu_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    c = config.load(profile="smollm2-135m")
    assert c.generator.backend == "vllm"
    assert c.generator.model == "builtin:smollm2-135m-instruct"
    assert [rm.kind for rm in c.reward_models] == ["lm-judge", "lm-loglik", "embedding"]
    monkeypatch.delenv("LASER_PROFILE")
    default = config.load()
    assert default.profile == config.DEFAULT_PROFILE == "qwen-0.5b"
    assert default.generator.model == "builtin:qwen2.5-coder-0.5b-instruct"
    assert [rm.kind for rm in default.reward_models] == [
        "lm-judge",
        "lm-loglik",
        "consensus",
        "grounding",
        "embedding",
    ]


def test_profile_from_file_env_and_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('profile = "qwen-0.5b"\n[generator]\nbackend = "hf"\n')
    assert config.load(path).generator.model == "builtin:qwen2.5-coder-0.5b-instruct"
    assert config.load(path, profile="smollm2-135m").profile == "smollm2-135m"
    monkeypatch.setenv("LASER_PROFILE", "qwen-0.5b")
    c = config.load(None, ["generator.model=/my/model"])
    assert c.profile == "qwen-0.5b" and c.generator.model == "/my/model"
    with pytest.raises(ConfigError, match="unknown profile 'big'; profiles: qwen-0.5b"):
        config.load(profile="big")


def test_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[selector]\nalpha = 0.5\n[server]\ntasks = ["a", "b"]\n'
        '[[reward_models]]\nname = "x"\nkind = "embedding"\nmodel = "m"\n'
    )
    c = config.load(path, ["selector.alpha=0.25", "server.port=1234", "selector.normalize=false"])
    assert c.selector.alpha == 0.25 and c.server.port == 1234 and c.selector.normalize is False
    assert c.server.tasks == ["a", "b"]
    assert [rm.name for rm in c.reward_models] == ["x"]


def test_print_config_round_trips(tmp_path: Path) -> None:
    c = config.load(None, ["generator.backend=hf", "server.tasks=a,b"])
    path = tmp_path / "printed.toml"
    path.write_text(c.to_toml())
    assert config.load(path) == c


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("[server]\nprot = 1\n", [], "unknown key(s) in [server]: prot"),
        ("[srv]\n", [], "unknown section(s)"),
        ("", ["server.port=abc"], "server.port: cannot use 'abc' as int"),
        ("", ["alpha=1"], "must look like section.key=value"),
        ("", ["generator.backend=tgi"], "generator.backend must be"),
        ("", ["server.max_batch_tokens=0"], "server.max_batch_tokens must be >= 1"),
        ("[[reward_models]]\nname='a'\nkind='magic'\nmodel='m'\n", [], "kind must be one of"),
        (
            "[[reward_models]]\nname='a'\nkind='embedding'\nmodel='m'\n"
            "[[reward_models]]\nname='a'\nkind='embedding'\nmodel='m'\n",
            [],
            "must be unique",
        ),
        ("not toml [", [], "is not valid TOML"),
    ],
)
def test_bad_config_says_what_is_wrong(tmp_path, text, overrides, message) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(
        ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        config.load(path, overrides)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load("/nonexistent/laser.toml")


def test_cli_error_has_no_traceback(capsys) -> None:
    from laser_serve.server.main import main

    assert main(["--set", "server.max_n=0", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "server.max_n must be >= 1" in err and "Traceback" not in err
