"""Turn the clues of one call leg into an explanation: pure, table lookups only, no I/O.

Precedence (most specific first; `rule` names the one that decided):
user override > a dial the PBX cancelled (Asterisk DialStatus CANCEL; Q.850 26 when it was
answered elsewhere) > SIP final code with a reason-phrase pattern > Q.850 from a Reason header >
SIP final code > the PBX's own cause name (FreeSWITCH name, Asterisk DialStatus) > Q.850 cause.
A cancelled dial comes first because the code the far end sent then only answers the CANCEL.
Clues that point to another category than the winner are listed in `overruled`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callcause.mapping.locales import Locales, builtin_locales
from callcause.mapping.notation import Notation, NotationParser
from callcause.mapping.overrides import Overrides, load_overrides
from callcause.mapping.tables import DIALECTS, Dialect, Outcome, Tables, builtin_tables
from callcause.record import Explanation, HangupClues, ReasonHeader, Texts

UNKNOWN = Outcome("unknown", "warning", False, "unknown")
_DIALECT_OF_SOURCE = {"asterisk": "asterisk", "freeswitch": "freeswitch"}


class Translator:
    def __init__(self, tables: Tables, locales: Locales, overrides: Overrides | None = None) -> None:
        self.tables = tables
        self.locales = locales
        self.overrides = overrides or Overrides()
        self.notation = NotationParser(tables)

    @classmethod
    def default(cls) -> Translator:
        """Built-in tables and texts, no overrides."""
        return cls(builtin_tables(), builtin_locales())

    @classmethod
    def load(cls, overrides_path: str | Path | None = None) -> Translator:
        """Built-in tables plus a user's overrides file (ConfigError when it is wrong)."""
        overrides = load_overrides(overrides_path) if overrides_path else None
        return cls(builtin_tables(), builtin_locales(), overrides)

    # --- the decision ----------------------------------------------------------------------

    def explain(self, c: HangupClues, dialect: str | None = None) -> Explanation:
        t = self.tables
        dialect = dialect or _DIALECT_OF_SOURCE.get(c.source_kind, "rfc3398")
        # the table of the PBX version that sent the clues (newest when unknown)
        d = t.dialect(dialect, c.source_version if "@" not in dialect else None)

        sip_code, sip_reason = c.sip_code, c.sip_reason
        reason_q850 = reason_sip = None
        for rh in c.reason_headers:
            if rh.protocol == "Q.850" and reason_q850 is None and 0 <= rh.cause <= 127:
                reason_q850 = rh
            elif rh.protocol == "SIP" and reason_sip is None and 100 <= rh.cause <= 799:
                reason_sip = rh
        if sip_code is None and reason_sip is not None:
            sip_code, sip_reason = reason_sip.cause, sip_reason or reason_sip.text

        pbx_name = c.pbx_cause.upper() if c.pbx_cause else None
        fs_own = t.freeswitch.get(pbx_name) if pbx_name else None
        fs_q850_name = pbx_name if pbx_name in t.fs_names and fs_own is None else None
        dial = c.dial_status.split(":")[0].upper() if c.dial_status else None
        dial_entry = t.dial_status.get(dial) if dial else None

        # Every clue the leg carries, strongest first: (clue id, outcome, rule, text keys).
        # Ids are the rule without "builtin:" and name the clue in `overruled`.
        clues: list[tuple[str, Outcome, str, tuple[str, ...]]] = []
        if dial == "CANCEL" and dial_entry is not None:
            if c.q850 == 26 and 26 in t.q850:
                clues.append(("q850/26", t.q850[26].outcome, "builtin:q850/26", ("q850.26",)))
            clues.append(("dialstatus/CANCEL", dial_entry.outcome, "builtin:dialstatus/CANCEL",
                          ("dial_status.CANCEL",)))
        phrase = t.phrase_for(sip_code, sip_reason) if sip_code is not None and sip_code >= 300 else None
        if phrase is not None:
            clues.append((f"phrase/{phrase.id}", phrase.outcome, f"builtin:phrase/{phrase.id}",
                          (f"phrase.{phrase.id}", f"sip.{sip_code}")))
        if reason_q850 is not None and reason_q850.cause in t.q850:
            n = reason_q850.cause
            clues.append((f"reason/q850/{n}", t.q850[n].outcome, f"builtin:reason/q850/{n}", (f"q850.{n}",)))
        if sip_code is not None and sip_code >= 300 and phrase is None:
            entry = t.sip.get(sip_code)
            rule = f"sip/{sip_code}" if entry else f"sip/{sip_code // 100}xx"
            clues.append((f"sip/{sip_code}", entry.outcome if entry else self._sip_class_outcome(sip_code),
                          f"builtin:{rule}", (f"sip.{sip_code}", f"generic.sip_{sip_code // 100}xx")))
        if fs_own is not None:
            clues.append((f"freeswitch/{pbx_name}", fs_own.outcome, f"builtin:freeswitch/{pbx_name}",
                          (f"freeswitch.{pbx_name}",)))
        elif fs_q850_name is not None:
            n = t.fs_names[fs_q850_name]
            clues.append((f"freeswitch/{fs_q850_name}", t.q850[n].outcome, f"builtin:freeswitch/{fs_q850_name}",
                          (f"q850.{n}",)))
        if dial_entry is not None and dial != "CANCEL":
            clues.append((f"dialstatus/{dial}", dial_entry.outcome, f"builtin:dialstatus/{dial}",
                          (f"dial_status.{dial}",)))
        if c.q850 is not None and c.q850 in t.q850:
            clues.append((f"q850/{c.q850}", t.q850[c.q850].outcome, f"builtin:q850/{c.q850}", (f"q850.{c.q850}",)))
        elif c.q850 is not None:
            clues.append((f"q850/{c.q850}", UNKNOWN, f"builtin:q850/class{c.q850 >> 4}",
                          (f"generic.q850_class_{c.q850 >> 4}", "generic.unknown")))
        if sip_code is not None and sip_code < 300 and sip_code in t.sip:
            clues.append((f"sip/{sip_code}", t.sip[sip_code].outcome, f"builtin:sip/{sip_code}",
                          (f"sip.{sip_code}",)))
        if clues:
            winner, outcome, rule, keys = clues[0]
        else:
            winner, outcome, rule, keys = "none", UNKNOWN, "builtin:none", ("generic.unknown",)
        overruled = self._overruled(clues, c, d, sip_code, reason_q850)

        category = outcome.category
        if category == "answered" and c.answered is False:
            # "Normal clearing" of a leg that never answered: someone gave up before answer.
            category, keys = "cancelled", ("generic.unanswered_normal", *keys)

        hangup_source = c.hangup_source or (fs_own.hangup_source if fs_own else None) or "unknown"
        if winner == "q850/26" and hangup_source == "unknown":
            hangup_source = "pbx"       # answered elsewhere: the PBX withdrew this branch
        reported = c.q850 if c.q850 is not None else (
            t.fs_q850(pbx_name) if pbx_name and pbx_name in t.fs_names else None)
        derived = False
        if reported is None and reason_q850 is not None:
            reported = reason_q850.cause
        if reported is None and sip_code is not None:
            reported, derived = d.q850_for_sip(sip_code), True
        sip_own = d.sip_to_name.get(sip_code) if sip_code is not None else None
        collapsed = bool(
            (fs_own is not None and fs_own.code > 127 and reported in (None, 16))
            or (sip_own is not None and sip_own in t.freeswitch and t.freeswitch[sip_own].code > 127)
            or (reported == 127 and (sip_code is not None or dial == "CANCEL"))
        )

        exp = Explanation(
            category=category, severity=outcome.severity, retryable=outcome.retryable,
            fault=outcome.fault, hangup_source=hangup_source, rule=rule, collapsed=collapsed,
            text_keys=keys, overruled=overruled,
            sip=self._sip_section(sip_code, sip_reason) if sip_code is not None else None,
            q850=self._q850_section(reported, derived, sip_code, reason_q850.location if reason_q850 else None),
            pbx=({"cause": c.pbx_cause, "cause_code": c.pbx_cause_code, "dial_status": c.dial_status,
                  "disposition": c.disposition}
                 if (c.pbx_cause or c.pbx_cause_code is not None or c.dial_status or c.disposition) else None),
        )
        if self.overrides.items:
            ov = self.overrides.find(source=c.source_name, trunk=c.trunk_scope or c.trunk, sip=sip_code,
                                     reason=sip_reason, q850=c.q850 if c.q850 is not None else reported,
                                     pbx_cause=c.pbx_cause, dial_status=dial)
            if ov is not None:
                for key, value in ov.set.items():
                    setattr(exp, key, value)
                exp.rule = f"override:{ov.name}"
                exp.text_overrides = ov.texts
        return exp

    def _overruled(self, clues: list[tuple[str, Outcome, str, tuple[str, ...]]], c: HangupClues,
                   d: Dialect, sip_code: int | None, reason_q850: ReasonHeader | None) -> list[dict[str, str]]:
        """The clues after the winner that point to another category.

        A clue the PBX merely derived from a stronger one is no contradiction and is left out:
        the Q.850 cause (or FreeSWITCH cause name) its dialect gives for the SIP code or that
        the Reason header set, or the 16 FreeSWITCH reports for its own causes. Q.850 0 and
        127 say nothing (undefined, interworking), and a "normal clearing" of a leg that never
        answered means cancelled, as for the winner.
        """
        if len(clues) < 2:
            return []
        t = self.tables
        derived: set[int] = set()
        if sip_code is not None:
            mapped = d.q850_for_sip(sip_code)
            if mapped is not None:
                derived.add(mapped)
            if sip_code in d.sip_to_name:
                derived.add(t.fs_names.get(d.sip_to_name[sip_code], -1))
        if reason_q850 is not None:
            derived.add(reason_q850.cause)
        own = t.freeswitch.get((c.pbx_cause or "").upper())
        if own is not None and own.code > 127:
            derived.add(own.q850_reported)      # FreeSWITCH reports its own causes as Q.850 16

        def category(outcome: Outcome) -> str:
            return "cancelled" if outcome.category == "answered" and c.answered is False else outcome.category

        winner, won = clues[0][0], category(clues[0][1])
        out: list[dict[str, str]] = []
        for clue, outcome, _rule, _keys in clues[1:]:
            kind, _, value = clue.rpartition("/")
            number = t.fs_names.get(value) if kind == "freeswitch" else (
                int(value) if kind == "q850" and value.isdigit() else None)
            if kind in ("q850", "freeswitch") and number is not None and (
                    number in derived or (kind == "q850" and number in (0, 127))):
                continue
            if category(outcome) != won and not any(o["clue"] == clue for o in out):
                out.append({"clue": clue, "by": winner})
        return out

    def _sip_class_outcome(self, code: int) -> Outcome:
        return {3: Outcome("transfer", "info", False, "none"),
                4: Outcome("rejected", "warning", False, "unknown"),
                5: Outcome("system", "error", True, "carrier"),
                6: Outcome("rejected", "warning", False, "callee")}.get(code // 100, UNKNOWN)

    def _sip_section(self, code: int, reason: str | None) -> dict[str, Any]:
        entry = self.tables.sip.get(code)
        return {"code": code, "reason": reason or (entry.reason if entry else None),
                "standard_reason": entry.reason if entry else None, "class": f"{code // 100}xx",
                "status": entry.status if entry else "unregistered"}

    def _q850_section(self, cause: int | None, derived: bool, sip_code: int | None,
                      location: str | None) -> dict[str, Any] | None:
        if cause is None:
            return None
        entry = self.tables.q850.get(cause)
        std = self.tables.dialects["rfc3398"].q850_for_sip(sip_code) if sip_code is not None else None
        return {"cause": cause, "name": entry.name if entry else None,
                "class": self.tables.q850_class(cause), "location": location,
                "standard_for_sip": std, "derived": derived}

    # --- texts ----------------------------------------------------------------------------

    def texts(self, exp: Explanation, lang: str) -> Texts:
        return self.locales.lookup(exp.text_keys, lang, exp.text_overrides)

    # --- explain (CLI) ------------------------------------------------------------------------

    def parse(self, text: str) -> Notation:
        return self.notation.parse(text)

    def explain_notation(self, n: Notation, dialect: str | None = None) -> Explanation:
        dialect = dialect or n.dialect or "rfc3398"
        clues = HangupClues(source_name="explain", source_kind="freeswitch" if dialect.startswith("freeswitch")
                            else "asterisk", leg_id="explain", sip_code=n.sip_code, sip_reason=n.sip_reason,
                            reason_headers=list(n.reason_headers), q850=n.q850, dial_status=n.dial_status,
                            pbx_cause=n.pbx_cause if n.name_family == "freeswitch" else None)
        exp = self.explain(clues, dialect=dialect)
        if n.dss1 is not None:
            exp.dss1 = self.describe_dss1(n.dss1)
            if exp.q850 is not None:
                exp.q850["location"] = exp.dss1["location_abbr"]
        exp.dialects = self.dialect_views(exp.sip["code"] if exp.sip else None,
                                          n.q850 if n.q850 is not None else
                                          (exp.q850["cause"] if exp.q850 else None), dialect)
        return exp

    def dialect_views(self, sip_code: int | None, q850: int | None,
                      chosen: str | None = None) -> dict[str, Any]:
        """What each dialect maps the code to: SIP -> Q.850 for a SIP code, else Q.850 -> SIP.
        The newest of each, but the `chosen` one (`asterisk@22.8`) in its own version."""
        out: dict[str, Any] = {}
        for name in DIALECTS:
            d = self.tables.dialect(chosen) if chosen and chosen.split("@")[0] == name else \
                self.tables.dialects[name]
            view: dict[str, Any] = {}
            if sip_code is not None:
                view["q850"] = d.q850_for_sip(sip_code)
                if sip_code in d.sip_to_name:
                    view["cause"] = d.sip_to_name[sip_code]
            elif q850 is not None:
                view["sip"] = d.sip_for_q850(q850)
            out[chosen if chosen and chosen.split("@")[0] == name else name] = view
        return out

    def describe_dss1(self, info: dict[str, Any]) -> dict[str, Any]:
        dss1 = self.tables.dss1
        loc = (dss1.get("locations") or {}).get(info["location"]) or {}
        out = dict(info)
        out["coding_standard_name"] = (dss1.get("coding_standards") or {}).get(info["coding_standard"])
        out["location_abbr"] = loc.get("abbr") if isinstance(loc, dict) else None
        out["location_name"] = loc.get("name") if isinstance(loc, dict) else loc or None
        if info.get("recommendation") is not None:
            out["recommendation_name"] = (dss1.get("recommendations") or {}).get(info["recommendation"])
        out["diagnostic_meaning"] = (dss1.get("diagnostics") or {}).get(info["cause"])
        return out
