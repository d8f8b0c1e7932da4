"""Fixtures for tests against the real libvirtd with QEMU (qemu:///system).

Guests are the tiny image from tests/guest, always emulated (type 'qemu'), with no network
interface. Everything a test creates on the host (domains, pools, files) is removed afterwards,
also when the test fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.guest.guest import ensure_image

QEMU_URI = "qemu:///system"


@pytest.fixture(scope="session")
def qemu_conn() -> Iterator[libvirt.virConnect]:
    try:
        conn = libvirt.open(QEMU_URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"{QEMU_URI} does not answer ({exc}); start it with `bash scripts/services.sh`.")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def guest_image() -> Path:
    return ensure_image()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory qemu (user libvirt-qemu) can reach: pytest's own tmp_path is private to root."""
    path = Path(tempfile.mkdtemp(prefix="webvirt-it-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scratch_pool(qemu_conn: libvirt.virConnect, workdir: Path) -> Iterator[libvirt.virStoragePool]:
    """A transient directory pool under `workdir`, so the guest's overlay is a volume libvirt knows."""
    folder = workdir / "pool"
    folder.mkdir(mode=0o755)
    name = f"webvirt-it-{uuidlib.uuid4().hex[:8]}"
    pool = qemu_conn.storagePoolCreateXML(
        f"<pool type='dir'><name>{name}</name><target><path>{folder}</path></target></pool>", 0)
    yield pool
    try:
        pool.destroy()  # transient: destroying it removes it; the files go with workdir
    except libvirt.libvirtError:
        pass


@pytest.fixture
def guest_names(qemu_conn: libvirt.virConnect) -> Iterator[list[str]]:
    """Names of domains the test defines; whatever is left of them is forced off and undefined."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            dom = qemu_conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


@pytest.fixture
def qemu_host(api, qemu_conn):  # type: ignore[no-untyped-def]
    """qemu:///system registered as a host through the API; its cached connection is closed afterwards."""
    from webvirt.hosts.connections import manager
    from webvirt.hosts.models import Host

    response = api.post("/api/v1/hosts/", {"name": "local qemu", "uri": QEMU_URI,
                                           "description": "integration tests"}, format="json")
    assert response.status_code == 201, response.json()
    host = Host.objects.get(pk=response.json()["id"])
    yield host
    manager.drop(host.target().key)


# Templates and clones, made by a real Celery worker ------------------------------------------------

@pytest.fixture
def clone_prefix(qemu_conn: libvirt.virConnect) -> Iterator[str]:
    """A name prefix for the test's domains; whatever domain carries it afterwards is forced off and
    undefined (their volumes live in scratch_pool's folder, which goes with `workdir`)."""
    prefix = f"wvc-{uuidlib.uuid4().hex[:6]}-"
    yield prefix
    conn = libvirt.open(QEMU_URI)  # not the session's: libvirtd may have been restarted meanwhile
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(prefix):
            continue
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError:
            pass
    conn.close()


def pool_dir(pool: libvirt.virStoragePool) -> Path:
    from lxml import etree

    return Path(etree.fromstring(pool.XMLDesc(0).encode()).findtext("./target/path"))


def define_template(api, host, pool: libvirt.virStoragePool, name: str, disk: Path, fmt: str = "qcow2") -> dict:  # type: ignore[no-untyped-def]
    """Define a shut-off tiny guest on `disk` (a volume of `pool`) through the API and make it a template."""
    from tests.guest.guest import tiny_domain_xml

    pool.refresh(0)
    xml = tiny_domain_xml(name, str(disk), vnc=False).replace("type='qcow2'", f"type='{fmt}'")
    response = api.post("/api/v1/domains/", {"host": host.pk, "xml": xml}, format="json")
    assert response.status_code == 201, response.json()
    response = api.post("/api/v1/templates/", {"domain": response.json()["id"], "name": f"{name} template"},
                        format="json")
    assert response.status_code == 201, response.json()
    return {**response.json(), "base": str(disk), "source": name}


@pytest.fixture
def tiny_template(api, qemu_host, guest_image, scratch_pool, clone_prefix):  # type: ignore[no-untyped-def]
    """A template made from the tiny guest: its disk a standalone qcow2 volume in scratch_pool, no network."""
    import subprocess

    base = pool_dir(scratch_pool) / f"{clone_prefix}base.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(guest_image), str(base)], check=True)
    return define_template(api, qemu_host, scratch_pool, f"{clone_prefix}src", base)
