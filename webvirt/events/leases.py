"""Which watcher holds which host: a lease per host in Redis that expires if its holder dies.

Watchers also announce themselves in a sorted set (`<prefix>:watchers`, scored by when each was last
seen, in Redis's clock) so that every watcher can work out the same fair share of hosts for each
(`preferred_holders`). A watcher's announcement and its leases are refreshed by the same script at
the same instant, so a killed watcher drops out of the set exactly when its leases run out: the
survivors then agree at once on who takes each of its hosts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

# Release only a lease we still hold; another watcher may have taken it over.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

# One round trip per pass, however many hosts: announce this watcher, forget watchers not seen
# within the TTL, renew the leases it asks for (ARGV[3 + i] == '1' for KEYS[2 + i]) if it still holds
# them, and answer the live watchers and every host's holder ('' for a free host).
_SURVEY = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('zadd', KEYS[1], now, ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now - ttl)
redis.call('pexpire', KEYS[1], ttl)
local holders = {}
for i = 2, #KEYS do
  local value = redis.call('get', KEYS[i])
  if value == ARGV[1] and ARGV[i + 1] == '1' then redis.call('pexpire', KEYS[i], ttl) end
  holders[i - 1] = value or ''
end
return {redis.call('zrange', KEYS[1], 0, -1), holders}
"""


def lease_key(prefix: str, host_id: int) -> str:
    return f"{prefix}:lease:host:{host_id}"


def watchers_key(prefix: str) -> str:
    return f"{prefix}:watchers"


@dataclass
class Survey:
    watchers: list[str]  # the live watchers, this one included
    holders: dict[int, str | None]  # host id -> who holds its lease now (None: nobody)


class Leases:
    def __init__(self, url: str, holder: str, prefix: str = "webvirt", ttl_ms: int = 10_000) -> None:
        # A Redis that hangs must fail a pass in bounded time: the watcher then stops watching before
        # its leases run out (see Watcher.drop_expiring_leases).
        self.client = aioredis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self.prefix = prefix
        self.holder = holder
        self.ttl_ms = ttl_ms

    async def acquire_many(self, host_ids: list[int]) -> list[int]:
        """Lease every free host of `host_ids` in one round trip; the ones this watcher got."""
        if not host_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for host_id in host_ids:
                pipe.set(lease_key(self.prefix, host_id), self.holder, nx=True, px=self.ttl_ms)
            results = await pipe.execute()
        return [host_id for host_id, ok in zip(host_ids, results, strict=True) if ok]

    async def survey(self, host_ids: list[int], renew: set[int]) -> Survey:
        """Announce this watcher, renew its leases on `renew`, and read who holds each of `host_ids`."""
        keys = [watchers_key(self.prefix), *(lease_key(self.prefix, h) for h in host_ids)]
        flags = ["1" if h in renew else "0" for h in host_ids]
        reply = cast("list[Any]", await self.client.eval(_SURVEY, len(keys), *keys, self.holder, self.ttl_ms,
                                                         *flags))
        watchers, values = reply
        return Survey(watchers=[w.decode() for w in watchers],
                      holders={h: v.decode() or None for h, v in zip(host_ids, values, strict=True)})

    async def release(self, host_id: int) -> None:
        await self.client.eval(_RELEASE, 1, lease_key(self.prefix, host_id), self.holder)

    async def release_many(self, host_ids: list[int]) -> None:
        if not host_ids:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for host_id in host_ids:
                pipe.eval(_RELEASE, 1, lease_key(self.prefix, host_id), self.holder)
            await pipe.execute()

    async def leave(self) -> None:
        """Stop announcing this watcher: the others share its hosts out at once, not after the TTL."""
        await self.client.zrem(watchers_key(self.prefix), self.holder)

    async def close(self) -> None:
        await self.client.aclose()


def _weight(watcher: str, host_id: int) -> int:
    # A stable hash (Python's own hash() differs between processes).
    return int.from_bytes(hashlib.blake2b(f"{host_id}/{watcher}".encode(), digest_size=8).digest(), "big")


def preferred_holders(host_ids: list[int], watchers: list[str],
                      holders: dict[int, str | None] | None = None) -> dict[int, str]:
    """Which watcher should hold each host: every watcher gets floor(n/w) or ceil(n/w) of the n hosts,
    and as few hosts as possible change hands.

    Every watcher computes this from the same survey (hosts, live watchers, current `holders`), so they
    agree without talking. (host, watcher) pairs are taken in order, first up to floor(n/w) hosts per
    watcher, then one more for as many as needed: a host's current live holder first (a host moves
    only when its holder has more than its share, or is gone), then by rendezvous weight (a stable
    hash of the pair), which spreads new and orphaned hosts evenly and the same way in every watcher.
    Plain rendezvous hashing would spread hosts only on average (3 watchers on 6 hosts would leave one
    empty about a quarter of the time) and move a few hosts whenever one is added or removed.
    """
    if not watchers:
        return {}
    holders = holders or {}
    share = len(host_ids) // len(watchers)
    pairs = sorted(((holders.get(h) == w, _weight(w, h), h, w) for h in host_ids for w in watchers), reverse=True)
    load = dict.fromkeys(watchers, 0)
    chosen: dict[int, str] = {}
    for cap in (share, share + 1):
        for _held, _, host_id, watcher in pairs:
            if host_id not in chosen and load[watcher] < cap:
                chosen[host_id] = watcher
                load[watcher] += 1
    return chosen
