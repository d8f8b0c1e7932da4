"""Which watcher holds which host: a lease per host in Redis that expires if its holder dies."""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis

# Renew or release only a lease we still hold; another watcher may have taken it over.
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
          "else return 0 end")
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def lease_key(prefix: str, host_id: int) -> str:
    return f"{prefix}:lease:host:{host_id}"


class Leases:
    def __init__(self, url: str, holder: str, prefix: str = "webvirt", ttl_ms: int = 10_000) -> None:
        self.client = aioredis.from_url(url)
        self.prefix = prefix
        self.holder = holder
        self.ttl_ms = ttl_ms

    async def acquire(self, host_id: int) -> bool:
        return bool(await self.client.set(lease_key(self.prefix, host_id), self.holder, nx=True, px=self.ttl_ms))

    async def renew(self, host_id: int) -> bool:
        return bool(await self.client.eval(_RENEW, 1, lease_key(self.prefix, host_id), self.holder, self.ttl_ms))

    async def release(self, host_id: int) -> None:
        await self.client.eval(_RELEASE, 1, lease_key(self.prefix, host_id), self.holder)

    async def holder_of(self, host_id: int) -> str | None:
        value = cast("bytes | None", await self.client.get(lease_key(self.prefix, host_id)))  # replies are not decoded
        return value.decode() if value else None

    async def close(self) -> None:
        await self.client.aclose()
