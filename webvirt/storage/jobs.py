"""Storage jobs: copying a volume and downloading one through a libvirt stream, with progress.

Uploads are the install app's "upload" job (webvirt.install.jobs), which the pool page and the
API start through webvirt.storage.services.start_upload.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import libvirt
from django.urls import reverse

from webvirt.dbthreads import closing_connections
from webvirt.hosts.connections import connect
from webvirt.hosts.models import Host
from webvirt.jobs.runner import JobContext
from webvirt.storage import services
from webvirt.virt import volumes as virt_volumes


def run_volume_clone(ctx: JobContext) -> dict:
    """Copy a volume in its pool; progress is the new volume's allocation, polled while libvirt copies."""
    p = ctx.params
    host = Host.objects.get(pk=p["host"])
    conn = connect(host)
    ctx.progress(0, f"Copying {p['name']} to {p['new_name']}…", force=True)
    done = threading.Event()
    watcher = threading.Thread(target=closing_connections(_watch_copy), args=(ctx, conn, p, done), daemon=True)
    watcher.start()
    try:
        with ctx.creating("volume", host.pk, p["path"]):
            info = virt_volumes.clone_volume(conn, p["pool_uuid"], p["name"], p["new_name"])
    finally:
        done.set()
        watcher.join(timeout=2)
    ctx.keep({p["path"]})
    ctx.log(f"copied {p['name']} to {info.path}")
    oid = services.volume_id(host, info)
    return {"volume": oid, "path": info.path, "links": [{"label": info.name,
                                                         "url": reverse("storage:volume", args=[oid])}],
            "message": f"{info.name} is a copy of {p['name']}."}


def _watch_copy(ctx: JobContext, conn: libvirt.virConnect, p: dict, done: threading.Event) -> None:
    pool = conn.storagePoolLookupByUUIDString(p["pool_uuid"])
    total = max(int(p.get("capacity") or 0), 1)
    while not done.wait(0.5):
        try:
            allocation = pool.storageVolLookupByName(p["new_name"]).info()[2]
        except libvirt.libvirtError:
            continue
        ctx.progress(min(99.0, 100 * allocation / total), f"Copied {allocation / 1024**2:,.0f} MiB.")


def run_volume_download(ctx: JobContext) -> dict:
    """Stream a volume into a file under STATE_DIR/downloads, which the job's page then offers."""
    p = ctx.params
    host = Host.objects.get(pk=p["host"])
    conn = connect(host)
    services.remove_old_downloads()
    folder = services.download_dir() / str(ctx.job.pk)
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / Path(p["name"]).name
    checked = [time.monotonic()]

    def progress(sent: int, total: int) -> None:
        ctx.progress(99 * sent / max(total, 1), f"Downloaded {sent / 1024**2:,.0f} of {total / 1024**2:,.0f} MiB.")
        if time.monotonic() - checked[0] > 1:
            checked[0] = time.monotonic()
            ctx.check_cancel()

    ctx.progress(0, f"Downloading {p['name']}…", force=True)
    try:
        with path.open("wb") as out:
            size = virt_volumes.download(conn, p["pool_uuid"], p["name"], out, progress)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    ctx.log(f"downloaded {size} bytes to {path}")
    url = reverse("storage:download_file", args=[ctx.job.pk])
    return {"file": str(path), "size": size, "url": url, "links": [{"label": f"Save {p['name']}", "url": url}],
            "message": f"{p['name']} is ready to save ({size / 1024**2:,.1f} MiB)."}
