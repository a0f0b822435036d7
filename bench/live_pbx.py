"""Live check against a real Asterisk and a real FreeSWITCH: does callcause name the right cause?

Not part of the unit suite: it needs the lab PBXs (Asterisk AMI on 127.0.0.1:5038, FreeSWITCH
ESL on 127.0.0.1:8021, the lab's scripted SIP peer on udp 5070; see the lab kit's README). It
starts a second small SIP peer of its own on udp 127.0.0.1:5072 for what the lab peer cannot do
(183 early media before a failure, an answer that never sends RTP, a phone that answers a
CANCEL with 500), runs `callcause run` against both PBXs with a JSON Lines sink, places real
calls through both PBXs, and checks the record of each leg it cares about.

What "right" means: the SIP code the far end sent is in `sip`, the category is the one the
README's precedence gives for the strongest clue on the wire (a Reason header over the SIP code;
`mapping/tables` supply each clue's category), and `hangup_source` names the party that ended
the leg. Prints one row per checked leg and `N/M right` as the last line.

usage: python bench/live_pbx.py [--pbx asterisk,freeswitch] [--only SUBSTRING] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from callcause.mapping.tables import builtin_tables

AMI = ("127.0.0.1", 5038, "callcause", "callcause-secret")
ESL = ("127.0.0.1", 8021, "ClueCon")
LAB_PEER = "127.0.0.1:5070"
OWN_PEER = ("127.0.0.1", 5072)

# Every final code the lab peer sends (its REASONS table, 4xx-6xx), plus Reason variants.
CODES = (400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 413, 414, 415, 416, 420, 421, 423,
         480, 481, 482, 483, 484, 485, 486, 488, 491, 493, 500, 501, 502, 503, 504, 505, 513,
         600, 603, 604, 606)
WITH_REASON = ((486, 21), (500, 17), (603, 17), (503, 38), (503, 34), (480, 18), (404, 1), (486, 17))
# and every code once more with a Reason that FreeSWITCH's own map would not give for it
WITH_REASON += tuple((c, 21 if c not in (401, 402, 403, 407, 603) else 17) for c in CODES
                     if (c, 21) not in WITH_REASON)
# FreeSWITCH cannot use a Reason on these: 401/407 go to its challenge code (sofia.c);
# the SIP code is all the evidence there is.
FS_IGNORES_REASON = (401, 407)


# --- what we expect ---------------------------------------------------------------------------

@dataclass
class Want:
    """Expected fields of one leg's record; None = not checked."""

    category: str | None = None
    hangup_source: str | None = None
    sip: int | str | None = "any"        # "any" = not checked
    rule: str | None = None               # prefix

    def check(self, rec: dict) -> list[str]:
        wrong = []
        cause = rec["cause"]
        if self.category and cause["category"] != self.category:
            wrong.append(f"category {cause['category']} (want {self.category})")
        if self.hangup_source and cause["hangup_source"] != self.hangup_source:
            wrong.append(f"by {cause['hangup_source']} (want {self.hangup_source})")
        got_sip = rec["sip"]["code"] if rec.get("sip") else None
        if self.sip != "any" and got_sip != self.sip:
            wrong.append(f"sip {got_sip} (want {self.sip})")
        if self.rule and not rec["rule"].startswith(self.rule):
            wrong.append(f"rule {rec['rule']} (want {self.rule}...)")
        return wrong


def want_for_code(code: int, reason: int | None) -> Want:
    t = builtin_tables()
    if reason is not None:
        return Want(t.q850[reason].outcome.category, "callee", code, f"builtin:reason/q850/{reason}")
    entry = t.sip.get(code)
    category = entry.outcome.category if entry else None
    return Want(category, "callee", code, None)


@dataclass
class Scenario:
    pbx: str
    name: str
    place: Callable[[Scenario], None]
    legs: dict[str, Want]                 # leg selector (regex on the channel) -> expectation
    call_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    serial: bool = False                  # needs the PBX to itself (it looks channels up)


# --- a second SIP peer for what the lab peer cannot do -----------------------------------------

