"""The server checks a saved state against the context dimension before loading any model:
the dimension read from the encoder's config is the one the loaded encoder gives."""

import pytest

from laser_serve import config
from laser_serve.errors import ConfigError
from laser_serve.models import hidden_size
from laser_serve.pipeline import load_encoder
from laser_serve.server.main import context_dim


@pytest.mark.parametrize("encoder", ["sentence", "policy"])
def test_context_dim_is_the_loaded_encoders(encoder: str) -> None:
    c = config.load(None, [f"context.encoder={encoder}"])
    assert context_dim(c) == load_encoder(c).dim


def test_a_model_folder_without_hidden_size_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match="no hidden_size"):
        hidden_size(str(tmp_path))
