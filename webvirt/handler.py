"""Django's ASGI handler, with each request's synchronous work done in one call on a pool of threads that stay.

Our views are synchronous. Django's own ASGI handler, given a synchronous middleware chain, crosses between
the event loop and a thread five times per request (the request_started signal, the chain, back to the loop
for the view's async wrapper, the view, the response's close), and starts a new thread for every request
(asgiref's ThreadSensitiveContext). Each crossing costs the event loop a future, a wake-up and a context copy;
each new thread means a new database connection, opened and closed again (SQLite: about 1 ms of CPU), and
50 requests at once mean 50 threads contending for the GIL. Measured in bench/list_load.py, that machinery
was a third of a cheap API request's CPU time.

This handler does what a WSGI server's worker does, inside the ASGI server: the event loop reads the body,
then one call on a fixed pool of threads runs the request_started signal, the middleware and the view, and
closes a complete response (request_finished, which hands back or keeps the thread's database connection),
and the event loop sends it. The threads stay, so with SQLite their connections stay open between requests
(KEEP_SQLITE_SECONDS, for these threads only), and with PostgreSQL they draw from the process's pool as before.

Differences from Django's handler, on purpose:
- there is no listener for the client going away while a view runs: a synchronous view cannot be stopped
  anyway, and none of our views streams. A streaming answer is still sent and then closed in the pool;
- at most WEBVIRT_WEB_THREADS requests (4) run at once; the rest wait their turn. Django's handler runs them
  all at once, each in a thread of its own, and they contend for the GIL: with 50 clients, 16 threads spent
  a third more CPU per request than 2. A view waiting on libvirt holds its thread (the others run meanwhile)
  for at most WEBVIRT_LIBVIRT_TIMEOUT, and a host that did not answer in time fails at once afterwards
  (webvirt.virt.connection), so a dead host delays other requests for seconds, and only once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

Scope = dict[str, Any]

# How long a pool thread keeps its SQLite connection between requests (its CONN_MAX_AGE; settings keep 0 for
# every other thread, whose connections would outlive their use).
KEEP_SQLITE_SECONDS = 60


class PooledHandler(ASGIHandler):
    def __init__(self, threads: int) -> None:
        base.BaseHandler.__init__(self)  # not ASGIHandler's: it would build the chain for async views
        self.load_middleware(is_async=False)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="web", initializer=_keep_sqlite_connections)
        # asgiref's wrapper, not the loop's run_in_executor: it copies context variables into the thread and
        # lets code there call async_to_sync (the channel layer) back onto this event loop.
        self._respond = sync_to_async(self.respond, thread_sensitive=False, executor=self.pool)
        self._close = sync_to_async(self.close, thread_sensitive=False, executor=self.pool)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            response = await self._respond(scope, body)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await self._close(response)
        finally:
            body.close()

    def respond(self, scope: Scope, body: IO[bytes]) -> HttpResponseBase:
        """All that Django does for one request, in this thread; a complete response comes back closed."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body)
        if request is not None:
            response = self.get_response(request)
        assert response is not None
        response._handler_class = self.__class__  # type: ignore[attr-defined]  # as Django's handler sets it
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size  # the ASGI server cuts it into frames anyway
        if not response.streaming:
            self.close(response)
        return response

    @staticmethod
    def close(response: HttpResponseBase) -> None:
        response.close()  # request_finished: this thread's database connection is kept or given back


def _keep_sqlite_connections() -> None:
    """Run once in each pool thread: its SQLite connection stays open from one request to the next (opening one
    costs about 1 ms: Django registers its SQL functions and sets its pragmas). PostgreSQL's come from the
    process's pool, which wants them handed back after each request."""
    for conn in connections.all():
        if conn.vendor == "sqlite":
            conn.settings_dict = {**conn.settings_dict, "CONN_MAX_AGE": KEEP_SQLITE_SECONDS}
