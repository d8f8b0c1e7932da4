"""What a self-service owner (a user who is not an administrator and owns a clone of a template they
were granted) does with their clone through the real server, and what another user cannot:

- the owner opens the clone's VNC console over the WebSocket proxy (a ticket from the API, with a
  session or a token); another user gets no ticket, and the owner's ticket does not open for them;
- the owner receives the clone's live events on /ws/events/; another owner does not;
- the owner is refused every device change, in the API and on the page, and the definition stays.

Clones are made by the clone job on libvirt's test driver; the console's VNC server is a local fake
(tests/consoles/fakevnc.py) that counts the connections reaching it.
"""

from __future__ import annotations

import libvirt
import pytest
from lxml import etree

from tests.catalog.conftest import clone, run
from tests.consoles.conftest import fake_vnc, refused, ws_exchange, ws_url  # noqa: F401
from tests.consoles.conftest import run as run_async
from tests.consoles.fakevnc import GREETING
from tests.consoles.test_ticket_checks import browser_session, ticket_path
from tests.events.conftest import event_socket, token_for  # noqa: F401
from tests.events.sockets import domain_event
from tests.forms import csrf_client, token_from
from tests.live import wait_for
from tests.people import api_for, client_for
from tests.unit.test_error_boundary import messages_of
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.domains.services import sync_host

pytestmark = pytest.mark.django_db(transaction=True)

NOT_FOUND = {"error": "Not found.", "code": "not_found"}
NOT_ALLOWED = {"error": "You are not allowed to do that.", "code": "forbidden"}


def own_clone(user, template, **extra) -> Domain:  # type: ignore[no-untyped-def]
    """`user` clones `template` (granted to them here) through the API; the clone job runs now."""
    template.users.add(user)
    run(clone(user, template, pattern=f"{template.name}-{user.username}-{{n}}", **extra))
    return Domain.objects.select_related("host").get(template=template, owner=user)


@pytest.fixture
def two_owners(template, bob, dave) -> tuple[Domain, Domain]:  # type: ignore[no-untyped-def]
    """bob's clone and dave's clone of the same template, both shut off."""
    return own_clone(bob, template), own_clone(dave, template)


# The console --------------------------------------------------------------------------------------

def with_vnc_at(test_conn: libvirt.virConnect, domain: Domain, port: int) -> None:
    """An administrator gives the clone VNC graphics on `port` (a clone gets none of its own port)."""
    dom = test_conn.lookupByUUIDString(domain.uuid)
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    for graphics in root.findall("./devices/graphics"):
        graphics.getparent().remove(graphics)
    etree.SubElement(root.find("./devices"), "graphics", type="vnc", port=str(port), autoport="no",
                     listen="127.0.0.1")
    test_conn.defineXML(etree.tostring(root).decode())


def test_an_owner_opens_the_console_of_their_clone_and_another_user_cannot(  # type: ignore[no-untyped-def]
        live_stack, template, test_host, test_conn, bob, dave, fake_vnc):  # noqa: F811
    mine = own_clone(bob, template)
    with_vnc_at(test_conn, mine, fake_vnc.port)
    sync_host(test_host)
    assert api_for(bob).post(f"/api/v1/domains/{mine.pk}/start/").json()["state"] == "running"
    url = lambda path: ws_url(live_stack.url, path)  # noqa: E731
    origin = live_stack.url

    # The owner's console page opens with nothing in the way, and its ticket (asked for with the
    # page's session) carries the owner's bytes to the VNC server and back.
    bob_client, bob_cookie = browser_session(bob)
    page = bob_client.get(f"/consoles/{mine.pk}/vnc/")
    assert page.status_code == 200 and page.context["problem"] == ""
    payload = b"owner's keystrokes" * 100
    got = run_async(ws_exchange(url(ticket_path(bob_client, mine.pk)), headers=bob_cookie, origin=origin,
                                send=payload, expect=len(GREETING) + len(payload)))
    assert got == GREETING + payload
    assert fake_vnc.connections == 1
    # A script of the owner's, with a token, the same.
    bob_api = api_for(bob)
    token = bob_api._credentials["HTTP_AUTHORIZATION"]
    response = bob_api.post(f"/api/v1/domains/{mine.pk}/console/", {"kind": "vnc"}, format="json")
    assert response.status_code == 201, response.json()
    got = run_async(ws_exchange(url(response.json()["path"]), headers={"Authorization": token}, expect=len(GREETING)))
    assert got == GREETING
    assert fake_vnc.connections == 2

    # Another user: the domain does not exist for them, on the page and in the API, and the owner's
    # tickets, shown with their session or token, open nothing.
    dave_client, dave_cookie = browser_session(dave)
    assert dave_client.get(f"/consoles/{mine.pk}/vnc/").status_code == 404
    asked = dave_client.post(f"/api/v1/domains/{mine.pk}/console/", {"kind": "vnc"}, content_type="application/json")
    assert (asked.status_code, asked.json()) == (404, NOT_FOUND)
    dave_token = api_for(dave)._credentials["HTTP_AUTHORIZATION"]
    assert api_for(dave).post(f"/api/v1/domains/{mine.pk}/console/", {"kind": "vnc"},
                              format="json").status_code == 404
    assert refused(url(ticket_path(bob_client, mine.pk)), headers=dave_cookie, origin=origin)
    bobs = bob_api.post(f"/api/v1/domains/{mine.pk}/console/", {"kind": "vnc"}, format="json").json()["path"]
    assert refused(url(bobs), headers={"Authorization": dave_token})
    assert fake_vnc.connections == 2

    opened = AuditEntry.objects.filter(action="console.vnc", object_id=str(mine.pk), outcome=AuditEntry.OK)
    assert sorted(opened.values_list("username", flat=True)) == ["bob", "bob"]
    assert AuditEntry.objects.filter(action="console.vnc", outcome=AuditEntry.REFUSED, username="dave").count() == 2


