"""Templates, cloning, expiry: shared by the catalog's views, API and tasks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.catalog import quotas, seeds, warm
from webvirt.catalog.models import Quota, Template
from webvirt.domains.models import Domain
from webvirt.hosts.connections import call
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job
from webvirt.jobs.services import create_job
from webvirt.virt import clone as virt_clone
from webvirt.virt import errors
from webvirt.virt.builder import DiskSpec, DomainSpec, domain_xml
from webvirt.virt.errors import VirtError

MAX_CLONES = 50  # per request: more is a mistake more often than a plan
MODES = ("linked", "full")


@dataclass
class TemplateData:
    name: str
    description: str = ""
    os: str = ""
    max_lifetime_days: int = 30
    users: list | None = None
    groups: list | None = None
    warm_count: int | None = None  # None: unchanged
    boot_marker: str | None = None
    cloud_init: seeds.CloudInitData | None = None  # None: unchanged
    seal: bool = False  # making a template: seal its disks with virt-sysprep first (sealing.py)


def _check_name(name: str, template: Template | None = None) -> None:
    if not name.strip():
        raise VirtError("Give the template a name.", errors.INVALID)
    clash = Template.objects.filter(name=name.strip())
    if template is not None:
        clash = clash.exclude(pk=template.pk)
    if clash.exists():
        raise VirtError(f"A template named '{name}' already exists. Choose another name.", errors.CONFLICT)


def _check_settings(template: Template | None, data: TemplateData) -> None:
    """Everything about the settings that can be refused, before anything is made or saved."""
    if data.cloud_init is not None:
        warm_count = data.warm_count if data.warm_count is not None else (template.warm_count if template else 0)
        seeds.check(data.cloud_init, warm_count)


def _save_settings(template: Template, data: TemplateData) -> None:
    """Grants and cloud-init settings of a template just made or edited (checked already)."""
    if data.cloud_init is not None:
        seeds.apply(template, data.cloud_init)
        template.save()
    if data.users is not None:
        template.users.set(data.users)
    if data.groups is not None:
        template.groups.set(data.groups)


def make_template(actor: Actor, domain: Domain, data: TemplateData) -> Template:
    """Turn a shut-off domain into a template (it can no longer be started; its disks become bases)."""
    with audited(actor, "template.create", domain) as target:
        policy.require(actor.user, policy.CHANGE, domain)
        _check_name(data.name)
        _check_settings(None, data)
        if domain.is_template:
            raise VirtError(f"{domain.name} is already a template.", errors.CONFLICT)
        xml, disks = call(domain.host, lambda conn: virt_clone.make_template(conn, domain.uuid), timeout=30)
        with transaction.atomic():
            template = Template.objects.create(
                name=data.name.strip(), description=data.description, os=data.os, host=domain.host,
                source_uuid=domain.uuid, xml=xml, disks=[d.as_dict() for d in disks], vcpus=domain.vcpus,
                memory_mib=domain.memory_mib, network=_network_of(xml), max_lifetime_days=data.max_lifetime_days,
                created_by=actor.user)
            _save_settings(template, data)
            # Nobody owns a template's domain: an owner could otherwise delete the clones' base disks.
            Domain.objects.filter(pk=domain.pk).update(is_template=True, autostart=False, owner=None)
            if data.seal:
                _start_seal(actor, template)
        target.set(template)
        return template


def _start_seal(actor: Actor, template: Template) -> Job:
    """Seal the new template's disks in a job (virt-sysprep takes a minute or more); nothing is cloned
    from it until the job has ended, sealed or not."""
    template.seal_state, template.seal_note = "sealing", ""
    template.save(update_fields=["seal_state", "seal_note"])
    return create_job(actor, "seal", f"Seal template {template.name}", params={"template": template.pk},
                      host=template.host, target=("template", str(template.pk), template.name))


def register_template(actor: Actor, host: Host, volume_path: str, data: TemplateData, *, vcpus: int,
                      memory_mib: int, network: str = "", domain_type: str = "") -> Template:
    """A template from a disk image already in a pool, with settings instead of a source domain."""
    with audited(actor, "template.register") as target:
        target.set(kind="template", text=data.name)
        policy.require(actor.user, policy.VIEW, host)
        policy.require(actor.user, policy.ADD, Template)
        _check_name(data.name)
        _check_settings(None, data)
        kind = domain_type or ("kvm" if host.facts.get("kvm") else "qemu")
        spec = DomainSpec(name=data.name, vcpus=vcpus, memory_mib=memory_mib, domain_type=kind, network=network,
                          disks=[DiskSpec(path=volume_path, readonly=True)])
        xml = domain_xml(spec)
        disks = call(host, lambda conn: virt_clone.base_disks(conn, xml))
        spec.disks[0].format = disks[0].format
        with transaction.atomic():
            template = Template.objects.create(
                name=data.name.strip(), description=data.description, os=data.os, host=host, xml=domain_xml(spec),
                disks=[d.as_dict() for d in disks], vcpus=vcpus, memory_mib=memory_mib, network=network,
                max_lifetime_days=data.max_lifetime_days, created_by=actor.user)
            _save_settings(template, data)
        target.set(template)
        return template


def update_template(actor: Actor, template: Template, data: TemplateData) -> Template:
    with audited(actor, "template.update", template):
        policy.require(actor.user, policy.CHANGE, template)
        _check_name(data.name, template)
        _check_settings(template, data)
        template.name, template.description, template.os = data.name.strip(), data.description, data.os
        template.max_lifetime_days = data.max_lifetime_days
        if data.warm_count is not None:
            warm.check_size(template, data.warm_count)
            template.warm_count = data.warm_count
        if data.boot_marker is not None:
            template.boot_marker = data.boot_marker.strip()
        template.save()
        _save_settings(template, data)
    transaction.on_commit(lambda: warm.start_refill(template))  # fill, or shrink, the warm pool
    return template


def delete_template(actor: Actor, template: Template) -> None:
    """Forget a template; refused while linked clones still use its disks."""
    with audited(actor, "template.delete", template):
        policy.require(actor.user, policy.DELETE, template)
        linked = list(template.clones.filter(linked=True).values_list("name", flat=True)[:5])
        if linked:
            more = template.clones.filter(linked=True).count() - len(linked)
            names = ", ".join(linked) + (f" and {more} more" if more > 0 else "")
            raise VirtError(f"Linked clones still use this template's disks ({names}). Delete them first; "
                            "their disks would stop working without it.", errors.CONFLICT)
        template.clones.update(template=None)
        Domain.objects.filter(host=template.host, uuid=template.source_uuid).update(is_template=False)
        template.delete()


def _network_of(xml: str) -> str:
    from webvirt.virt.domainxml import Domain as DomainXML

    interfaces = DomainXML.from_string(xml).interfaces
    return interfaces[0].source if interfaces else ""


# Cloning ---------------------------------------------------------------------------------------

@dataclass
class CloneRequest:
    count: int
    name_pattern: str
    mode: str = "linked"
    start: bool = True
    expires_at: datetime | None = None
    first: int | None = None  # the first number for {n}; None: the first after names already taken
    owners: list[User] | None = None  # one per clone, in name order (a wave's members); None: the requester
    # Start each clone and check it booted (catalog.jobs.start_booted), failing ones retried once: a wave's.
    boot_check: bool = False
    password: str = ""  # for the template's login user, where it allows one; only its hash is kept
    password_hash: str = ""  # a retried job's: hashed when it was first asked for


def clone_template(actor: Actor, template: Template, req: CloneRequest) -> Job:
    """Check everything that can be known up front, reserve the quota, and start the clone job."""
    with audited(actor, "template.clone", template) as target:
        policy.require(actor.user, policy.USE, template)
        names, first = _validate(actor, template, req)
        password_hash = req.password_hash or seeds.check_password(template, req.password)
        # Linked clones count at their virtual size too: each overlay can grow to the whole disk.
        need = clone_usage(template, req.count)
        owners = req.owners or [actor.user] * req.count
        if len(owners) != req.count:
            raise VirtError(f"Give one owner per clone: {req.count} clones, {len(owners)} owners.", errors.INVALID)
        params = {"template": template.pk, "names": names, "mode": req.mode, "start": req.start,
                  "boot_check": req.start and req.boot_check,
                  "expires_at": req.expires_at.isoformat() if req.expires_at else None, "owner": actor.user.pk,
                  "name_pattern": req.name_pattern, "count": req.count, "first": first,
                  "owners": {name: owner.pk for name, owner in zip(names, owners, strict=True)},
                  "password_hash": password_hash}
        with transaction.atomic():
            for owner in {o.pk: o for o in owners}.values():
                quotas.check_and_lock(owner, clone_usage(template, owners.count(owner)))
            job = create_job(actor, "clone", f"Clone {template.name}: {req.count} {req.mode} clone(s)", params=params,
                             host=template.host, target=("template", str(template.pk), template.name),
                             reserved=need.as_dict())
        target.detail.append(f"job #{job.pk}: {', '.join(names)}")
        return job


def clone_usage(template: Template, count: int) -> quotas.Usage:
    """What `count` clones of `template` count against a quota."""
    return quotas.Usage(instances=count, vcpus=template.vcpus * count, memory_mib=template.memory_mib * count,
                        disk_gib=round(template.disk_gib * count, 2))


@dataclass
class CloneAnswer:
    """What a clone request got: a machine handed out of the warm pool at once, or a job making them."""

    message: str
    job: Job | None = None
    domain: Domain | None = None

    @property
    def page(self) -> Domain | Job:
        """Where the answer is followed: the machine handed out, or the job."""
        found = self.domain if self.domain is not None else self.job
        assert found is not None, "a clone request answers a domain or a job"
        return found


def request_clones(actor: Actor, template: Template, req: CloneRequest) -> CloneAnswer:
    """One running linked clone comes from the template's warm pool when one is ready; otherwise, and
    for several or other kinds, a clone job makes them (and the answer says why when the pool was empty)."""
    if (req.count == 1 and req.mode == "linked" and req.start and not req.owners and template.warm_count > 0
            and not req.password):  # a warm machine's seed is made already: no password can go into it
        domain = _hand_out_warm(actor, template, req)
        if domain is not None:
            title = domain.warm.title
            return CloneAnswer(domain=domain, message=f"{title} is ready: a warm machine, already running and "
                                                      f"booted (its machine name is {domain.name}).")
        job = clone_template(actor, template, req)
        return CloneAnswer(job=job, message=f"No warm machine of {template.name} was free, so it is being cloned "
                                            f"instead (it takes longer): job #{job.pk}.")
    job = clone_template(actor, template, req)
    return CloneAnswer(job=job, message=f"Cloning {template.name}: job #{job.pk} has started.")


def _hand_out_warm(actor: Actor, template: Template, req: CloneRequest) -> Domain | None:
    with audited(actor, "template.handout", template) as target:
        policy.require(actor.user, policy.USE, template)
        _check_expiry(actor, template, req.expires_at)
        existing = set(Domain.objects.filter(host=template.host).values_list("name", flat=True))
        existing |= warm.taken_titles(template)
        first = req.first if req.first is not None else virt_clone.first_free(req.name_pattern, 1, existing)
        title = virt_clone.clone_names(req.name_pattern, 1, first)[0]
        if title in existing:
            raise VirtError(f"{title} already exists on {template.host.name}. Choose another name pattern or "
                            "first number.", errors.CONFLICT)
        domain = warm.hand_out(actor, template, title, req.expires_at)
        target.detail.append(f"{domain.name} as {title}" if domain else "no warm machine free: cloned instead")
        return domain


def _validate(actor: Actor, template: Template, req: CloneRequest) -> tuple[list[str], int]:
    if req.mode not in MODES:
        raise VirtError("The mode is either 'linked' or 'full'.", errors.INVALID)
    if not 1 <= req.count <= MAX_CLONES:
        raise VirtError(f"Ask for between 1 and {MAX_CLONES} clones at a time.", errors.INVALID)
    existing = set(Domain.objects.filter(host=template.host).values_list("name", flat=True))
    first = req.first if req.first is not None else virt_clone.first_free(req.name_pattern, req.count, existing)
    names = virt_clone.clone_names(req.name_pattern, req.count, first)
    taken = sorted(existing.intersection(names))
    if taken:
        raise VirtError(f"{', '.join(taken[:5])} already exist(s) on {template.host.name}. "
                        "Choose another name pattern or first number.", errors.CONFLICT)
    _check_expiry(actor, template, req.expires_at)
    _check_host(template)
    disks = [virt_clone.BaseDisk(**d) for d in template.disks]
    volumes = call(template.host, lambda conn: virt_clone.taken_volumes(conn, disks, template.clone_pool, names))
    if volumes:
        raise VirtError(f"The volume(s) {', '.join(volumes[:5])} already exist on {template.host.name}. "
                        "Choose another name pattern or first number.", errors.CONFLICT)
    return names, first


def _check_expiry(actor: Actor, template: Template, expires_at: datetime | None) -> None:
    """Everyone but an administrator must say when clones go, within the template's lifetime."""
    if expires_at is None:
        if policy.is_admin(actor.user):
            return
        raise VirtError(f"Say when the clones expire: at most {template.max_lifetime_days} days from now.",
                        errors.INVALID)
    if expires_at <= timezone.now():
        raise VirtError("The expiry time is in the past.", errors.INVALID)
    if expires_at > timezone.now() + timedelta(days=template.max_lifetime_days):
        raise VirtError(f"Clones of {template.name} may live at most {template.max_lifetime_days} days.",
                        errors.INVALID)


