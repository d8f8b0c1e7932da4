"""ASGI entry point: Django for HTTP, Channels for WebSockets."""

import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webvirt.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does before it makes Django's own handler

from django.conf import settings  # noqa: E402

from webvirt.handler import PooledHandler  # noqa: E402

http_handler = PooledHandler(settings.WEBVIRT_WEB_THREADS)
django_asgi: Any = http_handler
if os.environ.get("WEBVIRT_SERVE_STATIC", "1") == "1":
    # Serves static/ and the npm packages from the app's own process; a production proxy may do it instead.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_asgi = ASGIStaticFilesHandler(django_asgi)

# Imported after Django is set up: consumers import models.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from webvirt.bodylimit import BodyLimit  # noqa: E402
from webvirt.consoles.consumers import ConsoleRouter  # noqa: E402
from webvirt.events.auth import WebSocketAuth  # noqa: E402
from webvirt.events.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    # Outermost, so that an oversized body is refused before Django spools it to disk.
    "http": BodyLimit(django_asgi),
    # Console sockets are plain ASGI apps (no per-frame Channels overhead) behind the same auth.
    "websocket": WebSocketAuth(ConsoleRouter(URLRouter(websocket_urlpatterns))),
})
