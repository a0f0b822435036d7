"""Seeded fuzzing of both sources through a real `callcause run` over 127.0.0.1.

Run: python bench/fuzz.py [--protocol ami|esl|both] [--frames 100000] [--seed N]

For each protocol: frames taken from the real captures (tests/fixtures/ami, tests/fixtures/esl)
are mutated (flipped bytes, truncations, duplicated headers, huge values, NUL/CR/LF and
invalid UTF-8, garbage and non-ASCII numbers, absurd times, a lost blank line, garbage
frames; for ESL also wrong Content-Lengths), real calls from the same captures with fresh
ids are interleaved between them, and the byte stream goes in random chunk sizes to a real
daemon (the AMI and ESL simulators serve it). A clean control run with only the real calls
says which records they give. The run passes when the daemon is alive at the end, logged no
traceback and no source death, recorded every real leg of the control run exactly once, and
its peak RSS stayed under `--max-rss-mb` (printed beside the control run's peak, the baseline).
Every figure is printed with the seed, so a failure replays with `--seed`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from callcause.connectors.simulator.ami import AmiSimulator, IdSource, Scenario, load_frames
from callcause.connectors.simulator.esl import (
    EslServer,
    event_frame,
    event_frames,
    event_name,
    frame_body,
    load_capture,
    plain_headers,
    with_fresh_ids,
)

ROOT = Path(__file__).resolve().parent.parent
AMI_DIR = ROOT / "tests" / "fixtures" / "ami"
ESL_DIR = ROOT / "tests" / "fixtures" / "esl"
SECRET = "fuzz-secret"
PASSWORD = "fuzz-password"

# Values a broken or hostile peer puts where a number belongs.
GARBAGE_NUMBERS = ["²", "²²²", "٣٤", "-1", "+17", "1_000", "1e400", "nan", "inf", "0x1F", "",
                   "9" * 40, "17 ", " 486", "4\x0086", "１７", "486.5", "99999999999999999999"]
ABSURD_TIMES_AMI = ["99999999999.0", "1e300", "-5", "253402300800", "0.0", "nan"]
ABSURD_TIMES_ESL = ["99999999999999999999", "9" * 17, "0", "-1", "1e30", "²"]
AMI_NUMBERS = ("Cause", "TechCause", "ChannelState", "BillableSeconds", "Timestamp", "Duration", "Reason")
ESL_NUMBERS = ("variable_hangup_cause_q850", "variable_sip_term_status", "variable_duration",
               "variable_billsec", "variable_mduration", "variable_billmsec",
               "variable_sip_invite_failure_status", "Event-Date-Timestamp",
               "variable_proto_specific_hangup_cause", "Caller-Channel-Answered-Time",
               "variable_sip_reason")
REASON_KEYS = (b"Reason", b"variable_sip_reason")   # a Reason header: the number is its cause=


@dataclass
class Result:
    protocol: str
    seed: int
    frames: int
    real_calls: int
    expected_legs: int
    recorded: int = 0
    missing: int = 0
    duplicated: int = 0
    tracebacks: int = 0
    source_deaths: int = 0
    logins: int = 0
    max_rss_mb: float = 0.0
    control_rss_mb: float = 0.0     # peak RSS of the clean control run: the baseline
    alive: bool = False
    exit_code: int | None = None
    seconds: float = 0.0
    problems: Counter[str] = field(default_factory=Counter)
    stderr_tail: str = ""
    missing_ids: list[str] = field(default_factory=list)

    def failures(self, max_rss_mb: float) -> list[str]:
        out = []
        if not self.alive:
            out.append("the daemon died")
        if self.exit_code not in (0, None):
            out.append(f"the daemon exited {self.exit_code} on SIGTERM")
        if self.tracebacks:
            out.append(f"{self.tracebacks} traceback(s)")
        if self.source_deaths:
            out.append(f"{self.source_deaths} source death(s)")
        if self.missing:
            out.append(f"{self.missing} real leg(s) not recorded")
        if self.duplicated:
            out.append(f"{self.duplicated} real leg(s) recorded more than once")
        if self.max_rss_mb > max_rss_mb:
            out.append(f"peak RSS {self.max_rss_mb:.0f} MB over {max_rss_mb:.0f} MB")
        return out

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in self.problems.most_common(12))
        return (f"{self.protocol}: seed {self.seed}, {self.frames} mutated frames, {self.real_calls} real calls "
                f"({self.expected_legs} legs in the control run); real legs recorded exactly once "
                f"{self.expected_legs - self.missing - self.duplicated}/{self.expected_legs} (missing "
                f"{self.missing}, duplicated {self.duplicated}), records in all {self.recorded}; tracebacks "
                f"{self.tracebacks}, source deaths {self.source_deaths}, logins {self.logins}, max RSS "
                f"{self.max_rss_mb:.1f} MB (control run {self.control_rss_mb:.1f} MB), "
                f"daemon alive {self.alive}, {self.seconds:.1f} s"
                + (f"; problems counted (callcause_malformed_input_total): {kinds}" if kinds else ""))


# --- mutations -------------------------------------------------------------------------------

def _lines_mutation(rng: random.Random, lines: list[bytes], numbers: tuple[str, ...], sep: bytes,
                    absurd: list[str], time_key: str) -> list[bytes]:
    kind = rng.randrange(6)
    if kind == 0 and len(lines) > 1:                      # duplicate a header
        i = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines)), lines[i])
    elif kind == 1:                                       # garbage where a number belongs
        name = rng.choice(numbers).encode()
        value = rng.choice(GARBAGE_NUMBERS).encode()
        if name in REASON_KEYS:
            value = b"Q.850;cause=" + value + b';text="x"'
        if name == b"TechCause" and rng.random() < 0.5:
            value = b"SIP " + value + b" Busy Here"
        hit = [i for i, ln in enumerate(lines) if ln.startswith(name + sep)]
        if hit:
            lines[rng.choice(hit)] = name + sep + value
        else:
            lines.insert(rng.randrange(1, len(lines) + 1), name + sep + value)
    elif kind == 2:                                       # an absurd time
        key = time_key.encode()
        hit = [i for i, ln in enumerate(lines) if ln.startswith(key + sep)]
        new = key + sep + rng.choice(absurd).encode()
        if hit:
            lines[hit[0]] = new
        else:
            lines.insert(rng.randrange(1, len(lines) + 1), new)
    elif kind == 3:                                       # a huge value
        i = rng.randrange(len(lines))
        size = rng.choice((1000, 20_000, 300_000, 1_500_000 if rng.random() < 0.02 else 50_000))
        lines[i] = lines[i] + bytes(rng.choice(b"ab9%Z ") for _ in range(64)) * (size // 64)
    elif kind == 4:                                       # NUL, lone CR/LF, invalid UTF-8
        i = rng.randrange(len(lines))
        junk = rng.choice((b"\x00", b"\r", b"\n", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"%", b"%G1", b"%0A"))
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + junk + lines[i][pos:]
    else:                                                 # drop a header
        if len(lines) > 1:
            del lines[rng.randrange(len(lines))]
    return lines


def _flip(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf)


def _bytes_mutation(rng: random.Random, roll: float, data: bytes) -> bytes | None:
    """Flipped bytes, a truncation or plain garbage; None for the other mutations."""
    if roll < 0.15:
        return _flip(rng, data)
    if roll < 0.25:
        return data[:rng.randrange(1, len(data) + 1)]
    if roll < 0.28:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    return None


def mutate_ami(rng: random.Random, frame: bytes) -> bytes:
    """One mutated AMI frame, with its terminator (or, on purpose, without its blank line)."""
    roll = rng.random()
    body = _bytes_mutation(rng, roll, frame)
    if body is None:
        lines = frame.split(b"\r\n")
        body = b"\r\n".join(_lines_mutation(rng, lines, AMI_NUMBERS, b": ", ABSURD_TIMES_AMI, "Timestamp"))
    body = body.replace(b"\r\n\r\n", b"\r\n")   # a blank line is a frame end: keep one, at the end
    if rng.random() < 0.05 and len(body) < 100_000:
        return body + b"\r\n"                     # the blank line lost: the next frame follows
    return body + b"\r\n\r\n"


def mutate_esl(rng: random.Random, frame: bytes) -> bytes:
    """One mutated ESL event frame (its Content-Length usually fitting the mutated body)."""
    body = frame_body(frame)
    roll = rng.random()
    mutated = _bytes_mutation(rng, roll, body)
    if mutated is not None:
        body = mutated
    elif roll < 0.31:
        # the same event as text/event-json, a JSON escape giving a lone surrogate in a value
        headers = plain_headers(body)
        if headers:
            key = rng.choice(sorted(headers))
            headers[key] += rng.choice(("\ud800", "\udcff", "\ud83d"))
        return event_frame(json.dumps(headers).encode(), "text/event-json")
    elif roll < 0.34:
        # a Content-Length that does not fit the body: shorter, or running into the next frame
        framed = event_frame(body)
        length = len(body) + rng.choice((-40, -1, 1, 40, 400))
        return framed.replace(b"Content-Length: %d\n" % len(body), b"Content-Length: %d\n" % max(0, length), 1)
    else:
        head, sep, rest = body.partition(b"\n\n")
        lines = head.split(b"\n")
        body = b"\n".join(_lines_mutation(rng, lines, ESL_NUMBERS, b": ", ABSURD_TIMES_ESL,
                                          "Event-Date-Timestamp")) + sep + rest
    if not body.endswith(b"\n"):
        body += b"\n"
    return event_frame(body)


# --- streams ---------------------------------------------------------------------------------

def _interleave(rng: random.Random, mutated: list[bytes], calls: list[list[bytes]]) -> list[bytes]:
    """Real calls' frames in their order, mutated frames at random places between them."""
    real = [f for call in calls for f in call]
    slots = sorted(rng.randrange(len(real) + 1) for _ in mutated)
    out: list[bytes] = []
    it = iter(mutated)
    j = 0
    for i, frame in enumerate(real):
        while j < len(slots) and slots[j] <= i:
            out.append(next(it))
            j += 1
        out.append(frame)
    out.extend(it)
    return out