def _check_host(template: Template) -> None:
    if template.sealing:
        raise VirtError(f"{template.name} is being sealed (its disks are changed): clone it when that job has "
                        "ended.", errors.STATE)
    template.host.refuse_placing()
    if template.host.status == Host.OFFLINE:
        raise VirtError(f"The template's host {template.host.name} is offline: {template.host.status_reason}",
                        errors.UNREACHABLE)
    if template.source_uuid:
        source = Domain.objects.filter(host=template.host, uuid=template.source_uuid).first()
        if source is not None and source.is_active:
            raise VirtError(f"The template's source domain {source.name} is running; it must stay shut off.",
                            errors.STATE)


def retry_clone(actor: Actor, params: dict) -> Job:
    pk = params.get("template")
    template = Template.objects.filter(pk=pk).first() if pk is not None else None
    if template is None:
        raise VirtError("The template of that job no longer exists.", errors.NOT_FOUND)
    expires = params.get("expires_at")
    return clone_template(actor, template, CloneRequest(
        count=params["count"], name_pattern=params["name_pattern"], mode=params["mode"], start=params["start"],
        expires_at=datetime.fromisoformat(expires) if expires else None, first=params.get("first", 1),
        password_hash=params.get("password_hash", "")))


# Expiry ------------------------------------------------------------------------------------------