# Live events ----------------------------------------------------------------------------------------

def test_an_owner_receives_the_live_events_of_their_clone_and_another_owner_does_not(  # type: ignore[no-untyped-def]
        two_owners, live_stack, test_host, test_conn, bob, dave, event_socket):  # noqa: F811
    mine, theirs = two_owners  # made before the watcher started: no event about them is still under way
    # The watcher has listed the host and published what it found before anyone below listens.
    wait_for(lambda: f"host {test_host.name} resynchronised" in live_stack.watcher.output(), timeout=30)
    bobs, daves = event_socket(bob), event_socket(dave)
    assert (bobs.hello["user"], daves.hello["user"]) == ("bob", "dave")

    # bob's clone starts (outside webvirt, so only the watcher tells): bob is told.
    test_conn.lookupByUUIDString(mine.uuid).create()
    event = bobs.wait(domain_event(mine.uuid, "running"))
    assert (event["id"], event["owner"], event["name"]) == (mine.pk, bob.pk, mine.name)

    # Then dave's clone starts, which dave must hear about. Events reach a socket in the order they
    # were published, so had bob's event been sent to dave, it would have come first.
    test_conn.lookupByUUIDString(theirs.uuid).create()
    first = daves.wait(domain_event(theirs.uuid, "running"))
    assert daves.events == [first]
    assert first["owner"] == dave.pk

    # And the other way round: bob's clone stops; bob has heard of nothing but his own clone.
    mark = bobs.mark()
    test_conn.lookupByUUIDString(mine.uuid).destroy()
    bobs.wait(domain_event(mine.uuid, "shutoff"), after=mark)
    assert {e["uuid"] for e in bobs.events} == {mine.uuid}
    assert all(e["owner"] == bob.pk for e in bobs.events)


# Device changes -------------------------------------------------------------------------------------

def test_an_owner_is_refused_every_device_change_and_the_definition_stays(  # type: ignore[no-untyped-def]
        template, test_conn, base_volume, bob, dave):
    mine = own_clone(bob, template, start=True)
    dom = test_conn.lookupByUUIDString(mine.uuid)
    assert dom.isActive()
    before = (dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    mac = etree.fromstring(before[0].encode()).find("./devices/interface/mac").get("address")
    base = f"/api/v1/domains/{mine.pk}"
    requests = [  # every device change the API has, each well-formed and naming what exists
        ("post", f"{base}/disks/", {"volume": base_volume.path(), "bus": "virtio"}),
        ("delete", f"{base}/disks/vda/", None),
        ("post", f"{base}/interfaces/", {"network": "default", "model": "virtio"}),
        ("delete", f"{base}/interfaces/{mac}/", None),
        ("post", f"{base}/media/", {"target": "vda", "path": ""}),
    ]
    owner, other = api_for(bob), api_for(dave)
    for method, path, body in requests:
        response = getattr(owner, method)(path, body, format="json")
        assert (response.status_code, response.json()) == (403, NOT_ALLOWED), (method, path)
        response = getattr(other, method)(path, body, format="json")
        assert (response.status_code, response.json()) == (404, NOT_FOUND), (method, path)

    # The page: the Devices panel offers the owner no change, and each change posted anyway is refused.
    page = csrf_client(bob)
    panel = page.get(f"/domains/{mine.pk}/devices/")
    assert panel.status_code == 200
    assert f"/domains/{mine.pk}/devices/" not in panel.content.decode()  # no form posts a change
    forms = {"attach-disk": {"volume": base_volume.path(), "bus": "virtio"}, "detach-disk": {"target": "vda"},
             "attach-interface": {"network": "default", "model": "virtio"}, "detach-interface": {"mac": mac},
             "media": {"target": "vda", "path": ""}}
    for op, fields in forms.items():
        response = page.post(f"/domains/{mine.pk}/devices/{op}/", {"csrfmiddlewaretoken": token_from(page), **fields},
                             follow=True)
        assert response.redirect_chain == [(f"/domains/{mine.pk}/#devices", 302)], op
        assert messages_of(response) == ["You are not allowed to do that."], op
    stranger = client_for(dave)
    for op, fields in forms.items():
        assert stranger.post(f"/domains/{mine.pk}/devices/{op}/", fields).status_code == 404, op
        assert stranger.get(f"/domains/{mine.pk}/devices/").status_code == 404

    assert (dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == before
    refusals = AuditEntry.objects.filter(action__in=["domain.attach_disk", "domain.detach_disk",
                                                     "domain.attach_interface", "domain.detach_interface",
                                                     "domain.change_media"])
    assert set(refusals.values_list("outcome", "username")) == {(AuditEntry.REFUSED, "bob")}
    assert refusals.count() == 2 * len(requests)
