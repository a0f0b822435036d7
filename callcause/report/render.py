"""From counted figures to one self-contained HTML file: the view (numbers, texts, chart data)
and its rendering with Jinja2.

Everything the page needs is inside it: the CSS, Chart.js (vendored from its npm package, MIT)
and the few lines that draw the charts from JSON embedded in the page. A Content-Security-Policy
forbids any request, so a report opened offline, mailed or printed looks the same.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from callcause import __version__
from callcause.pii import PiiPolicy
from callcause.record import CATEGORIES, HangupClues
from callcause.report.collect import HOUR, Collector, Group
from callcause.trunks import Figures, Totals
from callcause.trunks.legs import Cause

HERE = Path(__file__).parent
TOP = 10                 # rows of the ranking charts
TOP_ROWS = 25            # rows of a long table shown at once; the rest behind "more"
NAMES = 5                # trunk names listed in a cell before "and N more"
CHARTED_GROUPS = 8       # trunks with a timeline chart (most legs first)
HANGUP_SOURCES = ("caller", "callee", "pbx", "unknown")


@cache
def ui_texts(lang: str) -> dict[str, Any]:
    """The report's own texts in `lang`, English filling any gap."""
    def load(code: str) -> dict[str, Any]:
        path = HERE / "locales" / f"{code}.yaml"
        return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
        return out

    english = load("en")
    return english if lang == "en" else merge(english, load(lang))


@dataclass(slots=True)
class Options:
    lang: str = "en"
    min_attempts: int = 30            # below this a row is marked "few calls"
    pii: PiiPolicy = field(default_factory=lambda: PiiPolicy(to="mask"))
    alerts: Sequence[dict[str, Any]] = ()   # `trunk.alert` event bodies to mark on the timelines
    bad_lines: int = 0
    dropped: int = 0                  # legs of the period the daemon no longer had (report.max_legs)


class Fmt:
    """Numbers as a reader of `lang` writes them."""

    def __init__(self, lang: str) -> None:
        self.comma = lang in ("de", "ru")

    def num(self, x: float, digits: int = 1) -> str:
        text = f"{x:,.{digits}f}" if digits else f"{round(x):,}"
        if self.comma:
            text = text.replace(",", "\u202f").replace(".", ",")
        return text

    def int(self, n: int) -> str:
        return self.num(n, 0)

    def pct(self, x: float | None) -> str:
        return "–" if x is None else self.num(100 * x) + "\u202f%"

    def secs(self, x: float | None) -> str:
        return "–" if x is None else self.num(x) + "\u202fs"

    def signed(self, x: float | None, unit: str, digits: int = 1) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return ""
        sign = "+" if x > 0 else "−" if x < 0 else "±"
        return f"{sign}{self.num(abs(x), digits)}\u202f{unit}"


def when(epoch: float | None, bucket_s: int = HOUR) -> str:
    if epoch is None:
        return "–"
    fmt = "%Y-%m-%d %H:%M" if bucket_s < 86400 else "%Y-%m-%d"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime(fmt)


