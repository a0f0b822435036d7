"""`callcause check-config`: a good config passes; each broken one names file, line, key and fix."""

from __future__ import annotations

import textwrap

import pytest

from callcause.cli import main

GOOD = """\
language: de
sources:
  - name: pbx-eu-1
    kind: asterisk
    host: 127.0.0.1
    username: callcause
    secret: ${{AMI_SECRET}}
  - name: fs-eu-1
    kind: freeswitch
    host: 127.0.0.1
    password: ${{ESL_PASSWORD}}
sinks:
  - kind: log
    path: {tmp}/records.jsonl
    stdout: text
metrics: {{listen: "127.0.0.1:9464"}}
"""

AST = "sources:\n  - name: pbx\n    kind: asterisk\n    username: u\n    secret: s\n"


def run_check(tmp_path, text: str, capsys, env: dict[str, str] | None = None, monkeypatch=None):
    path = tmp_path / "callcause.yaml"
    path.write_text(textwrap.dedent(text))
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    code = main(["check-config", "-c", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err, str(path)


def test_good_config_passes(tmp_path, capsys, monkeypatch):
    code, out, err, _ = run_check(tmp_path, GOOD.format(tmp=tmp_path), capsys,
                                  {"AMI_SECRET": "hunter2-ami", "ESL_PASSWORD": "hunter2-esl"}, monkeypatch)
    assert code == 0, err
    assert out.startswith("OK:") and "pbx-eu-1" in out and "fs-eu-1" in out
    assert "hunter2" not in out + err


def test_shipped_example_config_is_valid(capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("AMI_SECRET", "x")
    monkeypatch.setenv("ESL_PASSWORD", "x")
    monkeypatch.setenv("WEBHOOK_SECRET", "whsec_" + "A" * 32)
    monkeypatch.setenv("MQTT_PASSWORD", "x")
    monkeypatch.setenv("AMQP_PASSWORD", "x")
    path = Path(__file__).parents[1] / "config" / "callcause.yaml"
    assert main(["check-config", "-c", str(path)]) == 0, capsys.readouterr().err


BROKEN = [
    # (name, config text, line, what the error must mention)
    ("missing file", None, None, "file not found"),
    ("yaml syntax", "sources:\n  - name: a\n   kind: asterisk\n", 3, "not valid YAML"),
    ("duplicate key", "language: en\nlanguage: de\n", 2, "twice"),
    ("unknown top key", "languge: en\n", 1, "languge"),
    ("bad language", "language: fr\n", 1, "en, de, ru, zh"),
    ("sources not a list", "sources: {name: a}\n", 1, "list"),
    ("source without kind", "sources:\n  - name: a\n", 2, "kind"),
    ("unknown source kind", "sources:\n  - name: a\n    kind: yate\n", 3, "asterisk, freeswitch"),
    ("source without name", "sources:\n  - kind: asterisk\n    username: u\n    secret: s\n", 2, "name"),
    ("source without username", "sources:\n  - name: a\n    kind: asterisk\n    secret: s\n", 2, "username"),
    ("source without secret", "sources:\n  - name: a\n    kind: asterisk\n    username: u\n", 2, "secret"),
    ("unknown source key", AST + "    hots: 10.0.0.1\n", 6, "hots"),
    ("port not a number", AST + "    port: fivethousand\n", 6, "port"),
    ("port out of range", AST + "    port: 70000\n", 6, "port"),
    ("duplicate source name", AST + "  - name: pbx\n    kind: asterisk\n    username: u\n    secret: s\n", 6,
     "twice"),
    ("unset env var", "sources:\n  - name: a\n    kind: asterisk\n    username: u\n    secret: ${NOPE_NOT_SET}\n",
     5, "NOPE_NOT_SET"),
    ("secret and secret_file", AST + "    secret_file: /x\n", 6, "both"),
    ("unreadable secret_file",
     "sources:\n  - name: a\n    kind: asterisk\n    username: u\n    secret_file: /nonexistent/s\n", 5, "secret"),
    ("esl without password", "sources:\n  - name: f\n    kind: freeswitch\n", 2, "password"),
    ("esl bad filter", "sources:\n  - name: f\n    kind: freeswitch\n    password: p\n    filter: [lonely]\n", 5,
     "filter"),
    ("bool expected", AST + "    use_filter: maybe\n", 6, "true or false"),
    ("unknown sink kind", "sinks:\n  - kind: kafka\n", 2, "log, webhook"),
    ("log stdout choice", "sinks:\n  - kind: log\n    stdout: yes please\n", 3, "text"),
    ("unknown sink key", "sinks:\n  - kind: log\n    pth: /x\n", 3, "pth"),
    ("bad sink language", "sinks:\n  - kind: log\n    language: klingon\n", 3, "klingon"),
    ("duplicate sink name", "outbox: /tmp/o.sqlite3\nsinks:\n  - kind: webhook\n    url: https://h.example/a\n"
     "    secrets: [whsec_QUJDREVGR0hJSktMTU5PUA==]\n  - kind: webhook\n    url: https://h.example/b\n"
     "    secrets: [whsec_QUJDREVGR0hJSktMTU5PUA==]\n", 6, "twice"),
    ("webhook without outbox", "sinks:\n  - kind: webhook\n    url: https://h.example/a\n"
     "    secrets: [whsec_QUJDREVGR0hJSktMTU5PUA==]\n", 1, "outbox"),
    ("metrics listen", "metrics: {listen: 9464}\n", 1, "listen"),
    ("logging level", "logging: {level: LOUD}\n", 1, "LOUD"),
    ("mapping unknown key", "mapping: {overides: /x}\n", 1, "overides"),
    ("overrides file missing", "mapping: {overrides: /nonexistent/overrides.yaml}\n", None, "file not found"),
]


@pytest.mark.parametrize(("name", "text", "line", "needle"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config(tmp_path, capsys, name, text, line, needle):
    if text is None:
        code = main(["check-config", "-c", str(tmp_path / "missing.yaml")])
        err, path = capsys.readouterr().err, str(tmp_path / "missing.yaml")
    else:
        code, _, err, path = run_check(tmp_path, text, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "config error" in err and needle in err, err
    if name != "overrides file missing":
        assert path in err
    if line is not None:
        assert f"{path}:{line}:" in err, err
    assert "fix:" in err, err


def test_secret_never_in_a_config_error(tmp_path, capsys):
    text = AST.replace("secret: s", "secret: TopSecret-123") + "    port: nope\n"
    code, out, err, _ = run_check(tmp_path, text, capsys)
    assert code == 2 and "TopSecret-123" not in out + err
