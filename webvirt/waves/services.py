"""Clone waves: check, schedule, start, count and end them. Shared by the pages, the API and the tick task.

A wave makes its machines through the catalog's clone job (one job per MAX_CLONES machines, each
machine owned by its member and expiring at the wave's end), so the end is the catalog's expiry. The
clone job checks each machine booted (catalog.jobs.start_booted, the warm pools' check: the template's
ready line on the serial console, or still running after a while; a machine that does not boot is
forced off and started once more, then reported failed and removed); the tick counts from its outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import libvirt
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.utils import timezone

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.catalog import quotas
from webvirt.catalog import services as catalog
from webvirt.catalog.models import Template
from webvirt.domains.models import Domain
from webvirt.events.publish import publish
from webvirt.hosts.connections import call
from webvirt.virt import clone as virt_clone
from webvirt.virt import errors, hostinfo
from webvirt.virt import storage as virt_storage
from webvirt.virt.errors import VirtError
from webvirt.waves.models import Wave

MAX_MACHINES = 500  # per wave: started in clone jobs of catalog.MAX_CLONES each
MAX_PER_USER = 10
# A linked clone's overlay is tiny when made; what its guest writes while it boots and runs is not.
LINKED_BYTES = 64 * 1024**2
MIB = 1024**2


@dataclass
class WaveData:
    name: str
    template: Template
    start_at: datetime
    end_at: datetime
    name_pattern: str
    group: Group | None = None
    users: list[User] = field(default_factory=list)
    per_user: int = 1
    mode: str = "linked"


def members(group: Group | None, users: list[User]) -> list[User]:
    """Who gets machines, read now: the group's active members and the listed users, by username."""
    found = {u.pk: u for u in users if u.is_active}
    if group is not None:
        found.update({u.pk: u for u in group.user_set.filter(is_active=True)})
    return sorted(found.values(), key=lambda u: u.get_username())


def wave_members(wave: Wave) -> list[User]:
    return members(wave.group, list(wave.users.all()))


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def check(data: WaveData, people: list[User], *, wave: Wave | None = None, starting: bool = False) -> list[str]:
    """Refuse (VirtError, a sentence with the numbers) a wave that cannot fit; returns its machines' names."""
    now = timezone.now()
    if not data.name.strip():
        raise VirtError("Give the wave a name.", errors.INVALID)
    if data.mode not in catalog.MODES:
        raise VirtError("The mode is either 'linked' or 'full'.", errors.INVALID)
    if data.end_at <= data.start_at:
        raise VirtError("The wave must end after it starts.", errors.INVALID)
    if not starting and data.start_at < now - timedelta(minutes=1):
        raise VirtError("The start time is in the past.", errors.INVALID)
    if data.end_at <= now:
        raise VirtError("The end time is in the past.", errors.INVALID)
    if not 1 <= data.per_user <= MAX_PER_USER:
        raise VirtError(f"Give each person between 1 and {MAX_PER_USER} machines.", errors.INVALID)
    if not people:
        raise VirtError("The wave has nobody to make machines for: choose a group with members, or users.",
                        errors.INVALID)
    total = len(people) * data.per_user
    if total > MAX_MACHINES:
        raise VirtError(f"{len(people)} people x {data.per_user} make {total} machines; a wave makes at most "
                        f"{MAX_MACHINES}.", errors.INVALID)
    names = _check_names(data, total, wave)
    _check_quotas(data, people)
    _check_host(data.template, total, data.mode == "linked")
    return names


def _check_names(data: WaveData, total: int, wave: Wave | None) -> list[str]:
    """The names are the pattern's first `total` numbers, free on the host and in no other open wave."""
    pattern = virt_clone.NamePattern.parse(data.name_pattern)
    pattern.check(total)
    names = virt_clone.clone_names(data.name_pattern, total, 1)
    host = data.template.host
    taken = sorted(set(Domain.objects.filter(host=host, name__in=names).values_list("name", flat=True)))
    if taken:
        raise VirtError(f"{', '.join(taken[:5])} already exist(s) on {host.name}. Choose another name pattern.",
                        errors.CONFLICT)
    others = Wave.objects.filter(state__in=(Wave.SCHEDULED, Wave.RUNNING), template__host=host)
    for other in others.exclude(pk=wave.pk if wave else -1):
        clash = set(names).intersection(virt_clone.clone_names(other.name_pattern, max(1, other.planned), 1))
        if clash:
            raise VirtError(f"Wave {other.name} makes {sorted(clash)[0]} too. Choose another name pattern.",
                            errors.CONFLICT)
    return names


