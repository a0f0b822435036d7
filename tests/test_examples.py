"""The example files under examples/ say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from callcause.connectors.asterisk.source import FILTERS

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_manager_conf_eventfilters_are_the_filters_callcause_sends():
    # Without `write = system` the eventfilter lines do the source's filtering on the Asterisk
    # side; they must let through exactly what the Filter action would.
    text = (EXAMPLES / "asterisk" / "manager.conf").read_text(encoding="utf-8")
    lines = re.findall(r"^eventfilter = (.+)$", text, re.M)
    assert tuple(lines) == FILTERS
