"""The console gateway process: websockify resolving webvirt's tickets, auditing every session's end.

    python -m webvirt.consoles.gateway [websockify options] [listen_host:]listen_port

is `websockify --token-plugin ...TicketTokens --auth-plugin ...TicketAuth` (websockify_plugin.py)
whose request handler also records, when a session ends, how long it lasted, the bytes each way and
why it ended, as the built-in proxy does. Run it with webvirt's settings (see websockify_plugin.py).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from websockify import websocketproxy

from webvirt.consoles import websockify_plugin as plugin  # sets Django up: import it before any model

PLUGIN = "webvirt.consoles.websockify_plugin"


class AuditedProxyRequestHandler(websocketproxy.ProxyRequestHandler):
    """websockify's handler counting the bytes it carries and recording the session's end."""

    to_browser = 0
    from_browser = 0

    def send_frames(self, bufs: list[bytes] | None = None) -> Any:
        self.to_browser += sum(len(buf) for buf in bufs or ())
        return super().send_frames(bufs)

    def recv_frames(self) -> Any:
        bufs, closed = super().recv_frames()
        self.from_browser += sum(len(buf) for buf in bufs)
        return bufs, closed

    def new_websocket_client(self) -> None:
        opened = plugin.opened_session()  # set by TicketAuth in this (forked) process
        started = time.monotonic()
        reason = "closed"
        try:
            super().new_websocket_client()
        except self.CClose as exc:
            code, why = (*exc.args, None, "")[:2]
            reason = "closed by the VNC server" if why == "Target closed" else f"closed by the browser ({code})"
            raise
        except Exception as exc:
            reason = f"connection lost ({exc})"
            raise
        finally:
            if opened is not None:
                actor, domain = opened
                plugin.services.audit_close(actor, "vnc", domain, started, self.to_browser, self.from_browser, reason)


class AuditedProxy(websocketproxy.WebSocketProxy):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("RequestHandlerClass", None)
        super().__init__(AuditedProxyRequestHandler, *args, **kwargs)


def main(argv: list[str]) -> None:
    # websockify's own option parsing, with the plugins preset; its server class is the audited one.
    sys.argv = ["webvirt-console-gateway", "--token-plugin", f"{PLUGIN}.TicketTokens",
                "--auth-plugin", f"{PLUGIN}.TicketAuth", *argv]
    websocketproxy.WebSocketProxy = AuditedProxy
    websocketproxy.websockify_init()


if __name__ == "__main__":
    main(sys.argv[1:])