def _check_quotas(data: WaveData, people: list[User]) -> None:
    need = catalog.clone_usage(data.template, data.per_user)
    for person in people:
        left = quotas.remaining(person)
        for key, label in quotas.LABELS.items():
            room = left[key]
            if room is not None and getattr(need, key) > room:
                raise VirtError(f"{person.get_username()} needs {getattr(need, key):g} {label} for this wave, but "
                                f"their quota has {room:g} left. Raise the quota or give them fewer machines.",
                                errors.CONFLICT)


def _check_host(template: Template, total: int, linked: bool) -> None:
    """All the machines running at once must fit the host's free memory, and their disks its pool."""
    catalog_host_check(template)
    disk_bytes = sum(d.get("capacity", 0) for d in template.disks)
    each = LINKED_BYTES * len(template.disks) if linked else disk_bytes

    def measure(conn: libvirt.virConnect) -> int:
        free = hostinfo.free_memory(conn)
        if template.pool and each:
            pool, _folder = virt_clone.clone_pool(conn, template.pool, linked)
            virt_storage.check_space(pool, each * total, f"The wave's {total} {'linked' if linked else 'full'} "
                                                         f"clone(s) ({each / MIB:,.0f} MiB each)")
        return free

    free_mib = call(template.host, measure, timeout=30) / MIB
    need_mib = template.memory_mib * total
    if need_mib > free_mib:
        raise VirtError(f"The wave needs {total} × {template.memory_mib} MiB ({_gib(need_mib)}) running at once, "  # noqa: RUF001
                        f"but the host {template.host.name} has {_gib(free_mib)} free.", errors.CONFLICT)


def catalog_host_check(template: Template) -> None:
    template.host.refuse_placing()
    if template.host.status == template.host.OFFLINE:
        raise VirtError(f"The template's host {template.host.name} is offline: {template.host.status_reason}",
                        errors.UNREACHABLE)


# Scheduling ------------------------------------------------------------------------------------------

def _describe(wave: Wave) -> str:
    return (f"{wave.template}, {wave.planned} machine(s), {wave.start_at:%Y-%m-%d %H:%M} to "
            f"{wave.end_at:%Y-%m-%d %H:%M}")


def _save(wave: Wave, data: WaveData, people: list[User]) -> None:
    wave.name, wave.template, wave.group = data.name.strip(), data.template, data.group
    wave.per_user, wave.start_at, wave.end_at = data.per_user, data.start_at, data.end_at
    wave.name_pattern, wave.mode = data.name_pattern, data.mode
    wave.planned = len(people) * data.per_user
    wave.save()
    wave.users.set(data.users)


def create_wave(actor: Actor, data: WaveData) -> Wave:
    with audited(actor, "wave.create") as target:
        target.set(kind="wave", text=data.name)
        policy.require_admin(actor.user)
        people = members(data.group, data.users)
        check(data, people)
        wave = Wave(created_by=actor.user)
        _save(wave, data, people)
        target.set(wave)
        target.detail.append(_describe(wave))
        publish(wave_message(wave))
        return wave


def update_wave(actor: Actor, wave: Wave, data: WaveData) -> Wave:
    with audited(actor, "wave.update", wave) as target:
        policy.require(actor.user, policy.CHANGE, wave)
        if wave.state != Wave.SCHEDULED:
            raise VirtError(f"Wave {wave.name} is {wave.state}: only a scheduled wave can be changed.", errors.STATE)
        people = members(data.group, data.users)
        check(data, people, wave=wave)
        _save(wave, data, people)
        target.detail.append(_describe(wave))
        publish(wave_message(wave))
        return wave


def delete_wave(actor: Actor, wave: Wave) -> Wave | None:
    """Cancel a scheduled wave (it stays in the list as cancelled); forget a past one. A running one is ended."""
    with audited(actor, "wave.cancel" if wave.state == Wave.SCHEDULED else "wave.delete", wave):
        policy.require(actor.user, policy.DELETE, wave)
        if wave.state == Wave.RUNNING:
            raise VirtError(f"Wave {wave.name} is running: end it now instead.", errors.STATE)
        if wave.state == Wave.SCHEDULED:
            wave.state, wave.ended = Wave.CANCELLED, timezone.now()
            wave.save(update_fields=["state", "ended"])
            publish(wave_message(wave))
            return wave
        wave.delete()
        return None


def end_now(actor: Actor, wave: Wave) -> Wave:
    """Its machines expire now and are removed at once, like any expired clone."""
    from webvirt.catalog.tasks import expire_clones

    with audited(actor, "wave.end", wave) as target:
        policy.require(actor.user, policy.CHANGE, wave)
        if wave.state != Wave.RUNNING:
            raise VirtError(f"Wave {wave.name} is {wave.state}: only a running wave can be ended.", errors.STATE)
        now = timezone.now()
        count = machines(wave).update(expires_at=now)
        wave.state, wave.ended, wave.end_at = Wave.ENDED, now, min(wave.end_at, now)
        wave.save(update_fields=["state", "ended", "end_at"])
        target.detail.append(f"{count} machine(s) expire now")
        publish(wave_message(wave))
    expire_clones.delay()
    return wave


