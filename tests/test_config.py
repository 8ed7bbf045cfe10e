"""Loading the one typed configuration and its environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatspark.config import ConfigError, load_config


def test_the_shipped_config_has_the_three_agents_on_their_models():  # type: ignore[no-untyped-def]
    config = load_config(environ={})
    assert [(a.id, a.model_name) for a in config.agents] == [(1, "local"), (2, "gpt-4o-mini"), (3, "gpt-4o")]
    assert config.models["gpt-4o"].fallbacks == ("gpt-4o-mini",)
    first = next(a for a in config.agents if a.id == 1)
    assert first.faq and first.bot_no_answer
    assert config.server.max_body_bytes == 1_048_576 and config.server.max_message_chars == 32_000
    assert config.models["gpt-4o-mini"].timeout_seconds == 60 and config.server.workers == 1


def test_environment_overrides_redis_url_and_ping_interval():  # type: ignore[no-untyped-def]
    config = load_config(environ={"REDIS_URL": "redis://elsewhere:6380/2", "CHATSPARK_PING_SECONDS": "0.5"})
    assert config.store.url == "redis://elsewhere:6380/2"
    assert config.server.ping_seconds == 0.5


def test_chatspark_config_points_at_another_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text('[models.local]\nbackend = "local"\n[[agents]]\nid = 9\nname = "X"\nmodel = "local"\n')
    config = load_config(environ={"CHATSPARK_CONFIG": str(path)})
    assert [a.id for a in config.agents] == [9]


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('[[agents]]\nid = 1\nname = "A"\n', "gpt-4o-mini"),
        ('[models.a]\nbackend = "local"\nfallbacks = ["b"]\n', "falls back"),
        ('[server]\nport = "x"\n', "port"),
        ('[server]\nnope = 1\n', "nope"),
        ("[[agents]\n", "bad.toml"),
    ],
)
def test_a_broken_config_says_what_is_wrong(tmp_path: Path, toml: str, says: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=says):
        load_config(path, environ={})


def test_a_bad_ping_override_is_refused():  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        load_config(environ={"CHATSPARK_PING_SECONDS": "soon"})