class OwnPeer:
    """A minimal UDP UAS. User part: `em<code>` 183 with SDP, 1 s, then <code>; `mute` 180,
    200 with SDP, never any RTP, waits for BYE; `c500` 180, answers a CANCEL with 200 and the
    INVITE with 500 (as some phones do)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host, self.port = host, port
        self.calls: dict[str, dict] = {}
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _headers(data: str) -> tuple[str, list[tuple[str, str]], str]:
        head, _, body = data.partition("\r\n\r\n")
        lines = head.split("\r\n")
        out = []
        for ln in lines[1:]:
            name, _, value = ln.partition(":")
            out.append((name.strip().lower(), value.strip()))
        return lines[0], out, body

    def _reply(self, first: str, hdrs: list[tuple[str, str]], code: int, phrase: str, tag: str,
               addr: tuple[str, int], sdp: bool = False) -> None:
        out = [f"SIP/2.0 {code} {phrase}"]
        out += [f"Via: {v}" for k, v in hdrs if k in ("via", "v")]
        get = {k: v for k, v in reversed(hdrs)}
        to = get.get("to", get.get("t", ""))
        if ";tag=" not in to:
            to += f";tag={tag}"
        out += [f"From: {get.get('from', get.get('f', ''))}", f"To: {to}",
                f"Call-ID: {get.get('call-id', get.get('i', ''))}", f"CSeq: {get.get('cseq', '')}"]
        if 100 < code < 300 and "INVITE" in get.get("cseq", ""):
            out.append(f"Contact: <sip:peer@{self.host}:{self.port}>")
        body = ""
        if sdp:
            body = (f"v=0\r\no=- 1 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n"
                    "m=audio 40998 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
            out.append("Content-Type: application/sdp")
        out.append(f"Content-Length: {len(body)}")
        self.sock.sendto(("\r\n".join(out) + "\r\n\r\n" + body).encode(), addr)

    def _serve(self) -> None:
        while True:
            data, addr = self.sock.recvfrom(65535)
            text = data.decode("utf-8", "replace")
            if not text.strip() or text.startswith("SIP/2.0"):
                continue
            first, hdrs, _ = self._headers(text)
            method = first.split()[0]
            cid = next((v for k, v in hdrs if k in ("call-id", "i")), "")
            if method == "INVITE":
                if cid in self.calls:
                    continue          # retransmission
                st = self.calls[cid] = {"tag": "".join(random.choices(string.ascii_lowercase, k=8)),
                                        "first": first, "hdrs": hdrs, "done": False}
                threading.Thread(target=self._invite, args=(st, addr), daemon=True).start()
            elif method == "CANCEL":
                st = self.calls.get(cid)
                self._reply(first, hdrs, 200, "OK", st["tag"] if st else "x", addr)
                if st and not st["done"]:
                    st["done"] = True
                    code, phrase = (500, "Server Internal Error") if "c500" in st["first"] else (
                        487, "Request Terminated")
                    self._reply(st["first"], st["hdrs"], code, phrase, st["tag"], addr)
            elif method in ("BYE", "OPTIONS"):
                self._reply(first, hdrs, 200, "OK", "x", addr)

    def _invite(self, st: dict, addr: tuple[str, int]) -> None:
        user = re.match(r"INVITE sips?:([^@;>]+)@", st["first"])
        spec = user.group(1) if user else ""
        first, hdrs, tag = st["first"], st["hdrs"], st["tag"]
        self._reply(first, hdrs, 100, "Trying", tag, addr)
        if spec.startswith("em"):
            self._reply(first, hdrs, 183, "Session Progress", tag, addr, sdp=True)
            time.sleep(1.0)
            if not st["done"]:
                st["done"] = True
                self._reply(first, hdrs, int(spec[2:5]), "Failed", tag, addr)
        elif spec == "mute":
            self._reply(first, hdrs, 180, "Ringing", tag, addr)
            time.sleep(0.3)
            st["done"] = True
            self._reply(first, hdrs, 200, "OK", tag, addr, sdp=True)
        else:             # c500 and anything else: ring until cancelled
            self._reply(first, hdrs, 180, "Ringing", tag, addr)


# --- talking to the PBXs ----------------------------------------------------------------------

class AmiClient:
    def __init__(self) -> None:
        host, port, user, secret = AMI
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        self.lock = threading.Lock()
        self.action({"Action": "Login", "Username": user, "Secret": secret, "Events": "off"})

    def action(self, fields: dict[str, str], until: str | None = None) -> list[dict[str, str]]:
        """Send an action; read messages until its Response (or the `until` event) arrives."""
        with self.lock:
            aid = uuid.uuid4().hex
            msg = "".join(f"{k}: {v}\r\n" for k, v in {**fields, "ActionID": aid}.items()) + "\r\n"
            self.sock.sendall(msg.encode())
            got: list[dict[str, str]] = []
            end = time.time() + 10
            while time.time() < end:
                while b"\r\n\r\n" not in self.buf:
                    self.buf += self.sock.recv(65536)
                raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
                block = dict(line.split(": ", 1) for line in raw.decode(errors="replace").split("\r\n")
                             if ": " in line)
                if block.get("ActionID") != aid:
                    continue
                got.append(block)
                if until is None and "Response" in block:
                    return got
                if until is not None and block.get("Event") == until:
                    return got
            return got

    def channel_of(self, uniqueid: str) -> str | None:
        for ev in self.action({"Action": "CoreShowChannels"}, until="CoreShowChannelsComplete"):
            if ev.get("Uniqueid") == uniqueid:
                return ev.get("Channel")
        return None


class EslClient:
    def __init__(self) -> None:
        host, port, password = ESL
        self.sock = socket.create_connection((host, port), timeout=10)
        self.lock = threading.Lock()
        self._read()
        self.command(f"auth {password}")

    def _read(self) -> str:
        data = b""
        while b"\n\n" not in data:
            data += self.sock.recv(1)
        head = data.decode()
        m = re.search(r"Content-Length: (\d+)", head)
        body = b""
        if m:
            while len(body) < int(m.group(1)):
                body += self.sock.recv(int(m.group(1)) - len(body))
        return head + body.decode(errors="replace")

    def command(self, cmd: str) -> str:
        with self.lock:
            self.sock.sendall(f"{cmd}\n\n".encode())
            return self._read()


# --- scenarios --------------------------------------------------------------------------------

def ast_originate(ami: AmiClient, sc: Scenario, channel: str, **more: str) -> None:
    fields = {"Action": "Originate", "Channel": channel, "ChannelId": sc.call_id,
              "OtherChannelId": sc.call_id + "-2", "Async": "true", "CallerID": "+4930901820",
              "Timeout": "30000"}
    if "Application" not in more and "Context" not in more:
        fields.update({"Application": "Wait", "Data": "2"})
    fields.update(more)
    ami.action(fields)


def fs_originate(esl: EslClient, sc: Scenario, target: str, app: str = "&park()", **var: str | None) -> None:
    variables = {"origination_uuid": sc.call_id, "origination_caller_id_number": "+4930901820",
                 "originate_timeout": "30", **var}
    spec = ",".join(f"{k}={v}" for k, v in variables.items() if v is not None)
    esl.command(f"bgapi originate {{{spec}}}{target} {app}")


def scenarios(ami: AmiClient | None, esl: EslClient | None) -> list[Scenario]:
    out: list[Scenario] = []
    peer = "PJSIP/[^;]*peer-"
    own = OWN_PEER[0] + ":" + str(OWN_PEER[1])
    if ami is not None:
        for code in CODES:
            out.append(Scenario("asterisk", f"sip {code}", lambda sc, c=code: ast_originate(
                ami, sc, f"Local/{c}@failtest"), {peer: want_for_code(code, None)}))
        for code, q in WITH_REASON:
            out.append(Scenario("asterisk", f"sip {code} + Reason Q.850 {q}", lambda sc, c=code, q=q: ast_originate(
                ami, sc, f"Local/{c}q{q}@failtest"), {peer: want_for_code(code, None)}))
        out.append(Scenario("asterisk", "sip 302 (no Contact)", lambda sc: ast_originate(
            ami, sc, "Local/302@failtest"), {peer: Want("transfer", "callee", 302)}))
        out.append(Scenario("asterisk", "no answer, dial timeout", lambda sc: ast_originate(
            ami, sc, "Local/noanswer@failtest", Variable="DIALTIMEOUT=2"),
            {peer: Want("no_answer", "pbx")}))
        out.append(Scenario("asterisk", "answered, callee BYE", lambda sc: ast_originate(
            ami, sc, "Local/200b1@answertest"), {peer: Want("answered", "callee")}))

        def ast_cancel(sc: Scenario, target: str) -> None:
            # the caller is a real PJSIP leg (answered by the lab peer) that dials the callee
            ast_originate(ami, sc, "PJSIP/200b30@peer", Application="Dial", Data=f"{target},20")
            time.sleep(2.0)
            chan = ami.channel_of(sc.call_id)
            if chan:
                ami.action({"Action": "Hangup", "Channel": chan, "Cause": "16"})

        out.append(Scenario("asterisk", "caller cancels while ringing", lambda sc: ast_cancel(
            sc, "PJSIP/noanswer@peer"), {r"PJSIP/peer-\w+$#2": Want("cancelled", "caller")}, serial=True))
        out.append(Scenario("asterisk", "caller cancels, phone answers CANCEL with 500",
                            lambda sc: ast_cancel(sc, f"PJSIP/peer/sip:c500@{own}"),
                            {r"PJSIP/peer-\w+$#2": Want("cancelled", "caller")}, serial=True))
        out.append(Scenario("asterisk", "parallel fork, one answers", lambda sc: ast_originate(
            ami, sc, "PJSIP/200b4@peer", Application="Dial",
            Data="PJSIP/200b2@peer&PJSIP/noanswer@peer,10"),
            {r"PJSIP/peer-\w+$#2": Want("answered", "callee"),
             r"PJSIP/peer-\w+$#3": Want("cancelled", "pbx")}))
        out.append(Scenario("asterisk", "early media 183 then 486", lambda sc: ast_originate(
            ami, sc, f"PJSIP/peer/sip:em486@{own}"), {"PJSIP/": Want("busy", "callee", 486)}))
        out.append(Scenario("asterisk", "early media 183 then 503", lambda sc: ast_originate(
            ami, sc, f"PJSIP/peer/sip:em503@{own}"), {"PJSIP/": Want("congestion", "callee", 503)}))

        def ast_blind(sc: Scenario) -> None:
            ast_originate(ami, sc, "PJSIP/200b8@peer", Application="Dial", Data="PJSIP/200b8@peer,10")
            time.sleep(2.0)
            chan = ami.channel_of(sc.call_id)
            if chan:
                ami.action({"Action": "BlindTransfer", "Channel": chan, "Context": "failtest",
                            "Exten": "486"})

        out.append(Scenario("asterisk", "blind transfer to a busy number", ast_blind,
                            {r"PJSIP/peer-\w+$#1": Want("answered"),
                             r"PJSIP/peer-\w+$#3": Want("busy", "callee", 486)}, serial=True))
    if esl is not None:
        for code in CODES:
            out.append(Scenario("freeswitch", f"sip {code}", lambda sc, c=code: fs_originate(
                esl, sc, f"sofia/external/{c}@{LAB_PEER}"), {"sofia/": want_for_code(code, None)}))
        for code, q in WITH_REASON:
            out.append(Scenario("freeswitch", f"sip {code} + Reason Q.850 {q}", lambda sc, c=code, q=q: fs_originate(
                esl, sc, f"sofia/external/{c}q{q}@{LAB_PEER}"), {"sofia/": want_for_code(
                    code, q if builtin_tables().dialects["freeswitch"].q850_for_sip(code) != q
                    and code not in FS_IGNORES_REASON else None)}))
        out.append(Scenario("freeswitch", "no answer, originate timeout", lambda sc: fs_originate(
            esl, sc, f"sofia/external/noanswer@{LAB_PEER}", originate_timeout="2"),
            {"sofia/": Want("no_answer", "pbx")}))
        out.append(Scenario("freeswitch", "answered, callee BYE", lambda sc: fs_originate(
            esl, sc, f"sofia/external/200b2@{LAB_PEER}"), {"sofia/": Want("answered", "callee")}))

        def fs_cancel(sc: Scenario, target: str) -> None:
            fs_originate(esl, sc, target)
            time.sleep(1.5)
            esl.command(f"api uuid_kill {sc.call_id} ORIGINATOR_CANCEL")

        out.append(Scenario("freeswitch", "caller cancels while ringing", lambda sc: fs_cancel(
            sc, f"sofia/external/noanswer@{LAB_PEER}"), {"sofia/": Want("cancelled", "caller", None)}))
        out.append(Scenario("freeswitch", "caller cancels, phone answers CANCEL with 500",
                            lambda sc: fs_cancel(sc, f"sofia/external/c500@{own}"),
                            {"sofia/": Want("cancelled", "caller", None)}))
        out.append(Scenario("freeswitch", "parallel fork, one answers", lambda sc: fs_originate(
            esl, sc, f"[origination_uuid={sc.call_id}]sofia/external/200b2@{LAB_PEER},"
            f"[origination_uuid={sc.call_id}-2]sofia/external/noanswer@{LAB_PEER}", origination_uuid=None),
            {"sofia/external/200b2": Want("answered", "callee"),
             "sofia/external/noanswer": Want("cancelled", "pbx")}))
        out.append(Scenario("freeswitch", "early media 183 then 486", lambda sc: fs_originate(
            esl, sc, f"sofia/external/em486@{own}"), {"sofia/": Want("busy", "callee", 486)}))
        out.append(Scenario("freeswitch", "early media 183 then 503", lambda sc: fs_originate(
            esl, sc, f"sofia/external/em503@{own}"), {"sofia/": Want("congestion", "callee", 503)}))
        out.append(Scenario("freeswitch", "answered, media stops", lambda sc: fs_originate(
            esl, sc, f"sofia/external/mute@{own}", media_timeout="2000", rtp_timeout_sec="2"),
            {"sofia/": Want("media", "pbx", rule="builtin:freeswitch/MEDIA_TIMEOUT")}))

        def fs_blind(sc: Scenario) -> None:
            fs_originate(esl, sc, f"sofia/external/200b8@{LAB_PEER}",
                         app=f"&bridge([origination_uuid={sc.call_id}-b]sofia/external/200b8@{LAB_PEER})")
            time.sleep(2.0)
            esl.command(f"api uuid_transfer {sc.call_id} -bleg toresp486 XML default")

        def fs_attended(sc: Scenario) -> None:
            fs_originate(esl, sc, f"sofia/external/200b12@{LAB_PEER}",
                         app=f"&bridge([origination_uuid={sc.call_id}-b]sofia/external/200b12@{LAB_PEER})")
            time.sleep(2.0)
            # B consults C, then A is bridged to C and B leaves (what att_xfer does on completion)
            esl.command(f"api originate {{origination_uuid={sc.call_id}-c}}sofia/external/200b6@{LAB_PEER} &park()")
            time.sleep(1.0)
            esl.command(f"api uuid_bridge {sc.call_id} {sc.call_id}-c")

        out.append(Scenario("freeswitch", "attended transfer (consult, then uuid_bridge)", fs_attended,
                            {"sofia/external/200b12#1": Want("answered"),
                             "sofia/external/200b12#2": Want("answered"),
                             "sofia/external/200b6": Want("answered", "callee")}, serial=True))
        out.append(Scenario("freeswitch", "blind transfer to a busy number", fs_blind,
                            {"sofia/external/200b8#1": Want("answered"),
                             "sofia/external/486": Want("busy", "callee", 486)}))
    return out


class Tap:
    """Raw AMI / ESL traffic as received, for turning a scenario into a test fixture."""

    def __init__(self, folder: Path, pbxs: set[str]) -> None:
        self.stop = False
        self.threads = []
        if "asterisk" in pbxs:
            host, port, user, secret = AMI
            login = f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nActionID: login-1\r\n\r\n"
            self._start(folder / "ami.txt", (host, port), login.encode())
        if "freeswitch" in pbxs:
            host, port, password = ESL
            self._start(folder / "esl.txt", (host, port),
                        f"auth {password}\n\nevent plain CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE\n\n".encode())

    def _start(self, path: Path, addr: tuple[str, int], hello: bytes) -> None:
        sock = socket.create_connection(addr, timeout=0.5)
        sock.sendall(hello)

        def run() -> None:
            with open(path, "wb") as out:
                while not self.stop:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    out.write(data)
            sock.close()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self) -> None:
        self.stop = True
        for t in self.threads:
            t.join(2)


# --- the run ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(work: Path, pbxs: set[str]) -> tuple[subprocess.Popen, Path]:
    records = work / "records.jsonl"
    port = free_port()
    sources = []
    if "asterisk" in pbxs:
        host, p, user, secret = AMI
        sources.append(f"  - {{name: ast, kind: asterisk, host: {host}, port: {p}, username: {user}, "
                       f"secret: {secret}}}")
    if "freeswitch" in pbxs:
        host, p, password = ESL
        sources.append(f"  - {{name: fs, kind: freeswitch, host: {host}, port: {p}, password: {password}}}")
    cfg = work / "callcause.yaml"
    cfg.write_text("sources:\n" + "\n".join(sources) + "\n"
                   f"sinks:\n  - {{kind: log, path: {records}, stdout: off}}\n"
                   f"metrics: {{listen: \"127.0.0.1:{port}\"}}\n")
    with open(work / "daemon.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "callcause.cli", "run", "-c", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, records
        except OSError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"callcause did not become ready; see {work / 'daemon.out'}")


def pick(records: list[dict], selector: str) -> dict | None:
    """`regex` or `regex#n`: the n-th (1-based, by channel name) leg whose channel matches."""
    pattern, _, nth = selector.partition("#")
    legs = sorted((r for r in records if re.search(pattern, r["call"]["channel"] or "")),
                  key=lambda r: r["call"]["channel"] or "")
    n = int(nth) - 1 if nth else 0
    return legs[n] if n < len(legs) else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pbx", default="asterisk,freeswitch")
    ap.add_argument("--only", default="", help="run the scenarios whose name contains this")
    ap.add_argument("--keep", help="keep the config and records in this folder")
    ap.add_argument("--tap", help="write the raw AMI/ESL traffic of the run into this folder")
    ap.add_argument("--settle", type=float, default=12.0, help="seconds to wait for the last records")
    args = ap.parse_args()
    pbxs = set(args.pbx.split(","))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="callcause-live-"))
    work.mkdir(parents=True, exist_ok=True)
    OwnPeer(*OWN_PEER)
    ami = AmiClient() if "asterisk" in pbxs else None
    esl = EslClient() if "freeswitch" in pbxs else None
    tap = Tap(Path(args.tap), pbxs) if args.tap else None
    proc, records_path = start_daemon(work, pbxs)
    todo = [s for s in scenarios(ami, esl) if args.only in s.name]
    try:
        threads: list[threading.Thread] = []
        for sc in todo:
            if sc.serial:
                for t in threads:
                    t.join()
                threads.clear()
                sc.place(sc)
                continue
            t = threading.Thread(target=sc.place, args=(sc,))
            t.start()
            threads.append(t)
            time.sleep(0.15)
            if len(threads) >= 6:
                threads.pop(0).join()
        for t in threads:
            t.join()
        time.sleep(args.settle)
    finally:
        proc.terminate()
        proc.wait(10)
        if tap is not None:
            tap.close()
    by_call: dict[str, list[dict]] = {}
    for line in records_path.read_text().splitlines():
        rec = json.loads(line)
        # a call is known by the uuid we gave it: legs whose call or leg id starts with it
        for key in {rec["call"]["call_id"][:36], rec["call"]["leg_id"][:36]}:
            by_call.setdefault(key, []).append(rec)
    rows, right = [], 0
    total = 0
    for sc in todo:
        recs = by_call.get(sc.call_id, [])
        for selector, want in sc.legs.items():
            total += 1
            rec = pick(recs, selector)
            if rec is None:
                rows.append((sc.pbx, sc.name, selector, "-", "no record", "WRONG"))
                continue
            wrong = want.check(rec)
            sip = rec["sip"]["code"] if rec.get("sip") else "-"
            got = f"{rec['cause']['category']}/{rec['cause']['hangup_source']} sip {sip} {rec['rule']}"
            rows.append((sc.pbx, sc.name, rec["call"]["channel"], got, "; ".join(wrong), "ok" if not wrong
                         else "WRONG"))
            right += not wrong
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)] if rows else [0] * 4
    for r in rows:
        print("  ".join(str(r[i]).ljust(widths[i]) for i in range(4)), r[5], r[4])
    print(f"{right}/{total} right")
    return 0 if right == total else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
