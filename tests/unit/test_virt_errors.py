"""errors.from_libvirt: real libvirt failures on the test driver, classified and phrased for people."""

from __future__ import annotations

from urllib.parse import urlsplit

import libvirt
import pytest

from tests.conftest import TEST_URI
from webvirt.virt import errors
from webvirt.virt.errors import VirtError, from_libvirt


def failure(call) -> libvirt.libvirtError:  # type: ignore[no-untyped-def]
    with pytest.raises(libvirt.libvirtError) as caught:
        call()
    return caught.value


def test_a_missing_domain_is_not_found(test_conn):
    error = from_libvirt(failure(lambda: test_conn.lookupByName("no-such-domain-here")))
    assert error.kind == errors.NOT_FOUND
    assert error.message == "Domain not found."


def test_xml_libvirt_cannot_parse_is_invalid(test_conn):
    error = from_libvirt(failure(lambda: test_conn.defineXML("<domain>")))
    assert error.kind == errors.INVALID
    assert error.detail.startswith("(domain_definition)")


def test_xml_the_schema_rejects_is_invalid_and_keeps_libvirts_reason(test_conn):
    xml = "<domain type='test'><name>x</name><memory>1024</memory><devices><bogus/></devices></domain>"
    error = from_libvirt(failure(lambda: test_conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)))
    assert error.kind == errors.INVALID
    assert "failed to validate against schema" in error.message


def test_an_unknown_scheme_is_classified_when_connecting():
    # Asked of this run's own daemon (TEST_URI's socket): a bare foo:///x goes to the machine's libvirtd,
    # which the machine run restarts while the other runs go on (it failed as "refused" then).
    query = urlsplit(TEST_URI).query
    uri = "foo+unix:///x" + (f"?{query}" if query else "")
    error = from_libvirt(failure(lambda: libvirt.open(uri)), connecting=True)
    assert error.kind == errors.UNKNOWN_SCHEME
    assert "no driver" in error.message
    assert "foo:///x" in error.detail


def test_a_closed_port_is_refused_when_connecting():
    error = from_libvirt(failure(lambda: libvirt.open("qemu+tcp://127.0.0.1:1/system")), connecting=True)
    assert error.kind == errors.REFUSED
    assert error.message == "The host refused the connection. Is libvirtd running and listening there?"
    assert "Connection refused" in error.detail


def test_a_missing_socket_is_refused_when_connecting(tmp_path):
    uri = f"qemu+unix:///system?socket={tmp_path}/nothing.sock"
    error = from_libvirt(failure(lambda: libvirt.open(uri)), connecting=True)
    assert error.kind == errors.REFUSED
    assert "socket does not exist" in error.message


def test_an_action_the_state_forbids_is_a_sentence(test_conn, make_test_domain):
    dom = make_test_domain()
    error = from_libvirt(failure(dom.suspend))
    assert error.kind == errors.OTHER  # The test driver says "internal error", not "invalid operation".
    assert error.message[0].isupper() and error.message.endswith(".")
    assert "not running" in error.message


def test_a_name_already_defined_by_another_uuid_is_not_a_crash(test_conn, make_test_domain):
    from tests.conftest import domain_xml

    dom = make_test_domain()
    error = from_libvirt(failure(lambda: test_conn.createXML(domain_xml(dom.name()), 0)))
    assert error.kind == errors.OTHER
    assert dom.name() in error.message


def test_a_node_file_that_cannot_be_read_is_invalid():
    error = from_libvirt(failure(lambda: libvirt.open("test:///no/such/node.xml")), connecting=True)
    assert error.kind == errors.INVALID
    assert error.message.endswith(".")


def test_a_virt_error_prints_as_its_sentence():
    error = VirtError("Host h did not answer within 5 s.", errors.TIMEOUT, detail="raw")
    assert str(error) == "Host h did not answer within 5 s."
    assert (error.kind, error.detail) == (errors.TIMEOUT, "raw")
    assert VirtError("x").kind == errors.OTHER


def test_the_test_uri_answers(test_conn):
    assert test_conn.getURI() == TEST_URI
