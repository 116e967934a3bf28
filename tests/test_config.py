"""Settings: arguments > environment > TOML file > defaults, with the source of each."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import dsollama
from dsollama._config import config_path, explain_settings, load_settings
from dsollama.cli import cli


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "dsollama.toml"
    path.write_text(text, encoding="utf-8")
    return {"DSOLLAMA_CONFIG": str(path)}


def test_defaults_when_nothing_is_set() -> None:
    s = load_settings(env={})
    assert s.ollama_hosts == ("http://127.0.0.1:11434",)
    assert s.policy == "local-first"
    assert s.hosted_api_key is None
    assert s.local_slots == 1


def test_precedence_argument_over_environment_over_file(tmp_path: Path) -> None:
    env = write_config(
        tmp_path, 'policy = "local-only"\nfirst_token_timeout = 3.5\ngap_timeout = 9.0\n'
    )
    env["DSOLLAMA_FIRST_TOKEN_TIMEOUT"] = "2.5"
    s = load_settings(env=env, gap_timeout=1.0)
    assert s.policy == "local-only"  # file
    assert s.first_token_timeout == 2.5  # environment beats file
    assert s.gap_timeout == 1.0  # argument beats both
    sources = {row.name: row.source for row in explain_settings(env=env, gap_timeout=1.0)}
    assert sources["policy"].startswith("config file (")
    assert sources["first_token_timeout"] == "environment (DSOLLAMA_FIRST_TOKEN_TIMEOUT)"
    assert sources["gap_timeout"] == "argument"
    assert sources["hosted_base_url"] == "default"


def test_ollama_and_deepseek_variables_are_understood() -> None:
    env = {
        "OLLAMA_HOST": ":9999",
        "DEEPSEEK_API_KEY": "sk-abcdef123456",
        "OLLAMA_NUM_PARALLEL": "4",
    }
    s = load_settings(env=env)
    assert s.ollama_hosts == ("http://127.0.0.1:9999",)
    assert s.api_key() == "sk-abcdef123456"
    assert s.local_slots == 4
    # dsollama's own variable wins over Ollama's.
    s = load_settings(env={**env, "DSOLLAMA_OLLAMA_HOSTS": "a.local,b.local:1234"})
    assert s.ollama_hosts == ("http://a.local:11434", "http://b.local:1234")


def test_the_key_never_shows() -> None:
    s = load_settings(env={"DEEPSEEK_API_KEY": "sk-very-secret-123"})
    assert "sk-very-secret-123" not in repr(s)
    assert "sk-very-secret-123" not in str(s.model_dump())
    shown = {
        r.name: r.value for r in explain_settings(env={"DEEPSEEK_API_KEY": "sk-very-secret-123"})
    }
    assert shown["hosted_api_key"] == "**** (set)"


@pytest.mark.parametrize(
    ("raw", "expected"), [("off", False), ("0", False), ("on", True), ("TRUE", True)]
)
def test_booleans_from_the_environment(raw: str, expected: bool) -> None:
    assert load_settings(env={"DSOLLAMA_LOG": raw}).log is expected


def test_bad_values_name_the_setting_and_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(dsollama.ConfigError) as caught:
        load_settings(env={"DSOLLAMA_CONNECT_TIMEOUT": "soon"})
    assert "connect_timeout" in str(caught.value)
    assert "DSOLLAMA_CONNECT_TIMEOUT" in str(caught.value)
    with pytest.raises(dsollama.ConfigError, match="on/off"):
        load_settings(env={"DSOLLAMA_HEDGE": "maybe"})
    with pytest.raises(dsollama.ConfigError, match="not valid TOML"):
        load_settings(env=write_config(tmp_path, "policy = \n"))
    with pytest.raises(dsollama.ConfigError, match="unknown setting"):
        load_settings(env=write_config(tmp_path, "polcy = 'local-only'\n"))


def test_the_default_config_file_lives_in_the_user_config_folder() -> None:
    assert config_path({}).name == "config.toml"


def test_plain_http_is_only_for_loopback() -> None:
    load_settings(hosted_base_url="http://127.0.0.1:8080").check_hosted_endpoint()
    with pytest.raises(dsollama.InsecureEndpointError):
        load_settings(hosted_base_url="http://192.0.2.1").check_hosted_endpoint()


def test_config_command_shows_sources_and_redacts_the_key(tmp_path: Path) -> None:
    env = {
        **write_config(tmp_path, 'policy = "hosted-first"\n'),
        "DEEPSEEK_API_KEY": "sk-shown-never-999",
    }
    result = CliRunner().invoke(cli, ["config"], env=env)
    assert result.exit_code == 0
    assert "sk-shown-never-999" not in result.output
    assert "hosted-first" in result.stdout
    assert "config file (" in result.stdout
    assert "environment (DEEPSEEK_API_KEY)" in result.stdout
    as_json = CliRunner().invoke(cli, ["config", "--json"], env=env)
    assert '"policy"' in as_json.stdout
    assert "sk-shown-never-999" not in as_json.stdout