def ami_streams(seed: int, frames: int, calls: int) -> tuple[list[bytes], list[bytes]]:
    """(control stream, fuzz stream) of raw AMI bytes, one item per frame."""
    rng = random.Random(seed)
    files = sorted(AMI_DIR.glob("*.txt"))
    pool = [f.encode() for p in files for f in load_frames(p)]
    full_calls = [Scenario.load(p) for p in files if p.name.startswith("asterisk-")]
    ids = IdSource(epoch=1_900_000_000 + seed % 1_000_000)
    ids._seq = itertools.count(0x10000000)   # channel names apart from the captures' own
    real = [[(f + "\r\n\r\n").encode() for f in full_calls[i % len(full_calls)].render(ids)]
            for i in range(calls)]
    mutated = [mutate_ami(rng, rng.choice(pool)) for _ in range(frames)]
    return [f for call in real for f in call], _interleave(rng, mutated, real)


def esl_streams(seed: int, frames: int, calls: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    files = sorted(ESL_DIR.glob("*.txt"))
    pool = [f for p in files for f in event_frames(load_capture(p))
            if event_name(f) in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_HANGUP")]
    full = [event_frames(load_capture(p)) for p in files
            if p.name.startswith("freeswitch-") or p.name.startswith("built-")]
    full = [f for f in full if f]
    real = [with_fresh_ids(full[i % len(full)]) for i in range(calls)]
    mutated = [mutate_esl(rng, rng.choice(pool)) for _ in range(frames)]
    return [f for call in real for f in call], _interleave(rng, mutated, real)


def chunks(rng: random.Random, stream: list[bytes]) -> list[bytes]:
    """The byte stream cut at random places: from single bytes to 64 KiB pieces."""
    data = b"".join(stream)
    out, pos = [], 0
    while pos < len(data):
        size = rng.choice((1, 7, 100, 1500, 4096, 16384, 65536))
        out.append(data[pos:pos + size])
        pos += size
    return out


# --- the daemon ------------------------------------------------------------------------------

def _config(directory: Path, protocol: str, port: int) -> Path:
    if protocol == "ami":
        source = f"""  - name: fuzz
    kind: asterisk
    host: 127.0.0.1
    port: {port}
    username: callcause
    secret: {SECRET}
    hangup_grace: 0.2
    ping_interval: 30
    reconnect_min: 0.05
"""
    else:
        source = f"""  - name: fuzz
    kind: freeswitch
    host: 127.0.0.1
    port: {port}
    password: {PASSWORD}
    complete_wait: 1
    internal_leg_wait: 0.5
    reconnect_min: 0.05
"""
    path = directory / "callcause.yaml"
    path.write_text(f"""language: en
metrics:
  listen: 127.0.0.1:{_free_port()}
sources:
{source}sinks:
  - kind: log
    path: {directory / "records.jsonl"}
    stdout: off
""", encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _problem_counts(config: Path) -> Counter[str]:
    """`callcause_malformed_input_total` by kind, scraped from the daemon's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    port = int(config.read_text().split("listen: 127.0.0.1:", 1)[1].split()[0])
    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name == "callcause_malformed_input":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        counts[sample.labels["kind"]] += int(sample.value)
    return counts


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Daemon:
    def __init__(self, directory: Path, protocol: str, port: int) -> None:
        self.directory = directory
        self.stderr = open(directory / "stderr.log", "wb")   # noqa: SIM115 (closed in stop)
        cmd = [sys.executable, "-m", "callcause.cli", "run", "-c", str(_config(directory, protocol, port))]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.problems: Counter[str] = Counter()

    @property
    def records(self) -> list[dict]:
        return _records(self.directory / "records.jsonl")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.stderr.close()
        return code

    def log(self) -> str:
        return (self.directory / "stderr.log").read_bytes().decode("utf-8", "replace")


async def _wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.1)
    return pred()


async def _run_ami(directory: Path, stream: list[bytes], rng: random.Random,
                   expect: set[str] | None) -> tuple[_Daemon, int, float, bool]:
    async with AmiSimulator(secret=SECRET) as sim:
        daemon = _Daemon(directory, "ami", sim.port)
        await sim.wait_logins(1, timeout=30)
        await asyncio.sleep(0.3)          # login, filters, CoreSettings: the source is reading
        for piece in chunks(rng, stream):
            try:
                await sim.send_raw(piece)
            except ConnectionError:
                await asyncio.sleep(0.5)    # the daemon dropped the connection: it logs why
                await sim.wait_logins(sim.logins + 1, timeout=30)
        await _legs_seen(daemon, expect)
        daemon.problems = _problem_counts(daemon.directory / "callcause.yaml")
        return daemon, sim.logins, _peak_rss_mb(daemon.proc.pid), daemon.proc.poll() is None


async def _legs_seen(daemon: _Daemon, expect: set[str] | None) -> None:
    """Until every expected leg is in the file (or the records stop growing, for the control)."""
    if expect is not None:
        await _wait_for(lambda: expect <= {r["call"]["leg_id"] for r in daemon.records}, 60)
        return
    last = -1
    while True:
        await asyncio.sleep(1.5)
        now = len(daemon.records)
        if now == last:
            return
        last = now


async def _run_esl(directory: Path, stream: list[bytes], rng: random.Random,
                   expect: set[str] | None) -> tuple[_Daemon, int, float, bool]:
    with EslServer(PASSWORD) as server:
        daemon = _Daemon(directory, "esl", server.port)
        if not await server.subscribed(1, timeout=30):
            raise RuntimeError("the daemon did not subscribe to the ESL simulator")
        for piece in chunks(rng, stream):
            server.send_raw(piece)
        await _legs_seen(daemon, expect)
        daemon.problems = _problem_counts(daemon.directory / "callcause.yaml")
        return daemon, server.logins, _peak_rss_mb(daemon.proc.pid), daemon.proc.poll() is None


async def run_one(protocol: str, seed: int, frames: int, calls: int | None = None) -> Result:
    calls = calls if calls is not None else max(20, frames // 500)
    control, fuzz = (ami_streams if protocol == "ami" else esl_streams)(seed, frames, calls)
    runner = _run_ami if protocol == "ami" else _run_esl
    with tempfile.TemporaryDirectory(prefix="callcause-fuzz-") as tmp:
        base = Path(tmp)
        (base / "control").mkdir()
        (base / "fuzz").mkdir()
        daemon, _, control_rss, _ = await runner(base / "control", control, random.Random(seed), None)
        daemon.stop()
        expected = {r["call"]["leg_id"] for r in daemon.records}
        result = Result(protocol, seed, frames, calls, len(expected), control_rss_mb=control_rss)
        start = time.monotonic()
        daemon, logins, rss, alive = await runner(base / "fuzz", fuzz, random.Random(seed + 1), expected)
        result.exit_code = daemon.stop()
        result.seconds = time.monotonic() - start
        got = Counter(r["call"]["leg_id"] for r in daemon.records)
        log = daemon.log()
    result.recorded = sum(got.values())
    result.missing_ids = sorted(leg for leg in expected if got[leg] == 0)
    result.missing = len(result.missing_ids)
    result.duplicated = sum(1 for leg in expected if got[leg] > 1)
    result.tracebacks = log.count("Traceback (most recent call last)")
    result.source_deaths = log.count("stopped unexpectedly")
    result.logins, result.max_rss_mb, result.alive = logins, rss, alive
    result.problems = daemon.problems
    result.stderr_tail = "\n".join(log.splitlines()[-15:])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("ami", "esl", "both"), default="both")
    parser.add_argument("--frames", type=int, default=100_000, help="mutated frames per protocol")
    parser.add_argument("--calls", type=int, default=None, help="real calls (default frames/500, at least 20)")
    parser.add_argument("--seed", type=int, default=None)
    # the fuzzed ESL run peaks near 90 MB; a decode memory that kept megabyte values once took it to 700
    parser.add_argument("--max-rss-mb", type=float, default=256.0, help="fail above this peak RSS")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"seed {seed}", flush=True)
    failed = False
    for protocol in (("ami", "esl") if args.protocol == "both" else (args.protocol,)):
        result = asyncio.run(run_one(protocol, seed, args.frames, args.calls))
        print(result.line(), flush=True)
        problems = result.failures(args.max_rss_mb)
        if problems:
            failed = True
            print(f"  FAILED: {'; '.join(problems)}; missing legs: {result.missing_ids[:10]}\n"
                  f"  daemon log tail:\n{result.stderr_tail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
