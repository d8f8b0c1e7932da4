"""Installing a new machine from an ISO, and uploading ISOs into pools: checks, then a job.

Shared by the install pages and the API. Everything that can be known up front (a free and valid
name, an existing pool with room, an existing ISO and network, a domain type the host offers) is
checked before the job is created, so bad input leaves nothing half-made.

An upload is received by the web process into a file under STATE_DIR/uploads, and a worker
streams it into the pool through libvirt. The worker must therefore run on the same machine as
the web process (or share STATE_DIR with it); the file is removed when the job ends, however it ends.
"""

from __future__ import annotations

import shutil
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job
from webvirt.jobs.services import create_job
from webvirt.virt import errors
from webvirt.virt import install as virt_install
from webvirt.virt.errors import VirtError

MAX_VCPUS = 64
MAX_MEMORY_MIB = 1024 * 1024
MAX_DISK_GIB = 64 * 1024


@dataclass
class InstallRequest:
    name: str
    pool: str
    iso: str = ""
    vcpus: int = 1
    memory_mib: int = 1024
    disk_gib: float = 10
    network: str = ""
    graphics: str = "vnc"
    boot: list[str] = field(default_factory=lambda: ["cdrom", "hd"])
    domain_type: str = ""  # "" chooses kvm where the host offers it, else qemu


def upload_dir() -> Path:
    folder = Path(settings.STATE_DIR) / "uploads"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def domain_type_for(host: Host, asked: str) -> str:
    offers_kvm = bool(host.facts.get("kvm"))
    if asked == "kvm" and not offers_kvm:
        raise VirtError(f"{host.name} does not offer KVM; choose qemu (emulation).", errors.INVALID)
    if asked not in ("", "kvm", "qemu"):
        raise VirtError("The domain type is kvm or qemu.", errors.INVALID)
    return asked or ("kvm" if offers_kvm else "qemu")


def _check_settings(req: InstallRequest) -> None:
    if not 1 <= req.vcpus <= MAX_VCPUS:
        raise VirtError(f"Give the machine between 1 and {MAX_VCPUS} vCPUs.", errors.INVALID)
    if not 16 <= req.memory_mib <= MAX_MEMORY_MIB:
        raise VirtError("Give the machine at least 16 MiB of memory.", errors.INVALID)
    if not 0 < req.disk_gib <= MAX_DISK_GIB:
        raise VirtError(f"The disk size is more than 0 and at most {MAX_DISK_GIB} GiB.", errors.INVALID)
    if req.graphics not in virt_install.GRAPHICS:
        raise VirtError("Graphics are vnc, spice or none.", errors.INVALID)
    if not req.boot or any(dev not in virt_install.BOOT_DEVICES for dev in req.boot) \
            or len(set(req.boot)) != len(req.boot):
        raise VirtError("The boot order lists cdrom, hd and network, each at most once.", errors.INVALID)
    if "cdrom" in req.boot and not req.iso:
        raise VirtError("Choose the ISO to boot from, or take cdrom out of the boot order.", errors.INVALID)


def start_install(actor: Actor, host: Host, req: InstallRequest) -> Job:
    """Check the request, then start the job that creates the disk, defines the machine and starts it."""
    with audited(actor, "domain.install") as target:
        target.set(kind="domain", text=f"{req.name} on {host.name}")
        policy.require(actor.user, policy.VIEW, host)
        policy.require(actor.user, policy.ADD, Domain)
        host.refuse_placing()
        req.name = req.name.strip()
        _check_settings(req)
        kind = domain_type_for(host, req.domain_type)
        if Domain.objects.filter(host=host, name=req.name).exists():
            raise VirtError(f"A domain named '{req.name}' already exists on {host.name}. Choose another name.",
                            errors.CONFLICT)
        disk_bytes = int(req.disk_gib * 1024**3)
        info = call(host, lambda conn: virt_install.check_install(
            conn, name=req.name, pool=req.pool, disk_bytes=disk_bytes, iso=req.iso, network=req.network))
        params = {**asdict(req), "host": host.pk, "domain_type": kind, "disk_bytes": disk_bytes,
                  "disk_path": virt_install.volume_path(info, virt_install.disk_name(req.name)),
                  "owner": actor.user.pk if actor.user.is_authenticated else None}
        job = create_job(actor, "install", f"Install {req.name} on {host.name}", params=params, host=host,
                         target=("host", str(host.pk), host.name))
        target.detail.append(f"job #{job.pk}")
        return job


def retry_install(actor: Actor, params: dict) -> Job:
    pk = params.get("host")
    host = Host.objects.filter(pk=pk).first() if pk is not None else None
    if host is None:
        raise VirtError("The host of that job no longer exists.", errors.NOT_FOUND)
    fields = {k: params[k] for k in InstallRequest.__dataclass_fields__ if k in params}
    return start_install(actor, host, InstallRequest(**fields))


def save_upload(upload: UploadedFile) -> Path:
    """Keep an uploaded file under STATE_DIR/uploads until its job has streamed it into a pool."""
    path = upload_dir() / f"{uuidlib.uuid4().hex}.upload"
    temporary = getattr(upload, "temporary_file_path", None)
    if temporary is not None:
        shutil.move(temporary(), path)
    else:
        with path.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    return path


def start_upload(actor: Actor, host: Host, pool: str, name: str, upload: UploadedFile) -> Job:
    """Check the pool and name, keep the file, and start the job that streams it into the pool."""
    with audited(actor, "volume.upload") as target:
        name = (name or upload.name or "").strip()
        target.set(kind="volume", text=f"{name} in {pool} on {host.name}")
        policy.require(actor.user, policy.VIEW, host)
        policy.require_admin(actor.user)
        size = upload.size or 0
        info = call(host, lambda conn: virt_install.check_upload(conn, pool, name, size))
        path = save_upload(upload)
        try:
            job = create_job(actor, "upload", f"Upload {name} into {pool} on {host.name}", host=host,
                             params={"host": host.pk, "pool": pool, "name": name, "file": str(path), "size": size,
                                     "volume_path": virt_install.volume_path(info, name)},
                             target=("host", str(host.pk), host.name))
        except Exception:
            path.unlink(missing_ok=True)
            raise
        target.detail.append(f"job #{job.pk}, {size} bytes")
        return job


def host_choices(host: Host) -> dict[str, list[str]]:
    """The pools, ISOs and networks a new machine on `host` can use (read now, with a timeout)."""
    return call(host, virt_install.choices)
