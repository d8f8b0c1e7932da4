"""`manage.py watch`: run the event watcher until SIGTERM or Ctrl-C."""

import asyncio
import logging
import os
import signal
import sys
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from webvirt.events.watcher import Watcher


class Command(BaseCommand):
    help = "Watch every registered libvirt host for events and keep the state cache current."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--holder", help="This watcher's name in the Redis leases; unique per process "
                                             "(default: hostname:pid). Watchers share the hosts out among them.")

    def handle(self, *args: Any, holder: str | None = None, **options: Any) -> None:
        logging.getLogger("webvirt").setLevel(logging.INFO)
        asyncio.run(self.main(holder))
        # Leases are released and connections closed by now. A libvirt call to a host that never
        # answered can still hold a thread, and Python would wait for it forever at exit: do not.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)

    async def main(self, holder: str | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Watcher(settings.REDIS_URL, holder, settings.REDIS_PREFIX).run(stop)