def machines(wave: Wave) -> QuerySet[Domain]:
    """The wave's machines: the domains its clone jobs made."""
    return Domain.objects.filter(job_id__in=wave.jobs or [-1])


def wave_message(wave: Wave) -> dict:
    return {"type": "wave", "id": wave.pk, "name": wave.name, "state": wave.state, "planned": wave.planned,
            "made": wave.made, "running": wave.running, "booted": wave.booted, "failed": wave.failed,
            "message": wave.message}


def data_of(wave: Wave) -> WaveData:
    if wave.template is None:
        raise VirtError(f"The template of wave {wave.name} was deleted.", errors.STATE)
    return WaveData(name=wave.name, template=wave.template, start_at=wave.start_at, end_at=wave.end_at,
                    name_pattern=wave.name_pattern, group=wave.group, users=list(wave.users.all()),
                    per_user=wave.per_user, mode=wave.mode)


# The start, the counts and the end (the tick task) ----------------------------------------------------

def start_wave(wave: Wave) -> Wave:
    """Check again with the members of now, then start the clone jobs; a wave that no longer fits fails."""
    system = Actor(user=wave.created_by, via="task")
    with audited(system, "wave.start", wave) as target:
        try:
            if not policy.is_admin(wave.created_by):
                raise VirtError("Whoever scheduled it is no longer an administrator.", errors.STATE)
            people = wave_members(wave)
            names = check(data_of(wave), people, wave=wave, starting=True)
        except VirtError as exc:
            wave.state, wave.message, wave.ended = Wave.FAILED, exc.message, timezone.now()
            wave.save(update_fields=["state", "message", "ended"])
            publish(wave_message(wave))
            raise
        assert wave.template is not None  # data_of refused a wave without one
        owners = [person for person in people for _ in range(wave.per_user)]
        wave.planned, wave.started, wave.state = len(owners), timezone.now(), Wave.RUNNING
        wave.jobs = []
        for first in range(0, len(owners), catalog.MAX_CLONES):
            chunk = owners[first:first + catalog.MAX_CLONES]
            job = catalog.clone_template(system, wave.template, catalog.CloneRequest(
                count=len(chunk), name_pattern=wave.name_pattern, mode=wave.mode, start=True,
                expires_at=wave.end_at, first=first + 1, owners=chunk, boot_check=True))
            wave.jobs.append(job.pk)
            wave.save(update_fields=["planned", "started", "state", "jobs"])
        target.detail.append(f"{len(names)} machine(s) for {len(people)} people: {names[0]}…{names[-1]}; "
                             f"job(s) {', '.join(f'#{j}' for j in wave.jobs)}")
        publish(wave_message(wave))
        return wave


def count(wave: Wave, now: datetime) -> None:
    """Count its machines, booted and failed as its clone jobs report them; end it at its end time."""
    from webvirt.catalog.jobs import boot_outcome
    from webvirt.jobs.models import Job

    rows = list(machines(wave))
    booted_names: set[str] = set()
    failed_names: set[str] = set()
    for job in Job.objects.filter(pk__in=wave.jobs):
        booted, failed = boot_outcome(job)
        booted_names |= booted
        failed_names |= failed
        if job.state not in Job.ACTIVE:  # what an ended job never reported (it failed as a whole) failed too
            failed_names |= set(job.params.get("names", [])) - booted
    running = sum(1 for d in rows if d.state == "running")
    booted_count = sum(1 for d in rows if d.name in booted_names)
    figures = (len(rows), running, booted_count, len(failed_names - booted_names))
    changed = figures != (wave.made, wave.running, wave.booted, wave.failed)
    wave.made, wave.running, wave.booted, wave.failed = figures
    if now >= wave.end_at:
        wave.state, wave.ended = Wave.ENDED, now
        changed = True
    wave.save(update_fields=["made", "running", "booted", "failed", "state", "ended"])
    if changed:
        publish(wave_message(wave))


def tick(now: datetime | None = None) -> dict[str, list[int]]:
    """Start the waves that are due, count the running ones, end those past their end."""
    now = now or timezone.now()
    started, failed = [], []
    for wave in Wave.objects.select_related("template__host", "group", "created_by").filter(
            state=Wave.SCHEDULED, start_at__lte=now):
        try:
            start_wave(wave)
            started.append(wave.pk)
        except VirtError:
            failed.append(wave.pk)  # the wave says why; the audit trail too
    for wave in Wave.objects.filter(state=Wave.RUNNING):
        count(wave, now)
    return {"started": started, "failed": failed}
