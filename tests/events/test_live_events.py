"""Changes made outside webvirt reach the state cache and the WebSocket (real watcher, real Redis)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
import websockets
from rest_framework.authtoken.models import Token

from webvirt.domains.models import Domain


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


async def receive_until(url: str, token: str, action: Callable[[], None], match: Callable[[dict], bool],
                        timeout: float = 10.0) -> dict:
    """Open /ws/events/ with a token, run `action`, and return the first event that matches."""
    async with websockets.connect(f"{url}/ws/events/", additional_headers={"Authorization": f"Token {token}"}) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        await asyncio.get_running_loop().run_in_executor(None, action)
        async with asyncio.timeout(timeout):
            while True:
                event = json.loads(await ws.recv())
                if match(event):
                    return event


@pytest.mark.django_db(transaction=True)
def test_a_domain_started_outside_webvirt_reaches_the_cache_and_the_socket(live_stack, test_host, admin,
                                                                          make_test_domain):
    dom = make_test_domain()
    wait_for(lambda: Domain.objects.filter(host=test_host, uuid=dom.UUIDString()).exists())
    token = Token.objects.create(user=admin).key
    ws_url = live_stack.url.replace("http://", "ws://")
    event = asyncio.run(receive_until(ws_url, token, dom.create,
                                      lambda e: e.get("uuid") == dom.UUIDString() and e.get("state") == "running"))
    assert event["type"] == "domain" and event["host"] == test_host.pk and event["name"] == dom.name()
    assert Domain.objects.get(host=test_host, uuid=dom.UUIDString()).state == "running"
