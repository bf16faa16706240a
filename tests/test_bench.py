"""The benchmark harness runs (tiny counts): it cannot rot. No timing is asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    names = " | ".join(r["name"] for r in rows)
    for expected in ("import time", "sequential generate_sync: openai", "stream 200 chunks: ollama",
                     "first chunk", "pool of 2", "200-message conversation", "vs urllib3", "vs a raw socket",
                     "FallbackChain", "p99 with hedging", "RedisState", "sequential calls: mirror-providers",
                     "beside 20 open streams", "RSS per open stream", "ProviderPool of 50, 128 threads",
                     "selector-read streams (control)"):
        assert expected in names
    assert all(r["ours"] >= 0 and r["baseline"] >= 0 for r in rows)
    assert "benchmark" in proc.stdout and "ratio" in proc.stdout


def test_stream_cpu_quick_runs_both_ways() -> None:
    for extra in ([], ["--threads"]):
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "stream_cpu.py"), "20", "--quick", *extra],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        threads = int(proc.stdout.split(", ")[-1].split()[0])
        assert "20 streams:" in proc.stdout and "us CPU per event" in proc.stdout
        assert (threads >= 20) == bool(extra)  # a thread per stream only when a hook keeps them there