def tick(epoch: float, bucket_s: int) -> str:
    """A short label for the time axis: `11-30 04h` for an hour, `2026-11-30` for a day."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%m-%d %Hh" if bucket_s < 86400 else "%Y-%m-%d")


def _merged(totals: list[Totals]) -> Totals:
    out = Totals()
    for t in totals:
        out.merge(t)
    return out


def figure_row(label: dict[str, str], cur: Figures, prev: Figures | None, f: Fmt, few: int) -> dict[str, Any]:
    """One line of section 1: the figures, formatted, and their change against the previous period."""
    def points(a: float | None, b: float | None) -> str:
        return f.signed(None if a is None or b is None else 100 * (a - b), "pt")

    def diff(a: float | None, b: float | None) -> str:
        return f.signed(None if a is None or b is None else a - b, "s")

    has_prev = prev is not None and prev.attempts > 0
    p = prev if has_prev else None
    return {
        **label,
        "attempts": cur.attempts, "attempts_text": f.int(cur.attempts),
        "attempts_change": f.signed(100 * (cur.attempts - p.attempts) / p.attempts, "%", 0) if p else "",
        "asr": f.pct(cur.asr), "asr_change": points(cur.asr, p.asr) if p else "",
        "ner": f.pct(cur.ner), "ner_change": points(cur.ner, p.ner) if p else "",
        "seer": f.pct(cur.seer), "seer_change": points(cur.seer, p.seer) if p else "",
        "acd": f.secs(cur.acd_s), "acd_change": diff(cur.acd_s, p.acd_s) if p else "",
        "pdd": f.secs(cur.pdd_s), "pdd_change": diff(cur.pdd_s, p.pdd_s) if p else "",
        "few": cur.attempts < few,
    }


def _names(names: list[str], t: dict[str, Any]) -> str:
    more = len(names) - NAMES
    return ", ".join(names[:NAMES]) + (" " + t["and_more"].format(n=more) if more > 0 else "")


def _cause_label(sip: int | None, q850: int | None) -> str:
    parts = ([f"SIP {sip}"] if sip is not None else []) + ([f"Q.850 {q850}"] if q850 is not None else [])
    return " / ".join(parts) or "–"


def build_view(c: Collector, opts: Options, translator: Any) -> dict[str, Any]:
    """Everything the template shows, as plain data (also what the browser test checks)."""
    t = ui_texts(opts.lang)
    f = Fmt(opts.lang)
    cat_name = t["category"]
    groups = sorted(c.groups.values(), key=lambda g: (-g.current.attempts, g.key))
    has_prev = c.filters.previous_since is not None
    f_ = c.filters
    view: dict[str, Any] = {
        "lang": opts.lang, "t": t, "version": __version__,
        "generated": datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "period": (f"{when(f_.since)} – {when(f_.until)} UTC" if f_.since is not None and f_.until is not None
                   else f"{when(c.first)} – {when(c.last)} UTC ({t['period_all']})" if c.first is not None
                   else t["period_all"]),
        "previous": (f"{when(f_.previous_since)} – {when(f_.since)} UTC" if has_prev else None),
        "legs": sum(g.current.attempts for g in groups),
        "skipped": c.skipped, "bad_lines": opts.bad_lines, "dropped": opts.dropped,
        "min_attempts": opts.min_attempts, "top_rows": TOP_ROWS,
        "pii": t["pii"][opts.pii.to],
    }

    # 1. figures per source (all trunks) and per trunk group
    by_source: dict[str, list[Group]] = {}
    for g in groups:
        by_source.setdefault(g.key.source, []).append(g)
    def tile(name: str, members: list[Group]) -> dict[str, Any]:
        now = _merged([g.current for g in members]).figures(c.table)
        before = _merged([g.previous for g in members]).figures(c.table) if has_prev else None
        return figure_row({"name": name}, now, before, f, opts.min_attempts)

    tiles = [tile(t["figures"]["all_sources"], groups)] if len(by_source) > 1 else []
    tiles += [tile(source, members) for source, members in sorted(by_source.items())]
    view["tiles"] = tiles
    view["rows"] = [figure_row({"source": g.key.source, "trunk": g.key.trunk, "direction": g.key.direction},
                               g.current.figures(c.table), g.previous.figures(c.table) if has_prev else None, f,
                               opts.min_attempts)
                    for g in groups if g.current.attempts]

    # 2. categories over time, per trunk group
    charts: list[dict[str, Any]] = []
    timelines = []
    axis = time_axis(c)
    for i, g in enumerate(groups[:CHARTED_GROUPS]):
        if not g.current.attempts:
            continue
        starts = axis
        present = [cat for cat in (*CATEGORIES, "other") if any(g.buckets.get(s, {}).get(cat) for s in starts)]
        labels = [when(s, c.bucket_s) for s in starts]
        marks = []
        for alert in opts.alerts:
            scope = alert.get("scope") or {}
            if (scope.get("source"), scope.get("trunk")) != (g.key.source, g.key.trunk):
                continue
            if scope.get("direction") not in (None, g.key.direction):
                continue
            at = alert.get("_time")
            if at is None or not starts:
                continue
            index = sum(1 for s in starts if s <= at) - 1
            if index >= 0:
                marks.append({"index": index, "state": alert.get("state"),
                              "text": t["timeline"]["alert_line"].format(
                                  time=when(at, 60), rule=alert.get("rule"), state=alert.get("state"),
                                  figure=str(alert.get("figure", "")).upper(), value=alert.get("value"),
                                  threshold=alert.get("threshold"))})
        chart_id = f"timeline-{i}"
        title = f"{g.key.source} / {g.key.trunk} / {g.key.direction}"
        charts.append({"id": chart_id, "type": "timeline", "labels": [tick(s, c.bucket_s) for s in starts],
                       "marks": marks,
                       "series": [{"key": cat, "name": cat_name.get(cat, cat),
                                   "values": [g.buckets.get(s, {}).get(cat, 0) for s in starts]}
                                  for cat in present]})
        timelines.append({"id": chart_id, "title": title, "labels": labels, "marks": marks,
                          "columns": [cat_name.get(cat, cat) for cat in present],
                          "rows": [[labels[k]] + [g.buckets.get(s, {}).get(cat, 0) for cat in present]
                                   for k, s in enumerate(starts) if g.buckets.get(s)]})
    view["timelines"] = timelines
    view["bucket"] = t["timeline"]["hour" if c.bucket_s == HOUR else "day"]
    view["more_trunks"] = max(0, sum(1 for g in groups if g.current.attempts) - len(timelines))

    # 3. top causes (failures only), with texts in the report's language
    causes: Counter = Counter()
    affected: dict[Any, set[str]] = {}
    for g in groups:
        for key, n in g.current.causes.items():
            cause = Cause(*key)
            if cause.category == "answered":
                continue
            causes[cause] += n
            affected.setdefault(cause, set()).add(g.key.trunk)
    total_legs = view["legs"] or 1
    cause_rows = []
    for cause, n in causes.most_common(TOP):
        texts = cause_texts(translator, cause.sip, cause.q850, opts.lang)
        cause_rows.append({"label": _cause_label(cause.sip, cause.q850), "sip": cause.sip, "q850": cause.q850,
                           "category": cat_name.get(cause.category, cause.category),
                           "summary": texts[0], "advice": texts[1], "count": n, "count_text": f.int(n),
                           "share": f.pct(n / total_legs), "trunks": _names(sorted(affected[cause]), t)})
    view["causes"] = cause_rows
    charts.append({"id": "causes", "type": "hbar", "labels": [r["label"] for r in cause_rows],
                   "series": [{"key": "count", "name": t["causes"]["count"],
                               "values": [r["count"] for r in cause_rows]}]})

    # 4. where calls fail: destinations, trunks, numbers
    def network(tot: Totals) -> int:
        return tot.classes(c.table).get("network", 0)

    dest_rows = [{"name": name, "network": network(tot), "attempts": tot.attempts,
                  "ner": f.pct(tot.figures(c.table).ner)}
                 for name, tot in sorted(c.destinations.items(), key=lambda kv: (-network(kv[1]), kv[0]))
                 if network(tot)][:TOP]
    view["destinations"] = dest_rows
    view["destinations_enabled"] = c.dest is not None
    charts.append({"id": "destinations", "type": "hbar", "labels": [r["name"] for r in dest_rows],
                   "series": [{"key": "network", "name": t["failing"]["network"],
                               "values": [r["network"] for r in dest_rows]}]})
    trunk_rows = [{"name": f"{g.key.source} / {g.key.trunk} / {g.key.direction}", "network": network(g.current),
                   "attempts": g.current.attempts, "ner": f.pct(g.current.figures(c.table).ner)}
                  for g in sorted(groups, key=lambda g: (-network(g.current), g.key)) if network(g.current)][:TOP]
    view["failing_trunks"] = trunk_rows
    charts.append({"id": "failing-trunks", "type": "hbar", "labels": [r["name"] for r in trunk_rows],
                   "series": [{"key": "network", "name": t["failing"]["network"],
                               "values": [r["network"] for r in trunk_rows]}]})
    view["numbers"] = [{"number": opts.pii.apply({"call": {"to": number}})["call"]["to"], "network": n}
                       for number, n in c.numbers.most_common(TOP)]
    view["numbers_hidden"] = opts.pii.to == "drop"

    # 5. who hung up, short calls
    hangup: Counter[str] = Counter()
    for g in groups:
        hangup.update(g.hangup)
    who_rows = [{"key": w, "name": t["hangup"][w], "legs": hangup.get(w, 0),
                 "share": f.pct(hangup.get(w, 0) / total_legs)} for w in HANGUP_SOURCES]
    view["hangup"] = who_rows
    charts.append({"id": "hangup", "type": "hbar", "labels": [r["name"] for r in who_rows],
                   "series": [{"key": "legs", "name": t["hangup"]["legs"], "values": [r["legs"] for r in who_rows]}]})
    view["short_s"] = f.num(c.short_s, 0)
    view["short"] = [{"name": f"{g.key.source} / {g.key.trunk} / {g.key.direction}", "answered": g.current.answered,
                      "short": g.short, "share": f.pct(g.short / g.current.answered if g.current.answered else None)}
                     for g in sorted(groups, key=lambda g: (-g.short, g.key)) if g.current.answered][:TOP_ROWS]

    # 6. collapsed and overruled clues per source
    clue_rows = [{"source": name, "kind": s.kind, "legs": s.legs, "collapsed": s.collapsed,
                  "overruled": s.overruled, "incomplete": s.incomplete, "overridden": s.overridden,
                  "collapsed_share": f.pct(s.collapsed / s.legs), "overruled_share": f.pct(s.overruled / s.legs),
                  "incomplete_share": f.pct(s.incomplete / s.legs)}
                 for name, s in sorted(c.clues.items())]
    view["clues"] = clue_rows
    charts.append({"id": "clues", "type": "bar", "labels": [r["source"] for r in clue_rows],
                   "series": [{"key": k, "name": t["clues"][k], "values": [r[k] for r in clue_rows]}
                              for k in ("collapsed", "overruled", "incomplete")]})
    view["charts"] = charts
    view["tables"] = {
        "destinations": [[r["name"], r["network"], r["attempts"], r["ner"]] for r in dest_rows],
        "failing_trunks": [[r["name"], r["network"], r["attempts"], r["ner"]] for r in trunk_rows],
        "hangup": [[r["name"], r["legs"], r["share"]] for r in who_rows],
        "clues": [[r["source"], r["kind"], r["legs"], f"{r['collapsed']} ({r['collapsed_share']})",
                   f"{r['overruled']} ({r['overruled_share']})", f"{r['incomplete']} ({r['incomplete_share']})",
                   r["overridden"]] for r in clue_rows],
    }
    return view


def time_axis(c: Collector) -> list[float]:
    """Every bucket from the period's start (or the first record) to its end, empty ones too, so
    that every trunk's chart has the same time axis and a quiet hour shows as a gap."""
    starts = [s for g in c.groups.values() for s in g.buckets]
    if not starts:
        return []
    first = min(starts)
    last = max(starts)
    if c.filters.until is not None and c.filters.since is not None:
        last = max(last, c.filters.until - c.bucket_s)
    count = int((last - first) // c.bucket_s) + 1
    return [first + k * c.bucket_s for k in range(count)]


def cause_texts(translator: Any, sip: int | None, q850: int | None, lang: str) -> tuple[str, str]:
    """Summary and advice for a cause line, from the same tables and overrides as the records."""
    if sip is None and q850 is None:
        return "", ""
    clues = HangupClues(source_name="report", source_kind="asterisk", leg_id="report", sip_code=sip, q850=q850,
                        ended_at=0.0, received_at=0.0)
    texts = translator.texts(translator.explain(clues), lang)
    return texts.summary, texts.advice


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    return env


@cache
def _asset(name: str) -> str:
    return (HERE / "assets" / name).read_text(encoding="utf-8")


def render_html(view: dict[str, Any]) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(
        v=view, css=_asset("report.css"),
        # `</script` inside an inline script would end it early; Chart.js's bundle has none, but be sure
        chartjs=_asset("chart.umd.min.js").replace("</script", "<\\/script"),
        glue=_asset("report.js"))
