"""`callcause report` over a million records: time, peak memory (RSS) and the size of the file.

The records are the report fixture's real legs (replayed captures, with their texts) spread
over 4 sources x 50 trunks x 2 directions and 7 days, called numbers drawn from 200,000 E.164
numbers of six countries, written to a JSON Lines file first (about 1.5 GB). The report covers
the last 3.5 days against the 3.5 days before. The baseline, measured in the same run, is the
least any report must do: read the file and parse every line as JSON.

    python bench/report.py [--records 1000000] [--keep FILE] [--gzip]

Goals (issue 13): under 60 s, RSS under 500 MB, HTML under 3 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "report" / "records.jsonl"
START = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
SPAN = 7 * 86400
COUNTRIES = ["+4930", "+49151", "+4420", "+447700", "+33 1", "+1212", "+3906", "+79161"]


def templates() -> list[str]:
    """The fixture's legs as JSON text with placeholders for what varies per record."""
    out = []
    for line in FIXTURE.read_text().splitlines():
        doc = json.loads(line)
        if doc.get("type") != "call.hangup" or doc["call"].get("internal"):
            continue
        doc.update(id="@ID@", time="@TIME@")
        doc["source"]["name"] = "@SOURCE@"
        doc["call"].update(trunk="@TRUNK@", to="@TO@", direction="@DIR@")
        out.append(json.dumps(doc, ensure_ascii=False))
    return out


def generate(path: Path, count: int, seed: int = 13) -> None:
    rnd = random.Random(seed)
    tpl = templates()
    # answered legs dominate real traffic: weight them like a healthy trunk (about 55 % ASR)
    answered = [t for t in tpl if '"category": "answered"' in t]
    weights = [(len(tpl) * 1.3 if t in answered else 1.0) for t in tpl]
    numbers = [rnd.choice(COUNTRIES).replace(" ", "") + str(rnd.randint(1_000_000, 9_999_999))
               for _ in range(200_000)]
    sources = [f"pbx-{i}" for i in range(4)]
    trunks = [f"carrier-{i:02d}" for i in range(50)]
    picks = rnd.choices(tpl, weights=weights, k=count)
    with path.open("w", encoding="utf-8") as fh:
        for i, text in enumerate(picks):
            when = START + SPAN * i / count
            stamp = datetime.fromtimestamp(when, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            fh.write(text.replace("@ID@", f"cc_{i:012d}").replace("@TIME@", stamp)
                     .replace("@SOURCE@", sources[i % 4]).replace("@TRUNK@", trunks[rnd.randrange(50)])
                     .replace("@TO@", numbers[rnd.randrange(200_000)])
                     .replace("@DIR@", "outbound" if i % 5 else "inbound") + "\n")


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the baseline (smaller) first
    return elapsed, max(peak, before) * 1024


BASELINE = "import json,sys\nn=0\nfor line in open(sys.argv[1],'rb'):\n    json.loads(line); n+=1\nprint(n)\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keep", default=None, help="write the records here and keep them")
    ap.add_argument("--gzip", action="store_true",
                    help="also time the report over the file gzipped (as logrotate leaves it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(args.keep) if args.keep else Path(tmp) / "records.jsonl"
        t0 = time.perf_counter()
        if not records.exists():
            generate(records, args.records)
        print(f"records: {args.records:,} in {records.stat().st_size / 1e9:.2f} GB "
              f"(generated in {time.perf_counter() - t0:.0f} s)")
        base_s, _ = run([sys.executable, "-c", BASELINE, str(records)])
        out = Path(tmp) / "report.html"
        since = datetime.fromtimestamp(START + SPAN / 2, tz=UTC).strftime("%Y-%m-%dT%H:%M")
        until = datetime.fromtimestamp(START + SPAN, tz=UTC).strftime("%Y-%m-%dT%H:%M")
        rep_s, rep_rss = run([sys.executable, "-m", "callcause.cli", "report", str(records), "-o", str(out),
                              "--since", since, "--until", until])
        size = out.stat().st_size
        if args.gzip:
            gz = Path(tmp) / "records.jsonl.gz"
            subprocess.run(f"gzip -1 -c {records} > {gz}", shell=True, check=True)
            gz_s, gz_rss = run([sys.executable, "-m", "callcause.cli", "report", str(gz), "-o", str(out),
                                "--since", since, "--until", until])
            print(f"callcause report, gzipped ({gz.stat().st_size / 1e6:.0f} MB): {gz_s:6.1f} s  "
                  f"{args.records / gz_s:10,.0f} records/s  peak RSS {gz_rss / 2**20:.0f} MB")
        print(f"baseline (read + json.loads every line): {base_s:6.1f} s  {args.records / base_s:10,.0f} records/s")
        print(f"callcause report:                        {rep_s:6.1f} s  {args.records / rep_s:10,.0f} records/s  "
              f"{rep_s / base_s:.2f}x baseline")
        print(f"peak RSS: {rep_rss / 2**20:.0f} MB (goal < 500)   HTML: {size / 2**20:.2f} MB (goal < 3)   "
              f"time goal < 60 s: {'met' if rep_s < 60 else 'MISSED'}")
        if os.environ.get("REPORT_BENCH_HTML"):
            out.replace(os.environ["REPORT_BENCH_HTML"])


if __name__ == "__main__":
    main()
