"""This process's synchronous Redis client (console tickets, serial console holders, watcher leases).

The event watcher and the channel layer have their own asyncio clients.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        return _client
