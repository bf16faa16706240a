"""Benchmarks: what mirror-providers costs over raw HTTP, as ratios measured in one run.

    python bench/run.py                 # everything, printed as one table
    python bench/run.py --json out.json # and the numbers, for comparing commits
    python bench/run.py --quick         # tiny counts (the test suite runs this so it cannot rot)

Every benchmark runs its baseline in the same run against the same loopback server (a separate
process, see bench/server.py), repeats, and reports medians. Peers (the official openai and
anthropic SDKs, litellm) are measured when installed: pip install -r bench/requirements.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from many_streams import PoolFull, bench_many_streams  # noqa: E402  (bench/ is the script's own directory)
from pool_scale import bench_pool_scale  # noqa: E402

from mirror_providers import set_max_workers  # noqa: E402
from mirror_providers.anthropic import AnthropicProvider  # noqa: E402
from mirror_providers.framing import ServerSentEvent, iter_json_lines, iter_sse  # noqa: E402
from mirror_providers.local import OllamaProvider  # noqa: E402
from mirror_providers.models import ModelDeprecatedWarning  # noqa: E402
from mirror_providers.openai import OpenAIProvider  # noqa: E402
from mirror_providers.pooling import FallbackChain, ProviderPool  # noqa: E402
from mirror_providers.provider import Provider  # noqa: E402
from mirror_providers.transport import HttpRequest, RequestsTransport  # noqa: E402

# The rows keep the model ids their earlier runs used (the wire bodies stay comparable); that some
# are now retired is the catalog's news, not the bench's.
warnings.filterwarnings("ignore", category=ModelDeprecatedWarning)

PATHS = {"openai": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages",
         "ollama": "/api/chat"}
KEY = "sk-bench-key"


@dataclass
class Row:
    name: str
    baseline: float
    ours: float
    unit: str
    ratio: float
    target: str
    ok: bool | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- the server --------------------------------------------------------------------------------

def start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "server.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready "):
        raise SystemExit(f"bench server did not start: {line!r}")
    return proc, int(line.split()[1])


def connections(port: int) -> int:
    return int(requests.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()["connections"])


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make(vendor: str, port: int, **kw: Any) -> Provider:
    url = f"http://127.0.0.1:{port}"
    if vendor == "openai":
        return OpenAIProvider(model="gpt-4o-mini", base_url=url + "/v1", api_key=KEY, **kw)
    if vendor == "responses":
        return OpenAIProvider(model="gpt-6-luna", base_url=url + "/v1", api_key=KEY, api="responses", **kw)
    if vendor == "anthropic":
        return AnthropicProvider(model="claude-sonnet-4-5", base_url=url, api_key=KEY, **kw)
    return OllamaProvider("llama3.1", url, **kw)


def baseline_payload(vendor: str, stream: bool) -> dict[str, Any]:
    if vendor == "responses":
        return {"model": "m", "input": [{"role": "user", "content": "hi"}], "store": False, "stream": stream}
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if vendor == "anthropic":
        body["max_tokens"] = 1024
    return body


def median_of(reps: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(reps))


def medians(reps: int, *fns: Callable[[], float]) -> list[float]:
    """Each function's median over ``reps`` rounds, the functions taking turns within a round: a
    machine that gets busier or quieter during the run moves the baseline and ours alike."""
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for out, fn in zip(runs, fns, strict=True):
            out.append(fn())
    return [statistics.median(r) for r in runs]


# -- 1. import cost ------------------------------------------------------------------------------

BUILD = ("import mirror_providers.openai; "
         "mirror_providers.openai.OpenAIProvider(api_key='sk-x', model=mirror_providers.openai.OpenAIProvider.DEFAULT_MODEL)")
REQUESTS_SESSION = "import requests; requests.Session()"
# A child's peak RSS in KiB. Not ru_maxrss on Linux: it survives execve, so a child spawned by this
# (bigger) process would report the parent's peak. VmHWM is the peak of the child's own memory.
PEAK_RSS_KIB = ("next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) "
                "if __import__('sys').platform == 'linux' else "
                "__import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss "
                "// (1024 if __import__('sys').platform == 'darwin' else 1)")


def fresh_interpreters(codes: dict[str, str], reps: int) -> dict[str, tuple[float, float, float]]:
    """Each snippet run ``reps`` times in a fresh interpreter, the snippets taking turns (so a load
    spike on the machine hits them alike): median wall seconds, peak RSS (MB), CPU seconds.

    Bytecode is compiled once into a cache of this run's own (``PYTHONPYCACHEPREFIX``), by a
    warm-up run of each snippet, for both sides: an installed package has its ``.pyc`` files, and
    with ``PYTHONDONTWRITEBYTECODE`` set a source checkout would be compiled on every run while
    site-packages were not.
    """
    tail = f"; print({PEAK_RSS_KIB})"
    samples: dict[str, tuple[list[float], list[float], list[float]]] = {name: ([], [], []) for name in codes}
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for rep in range(reps + 1):
            for name, code in codes.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", code + tail], capture_output=True, text=True, check=True,
                                     cwd=ROOT, env=env).stdout
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if rep:  # run 0 compiled the bytecode
                    samples[name][0].append(wall)
                    samples[name][1].append(int(out.split()[-1]) / 1024)
                    samples[name][2].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {name: (statistics.median(t), statistics.median(m), statistics.median(c)) for name, (t, m, c) in
            samples.items()}


def bench_import(reps: int) -> list[Row]:
    got = fresh_interpreters({"requests": "import requests", "package": "import mirror_providers",
                              "session": REQUESTS_SESSION, "build": BUILD,
                              "build+requests": f"{BUILD}; {REQUESTS_SESSION}"}, reps)
    base_t, base_m, _ = got["requests"]
    ours_t, ours_m, _ = got["package"]
    sess_t, sess_m, sess_c = got["session"]
    prov_t, prov_m, prov_c = got["build"]
    both_t, both_m, both_c = got["build+requests"]
    return [
        Row("import time: import mirror_providers", base_t * 1000, ours_t * 1000, "ms", ours_t / base_t, "<= 1.15x",
            ours_t / base_t <= 1.15, "baseline: import requests"),
        Row("import peak RSS: import mirror_providers", base_m, ours_m, "MB", ours_m - base_m, "<= +3 MB",
            ours_m - base_m <= 3, "ratio column: MB over baseline"),
        Row("import time: openai provider, imported and built", sess_t * 1000, prov_t * 1000, "ms",
            prov_t / sess_t, "<= 1.0x", prov_t / sess_t <= 1.0,
            f"baseline: {REQUESTS_SESSION}; fresh interpreters, median of {reps}; "
            f"CPU {prov_c * 1000:.1f} vs {sess_c * 1000:.1f} ms ({prov_c / sess_c:.3f}x)"),
        Row("import peak RSS: openai provider, imported and built", sess_m, prov_m, "MB", prov_m - sess_m,
            "<= +1 MB", prov_m - sess_m <= 1, f"ratio column: MB over baseline ({REQUESTS_SESSION})"),
        Row("import time: openai provider built, then requests (info)", sess_t * 1000, both_t * 1000, "ms",
            both_t / sess_t, "-", None,
            f"what a process that calls pays before its first request: the build row plus requests, which "
            f"RequestsTransport imports on first use; CPU {both_c / sess_c:.3f}x, RSS {both_m - sess_m:+.1f} MB"),
    ]


# -- 2. sequential calls -------------------------------------------------------------------------

def bench_sequential(port: int, n: int, reps: int) -> list[Row]:
    """Per call against a bare ``requests.Session`` (which re-reads the environment's proxy and
    CA settings on every call; the library reads them once per URL) and against raw urllib3."""
    rows = []
    for vendor, path in PATHS.items():
        url = f"http://127.0.0.1:{port}{path}"
        body = json.dumps(baseline_payload(vendor, False))
        session = requests.Session()
        manager = urllib3.PoolManager()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}

        def baseline() -> float:
            start = time.perf_counter()
            for _ in range(n):
                session.post(url, data=body, headers=headers).json()
            return (time.perf_counter() - start) / n

        def raw() -> float:
            start = time.perf_counter()
            for _ in range(n):
                json.loads(manager.request("POST", url, body=body, headers=headers).data)
            return (time.perf_counter() - start) / n

        provider = make(vendor, port)

        def ours() -> float:
            start = time.perf_counter()
            for _ in range(n):
                provider.generate_sync("hi")
            return (time.perf_counter() - start) / n

        baseline(), raw(), ours()  # warm up connections and caches
        b, r, o = medians(reps, baseline, raw, ours)
        rows.append(Row(f"{n} sequential generate_sync: {vendor}", b * 1e6, o * 1e6, "us/req", o / b, "<= 0.85x",
                        o / b <= 0.85, "baseline: bare requests.Session + json"))
        rows.append(Row(f"{n} sequential generate_sync: {vendor} vs urllib3", r * 1e6, o * 1e6, "us/req", o / r, "-",
                        None, "baseline: raw urllib3 PoolManager + json.loads"))
    return rows


def conversation(turns: int) -> list[dict[str, str]]:
    """A conversation of ``turns`` plain messages ending on the user's turn, as callers keep one."""
    messages = []
    for i in range(turns // 2):
        messages.append({"role": "user", "content": f"question {i}: what is the weather like in city number {i}?"})
        messages.append({"role": "assistant", "content": f"answer {i}: sunny and warm, about twenty degrees."})
    return [*messages, {"role": "user", "content": "and tomorrow?"}][-turns:]


def bench_conversation(port: int, n: int, turns: int, reps: int) -> list[Row]:
    """Per call with a long history: the library builds and checks every message each call, the
    baseline posts ``json.dumps`` of the same body the library sends."""
    rows = []
    messages = conversation(turns)
    for vendor in ("openai", "anthropic"):
        url = f"http://127.0.0.1:{port}{PATHS[vendor]}"
        payload = baseline_payload(vendor, False)
        payload["messages"] = messages
        session = requests.Session()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        provider = make(vendor, port)

        def baseline() -> float:
            start = time.perf_counter()
            for _ in range(n):
                session.post(url, data=json.dumps(payload), headers=headers).json()
            return (time.perf_counter() - start) / n

        def ours() -> float:
            start = time.perf_counter()
            for _ in range(n):
                provider.generate_sync(messages)
            return (time.perf_counter() - start) / n

        baseline(), ours()
        b, o = medians(reps, baseline, ours)
        rows.append(Row(f"a {turns}-message conversation per call: {vendor}", b * 1e6, o * 1e6, "us/req", o / b,
                        "<= 1.1x", o / b <= 1.1,
                        f"baseline: requests posting json.dumps of the same body; "
                        f"{(o - b) / turns * 1e6:.2f} us per message over it"))
    return rows


def bench_hooks(port: int, n: int, reps: int) -> list[Row]:
    """What hooks cost: the same calls with none registered (the baseline here) and with a hook
    that takes every event. With none, the library builds nothing (the sequential rows show the
    whole cost against bare requests)."""

    class Quiet:
        def on_request(self, event: Any) -> None: ...
        def on_response(self, event: Any) -> None: ...

    bare, hooked = make("openai", port), make("openai", port)
    hooked.add_hook(Quiet())

    def timed(provider: Provider) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for _ in range(n):
                provider.generate_sync("hi")
            return (time.perf_counter() - start) / n
        return run

    timed(bare)(), timed(hooked)()  # warm up
    b, o = medians(reps, timed(bare), timed(hooked))
    return [Row(f"{n} generate_sync with a hook on every event: openai", b * 1e6, o * 1e6, "us/req", o / b,
                "<= 1.05x", o / b <= 1.05, "baseline: the same provider with no hook")]


# -- 3. stream throughput ------------------------------------------------------------------------

def bench_stream(port: int, chunks: int, reps: int) -> list[Row]:
    rows = []
    for vendor, path in PATHS.items():
        url = f"http://127.0.0.1:{port}{path}"
        body = json.dumps(baseline_payload(vendor, True))
        session = requests.Session()
        headers = {"Content-Type": "application/json", "x-bench-chunks": str(chunks)}
        marker = {"anthropic": b"text_delta", "responses": b'"type":"response.output_text.delta"'}.get(vendor, b'"content"')

        def baseline() -> float:
            start = time.perf_counter()
            with session.post(url, data=body, headers=headers, stream=True) as r:
                got = sum(1 for line in r.iter_lines() if marker in line)
            assert got >= chunks, (vendor, got)
            return chunks / (time.perf_counter() - start)

        provider = make(vendor, port, headers={"x-bench-chunks": str(chunks)})

        def ours() -> float:
            start = time.perf_counter()
            got = sum(1 for c in provider.stream_sync("hi") if c.content)
            assert got == chunks, (vendor, got)
            return chunks / (time.perf_counter() - start)

        def parsing() -> float:  # what any consumer must do at least: split lines and parse the JSON
            start = time.perf_counter()
            got = 0
            with session.post(url, data=body, headers=headers, stream=True) as r:
                for line in r.iter_lines():
                    if marker in line:
                        json.loads(line[6:] if line.startswith(b"data: ") else line)
                        got += 1
            assert got >= chunks, (vendor, got)
            return chunks / (time.perf_counter() - start)

        def floor() -> float:  # a raw socket: the request written, the chunked answer read, events counted
            got = raw_socket_events(port, PATHS[vendor], body.encode(), headers, marker)
            assert got >= chunks, (vendor, got)
            return chunks / (time.perf_counter() - floor_start[0])

        floor_start = [0.0]

        def timed_floor() -> float:
            floor_start[0] = time.perf_counter()
            return floor()

        baseline(), ours(), parsing(), timed_floor()
        b, o, j, r = medians(reps, baseline, ours, parsing, timed_floor)
        rows.append(Row(f"stream {chunks} chunks: {vendor}", j, o, "chunks/s", o / j, ">= 1.0x", o / j >= 1.0,
                        f"baseline: requests + iter_lines + json.loads; bare iter_lines (parses nothing) {b:.0f}/s: "
                        f"{o / b:.2f}x", {"bare_iter_lines_per_s": b}))
        rows.append(Row(f"stream {chunks} chunks: {vendor} vs a raw socket", r, o, "chunks/s", o / r, "-", None,
                        "baseline: the floor, a socket client that reads the chunked answer and counts events"))
        rows.append(stream_cost(vendor, url, body, headers, chunks, reps, 1e6 / j, 1e6 / o))
    return rows


def raw_socket_events(port: int, path: str, body: bytes, headers: dict[str, str], marker: bytes) -> int:
    """The cheapest client of a stream: one socket, the request written by hand, the chunked
    answer read to its last chunk, events counted by their marker."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(body)}\r\n"
               f"Connection: close\r\n\r\n").encode() + body
    pieces = []
    tail = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        while True:
            piece = sock.recv(1 << 16)
            if not piece:
                break
            pieces.append(piece)
            tail = (tail + piece)[-7:]
            if tail == b"\r\n0\r\n\r\n":
                break
    return b"".join(pieces).count(marker)


def stream_cost(vendor: str, url: str, body: str, headers: dict[str, str], chunks: int, reps: int,
                baseline_us: float, ours_us: float) -> Row:
    """Where a streamed event's time goes: the library's own stages, run alone and cumulated."""
    transport = RequestsTransport()
    request = HttpRequest("POST", url, headers, body.encode())

    def stage(consume: Callable[[Iterator[bytes]], int]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            with transport.open_stream(request) as stream:
                got = consume(stream.iter_bytes())
            assert got >= chunks, (vendor, got)
            return (time.perf_counter() - start) / chunks * 1e6
        return run

    decode: Callable[[Iterator[bytes]], Iterator[Any]] = iter_json_lines if vendor == "ollama" else iter_sse
    read = stage(lambda it: sum(piece.count(b"\n") for piece in it))  # every event ends in at least one LF
    framed = stage(lambda it: sum(1 for _ in decode(it)))
    parsed = stage(framed_and_parsed(decode))
    w, f, p = medians(reps, read, framed, parsed)
    transport.close()
    return Row(f"stream cost per event: {vendor}", baseline_us, ours_us, "us/event", ours_us / baseline_us, "-", None,
               f"iter_lines + json.loads {baseline_us:.2f} us; ours: read {w:.2f} + "
               + (f"lines and JSON {p - w:.2f}" if vendor == "ollama" else f"framing {f - w:.2f} + JSON {p - f:.2f}")
               + f" + translation {ours_us - p:.2f}",
               {"read_us": w, "framed_us": f, "parsed_us": p})


def framed_and_parsed(decode: Callable[[Iterator[bytes]], Iterator[Any]]) -> Callable[[Iterator[bytes]], int]:
    def consume(it: Iterator[bytes]) -> int:
        n = 0
        for frame in decode(it):
            if isinstance(frame, ServerSentEvent) and frame.data[:1] == "{":
                frame.json()  # NDJSON frames come out of the decoder parsed
            n += 1
        return n
    return consume


# -- 4. time to first chunk ----------------------------------------------------------------------

def bench_first_chunk(port: int, reps: int) -> list[Row]:
    rows = []
    for vendor, path in PATHS.items():
        url = f"http://127.0.0.1:{port}{path}"
        body = json.dumps(baseline_payload(vendor, True))
        headers = {"Content-Type": "application/json", "x-bench-chunks": "2", "x-bench-pause-ms": "200"}
        session = requests.Session()
        stamp_at = {"anthropic": b'"text_delta","text":"', "responses": b'"delta":"'}.get(vendor, b'"content":"')

        def baseline() -> float:
            with session.post(url, data=body, headers=headers, stream=True) as r:
                buf = b""
                while stamp_at not in buf or b'"' not in buf.split(stamp_at, 1)[1]:
                    buf += r.raw.read1(65536, decode_content=True)
                arrived = time.time()
                sent = float(buf.split(stamp_at, 1)[1].split(b'"', 1)[0])
                while r.raw.read1(65536, decode_content=True):
                    pass
            return arrived - sent

        provider = make(vendor, port, headers={"x-bench-chunks": "2", "x-bench-pause-ms": "200"})

        def ours() -> float:
            for c in provider.stream_sync("hi"):
                if c.content:
                    delivered = time.time()
                    sent = float(c.content)
                    break
            return delivered - sent

        b, o = medians(reps, baseline, ours)
        rows.append(Row(f"first chunk after its bytes arrive: {vendor}", b * 1000, o * 1000, "ms", (o - b) * 1000,
                        "< 5 ms", (o - b) * 1000 < 5, "ratio column: ms added over bare arrival; server pauses 200 ms"))
    return rows


# -- 5. concurrency through a pool ---------------------------------------------------------------

def bench_pool(port: int, n: int, threads: int, delay_ms: int) -> list[Row]:
    ideal = n / threads * delay_ms / 1000
    handler = PoolFull()
    logging.getLogger("urllib3").addHandler(handler)
    headers = {"x-bench-delay-ms": str(delay_ms)}
    set_max_workers(threads)
    rows = []
    pool = ProviderPool([make("openai", port, headers=headers), make("openai", port, headers=headers)],
                        strategy="least_loaded")
    before = connections(port)
    with warnings.catch_warnings(record=True) as caught, ThreadPoolExecutor(threads) as ex:
        start = time.perf_counter()
        list(ex.map(lambda _: pool.generate_sync("hi"), range(n)))
        sync_s = time.perf_counter() - start
    opened = connections(port) - before - 1  # minus the /stats request itself

    async def gather() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(pool.generate("hi") for _ in range(n)))
        return time.perf_counter() - start

    async_s = asyncio.run(gather())
    full = handler.count + sum("pool is full" in str(w.message) for w in caught)
    note = f"ideal {ideal * 1000:.0f} ms; pool-full warnings {full}; connections opened {opened} (<= {threads})"
    ok = full == 0 and opened <= threads
    rows.append(Row(f"{n} requests, {delay_ms} ms delay, pool of 2, {threads} threads", ideal * 1000, sync_s * 1000,
                    "ms", sync_s / ideal, "<= 1.25x", ok and sync_s / ideal <= 1.25, note))
    rows.append(Row("the same via asyncio.gather", ideal * 1000, async_s * 1000, "ms", async_s / ideal, "<= 1.25x",
                    full == 0 and async_s / ideal <= 1.25, "awaits on the library's thread pool"))

    healthy = make("openai", port, headers=headers)
    chain = FallbackChain([OpenAIProvider(base_url=f"http://127.0.0.1:{dead_port()}/v1", api_key=KEY, max_retries=0),
                           make("openai", port, headers=headers)], failure_threshold=1, cooldown_s=300)
    chain.generate_sync("hi")  # the dead member fails once and goes into cooldown

    def run(target: Provider) -> float:
        with ThreadPoolExecutor(threads) as ex:
            start = time.perf_counter()
            list(ex.map(lambda _: target.generate_sync("hi"), range(n)))
            return time.perf_counter() - start

    alone, through = run(healthy), run(chain)
    rows.append(Row(f"{n} requests via FallbackChain, first member down", alone * 1000, through * 1000, "ms",
                    through / alone, "<= 1.2x", through / alone <= 1.2, "baseline: the healthy member alone"))
    logging.getLogger("urllib3").removeHandler(handler)
    return rows


def bench_hedging(port: int, n: int, every: int, slow_ms: int, hedge_ms: int) -> list[Row]:
    """A member with a heavy latency tail (1 call in ``every`` is ``slow_ms`` slower), n calls in
    a row: the p99 alone and with ``hedge_after_s``, and the extra requests hedging sent."""
    headers = {"x-bench-slow-every": str(every), "x-bench-slow-ms": str(slow_ms)}

    def latencies(target: Provider) -> list[float]:
        out = []
        for _ in range(n):
            start = time.perf_counter()
            target.generate_sync("hi")
            out.append(time.perf_counter() - start)
        return out

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    plain = latencies(FallbackChain([make("openai", port, headers=headers), make("openai", port, headers=headers)]))
    hedged_chain = FallbackChain([make("openai", port, headers=headers), make("openai", port, headers=headers)],
                                 hedge_after_s=hedge_ms / 1000)
    hedged = latencies(hedged_chain)
    stats = hedged_chain.get_stats()
    note = (f"1 in {every} calls {slow_ms} ms slower; hedge after {hedge_ms} ms; p50 {p(plain, 0.5) * 1000:.1f} -> "
            f"{p(hedged, 0.5) * 1000:.1f} ms; extra requests {stats.hedges} ({stats.hedges / n:.0%}), "
            f"{stats.hedges_won} won")
    base, ours = p(plain, 0.99), p(hedged, 0.99)
    return [Row(f"{n} calls, p99 with hedging (a member with a latency tail)", base * 1000, ours * 1000, "ms",
                ours / base, "<= 0.5x", ours / base <= 0.5, note,
                {"extra_requests": stats.hedges, "hedges_won": stats.hedges_won,
                 "p50_ms": [p(plain, 0.5) * 1000, p(hedged, 0.5) * 1000]})]


def bench_redis_state(port: int, n: int, reps: int) -> list[Row]:
    """Per-call cost of RedisState (a real redis-server on loopback) over InMemoryState."""
    import shutil

    binary = shutil.which("redis-server")
    try:
        from mirror_providers.pooling import InMemoryState, RedisState
    except ImportError:  # pragma: no cover - the package itself always imports
        return []
    if binary is None:
        return [Row("RedisState per call", 0, 0, "-", 0, "-", None, "redis-server not installed")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        rport = s.getsockname()[1]
    server = subprocess.Popen([binary, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", rport), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        local = FallbackChain([make("openai", port)], state=InMemoryState())
        shared = FallbackChain([make("openai", port)], state=RedisState(f"redis://127.0.0.1:{rport}/0",
                                                                       namespace="bench"))

        def per_call(chain: FallbackChain) -> float:
            start = time.perf_counter()
            for _ in range(n):
                chain.generate_sync("hi")
            return (time.perf_counter() - start) / n

        shared.generate_sync("warm")
        base = median_of(reps, lambda: per_call(local))
        trips = _round_trips(lambda: per_call(shared)) / n
        ours = median_of(reps, lambda: per_call(shared))
        rtt = median_of(reps, lambda: _redis_ping(rport, n))
    finally:
        server.terminate()
        server.wait(10)
    extra = (ours - base) * 1e6
    return [Row(f"{n} calls through a chain: RedisState vs in-memory", base * 1e6, ours * 1e6, "us/req", ours / base,
                "-", None, f"+{extra:.0f} us per call for {trips:.2f} round trips (the selection, carrying the "
                           f"writes of the call before; target 1); a bare redis-py PING takes {rtt * 1e6:.0f} us")]


def _round_trips(run: Callable[[], object]) -> int:
    """Redis round trips (pipelines sent) while ``run`` runs."""
    import redis.client

    sent = [0]
    execute = redis.client.Pipeline.execute

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return execute(self, *args, **kwargs)

    redis.client.Pipeline.execute = counted  # type: ignore[method-assign]
    try:
        run()
    finally:
        redis.client.Pipeline.execute = execute  # type: ignore[method-assign]
    return sent[0]


def _redis_ping(port: int, n: int) -> float:
    import redis

    client = redis.Redis(port=port)
    start = time.perf_counter()
    for _ in range(n):
        client.ping()
    return (time.perf_counter() - start) / n


# -- 6. peers ------------------------------------------------------------------------------------

def bench_peers(port: int, n: int, chunks: int, reps: int) -> list[Row]:  # noqa: C901 (one peer per branch)
    rows = []
    url = f"http://127.0.0.1:{port}"
    body = json.dumps(baseline_payload("openai", False))
    session = requests.Session()

    def bare() -> float:
        start = time.perf_counter()
        for _ in range(n):
            session.post(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}).json()
        return (time.perf_counter() - start) / n

    ours_p = make("openai", port)

    def ours() -> float:
        start = time.perf_counter()
        for _ in range(n):
            ours_p.generate_sync("hi")
        return (time.perf_counter() - start) / n

    bare(), ours()
    base, mine = medians(reps, bare, ours)
    peers: dict[str, Callable[[], float]] = {}
    try:
        import openai

        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)

        def openai_sdk() -> float:
            start = time.perf_counter()
            for _ in range(n):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            return (time.perf_counter() - start) / n

        peers["openai SDK"] = openai_sdk
    except ImportError:
        pass
    try:
        import anthropic

        aclient = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)

        def anthropic_sdk() -> float:
            start = time.perf_counter()
            for _ in range(n):
                aclient.messages.create(model="claude-sonnet-4-20250514", max_tokens=64,
                                        messages=[{"role": "user", "content": "hi"}])
            return (time.perf_counter() - start) / n

        peers["anthropic SDK"] = anthropic_sdk
    except ImportError:
        pass
    try:
        # Loopback only: litellm fetches its price map from GitHub at import unless told to use its copy.
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        import litellm

        def litellm_call() -> float:
            start = time.perf_counter()
            for _ in range(n):
                litellm.completion(model="openai/gpt-4o-mini", api_base=url + "/v1", api_key=KEY,
                                   messages=[{"role": "user", "content": "hi"}])
            return (time.perf_counter() - start) / n

        peers["litellm"] = litellm_call
    except ImportError:
        pass
    streams: dict[str, Callable[[], float]] = {}
    stream_hdr = {"x-bench-chunks": str(chunks)}
    ours_s = make("openai", port, headers=stream_hdr)

    def ours_stream() -> float:
        start = time.perf_counter()
        got = sum(1 for c in ours_s.stream_sync("hi") if c.content)
        return got / (time.perf_counter() - start)

    streams["mirror-providers"] = ours_stream
    if "openai SDK" in peers:
        sclient = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, default_headers=stream_hdr)

        def openai_stream() -> float:
            start = time.perf_counter()
            got = sum(1 for c in sclient.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
                if c.choices and c.choices[0].delta.content)
            return got / (time.perf_counter() - start)

        streams["openai SDK"] = openai_stream
    if "anthropic SDK" in peers:
        sa = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, default_headers=stream_hdr)

        def anthropic_stream() -> float:
            start = time.perf_counter()
            with sa.messages.stream(model="claude-sonnet-4-20250514", max_tokens=64,
                                    messages=[{"role": "user", "content": "hi"}]) as st:
                got = sum(1 for _ in st.text_stream)
            return got / (time.perf_counter() - start)

        streams["anthropic SDK"] = anthropic_stream
    rows.append(Row(f"{n} sequential calls: mirror-providers", base * 1e6, mine * 1e6, "us/req", mine / base, "-", None,
                    "the row to compare peers with"))
    for name, fn in peers.items():
        fn()
        t = median_of(reps, fn)
        rows.append(Row(f"{n} sequential calls: {name}", base * 1e6, t * 1e6, "us/req", t / base, "-", None,
                        "peer, same server"))
    if not peers:
        rows.append(Row("peers", 0, 0, "-", 0, "-", None, "none installed: pip install -r bench/requirements.txt"))
    mine_stream = 0.0
    for name, fn in streams.items():
        fn()
        rate = median_of(reps, fn)
        mine_stream = mine_stream or rate
        rows.append(Row(f"stream {chunks} chunks via its own wire: {name}", mine_stream, rate, "chunks/s",
                        rate / mine_stream, "-", None, "baseline column: mirror-providers"))
    return rows


# -- report --------------------------------------------------------------------------------------

def table(rows: list[Row]) -> str:
    lines = [f"{'benchmark':58} {'baseline':>12} {'ours':>12} {'unit':8} {'ratio':>8} {'target':>9}  ok",
             "-" * 118]
    for r in rows:
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(f"{r.name[:58]:58} {r.baseline:12.2f} {r.ours:12.2f} {r.unit:8} {r.ratio:8.3f} {r.target:>9}  {ok}")
        if r.note:
            lines.append(f"    {r.note}")
    return "\n".join(lines)


BENCHMARKS = ("import", "sequential", "conversation", "hooks", "stream", "first", "pool", "hedge", "redis", "peers",
              "streams1k", "poolscale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, to check the harness runs")
    parser.add_argument("--json", type=Path, help="write the results here (default: bench/results/<time>-<commit>.json)")
    parser.add_argument("--no-save", action="store_true", help="do not keep this run's results under bench/results/")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--only", help=f"comma-separated: {','.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    quick = args.quick
    reps = args.reps or (1 if quick else 5)
    only = set(args.only.split(",")) if args.only else set(BENCHMARKS)
    unknown = only - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}: choose from {','.join(BENCHMARKS)}")
    proc, port = start_server()
    rows: list[Row] = []
    try:
        if "import" in only:
            rows += bench_import(3 if quick else 21)
        if "sequential" in only:
            rows += bench_sequential(port, 20 if quick else 2000, reps)
        if "conversation" in only:
            rows += bench_conversation(port, 10 if quick else 500, 200, reps)
        if "hooks" in only:
            rows += bench_hooks(port, 20 if quick else 2000, reps)
        if "stream" in only:
            rows += bench_stream(port, 200 if quick else 10_000, reps)
        if "first" in only:
            rows += bench_first_chunk(port, 1 if quick else 5)
        if "pool" in only:
            rows += bench_pool(port, 40 if quick else 400, 32, 10 if quick else 50)
        if "redis" in only:
            rows += bench_redis_state(port, 20 if quick else 2000, reps)
        if "hedge" in only:
            rows += bench_hedging(port, 40 if quick else 400, 20, 100 if quick else 300, 30)
        if "peers" in only:
            rows += bench_peers(port, 20 if quick else 2000, 200 if quick else 10_000, reps)
        if "streams1k" in only:
            rows += bench_many_streams(port, Row, streams=20 if quick else 1000, calls=5 if quick else 100, rounds=reps)
        if "poolscale" in only:
            rows += bench_pool_scale(Row, calls=256 if quick else 1024, reps=reps, quick=quick)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"machine: {machine()}; reps {reps}{' (quick)' if quick else ''}")
    print(table(rows))
    out = args.json or (None if quick or args.no_save else results_path())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"quick": quick, "reps": reps, "only": sorted(only), "commit": commit(),
                                   "machine": machine(), "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
        print(f"results: {out}")
    return 0


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def results_path() -> Path:
    """Where a run keeps its numbers: ``bench/results/<UTC time>-<commit>.json``."""
    return ROOT / "bench" / "results" / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{commit()}.json"


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    sys.exit(main())
