"""Several web processes behind nginx: a browser is served the same whichever process answers it.

Two real uvicorn processes (A and B, each on its own port), one event watcher, and the real nginx
with the repository's server block (docs/nginx/webvirt.conf) in front of both, round robin:
sessions, event sockets and console tickets work across them, and through the proxy (WebSocket
upgrade, Host and Origin included). Last, the same server block with HTTPS (docs/nginx/tls.conf).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.urls import resolve, reverse
from websockets.sync.client import connect

from tests import live, people
from tests.consoles.conftest import vnc_domain_xml
from tests.consoles.fakevnc import GREETING, FakeVncServer
from tests.events.sockets import EventSocket, domain_event
from tests.live import wait_for
from webvirt import bodylimit
from webvirt.accounts.tokens import create_token
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Stack:
    a: str
    b: str
    proxy: str

    def upstreams(self) -> set[str]:
        """What nginx's X-Upstream says for A and for B."""
        return {self.a.removeprefix("http://"), self.b.removeprefix("http://")}


def _quit(process: live.Process) -> None:
    # uvicorn would wait for every closed socket's consumer to finish its pending Redis read;
    # nothing is left to check, so a second signal makes it quit at once.
    process.signal(signal.SIGTERM)
    time.sleep(0.2)
    process.signal(signal.SIGINT)
    process.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with contextlib.ExitStack() as cleanup:
        spawned = [live.spawn_web(tmp_path, name=name) for name in ("web-a", "web-b")]  # both start at once
        for process, _url in spawned:
            cleanup.callback(_quit, process)
        a, b = (live.wait_for_web(process, url)[1] for process, url in spawned)
        cleanup.callback(live.start_watcher(tmp_path).stop)
        proxy = live.start_nginx(tmp_path, [a, b])
        cleanup.callback(proxy.process.stop)
        yield Stack(a, b, proxy.url)


def with_password(user, password: str):  # type: ignore[no-untyped-def]
    """Give `user` a password the live servers can check (their hasher; few rounds, to be quick)."""
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(password, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])
    return user


