"""The install and upload jobs: each step is tracked, so a failure or a lost worker leaves nothing."""

from __future__ import annotations

import time
from pathlib import Path

from django.urls import reverse
from lxml import etree

from webvirt.domains.models import Domain
from webvirt.domains.services import store_state
from webvirt.hosts.connections import connect
from webvirt.hosts.models import Host
from webvirt.jobs.runner import JobContext
from webvirt.virt import clone as virt_clone
from webvirt.virt import domains as virt_domains
from webvirt.virt import errors
from webvirt.virt import install as virt_install
from webvirt.virt.builder import DiskSpec, DomainSpec, domain_xml
from webvirt.virt.errors import VirtError


def install_xml(p: dict, uuid: str) -> str:
    disks = [DiskSpec(path=p["disk_path"], format="qcow2", bus="virtio", target="vda")]
    if p["iso"]:
        disks.append(DiskSpec(path=p["iso"], format="raw", device="cdrom", bus="ide", target="hdc"))
    spec = DomainSpec(name=p["name"], vcpus=p["vcpus"], memory_mib=p["memory_mib"], domain_type=p["domain_type"],
                      disks=disks, network=p["network"], graphics=p["graphics"], boot=p["boot"],
                      description="Installed with webvirt")
    root = etree.fromstring(domain_xml(spec).encode())
    etree.SubElement(root, "uuid").text = uuid
    return etree.tostring(root, encoding="unicode")


def run_install(ctx: JobContext) -> dict:
    p = ctx.params
    host = Host.objects.get(pk=p["host"])
    conn = connect(host)
    ctx.progress(5, "Creating the disk…", force=True)
    with ctx.creating("volume", host.pk, p["disk_path"]):
        path = virt_install.create_disk(conn, p["pool"], virt_install.disk_name(p["name"]), p["disk_bytes"])
    ctx.log(f"created the disk {path}")
    ctx.check_cancel()

    ctx.progress(40, "Defining the machine…", force=True)
    uuid = virt_clone.new_uuid()
    with ctx.creating("domain", host.pk, uuid):
        snap = virt_domains.define(conn, install_xml({**p, "disk_path": path}, uuid))
    row = store_state(host, snap)
    Domain.objects.filter(pk=row.pk).update(owner_id=p.get("owner"), job_id=ctx.job.pk,
                                            disk_gib=round(p["disk_bytes"] / 1024**3, 2))
    ctx.log(f"defined {p['name']} ({p['domain_type']}, {p['vcpus']} vCPU, {p['memory_mib']} MiB)")
    ctx.check_cancel()

    ctx.progress(70, "Starting it…", force=True)
    store_state(host, virt_domains.run_action(conn, uuid, "start"))
    ctx.log(f"started {p['name']}: the installation goes on in its console")
    ctx.keep({p["disk_path"], uuid})
    links = [{"label": p["name"], "url": reverse("domains:detail", args=[row.pk])}]
    return {"domain": row.pk, "uuid": uuid, "links": links,
            "message": f"{p['name']} is running; continue the installation in its console."}


def run_upload(ctx: JobContext) -> dict:
    p = ctx.params
    source = Path(p["file"])
    try:
        host = Host.objects.get(pk=p["host"])
        conn = connect(host)
        size = p["size"]
        if not source.exists():
            raise VirtError(
                "The uploaded file is not on this worker's machine: uploads need a worker beside the web "
                "process (sharing its STATE_DIR).", errors.NOT_FOUND)
        ctx.progress(0, f"Uploading {p['name']} into {p['pool']}…", force=True)
        with ctx.creating("volume", host.pk, p["volume_path"]):
            vol = virt_install.create_upload_volume(conn, p["pool"], p["name"], size)
        checked = [time.monotonic()]

        def sent(done: int) -> None:
            ctx.progress(99 * done / size, f"Uploaded {done / 1024**2:.0f} of {size / 1024**2:.0f} MiB.")
            if time.monotonic() - checked[0] > 1:
                checked[0] = time.monotonic()
                ctx.check_cancel()

        with source.open("rb") as stream:
            path = virt_install.upload(conn, vol, stream, size, sent)
        ctx.log(f"uploaded {size} bytes to {path}")
        ctx.keep({p["volume_path"]})
        return {"volume": path, "message": f"{p['name']} is in pool {p['pool']} ({size / 1024**2:.1f} MiB)."}
    finally:
        source.unlink(missing_ok=True)
