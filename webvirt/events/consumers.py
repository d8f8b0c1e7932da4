"""`/ws/events/`: state changes pushed to the browser (and to scripts), filtered per user."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from webvirt.accounts import policy
from webvirt.events.publish import GROUP

UNAUTHENTICATED = 4401


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

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def webvirt_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if policy.is_admin(self.user) or await database_sync_to_async(policy.may_receive)(self.user, event):
            await self.send_json(event)
