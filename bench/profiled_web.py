#!/usr/bin/env python3
"""The web process as the Procfile starts it (uvicorn, one process), under cProfile in every thread.

    .venv/bin/python bench/profiled_web.py OUT.pstats --port 8123

cProfile follows one thread, and a request's work is split: the event loop (main thread) parses HTTP and
runs the ASGI layers, while a thread of the web handler's pool (webvirt.handler) runs Django's middleware
and the view. So each thread started here gets a profiler of its own, and when uvicorn stops (SIGTERM) the
profiles of the main thread and of every thread that has ended (the pool's are ended first) are merged into
OUT (a pstats file). bench/list_load.py --profile starts the web process this way and prints the merged
profile's top lines.

The clock is each thread's CPU time (time.thread_time), not the wall clock: with several threads, a
wall-clock profile charges the time a thread waits for the GIL to whatever C call it was in (a socket
send, SQLite's close), which says nothing about what that call costs.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import signal
import sys
import threading
import time
from pathlib import Path

import uvicorn

ended: list[cProfile.Profile] = []
lock = threading.Lock()
_run = threading.Thread.run


def profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        _run(self)
    finally:
        profile.disable()
        with lock:
            ended.append(profile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    # uvicorn shuts down on SIGTERM and then raises it again with the handler it found: this one, so that
    # the process ends through the `finally` below (which writes the profile) instead of dying at once.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    threading.Thread.run = profiled_run  # type: ignore[method-assign]  # every thread started from now on
    main_profile = cProfile.Profile(time.thread_time)
    main_profile.enable()
    try:
        uvicorn.run("webvirt.asgi:application", host="127.0.0.1", port=args.port, ws="websockets",
                    ws_per_message_deflate=False, log_level="warning")
    finally:
        main_profile.disable()
        from webvirt.asgi import http_handler

        http_handler.pool.shutdown(wait=True)  # its threads end, and their profiles with them
        with lock:
            stats = pstats.Stats(main_profile)
            for profile in ended:
                stats.add(profile)
        stats.dump_stats(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
