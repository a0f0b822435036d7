"""How fast the command line answers: `callcause explain`, daemon start-up, SIGHUP reload.

Run: python bench/startup.py [--runs 7]

Three figures, each the median of `--runs` wall-clock measurements of the real installed
command in a fresh process:

* explain  -- `callcause explain 486` from exec to exit (goal: under 0.3 s);
* start-up -- `callcause run -c FILE` from exec until the configured Asterisk source's TCP
  connection reaches a listener of this script (goal: under 0.5 s);
* reload   -- SIGHUP to the running daemon until it logs that the overrides were reloaded
  (goal: under 0.2 s), with the commented example overrides file of the project.

The baseline, measured in the same run, is a bare `python -c pass`: the interpreter's own
start-up, which no change to callcause can remove. Each figure is printed with its ratio to it.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"explain": 0.3, "start-up": 0.5, "reload": 0.2}


def _command() -> list[str]:
    exe = shutil.which("callcause", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "callcause.cli"]


def time_baseline() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def time_explain() -> float:
    start = time.perf_counter()
    subprocess.run([*_command(), "explain", "486"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _config(directory: Path, port: int) -> Path:
    overrides = directory / "overrides.yaml"
    shutil.copy(ROOT / "config" / "overrides.yaml", overrides)
    path = directory / "callcause.yaml"
    path.write_text(f"""
language: en
sources:
  - name: bench
    kind: asterisk
    host: 127.0.0.1
    port: {port}
    username: bench
    secret: bench
mapping:
  overrides: {overrides}
sinks:
  - kind: log
    path: {directory / "records.jsonl"}
    stdout: off
""", encoding="utf-8")
    return path


def _wait_line(proc: subprocess.Popen, needle: str, timeout: float = 20.0) -> float:
    """Read the daemon's stderr until a line holds `needle`; returns when it was read."""
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            continue
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        if needle.encode() in buf:
            return time.perf_counter()
    raise RuntimeError(f"the daemon never logged {needle!r}; its stderr:\n{buf.decode(errors='replace')}")


def time_daemon() -> tuple[float, float]:
    """(exec to first connection attempt, SIGHUP to `overrides reloaded`) of one daemon."""
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        cfg = _config(Path(tmp), listener.getsockname()[1])
        start = time.perf_counter()
        proc = subprocess.Popen([*_command(), "run", "-c", str(cfg)], stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        try:
            listener.settimeout(20)
            conn, _ = listener.accept()
            startup = time.perf_counter() - start
            _wait_line(proc, "callcause running")
            hup = time.perf_counter()
            proc.send_signal(signal.SIGHUP)
            reload = _wait_line(proc, "overrides reloaded") - hup
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return startup, reload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"baseline": [], "explain": [], "start-up": [], "reload": []}
    for _ in range(args.runs):
        samples["baseline"].append(time_baseline())
        samples["explain"].append(time_explain())
        startup, reload = time_daemon()
        samples["start-up"].append(startup)
        samples["reload"].append(reload)
    base = statistics.median(samples["baseline"])
    print(f"{'':10} {'median s':>9} {'min s':>7} {'x python':>9} {'goal s':>7}")
    failed = False
    for name, values in samples.items():
        med = statistics.median(values)
        goal = GOALS.get(name)
        mark = "" if goal is None else (" ok" if med < goal else " OVER")
        failed |= goal is not None and med >= goal
        print(f"{name:10} {med:9.3f} {min(values):7.3f} {med / base:9.1f} "
              f"{goal if goal is not None else '':>7}{mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
