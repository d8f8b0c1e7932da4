"""Storage pools and volumes: shared by the views, the API and the jobs.

Pools and volumes are read live from their host (with a timeout) and named by composite ids
(see webvirt.hosts.objects): a pool is `<host>:<pool uuid>`, a volume `<host>:<pool uuid>:<name>`.
Only administrators manage storage. Copying, uploading and downloading volumes are jobs.
"""

from __future__ import annotations

import shutil
import time
from operator import attrgetter
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from webvirt.accounts import policy
from webvirt.accounts.audit import Target, audited
from webvirt.accounts.policy import Actor
from webvirt.catalog.models import Template
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.hosts.objects import act, acting, make_id, read, split_id
from webvirt.jobs.models import Job
from webvirt.jobs.services import create_job
from webvirt.virt import errors, storagexml
from webvirt.virt import storage as virt_storage
from webvirt.virt import volumes as virt_volumes
from webvirt.virt.errors import VirtError
from webvirt.virt.storage import PoolInfo, VolumeInfo
from webvirt.virt.storagexml import POOL_LABELS, POOL_TYPES, PoolSpec

SLOW = 60.0  # building, starting (mounting, logging in to iSCSI) and deleting with contents take a while
NAME = attrgetter("name")  # a pool's name in the audit trail, once the call returned it
DOWNLOAD_KEEP_SECONDS = 24 * 3600


def pool_id(host: Host, info: PoolInfo) -> str:
    return make_id(host, info.uuid)


def volume_id(host: Host, info: VolumeInfo) -> str:
    return make_id(host, info.pool_uuid, info.name)


def _pool_target(target: Target, host: Host, oid: str, name: str) -> None:
    target.set(kind="pool", ident=oid, text=f"{name} on {host.name}")


def _volume_target(target: Target, host: Host, oid: str, name: str) -> None:
    target.set(kind="volume", ident=oid, text=f"{name} on {host.name}")


# Pools ------------------------------------------------------------------------------------------

def list_pools(actor: Actor, host: Host) -> list[PoolInfo]:
    policy.require(actor.user, policy.CHANGE, host)
    return call(host, virt_storage.list_pools)


def offered_types(actor: Actor, host: Host) -> list[str]:
    policy.require(actor.user, policy.CHANGE, host)
    try:
        return call(host, virt_storage.offered_types)
    except VirtError:
        return list(POOL_TYPES)


def get_pool(actor: Actor, oid: str) -> tuple[Host, PoolInfo]:
    return read(actor, oid, virt_storage.get_pool)


def pool_xml(actor: Actor, oid: str, inactive: bool = True) -> str:
    return read(actor, oid, lambda conn, uuid: virt_storage.pool_xml_of(conn, uuid, inactive))[1]


def create_pool(actor: Actor, host: Host, *, spec: PoolSpec | None = None, xml: str = "", start: bool = True,
                build: bool = False, autostart: bool = False) -> PoolInfo:
    """Define a pool from the form's fields or XML; build and start it as asked. A failure leaves no pool."""
    with audited(actor, "pool.create") as target:
        target.set(kind="pool", text=f"{spec.name if spec else 'from XML'} on {host.name}")
        policy.require(actor.user, policy.CHANGE, host)
        if spec is not None:
            if spec.type not in call(host, virt_storage.offered_types):
                raise VirtError(f"This host's libvirt does not offer {POOL_LABELS[spec.type]} pools.",
                                errors.UNSUPPORTED)
            xml = storagexml.pool_xml(spec)
        if not xml.strip():
            raise VirtError("Fill in the form, or give the pool's XML.", errors.INVALID)
        info = call(host, lambda conn: virt_storage.define_pool(conn, xml, start, build, autostart), SLOW)
        _pool_target(target, host, pool_id(host, info), info.name)
        return info


POOL_ACTIONS = {"start": virt_storage.start_pool, "stop": virt_storage.stop_pool,
                "refresh": virt_storage.refresh_pool}


def pool_action(actor: Actor, oid: str, action: str) -> PoolInfo:
    if action not in POOL_ACTIONS:
        raise VirtError(f"'{action}' is not a pool action. Use one of: {', '.join(POOL_ACTIONS)}.", errors.INVALID)
    return act(actor, f"pool.{action}", "pool", oid, POOL_ACTIONS[action], timeout=SLOW, name_of=NAME)


def set_pool_autostart(actor: Actor, oid: str, enabled: bool) -> PoolInfo:
    return act(actor, "pool.autostart_on" if enabled else "pool.autostart_off", "pool", oid,
               lambda conn, uuid: virt_storage.set_pool_autostart(conn, uuid, enabled), name_of=NAME)


def delete_pool(actor: Actor, oid: str, delete_volumes: bool = False) -> list[str]:
    """Remove a pool (and with `delete_volumes` its volumes); refused while domains use any of them."""
    with acting(actor, "pool.delete", "pool", oid) as live:
        bases = Template.base_paths(live.host.pk)
        name, deleted = live.call(lambda conn, uuid: virt_storage.delete_pool(conn, uuid, delete_volumes, bases),
                                  SLOW)
        live.name(name)
        live.target.detail.append(f"deleted volumes: {', '.join(deleted)}" if delete_volumes else "volumes kept")
        return deleted


def update_pool_xml(actor: Actor, oid: str, xml: str) -> PoolInfo:
    return act(actor, "pool.edit_xml", "pool", oid, lambda conn, uuid: virt_storage.redefine_pool(conn, uuid, xml),
               name_of=NAME)