def sign_in(base: str, password: str) -> requests.Session:
    """Sign in with the login form at `base`, as a browser does (same-origin POST with the CSRF token)."""
    browser = requests.Session()
    form = browser.get(f"{base}/accounts/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert csrf, form.text
    response = browser.post(f"{base}/accounts/login/", timeout=30, allow_redirects=False,
                            data={"username": "alice", "password": password, "csrfmiddlewaretoken": csrf[1]},
                            headers={"Origin": base, "Referer": f"{base}/accounts/login/"})
    assert response.status_code == 302 and response.headers["Location"] == "/", response.text
    return browser


def home_page(browser: requests.Session, base: str) -> requests.Response:
    """The domain list (where / leads), asserted to be alice's: signed in, not sent to the login page."""
    response = browser.get(f"{base}/domains/", timeout=10, allow_redirects=False)
    assert response.status_code == 200, (response.status_code, response.headers.get("Location"))
    assert "<span>alice</span>" in response.text
    return response


def test_signed_in_on_one_process_is_signed_in_on_the_other_and_through_nginx(stack: Stack, admin) -> None:  # type: ignore[no-untyped-def]
    with_password(admin, people.ADMIN_PASSWORD)
    browser = sign_in(stack.a, people.ADMIN_PASSWORD)
    home_page(browser, stack.b)

    # Through nginx, where one process takes the sign-in and the next pages alternate between both.
    browser = sign_in(stack.proxy, people.ADMIN_PASSWORD)
    answered_by = {home_page(browser, stack.proxy).headers["X-Upstream"] for _ in range(2)}
    assert answered_by == stack.upstreams()


def test_a_change_made_with_libvirt_reaches_event_sockets_on_both_processes_and_through_nginx(  # type: ignore[no-untyped-def]
        test_host, stack: Stack, admin, make_test_domain) -> None:
    dom = make_test_domain()
    wait_for(lambda: Domain.objects.filter(host=test_host, uuid=dom.UUIDString()).exists())
    token = {"Authorization": f"Token {create_token(admin)[1]}"}
    # A browser's socket through nginx: session cookie and Origin, so Host must reach webvirt whole.
    browser = {"Cookie": f"sessionid={people.client_for(admin).cookies['sessionid'].value}", "Origin": stack.proxy}
    sockets = [EventSocket(stack.a, token), EventSocket(stack.b, token), EventSocket(stack.proxy, browser)]
    try:
        assert all(sock.hello == {"type": "hello", "user": "alice"} for sock in sockets)
        dom.create()
        for sock in sockets:
            sock.wait(domain_event(dom.UUIDString(), "running"))
    finally:
        for sock in sockets:
            sock.close()


def open_console(base: str, path: str, headers: dict[str, str]) -> tuple[bytes, str | None]:
    """Open a console socket and return what the VNC server sent first, and which process nginx chose."""
    with connect(base.replace("http://", "ws://") + path, additional_headers=headers, open_timeout=5) as ws:
        data = b""
        while len(data) < len(GREETING):
            message = ws.recv(timeout=5)
            data += message if isinstance(message, bytes) else message.encode()
        return data, ws.response.headers.get("X-Upstream")


def test_a_console_ticket_issued_by_one_process_opens_the_console_on_the_other(  # type: ignore[no-untyped-def]
        test_conn, test_host, stack: Stack, admin) -> None:
    vnc = FakeVncServer()
    dom = test_conn.defineXML(vnc_domain_xml(f"console-{uuidlib.uuid4().hex[:8]}", vnc.port))
    try:
        dom.create()
        sync_host(test_host)
        domain = Domain.objects.get(host=test_host, uuid=dom.UUIDString())
        token = {"Authorization": f"Token {create_token(admin)[1]}"}

        def issue(base: str) -> requests.Response:
            response = requests.post(f"{base}/api/v1/domains/{domain.pk}/console/", json={"kind": "vnc"},
                                     headers=token, timeout=10)
            assert response.status_code == 201, response.text
            return response

        assert open_console(stack.b, issue(stack.a).json()["path"], token)[0] == GREETING
        # Through nginx: the next request goes to the other process, the WebSocket upgrade included.
        issued = issue(stack.proxy)
        greeting, redeemed_by = open_console(stack.proxy, issued.json()["path"], token)
        assert greeting == GREETING
        assert {issued.headers["X-Upstream"], redeemed_by} == stack.upstreams()
        assert vnc.connections == 2
    finally:
        dom.destroy()
        dom.undefine()
        vnc.close()


def test_with_tls_plain_http_redirects_and_https_reaches_webvirt_as_secure(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tls / "privkey.pem"), "-out", str(tls / "fullchain.pem")],
                   check=True, capture_output=True, timeout=60)
    web, url = live.start_web(tmp_path, WEBVIRT_HTTPS="1", WEBVIRT_TRUSTED_PROXIES="127.0.0.1")
    proxy = live.start_nginx(tmp_path, [url], tls_dir=tls)
    try:
        plain = requests.get(f"{proxy.url}/accounts/login/", allow_redirects=False, timeout=10)
        assert plain.status_code == 301 and plain.headers["Location"] == "https://127.0.0.1/accounts/login/"
        secure = requests.get(f"{proxy.https_url}/accounts/login/", verify=str(tls / "fullchain.pem"), timeout=10)
        assert secure.status_code == 200
        # webvirt saw the request as HTTPS (the proxy's X-Forwarded-Proto, believed from it alone).
        assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert "Secure" in secure.headers["Set-Cookie"]
    finally:
        proxy.process.stop()
        web.stop()


def test_the_proxy_limits_bodies_as_webvirt_does(settings) -> None:  # type: ignore[no-untyped-def]
    """docs/nginx/webvirt.conf: 2m everywhere and 64g on exactly the upload routes, as webvirt/bodylimit.py."""
    conf = (live.ROOT / "docs/nginx/webvirt.conf").read_text()
    units = {"m": 1024**2, "g": 1024**3}
    limits = [int(n) * units[u] for n, u in re.findall(r"^\s*client_max_body_size (\d+)([mg]);", conf, re.M)]
    assert limits == [settings.WEBVIRT_MAX_BODY_BYTES, settings.WEBVIRT_MAX_UPLOAD_BYTES]
    upload_routes = re.compile(re.search(r"location ~ (\S+) \{\n\s*client_max_body_size", conf)[1])
    uploads = [reverse("install:upload"), reverse("api:upload"), reverse("storage:volume_upload", args=["1:u:p"]),
               reverse("api:pool-upload", args=["1:u:p"])]
    assert {resolve(url).view_name for url in uploads} == bodylimit.UPLOAD_VIEWS
    assert all(upload_routes.match(url) for url in uploads)
    assert not any(upload_routes.match(url) for url in ("/api/v1/domains/", "/install/", "/api/v1/uploads/x/"))
