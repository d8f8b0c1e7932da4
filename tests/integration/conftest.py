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


# The session's connection, opened on first use. A module-level holder, not a fixture, because other
# conftests import the fixtures below by name (a fixture they depend on would have to be imported too).
_session: dict[str, libvirt.virConnect] = {}


def live_conn() -> libvirt.virConnect:
    """The session's connection, reopened if libvirtd was restarted under it (tests/events restarts
    it): calls on the dead one would fail, and a cleanup that swallowed that would leave its objects."""
    conn = _session.get("conn")
    if conn is not None:
        try:
            conn.getLibVersion()
            return conn
        except libvirt.libvirtError:
            pass
    try:
        _session["conn"] = libvirt.open(QEMU_URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"{QEMU_URI} does not answer ({exc}); start it with `bash scripts/services.sh`.")
    return _session["conn"]


@pytest.fixture
def qemu_conn() -> libvirt.virConnect:
    return live_conn()


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
def scratch_pool(workdir: Path) -> Iterator[libvirt.virStoragePool]:
    """A transient directory pool under `workdir`, so the guest's overlay is a volume libvirt knows."""
    folder = workdir / "pool"
    folder.mkdir(mode=0o755)
    name = f"webvirt-it-{uuidlib.uuid4().hex[:8]}"
    pool = live_conn().storagePoolCreateXML(
        f"<pool type='dir'><name>{name}</name><target><path>{folder}</path></target></pool>", 0)
    yield pool
    remove_pool(live_conn(), name)


def remove_pool(conn: libvirt.virConnect, name: str) -> None:
    """Stop the transient pool `name` (which removes it; its files go with `workdir`). Fails the test
    if it is still there afterwards: a pool left behind would pile up run after run."""
    try:
        conn.storagePoolLookupByName(name).destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            pytest.fail(f"cleanup: could not remove storage pool {name}: {exc}")
    if name in conn.listStoragePools() + conn.listDefinedStoragePools():
        pytest.fail(f"cleanup: storage pool {name} is still there")


@pytest.fixture
def guest_names() -> Iterator[list[str]]:
    """Names of domains the test defines; whatever is left of them is forced off and undefined."""
    names: list[str] = []
    yield names
    conn = live_conn()
    for name in names:
        try:
            dom = conn.lookupByName(name)
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
def clone_prefix() -> Iterator[str]:
    """A name prefix for the test's domains; whatever domain carries it afterwards is forced off and
    undefined (their volumes live in scratch_pool's folder, which goes with `workdir`)."""
    prefix = f"wvc-{uuidlib.uuid4().hex[:6]}-"
    yield prefix
    remove_domains(live_conn(), prefix)


def remove_domains(conn: libvirt.virConnect, prefix: str) -> None:
    """Force off and undefine every domain named `prefix`...; fails the test if any cannot be removed."""
    problems = []
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(prefix):
            continue
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # gone meanwhile: nothing to do
                problems.append(f"{dom.name()}: {exc}")
    left = [d.name() for d in conn.listAllDomains(0) if d.name().startswith(prefix)]
    if problems or left:
        pytest.fail(f"cleanup: domains named {prefix}... not removed: {'; '.join(problems) or ', '.join(left)}")


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
