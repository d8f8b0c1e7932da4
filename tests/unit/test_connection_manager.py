"""The connection manager: URI checks, cached connections, timeouts and stuck hosts.

Each test builds its own manager with short timeouts, so a host that never answers costs well
under a second here.
"""

from __future__ import annotations

import stat
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import libvirt
import pytest

from tests.conftest import TEST_URI
from tests.live import wait_for
from webvirt.virt import errors
from webvirt.virt.connection import MAX_STUCK_OPENS, ConnectionManager, Target, check_uri
from webvirt.virt.domains import lookup
from webvirt.virt.errors import VirtError

# A timeout given to a call or open that must fail at once: generous, so that the test tells "at
# once" from "after its timeout" even on a loaded machine, and costs nothing when it holds.
CALL_TIMEOUT = 5.0


@pytest.fixture
def manager(tmp_path):  # type: ignore[no-untyped-def]
    return ConnectionManager(open_timeout=0.5, call_timeout=0.5, key_dir=tmp_path / "keys")


@pytest.fixture
def target(test_conn) -> Target:  # type: ignore[no-untyped-def]
    return Target(key="unit-test", uri=TEST_URI, name="testhost")


@pytest.mark.parametrize("uri", ["", "not a uri", "qemu", "/var/run/libvirt/libvirt-sock", "qemu:/system"])
def test_it_refuses_a_malformed_uri(uri):
    with pytest.raises(VirtError) as caught:
        check_uri(uri)
    assert caught.value.kind == errors.INVALID
    assert "qemu:///system" in caught.value.message


def test_it_refuses_an_unknown_scheme_by_name():
    with pytest.raises(VirtError) as caught:
        check_uri("foo:///x")
    assert caught.value.kind == errors.UNKNOWN_SCHEME
    assert "'foo'" in caught.value.message


@pytest.mark.parametrize("uri", [TEST_URI, "qemu:///system", "qemu+ssh://root@example.org/system",
                                 "qemu+tls://h.example.org/system", " qemu+tcp://10.0.0.1/system "])
def test_it_accepts_the_usual_uris(uri):
    check_uri(uri)


def test_it_caches_one_connection_per_host_until_dropped(manager, target):
    first = manager.get(target)
    assert manager.get(target) is first
    manager.drop(target.key)
    second = manager.get(target)
    assert second is not first
    assert second.getURI() == TEST_URI
    manager.drop(target.key)


def test_a_call_returns_what_the_function_returns(manager, target):
    assert manager.call(target, lambda conn: conn.getURI()) == TEST_URI
    manager.drop(target.key)


def test_a_call_turns_libvirt_errors_into_sentences(manager, target):
    with pytest.raises(VirtError) as caught:
        manager.call(target, lambda conn: lookup(conn, "00000000-0000-0000-0000-000000000000"))
    assert caught.value.kind == errors.NOT_FOUND
    assert caught.value.message == "That domain no longer exists on its host."
    with pytest.raises(VirtError) as caught:
        manager.call(target, lambda conn: conn.lookupByName("no-such-domain-here"))
    assert caught.value.kind == errors.NOT_FOUND
    manager.drop(target.key)


def answers(manager: ConnectionManager, target: Target) -> bool:
    """Does a call to `target` go through now (rather than fail at once because one is stuck)?"""
    try:
        return manager.call(target, lambda conn: conn.getURI()) == TEST_URI
    except VirtError as exc:
        assert exc.kind == errors.UNREACHABLE, exc.message
        return False


def test_a_slow_call_times_out_and_later_calls_fail_at_once_until_it_ends(manager, target):
    release = threading.Event()
    with pytest.raises(VirtError) as caught:
        manager.call(target, lambda conn: release.wait(30), timeout=0.1)
    assert caught.value.kind == errors.TIMEOUT
    started = time.monotonic()
    with pytest.raises(VirtError, match="has not answered for") as caught:
        manager.call(target, lambda conn: conn.getURI(), timeout=CALL_TIMEOUT)
    assert caught.value.kind == errors.UNREACHABLE
    # At once: well before the call's own timeout, which a call waiting its turn would have run out.
    assert time.monotonic() - started < CALL_TIMEOUT
    release.set()
    wait_for(lambda: answers(manager, target), timeout=30)  # once the stuck call has ended
    manager.drop(target.key)


