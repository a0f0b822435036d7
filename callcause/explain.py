"""`callcause explain`: what a code, cause or cause IE means, for a person or a program."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from callcause.errors import CallcauseError, NotationError
from callcause.mapping.locales import SUPPORTED, resolve_language
from callcause.mapping.translator import Translator
from callcause.record import Explanation, Texts


def explanation_document(exp: Explanation, texts: Texts) -> dict[str, Any]:
    """The `--json` object: the record's keys (design.md section 6) plus dss1 and dialects."""
    doc: dict[str, Any] = {
        "sip": exp.sip, "q850": exp.q850, "pbx": exp.pbx,
        "cause": {"category": exp.category, "severity": exp.severity, "retryable": exp.retryable,
                  "hangup_source": exp.hangup_source, "fault": exp.fault, "lang": texts.lang,
                  "summary": texts.summary, "detail": texts.detail, "advice": texts.advice},
        "rule": exp.rule, "collapsed": exp.collapsed, "overruled": exp.overruled, "dialects": exp.dialects,
    }
    if exp.dss1 is not None:
        doc["dss1"] = exp.dss1
    return doc


def _rows(exp: Explanation, texts: Texts) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if exp.sip:
        s = exp.sip
        std = f" (standard: {s['standard_reason']})" if s["standard_reason"] and \
            s["standard_reason"] != s["reason"] else ""
        status = "" if s["status"] == "standard" else f" [{s['status']}]"
        rows.append(("SIP", f"{s['code']} {s['reason'] or ''}{std}  class {s['class']}{status}"))
    if exp.q850:
        q = exp.q850
        how = " (derived from the SIP code)" if q.get("derived") else ""
        loc = f", location {q['location']}" if q.get("location") else ""
        rows.append(("Q.850", f"{q['cause']} {q['name'] or '(undefined)'}{how}  class: {q['class']}{loc}"))
    if exp.pbx:
        parts = [f"{k}={v}" for k, v in exp.pbx.items() if v not in (None, "")]
        rows.append(("PBX", ", ".join(parts)))
    if exp.dss1:
        d = exp.dss1
        text = (f"octets {d['octets']}: coding standard {d['coding_standard']} "
                f"({d.get('coding_standard_name') or '?'}), location {d['location']} "
                f"{d.get('location_abbr') or ''} ({d.get('location_name') or '?'})")
        if d.get("recommendation") is not None:
            text += f", recommendation {d['recommendation']} ({d.get('recommendation_name') or '?'})"
        text += f", cause {d['cause']}"
        if d.get("diagnostic"):
            text += f", diagnostic {d['diagnostic']}"
            if d.get("diagnostic_meaning"):
                text += f" ({d['diagnostic_meaning']})"
        rows.append(("DSS1", text))
    rows.append(("Category", f"{exp.category}  severity {exp.severity}, fault {exp.fault}, "
                             f"retryable {'yes' if exp.retryable else 'no'}"))
    if exp.dialects:
        parts = []
        for name, view in exp.dialects.items():
            if "q850" in view:
                value = view["q850"] if view["q850"] is not None else "-"
                if view.get("cause"):
                    value = f"{value} ({view['cause']})"
                parts.append(f"{name} -> Q.850 {value}")
            elif "sip" in view:
                parts.append(f"{name} -> SIP {view['sip'] if view['sip'] is not None else '-'}")
        if parts:
            rows.append(("Dialects", "; ".join(parts)))
    rows.append(("Summary", texts.summary))
    rows.append(("Detail", texts.detail))
    rows.append(("Advice", texts.advice))
    rows.append(("Rule", f"{exp.rule}{'  (collapsed: the PBX lost detail)' if exp.collapsed else ''}"))
    if exp.overruled:
        rows.append(("Overruled", "; ".join(f"{o['clue']} by {o['by']}" for o in exp.overruled)))
    return rows


def render_text(exp: Explanation, texts: Texts) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in _rows(exp, texts):
        table.add_row(key, value)
    Console(soft_wrap=False).print(table)


def main(args: argparse.Namespace) -> int:
    text = " ".join(args.text)
    lang = resolve_language(args.lang) if args.lang else "en"
    if lang is None:
        print(f"callcause: language {args.lang!r} is not supported; use one of: {', '.join(SUPPORTED)}",
              file=sys.stderr)
        return 2
    translator = Translator.load(args.overrides) if args.overrides else Translator.default()
    try:
        notation = translator.parse(text)
    except NotationError as exc:
        print(f"callcause explain: {exc}", file=sys.stderr)
        return 2
    try:
        exp = translator.explain_notation(notation, args.dialect)
    except CallcauseError as exc:
        print(f"callcause explain: {exc}", file=sys.stderr)
        return 2
    texts = translator.texts(exp, lang)
    if args.json:
        print(json.dumps(explanation_document(exp, texts), ensure_ascii=False, indent=2))
    else:
        render_text(exp, texts)
    return 0