def extend_expiry(actor: Actor, domain: Domain, until: datetime | None) -> Domain:
    """Move a clone's expiry; owners only within the template's limit, administrators freely."""
    with audited(actor, "domain.extend", domain) as target:
        policy.require(actor.user, policy.EXTEND, domain)
        if until is not None and until <= timezone.now():
            raise VirtError("The new expiry time is in the past.", errors.INVALID)
        if not policy.is_admin(actor.user):
            if until is None:
                raise VirtError("Only an administrator can remove an expiry.", errors.INVALID)
            limit_days = domain.template.max_lifetime_days if domain.template else 30
            made = domain.job.created if domain.job else domain.state_changed or timezone.now()
            if until > made + timedelta(days=limit_days):
                raise VirtError(f"{domain.name} may live until {made + timedelta(days=limit_days):%Y-%m-%d %H:%M} "
                                f"at most ({limit_days} days). Ask an administrator for longer.", errors.INVALID)
        Domain.objects.filter(pk=domain.pk).update(expires_at=until)
        domain.expires_at = until
        target.detail.append(f"expires {until:%Y-%m-%d %H:%M}" if until else "never expires")
        return domain


def expire_due(now: datetime | None = None) -> list[str]:
    """Remove every clone whose expiry has passed (force off, undefine, delete its volumes)."""
    from webvirt.domains.services import remove

    removed = []
    system = Actor(user=None, via="task")
    for domain in Domain.objects.select_related("host").filter(expires_at__lte=now or timezone.now()):
        try:
            remove(system, domain, reason="expired")
            removed.append(domain.name)
        except VirtError:
            continue  # The host is down: try again at the next run.
    return removed


def all_groups() -> list[Group]:
    return list(Group.objects.order_by("name"))


# Quotas ------------------------------------------------------------------------------------------

def save_quota(actor: Actor, *, user: User | None = None, group: Group | None = None,
               limits: dict[str, int | None]) -> Quota | None:
    """Set the limits of one user or one group; with every limit empty, the quota is removed."""
    with audited(actor, "quota.set") as target:
        whom = user or group
        target.set(kind="quota", ident=whom.pk if whom else "",
                   text=f"user {user.get_username()}" if user is not None else f"group {group.name}" if group else "")
        policy.require_admin(actor.user)
        if (user is None) == (group is None):
            raise VirtError("Choose either a user or a group.", errors.INVALID)
        values = {k: limits.get(k) for k in Quota.LIMITS}
        owner = {"user": user} if user is not None else {"group": group}
        if all(v is None for v in values.values()):
            Quota.objects.filter(**owner).delete()
            target.detail.append("no limits")
            return None
        quota, _ = Quota.objects.update_or_create(**owner, defaults=values)
        target.detail.append(", ".join(f"{k}={'unlimited' if v is None else v}" for k, v in values.items()))
        return quota

