"""`/ws/events/`: state changes pushed to the browser (and to scripts), filtered per user."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from webvirt.accounts import policy
from webvirt.events.publish import GROUP
from webvirt.metrics.services import may_watch
from webvirt.metrics.store import group_name

UNAUTHENTICATED = 4401
MAX_SUBSCRIPTIONS = 20  # a page shows one domain or one host (and its busiest domains)


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "user": self.user.get_username()})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)
        for group in getattr(self, "subscribed", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        elif content.get("type") == "subscribe":
            await self.subscribe(content.get("metrics"))

    async def subscribe(self, wanted: Any) -> None:
        """Live figures of the objects a page shows (["d:<domain id>", "h:<host id>"]), each if the user
        may see it; nothing is said about the others."""
        if not isinstance(wanted, list):
            return
        self.subscribed: set[str] = getattr(self, "subscribed", set())
        for item in wanted[:MAX_SUBSCRIPTIONS]:
            kind, _, pk = str(item).partition(":")
            if pk.isdigit() and await database_sync_to_async(may_watch)(self.user, kind, int(pk)):
                group = group_name(kind, int(pk))
                if group not in self.subscribed:
                    self.subscribed.add(group)
                    await self.channel_layer.group_add(group, self.channel_name)

    async def webvirt_subscribed(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])

    async def webvirt_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if policy.is_admin(self.user) or await database_sync_to_async(policy.may_receive)(self.user, event):
            await self.send_json(event)
