"""Fixtures for templates and cloning on libvirt's test driver through the daemon."""

from __future__ import annotations

import uuid as uuidlib

import libvirt
import pytest

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
