import pytest

from mxkeys.config import Config, ConfigError, load_config


def test_defaults() -> None:
    config = load_config(env={})
    assert config.server_name == "localhost"
    assert config.listen == "127.0.0.1:8008"
    assert config.database_url == "sqlite:///mxkeys-data/homeserver.db"
    assert config.enable_registration is False
    assert config.base_url == "http://127.0.0.1:8008"


def test_layers_file_env_flags(tmp_path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("server_name: file.example\nlisten: 0.0.0.0:9000\nlog-level: debug\n")
    config = load_config(yaml_file, env={"MXKEYS_LISTEN": "127.0.0.1:9100"})
    assert config.server_name == "file.example"
    assert config.listen == "127.0.0.1:9100"
    assert config.log_level == "debug"
    config = load_config(
        yaml_file,
        env={"MXKEYS_LISTEN": "127.0.0.1:9100", "MXKEYS_ENABLE_REGISTRATION": "yes"},
        overrides={"listen": "127.0.0.1:9200", "server_name": None},
    )
    assert config.listen == "127.0.0.1:9200"
    assert config.server_name == "file.example"
    assert config.enable_registration is True


def test_toml(tmp_path) -> None:
    toml_file = tmp_path / "c.toml"
    toml_file.write_text('server_name = "t.example"\nenable_registration = true\n'
                         "max_request_body_bytes = 4096\n")
    config = load_config(toml_file, env={})
    assert (config.server_name, config.enable_registration, config.max_request_body_bytes) == (
        "t.example", True, 4096)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MXKEYS_NOPE": "1"}, "unknown setting"),
        ({"MXKEYS_ENABLE_REGISTRATION": "maybe"}, "boolean"),
        ({"MXKEYS_MAX_REQUEST_BODY_BYTES": "lots"}, "integer"),
        ({"MXKEYS_LISTEN": "nowhere"}, "HOST:PORT"),
        ({"MXKEYS_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"MXKEYS_LOG_LEVEL": "loud"}, "log_level"),
        ({"MXKEYS_TRUSTED_PROXIES": "127.0.0.1, proxy.internal"}, "not an IP address"),
    ],
)
def test_bad_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_bad_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})
    unknown = tmp_path / "u.yaml"
    unknown.write_text("colour: blue\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(unknown, env={})


def test_public_baseurl() -> None:
    assert Config(public_baseurl="https://m.example/").base_url == "https://m.example"


def test_workers_need_postgres() -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        load_config(env={"MXKEYS_WORKERS": "2"})
    config = load_config(env={"MXKEYS_WORKERS": "2",
                              "MXKEYS_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db"})
    assert config.workers == 2
    with pytest.raises(ConfigError, match="at least 1"):
        load_config(env={"MXKEYS_WORKERS": "0"})
