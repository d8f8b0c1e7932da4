"""Fixtures for templates and cloning on libvirt's test driver through the daemon."""

from __future__ import annotations

import uuid as uuidlib

import libvirt
import pytest

from tests.people import api_for
from webvirt.domains.services import sync_host


@pytest.fixture
def base_volume(test_conn):  # type: ignore[no-untyped-def]
    """A qcow2 volume in the test driver's dir pool, to be a template's disk."""
    pool = test_conn.storagePoolLookupByName("default-pool")
    name = f"base-{uuidlib.uuid4().hex[:8]}.qcow2"
    vol = pool.createXML(f"<volume><name>{name}</name><capacity unit='MiB'>64</capacity>"
                         "<target><format type='qcow2'/></target></volume>", 0)
    yield vol
    try:
        vol.delete(0)
    except libvirt.libvirtError:
        pass


@pytest.fixture
def template_source(test_conn, test_host, base_volume):  # type: ignore[no-untyped-def]
    """A shut-off domain on the test driver whose disk is a volume in a pool, loaded in the cache."""
    from webvirt.domains.models import Domain

    name = f"src-{uuidlib.uuid4().hex[:6]}"
    xml = f"""<domain type='test'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
      <os><type arch='i686'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='{base_volume.path()}'/><target dev='vda' bus='virtio'/></disk>
        <interface type='network'><source network='default'/><mac address='52:54:00:aa:bb:cc'/></interface>
      </devices></domain>"""
    dom = test_conn.defineXML(xml)
    sync_host(test_host)
    yield Domain.objects.get(host=test_host, uuid=dom.UUIDString())
    try:
        dom.undefine()
    except libvirt.libvirtError:
        pass


@pytest.fixture
def cleanup_clones(test_conn):  # type: ignore[no-untyped-def]
    """Remove clones the test made (domains whose names start with the given prefixes)."""
    prefixes: list[str] = []
    yield prefixes
    for dom in test_conn.listAllDomains(0):
        if any(dom.name().startswith(p) for p in prefixes):
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
    pool = test_conn.storagePoolLookupByName("default-pool")
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        if any(vol.name().startswith(p) for p in prefixes):
            vol.delete(0)


# Templates and clones ---------------------------------------------------------------------------

@pytest.fixture
def template(admin, template_source, cleanup_clones):  # type: ignore[no-untyped-def]
    """A template made from `template_source` (1 vCPU, 128 MiB, a 64 MiB qcow2 disk), granted to nobody yet.
    Its clones are named after it and removed after the test."""
    from webvirt.accounts.policy import Actor
    from webvirt.catalog import services

    made = services.make_template(Actor(user=admin), template_source, services.TemplateData(
        name=f"tpl-{uuidlib.uuid4().hex[:6]}", description="A small test machine", os="Test OS",
        max_lifetime_days=10))
    cleanup_clones.append(made.name)
    return made


def clone(user, template, count=1, pattern=None, **extra):  # type: ignore[no-untyped-def]
    """Ask for clones through the API as `user` (expiring in a day unless `expires_at` is given)."""
    from datetime import timedelta

    from django.utils import timezone

    body = {"count": count, "name_pattern": pattern or f"{template.name}-{{n:02}}", "mode": "linked",
            "start": False, "expires_at": (timezone.now() + timedelta(days=1)).isoformat(), **extra}
    return api_for(user).post(f"/api/v1/templates/{template.pk}/clone/", body, format="json")


def run(response):  # type: ignore[no-untyped-def]
    """Run the job a clone request started, here and now; returns the Job row."""
    from webvirt.jobs import runner
    from webvirt.jobs.models import Job

    assert response.status_code == 202, response.json()
    runner.execute(response.json()["job"])
    return Job.objects.get(pk=response.json()["job"])


def pool_volumes(test_conn, prefix: str) -> list[str]:
    pool = test_conn.storagePoolLookupByName("default-pool")
    pool.refresh(0)
    return sorted(v.name() for v in pool.listAllVolumes(0) if v.name().startswith(prefix))


def domain_names(test_conn, prefix: str) -> list[str]:
    return sorted(d.name() for d in test_conn.listAllDomains(0) if d.name().startswith(prefix))
