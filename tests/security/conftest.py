"""The people and objects the authorization matrix asks about, on libvirt's test driver through the daemon.

Five roles: anonymous, a stranger (a user with nothing), a grantee (granted a template), the owner
of a domain (a clone of that template), and an administrator. Every libvirt object made here
(domains, a network, a pool with a volume, a bridge interface) carries a random name and is removed
after the test, so a route that deletes or stops it harms nothing shared.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.catalog.conftest import base_volume, cleanup_clones, template, template_source  # noqa: F401
from tests.people import unique
from tests.unit.conftest import domain_row, forget  # noqa: F401
from webvirt.accounts.models import AuditEntry
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job

ROLES = ("anonymous", "stranger", "grantee", "owner", "admin")


@dataclass
class World:
    """Everything a route's URL may name, and a logged-in client per role."""

    host: Host
    domain: Domain  # owned by `owner`, shut off
    template: Any  # granted to `grantee`
    job: Job  # started by `owner`
    audit: AuditEntry
    network: str  # ids as the API spells them: "<host>:<uuid>", "<host>:<name>", "<host>:<pool>:<vol>"
    interface: str
    pool: str
    volume: str
    users: dict[str, Any]
    new_domain: Callable[[], Domain]  # another of the owner's domains, for requests that change one
    new_job: Callable[[], Job]
    new_token: Callable[[], Any]  # one of the owner's API tokens
    clients: dict[str, Client] = field(default_factory=dict)

    def client(self, role: str) -> Client:
        if role not in self.clients:
            client = Client()
            if role != "anonymous":
                client.force_login(self.users[role])
            self.clients[role] = client
        return self.clients[role]


def _network_xml(name: str) -> str:
    return (f"<network><name>{name}</name><forward mode='nat'/><ip address='10.214.{uuidlib.uuid4().int % 250}.1' "
            "netmask='255.255.255.0'/></network>")


@pytest.fixture
def libvirt_objects(test_conn: libvirt.virConnect) -> Iterator[dict[str, Any]]:
    """A network, a started dir pool with one volume, and a bridge interface of this test's own."""
    net = test_conn.networkDefineXML(_network_xml(unique("mx-net")))
    pool = test_conn.storagePoolDefineXML(f"<pool type='dir'><name>{unique('mx-pool')}</name>"
                                          f"<target><path>/mx/{uuidlib.uuid4().hex}</path></target></pool>", 0)
    pool.create(0)
    vol = pool.createXML(f"<volume><name>{unique('mx-vol')}</name><capacity unit='MiB'>1</capacity></volume>", 0)
    iface = test_conn.interfaceDefineXML(f"<interface type='bridge' name='{unique('mxbr')}'><bridge/></interface>", 0)
    made = {"network": net.UUIDString(), "pool": pool.UUIDString(), "volume": vol.name(), "interface": iface.name()}
    yield made
    _remove(lambda: test_conn.networkLookupByUUIDString(made["network"]), "destroy", "undefine")
    _remove(lambda: test_conn.interfaceLookupByName(made["interface"]), "destroy", "undefine")
    try:
        live = test_conn.storagePoolLookupByUUIDString(made["pool"])
        if live.isActive():
            for volume in live.listAllVolumes(0):
                volume.delete(0)
    except libvirt.libvirtError:
        pass
    _remove(lambda: test_conn.storagePoolLookupByUUIDString(made["pool"]), "destroy", "undefine")


def _remove(lookup: Callable[[], Any], *steps: str) -> None:
    """Undo whatever of `steps` still applies; a route may already have stopped or deleted it."""
    for step in steps:
        try:
            obj = lookup()
            if step != "destroy" or obj.isActive():
                getattr(obj, step)()
        except libvirt.libvirtError:
            pass


@pytest.fixture
def world(admin, stranger, test_host, domain_row, template, libvirt_objects) -> World:  # type: ignore[no-untyped-def]  # noqa: F811
    users_model = get_user_model()
    owner = users_model.objects.create_user("olivia", "", "olivia-password-1")
    grantee = users_model.objects.create_user("gina", "", "gina-password-1")
    template.users.add(grantee)

    def new_domain() -> Domain:
        row = domain_row("mx")
        Domain.objects.filter(pk=row.pk).update(owner=owner, template=template)
        return Domain.objects.get(pk=row.pk)

    def new_job() -> Job:
        # A finished job of a kind nothing retries: cancel and retry answer 409 and 400, doing nothing.
        return Job.objects.create(kind="mx", title="A job of the owner's", user=owner, host=test_host,
                                  state=Job.FAILED)

    def new_token() -> Any:
        from webvirt.accounts.tokens import create_token  # API tokens are being added beside this test

        return create_token(owner, name="mx")[0]

    audit = AuditEntry.objects.create(username=admin.username, action="host.create", object_type="host",
                                      object_id=str(test_host.pk), object_repr=test_host.name,
                                      outcome=AuditEntry.OK)
    h = test_host.pk
    return World(host=test_host, domain=new_domain(), template=template, job=new_job(), audit=audit,
                 network=f"{h}:{libvirt_objects['network']}", interface=f"{h}:{libvirt_objects['interface']}",
                 pool=f"{h}:{libvirt_objects['pool']}",
                 volume=f"{h}:{libvirt_objects['pool']}:{libvirt_objects['volume']}",
                 users={"stranger": stranger, "grantee": grantee, "owner": owner, "admin": admin},
                 new_domain=new_domain, new_job=new_job, new_token=new_token)
