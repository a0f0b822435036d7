"""config/callcause.yaml (and config/overrides.yaml) document every key their parsers read.

The parsers ask their `Section` for each key by name (`sec.str("port", ...)`); this reads
those names from the parser modules and looks for each in the example file, set or commented
out, so a new key cannot ship without its line there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PARSERS = [
    "callcause/config.py", "callcause/pii.py", "callcause/report/live.py", "callcause/trunks/settings.py",
    "callcause/trunks/rules.py", "connectors/asterisk/source.py", "connectors/freeswitch/source.py",
    "connectors/sinks/log.py", "connectors/sinks/webhook.py", "connectors/sinks/mqtt.py",
    "connectors/sinks/amqp.py", "connectors/delivery/dispatcher.py", "connectors/delivery/broker.py",
]
GETTERS = {"str", "int", "float", "duration", "bool", "section", "sections", "secret", "str_list", "list"}
# helpers that take (section, key, ...)
KEYED_HELPERS = {"parse_language", "NameTemplate", "_int_set", "_name_set"}


def _keys(path: Path) -> set[str]:
    keys: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in GETTERS and node.args:
            arg = node.args[0]
        elif isinstance(func, ast.Name) and func.id in KEYED_HELPERS and len(node.args) > 1:
            arg = node.args[1]
        else:
            continue
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            keys.add(arg.value)
        elif isinstance(arg, ast.Name) and arg.id == "file_key":
            # webhook secrets files: the loop names its keys in a tuple beside it
            keys.update({"secrets_file", "secret_file"})
        if func_name(func) == "secret" and isinstance(arg, ast.Constant):
            keys.add(f"{arg.value}_file")
    return keys


def func_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def test_parsers_are_found():
    keys = set().union(*(_keys(ROOT / p) for p in PARSERS))
    # a sample from each parser: the scan must see them, or the next test checks nothing
    assert {"instance", "salt", "max_legs", "evaluate_every", "cooldown", "hangup_grace", "handoff_bytes",
            "stdout", "allow_insecure_http", "status_topic", "routing_key", "outbox_sync", "ca_file",
            "secret_file", "password_file"} <= keys


def test_every_key_is_in_the_example_config():
    text = (ROOT / "config" / "callcause.yaml").read_text(encoding="utf-8")
    keys = set().union(*(_keys(ROOT / p) for p in PARSERS))
    missing = sorted(k for k in keys if not re.search(rf"(?<![\w-]){re.escape(k)}:", text))
    assert missing == [], "document these keys (with their defaults) in config/callcause.yaml"


def test_every_overrides_key_is_in_the_example_overrides():
    text = (ROOT / "config" / "overrides.yaml").read_text(encoding="utf-8")
    keys = _keys(ROOT / "mapping" / "overrides.py")
    assert {"match", "pbx_cause", "dial_status", "retryable", "texts"} <= keys
    missing = sorted(k for k in keys if not re.search(rf"(?<![\w-]){re.escape(k)}:", text))
    assert missing == [], "document these keys in config/overrides.yaml"
