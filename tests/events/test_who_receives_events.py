"""Who may open /ws/events/, and who is told about what."""

from __future__ import annotations

import pytest

from tests import live
from tests.events.sockets import EventSocket, domain_event, refused_status
from webvirt.domains.models import Domain

EVIL_ORIGIN = "http://evil.example"


def session_cookie(client, user) -> str:  # type: ignore[no-untyped-def]
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.mark.django_db(transaction=True)
def test_a_user_who_may_not_see_a_domain_is_told_nothing_about_it(live_stack, test_host, admin, stranger,
                                                                   event_socket, make_test_domain):  # type: ignore[no-untyped-def]
    watching = event_socket(admin)
    outsider = event_socket(stranger)
    assert outsider.hello == {"type": "hello", "user": stranger.username}

    dom = make_test_domain()
    uuid = dom.UUIDString()
    watching.wait(domain_event(uuid, "shutoff"))
    dom.create()
    watching.wait(domain_event(uuid, "running"))
    dom.suspend()
    watching.wait(domain_event(uuid, "paused"))

    # Then a change the outsider must be told about: a domain of its own starting. It becomes the
    # outsider's only once its first event (defined, no owner yet) is out, so that was not for it either.
    own = make_test_domain()
    watching.wait(domain_event(own.UUIDString(), "shutoff"))
    Domain.objects.filter(uuid=own.UUIDString()).update(owner=stranger)
    own.create()
    told = outsider.wait(domain_event(own.UUIDString(), "running"), timeout=live.EVENT_TIMEOUT)
    # Events reach a socket in the order they were published: anything about the other domain would
    # have come first.
    assert outsider.events[0] == told
    assert [e for e in outsider.events if e.get("uuid") != own.UUIDString()] == []


@pytest.mark.django_db(transaction=True)
def test_a_socket_without_credentials_is_refused(live_stack):  # type: ignore[no-untyped-def]
    assert refused_status(live_stack.url, {}) == 403
    assert refused_status(live_stack.url, {"Origin": live_stack.url}) == 403


@pytest.mark.django_db(transaction=True)
def test_a_wrong_token_is_refused(live_stack):  # type: ignore[no-untyped-def]
    assert refused_status(live_stack.url, {"Authorization": "Token not-a-token-anyone-has"}) == 403


@pytest.mark.django_db(transaction=True)
def test_a_session_cookie_is_accepted_from_the_same_origin_only(live_stack, admin, client):  # type: ignore[no-untyped-def]
    cookie = session_cookie(client, admin)
    sock = EventSocket(live_stack.url, {"Origin": live_stack.url, "Cookie": cookie})
    assert sock.hello == {"type": "hello", "user": admin.username}
    sock.close()

    assert refused_status(live_stack.url, {"Origin": EVIL_ORIGIN, "Cookie": cookie}) == 403
    assert refused_status(live_stack.url, {"Cookie": cookie}) == 403  # No Origin: not a browser we can check.


@pytest.mark.django_db(transaction=True)
def test_a_valid_token_sent_from_another_origin_is_refused(live_stack, admin, token_for):  # type: ignore[no-untyped-def]
    token = token_for(admin)
    assert refused_status(live_stack.url, {"Authorization": f"Token {token}"}) is None
    assert refused_status(live_stack.url, {"Origin": EVIL_ORIGIN, "Authorization": f"Token {token}"}) == 403