def test_opening_a_host_that_never_answers_gives_up_in_time(manager, hung_port):
    hung = Target(key="hung", uri=f"qemu+tcp://127.0.0.1:{hung_port}/system", name="frozen")
    started = time.monotonic()
    with pytest.raises(VirtError) as caught:
        manager.open(hung, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert caught.value.kind == errors.UNREACHABLE
    assert caught.value.message == "Host frozen did not answer within 0.5 s."


def test_a_call_to_a_host_that_never_answers_fails_within_its_timeouts(manager, hung_port):
    hung = Target(key="hung", uri=f"qemu+tcp://127.0.0.1:{hung_port}/system", name="frozen")
    started = time.monotonic()
    with pytest.raises(VirtError) as caught:
        manager.call(hung, lambda conn: conn.getURI())
    assert time.monotonic() - started < 1.5
    assert caught.value.kind in (errors.UNREACHABLE, errors.TIMEOUT)
    assert "frozen did not answer" in caught.value.message


def test_opening_a_closed_port_is_refused(manager):
    with pytest.raises(VirtError) as caught:
        manager.open(Target(key="closed", uri="qemu+tcp://127.0.0.1:1/system"))
    assert caught.value.kind == errors.REFUSED


def test_opening_checks_the_uri_first(manager):
    with pytest.raises(VirtError) as caught:
        manager.open(Target(key="bad", uri="foo:///x"))
    assert caught.value.kind == errors.UNKNOWN_SCHEME


def test_an_ssh_key_goes_into_a_private_file_named_in_the_uri(manager, test_conn):
    keyed = Target(key="host-7", uri=TEST_URI, ssh_key="-----BEGIN KEY-----\nabc\n-----END KEY-----")
    conn = manager.open(keyed)
    path = manager.key_dir / "host-7.key"
    own = dict(parse_qsl(urlsplit(TEST_URI).query))  # a private test daemon's socket= (scripts/test.sh)
    assert dict(parse_qsl(urlsplit(conn.getURI()).query)) == {**own, "keyfile": str(path), "no_tty": "1"}
    conn.close()
    assert path.read_text() == keyed.ssh_key + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(manager.key_dir.stat().st_mode) == 0o700


def test_a_target_never_shows_its_secrets():
    text = repr(Target(key="k", uri=TEST_URI, username="u", password="hunter2", ssh_key="PRIVATE"))
    assert "hunter2" not in text and "PRIVATE" not in text
    assert Target(key="k", uri=TEST_URI).label == TEST_URI


def test_a_libvirt_error_from_a_live_connection_keeps_it_cached(manager, target, test_conn):
    conn = manager.get(target)
    with pytest.raises(VirtError):
        manager.call(target, lambda c: c.defineXML("<domain>"))
    assert manager.get(target) is conn
    assert isinstance(conn, libvirt.virConnect)
    manager.drop(target.key)


def test_forgetting_a_key_removes_its_file(manager, test_conn):
    keyed = Target(key="host-8", uri=TEST_URI, ssh_key="PRIVATE")
    manager.open(keyed).close()
    assert manager.key_path(keyed).exists()
    manager.forget_key(keyed)
    assert not manager.key_path(keyed).exists()
    manager.forget_key(keyed)  # Forgetting twice is fine.


def test_while_an_open_is_stuck_further_calls_to_that_host_fail_at_once(tmp_path, hung_port):
    # Its own manager with a longer open timeout (paid once, by the first call), so that "at once"
    # can be told from "after waiting for the stuck open" on a loaded machine.
    manager = ConnectionManager(open_timeout=2, call_timeout=0.5, key_dir=tmp_path / "keys")
    hung = Target(key="hung", uri=f"qemu+tcp://127.0.0.1:{hung_port}/system", name="frozen")
    with pytest.raises(VirtError):
        manager.call(hung, lambda conn: conn.getURI())
    started = time.monotonic()
    with pytest.raises(VirtError, match="Host frozen has not answered for") as caught:
        manager.call(hung, lambda conn: conn.getURI())
    assert time.monotonic() - started < manager.open_timeout
    assert caught.value.kind == errors.UNREACHABLE


def test_unanswered_open_attempts_to_one_host_are_capped(manager, hung_port):
    hung = Target(key="hung", uri=f"qemu+tcp://127.0.0.1:{hung_port}/system", name="frozen")
    for _ in range(MAX_STUCK_OPENS):
        with pytest.raises(VirtError, match="did not answer within"):
            manager.open(hung, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(VirtError, match="has not answered the last") as caught:
        manager.open(hung, timeout=CALL_TIMEOUT)
    assert time.monotonic() - started < CALL_TIMEOUT  # refused at once, not after waiting its timeout
    assert caught.value.kind == errors.UNREACHABLE