# Volumes ----------------------------------------------------------------------------------------

def list_volumes(actor: Actor, pool_oid: str) -> list[VolumeInfo]:
    return read(actor, pool_oid, virt_storage.list_volumes, timeout=SLOW)[1]


def get_volume(actor: Actor, oid: str) -> tuple[Host, VolumeInfo]:
    return read(actor, oid, virt_storage.get_volume, parts=3)


def volume_xml(actor: Actor, oid: str) -> str:
    return read(actor, oid, virt_storage.volume_xml_of, parts=3)[1]


def create_volume(actor: Actor, pool_oid: str, name: str, fmt: str, capacity_mib: int) -> VolumeInfo:
    with audited(actor, "volume.create") as target:
        target.set(kind="volume", text=f"{name} in {pool_oid}")
        host, (uuid,) = split_id(actor.user, pool_oid, 2)
        info = call(host, lambda conn: virt_volumes.create_volume(conn, uuid, name, fmt, capacity_mib), SLOW)
        _volume_target(target, host, volume_id(host, info), f"{info.name} in {info.pool_name}")
        target.detail.append(f"{fmt}, {capacity_mib} MiB")
        return info


def delete_volume(actor: Actor, oid: str) -> str:
    with acting(actor, "volume.delete", "volume", oid, parts=3, named=True) as live:
        bases = Template.base_paths(live.host.pk)
        return live.call(lambda conn, pool_uuid, name: virt_volumes.delete_volume(conn, pool_uuid, name, bases), SLOW)


def resize_volume(actor: Actor, oid: str, capacity_mib: int) -> VolumeInfo:
    return act(actor, "volume.resize", "volume", oid,
               lambda conn, pool_uuid, name: virt_volumes.resize_volume(conn, pool_uuid, name, capacity_mib),
               parts=3, timeout=SLOW, named=True, detail=[f"now {capacity_mib} MiB"])


def start_clone(actor: Actor, oid: str, new_name: str) -> Job:
    """Check that the copy fits, then start the job that copies the volume in its pool."""
    with acting(actor, "volume.clone", "volume", oid, parts=3, named=True) as live:
        (pool_uuid, name), host = live.keys, live.host
        path, capacity = live.call(lambda conn, uuid, vol: virt_volumes.clone_plan(conn, uuid, vol, new_name))
        job = create_job(actor, "volume_clone", f"Copy {name} to {new_name} on {host.name}", host=host,
                         params={"host": host.pk, "pool_uuid": pool_uuid, "name": name, "new_name": new_name.strip(),
                                 "path": path, "capacity": capacity},
                         target=("volume", oid, name))
        live.target.detail.append(f"to {new_name}, job #{job.pk}")
        return job


def start_upload(actor: Actor, pool_oid: str, name: str, upload: UploadedFile) -> Job:
    """Stream an uploaded file into a new volume of the pool: the install app's upload job does the work."""
    from webvirt.install import services as install_services

    host, pool = get_pool(actor, pool_oid)
    if not pool.active:
        raise VirtError(f"Pool {pool.name} is not running; start it first.", errors.STATE)
    return install_services.start_upload(actor, host, pool.name, name, upload)


def start_download(actor: Actor, oid: str) -> Job:
    with acting(actor, "volume.download", "volume", oid, parts=3, named=True) as live:
        (pool_uuid, name), host = live.keys, live.host
        live.call(virt_storage.volume_lookup)
        job = create_job(actor, "volume_download", f"Download {name} from {host.name}", host=host,
                         params={"host": host.pk, "pool_uuid": pool_uuid, "name": name}, target=("volume", oid, name))
        live.target.detail.append(f"job #{job.pk}")
        return job


def retry_volume_clone(actor: Actor, params: dict) -> Job:
    return start_clone(actor, make_id(params["host"], params["pool_uuid"], params["name"]), params["new_name"])


def retry_volume_download(actor: Actor, params: dict) -> Job:
    return start_download(actor, make_id(params["host"], params["pool_uuid"], params["name"]))


def jobs_for(oids: list[str], kinds: tuple[str, ...] = ("volume_clone", "volume_download", "upload")) -> list[Job]:
    """Recent storage jobs about these volumes (for progress bars on the pool and volume pages)."""
    return list(Job.objects.filter(kind__in=kinds, target_id__in=oids).order_by("-created")[:10])


# Downloaded files -------------------------------------------------------------------------------

def download_dir() -> Path:
    folder = Path(settings.STATE_DIR) / "downloads"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def remove_old_downloads(keep_seconds: float = DOWNLOAD_KEEP_SECONDS) -> int:
    """Downloaded volumes are kept for a day, then removed (called whenever a new download starts)."""
    removed = 0
    cutoff = time.time() - keep_seconds
    for folder in download_dir().iterdir():
        if folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def downloaded_file(actor: Actor, job: Job) -> Path:
    """The file a finished download job wrote, if `actor` may have it."""
    policy.require(actor.user, policy.VIEW, job)
    policy.require_admin(actor.user)
    path = Path(job.result.get("file", "")) if job.kind == "volume_download" else None
    if job.state != Job.SUCCEEDED or path is None or not path.is_file() or download_dir() not in path.parents:
        raise VirtError("That download is not ready, or its file was removed after a day. Start it again.",
                        errors.NOT_FOUND)
    return path
