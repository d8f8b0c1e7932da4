"""Helpers for the live event tests: waiting for a condition, and `/ws/events/` clients that keep
everything they receive so a test can act first and look at what arrived afterwards."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.live import wait_for

Match = Callable[[dict], bool]


def open_socket(url: str, headers: dict[str, str]) -> contextlib.AbstractContextManager:
    """/ws/events/ on the live server at `url` (http://...) with these handshake headers, to use in `with`."""
    return connect(f"{url.replace('http://', 'ws://')}/ws/events/", additional_headers=headers, open_timeout=5)


def refused_status(url: str, headers: dict[str, str]) -> int | None:
    """The HTTP status the handshake was refused with, or None if the socket was accepted."""
    try:
        with open_socket(url, headers):
            return None
    except InvalidStatus as exc:
        return exc.response.status_code


class EventSocket:
    """A connected /ws/events/ client; a thread collects every event into `events`."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(open_socket(url, headers))
        self.hello = json.loads(self.ws.recv(timeout=5))
        self.events: list[dict] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.ws:
                self.events.append(json.loads(message))
        except ConnectionClosed:
            pass

    def mark(self) -> int:
        """A position in `events`: later waits can look only at what arrived after it."""
        return len(self.events)

    def matching(self, match: Match, after: int = 0) -> list[dict]:
        return [event for event in self.events[after:] if match(event)]

    def wait(self, match: Match, after: int = 0, timeout: float = 10.0) -> dict:
        """The first event (after position `after`) that matches, waiting up to `timeout` s for it."""
        return wait_for(lambda: self.matching(match, after), timeout)[0]

    def close(self) -> None:
        self.stack.close()
        self.thread.join(5)


def domain_event(uuid: str, state: str) -> Match:
    return lambda e: e.get("type") == "domain" and e.get("uuid") == uuid and e.get("state") == state


def host_event(host_id: int, status: str) -> Match:
    return lambda e: e.get("type") == "host" and e.get("host") == host_id and e.get("status") == status
