"""The config format: line numbers in errors, ${ENV}, secrets kept out of reprs, strict keys."""

from __future__ import annotations

import pytest

from callcause.config import Secret, Section, load_yaml, parse_config
from callcause.errors import ConfigError


def _cfg(tmp_path, text: str):
    path = tmp_path / "callcause.yaml"
    path.write_text(text)
    return path


def test_duplicate_key_names_its_line(tmp_path):
    path = _cfg(tmp_path, "language: en\nlanguage: de\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert err.value.line == 2 and "twice" in str(err.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = _cfg(tmp_path, "sources:\n  - name: a\n   kind: asterisk\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(path) in str(err.value) and err.value.line == 3


def test_unknown_top_level_key_is_an_error_with_fix(tmp_path):
    path = _cfg(tmp_path, "language: en\nlanguaje: de\n")
    with pytest.raises(ConfigError) as err:
        parse_config(load_yaml(path), str(path))
    assert err.value.line == 2 and err.value.key == "languaje" and "language" in err.value.fix


def test_unsupported_language_lists_the_supported_ones(tmp_path):
    path = _cfg(tmp_path, "language: fr\n")
    with pytest.raises(ConfigError) as err:
        parse_config(load_yaml(path), str(path))
    assert "en, de, ru, zh" in err.value.fix


def test_language_tags_resolve(tmp_path):
    for tag, lang in (("de-AT", "de"), ("zh-Hans", "zh"), ("ru_RU", "ru"), ("zh-CN", "zh")):
        path = _cfg(tmp_path, f"language: {tag}\n")
        assert parse_config(load_yaml(path), str(path)).language == lang


def test_env_interpolation_and_missing_variable(tmp_path):
    data = load_yaml(_cfg(tmp_path, "host: ${PBX_HOST}\nport: ${PBX_PORT:-5038}\n"))
    sec = Section(data, file="x.yaml", path="", env={"PBX_HOST": "10.0.0.5"})
    assert sec.str("host") == "10.0.0.5" and sec.int("port") == 5038
    sec = Section(data, file="x.yaml", path="", env={})
    with pytest.raises(ConfigError) as err:
        sec.str("host")
    assert "PBX_HOST" in str(err.value) and err.value.line == 1


def test_secret_from_env_never_shows_in_repr_or_errors(tmp_path):
    data = load_yaml(_cfg(tmp_path, "secret: ${AMI_SECRET}\nport: nope\n"))
    sec = Section(data, file="x.yaml", path="sources[0]", env={"AMI_SECRET": "s3cr3t-value"})
    secret = sec.secret("secret")
    assert isinstance(secret, Secret) and secret.reveal() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(secret) and "s3cr3t-value" not in str(secret)
    assert "s3cr3t-value" not in f"{secret!r} {secret}"
    with pytest.raises(ConfigError) as err:
        sec.int("port")
    assert "s3cr3t-value" not in str(err.value)


def test_secret_file(tmp_path):
    (tmp_path / "ami.secret").write_text("from-file\n")
    data = load_yaml(_cfg(tmp_path, f"secret_file: {tmp_path / 'ami.secret'}\n"))
    assert Section(data, file="x", path="").secret("secret").reveal() == "from-file"
    data = load_yaml(_cfg(tmp_path, f"secret_file: {tmp_path / 'missing'}\n"))
    with pytest.raises(ConfigError) as err:
        Section(data, file="x", path="").secret("secret")
    assert err.value.key == "secret_file" and "cannot read" in str(err.value)


def test_secret_inline_and_file_together_is_an_error(tmp_path):
    data = load_yaml(_cfg(tmp_path, "secret: a\nsecret_file: /x\n"))
    with pytest.raises(ConfigError, match="both"):
        Section(data, file="x", path="").secret("secret")


def test_type_errors_name_key_and_line(tmp_path):
    data = load_yaml(_cfg(tmp_path, "a: 1\nport: [1, 2]\n"))
    with pytest.raises(ConfigError) as err:
        Section(data, file="x.yaml", path="sources[0]").int("port")
    assert err.value.key == "sources[0].port" and err.value.line == 2
