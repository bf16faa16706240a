"""CPU per event of many open async streams, nothing else running (issue 21's side measurement).

    python bench/stream_cpu.py                 # 1,000 streams read on the event loop
    python bench/stream_cpu.py 1000 --threads  # the same on a thread each (a no-op hook keeps them there)
    python bench/stream_cpu.py 20 --quick      # a short run (tests/test_bench.py)

Each stream gets an event every 200 ms from bench/server.py; after 3 s to settle, 4 s are measured:
events/s, this process's CPU (user and system) per event, and context switches per event.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import threading
import time
from typing import Any

from run import start_server  # bench/ is the script's own directory

from mirror_providers.openai import OpenAIProvider


class _Quiet:
    def on_stream_end(self, event: Any) -> None:
        pass


async def _measure(llm: OpenAIProvider, n: int, settle_s: float, measure_s: float) -> str:
    events = 0

    async def consume() -> None:
        nonlocal events
        async for _ in llm.stream("hi"):
            events += 1

    tasks = [asyncio.ensure_future(consume()) for _ in range(n)]
    await asyncio.sleep(settle_s)
    r0, e0, t0 = resource.getrusage(resource.RUSAGE_SELF), events, time.perf_counter()
    threads = threading.active_count()
    await asyncio.sleep(measure_s)
    r1, got, wall = resource.getrusage(resource.RUSAGE_SELF), events - e0, time.perf_counter() - t0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    user, system = (r1.ru_utime - r0.ru_utime) / got * 1e6, (r1.ru_stime - r0.ru_stime) / got * 1e6
    return (f"{n} streams: {got / wall:.0f} events/s, {user + system:.1f} us CPU per event (user {user:.1f}, "
            f"system {system:.1f}), {(r1.ru_nvcsw - r0.ru_nvcsw) / got:.2f} voluntary switches per event, "
            f"{threads} threads")


def main() -> None:
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), "1000"))
    proc, port = start_server()
    try:
        llm = OpenAIProvider(model="gpt-4o-mini", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-bench-key",
                             headers={"x-bench-chunks": "1000000", "x-bench-chunk-delay-ms": "200"})
        if "--threads" in sys.argv:
            llm.add_hook(_Quiet())
        quick = "--quick" in sys.argv  # tests/test_bench.py: the script runs, not what it measures
        print(asyncio.run(_measure(llm, n, 0.5 if quick else 3.0, 1.0 if quick else 4.0)))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
