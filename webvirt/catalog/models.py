"""Templates that people clone, who may use them, and quotas."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.urls import reverse

from webvirt.hosts.models import Host


class Template(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    os = models.CharField("OS", max_length=100, blank=True)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="templates")
    # The shut-off domain this template was made from, if any (it can no longer be started).
    source_uuid = models.CharField(max_length=36, blank=True)
    # The definition clones are made from; disks point at the read-only base volumes.
    xml = models.TextField()
    # [{"target": "vda", "path": ..., "pool": ..., "format": "qcow2", "capacity": bytes}]
    disks = models.JSONField(default=list)
    vcpus = models.PositiveIntegerField(default=1)
    memory_mib = models.PositiveIntegerField(default=512)
    network = models.CharField(max_length=100, blank=True)
    clone_pool = models.CharField("pool for clones", max_length=100, blank=True,
                                  help_text="Where clones' disks go; empty means the pool of the base disk.")
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="granted_templates")
    groups = models.ManyToManyField(Group, blank=True, related_name="granted_templates")
    max_lifetime_days = models.PositiveIntegerField(
        default=30, help_text="Owners may extend a clone's expiry up to this many days after it was made.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    warm_count = models.PositiveIntegerField(
        "warm machines", default=0,
        help_text="Clones kept booted and waiting, so that a request for one machine is answered at once. "
                  "They count against the warm pool budget, not anyone's quota, until handed out.")
    boot_marker = models.CharField(
        "ready line", max_length=200, blank=True,
        help_text="What the guest prints on its serial console once it is up; a warm machine is ready when "
                  "it appears. Empty: ready once it has run for 10 s without stopping.")

    # cloud-init: a NoCloud seed for every clone (its own instance-id and hostname, its owner's keys).
    cloud_init = models.BooleanField(
        "cloud-init seed", default=False,
        help_text="Give every clone a cloud-init seed (a small CD-ROM): its own instance-id and hostname, the "
                  "user-data below and its owner's SSH keys.")
    user_data = models.TextField("user-data", blank=True, help_text="cloud-config (YAML) given to every clone.")
    network_config = models.TextField("network-config", blank=True,
                                      help_text="Optional: cloud-init network configuration (YAML).")
    allow_password = models.BooleanField(
        "owners may set a password", default=False,
        help_text="A clone request may carry a password for the login user; it is stored only as a hash.")
    login_user = models.CharField(
        "login user", max_length=32, blank=True,
        help_text="The guest user who gets the owner's SSH keys (and password). Empty: the image's default user.")
    guest_agent = models.BooleanField(
        "has the QEMU guest agent", default=False,
        help_text="The guest runs qemu-guest-agent: a warm machine gets its owner's keys through it when handed out.")
    detach_seed = models.BooleanField(
        "remove the seed after the first boot", default=False,
        help_text="The seed is taken out of the definition once the clone has started; the running guest keeps "
                  "reading it until it powers off.")
    SEAL_STATES = [("", "not sealed"), ("sealing", "sealing"), ("sealed", "sealed"), ("failed", "not sealed")]
    seal_state = models.CharField(max_length=10, choices=SEAL_STATES, default="", blank=True)
    seal_note = models.CharField(max_length=500, blank=True)  # why sealing did not happen, or what it did

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def sealing(self) -> bool:
        """A seal job is changing the base disks: nothing may be cloned from them until it ends."""
        from webvirt.jobs.models import Job

        return Job.objects.filter(kind="seal", target_type="template", target_id=str(self.pk),
                                  state__in=Job.ACTIVE).exists()

    def get_absolute_url(self) -> str:
        return reverse("catalog:detail", args=[self.pk])

    @classmethod
    def base_paths(cls, host_id: int) -> dict[str, str]:
        """The base volumes of every template on a host: path -> template name. They are never deleted."""
        return {disk["path"]: name for name, disks in cls.objects.filter(host_id=host_id).values_list("name", "disks")
                for disk in disks}

    @property
    def pool(self) -> str:
        """Where clones' disks go: the pool chosen for them, else the base disk's."""
        return self.clone_pool or (self.disks[0]["pool"] if self.disks else "")

    @property
    def disk_gib(self) -> float:
        return round(sum(d.get("capacity", 0) for d in self.disks) / 1024**3, 2)


class Quota(models.Model):
    """Limits for one user or one group; an empty limit means no limit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="quota")
    group = models.OneToOneField(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="quota")
    instances = models.PositiveIntegerField(null=True, blank=True)
    vcpus = models.PositiveIntegerField("vCPUs", null=True, blank=True)
    memory_mib = models.PositiveIntegerField("memory (MiB)", null=True, blank=True)
    disk_gib = models.PositiveIntegerField("disk (GiB)", null=True, blank=True)
    # Bumped at the start of every quota check: the row lock it takes serialises concurrent checks.
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(user__isnull=False, group__isnull=True)
                                   | models.Q(user__isnull=True, group__isnull=False), name="quota_user_xor_group"),
        ]

    def __str__(self) -> str:
        return f"quota of {self.user or self.group}"

    LIMITS = ("instances", "vcpus", "memory_mib", "disk_gib")


class WarmMachine(models.Model):
    """A clone of a template made and booted ahead of time, owned by nobody until it is handed out.

    The row stays after the hand-out (its status says so) and carries the title the user asked for:
    libvirt renames only shut-off domains, so the running machine keeps the name it was made with.
    """

    BOOTING = "booting"
    WARM = "warm"
    HANDED_OUT = "handed_out"
    STATUSES = [(BOOTING, "booting"), (WARM, "warm"), (HANDED_OUT, "handed out")]

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="warm_machines")
    domain = models.OneToOneField("domains.Domain", on_delete=models.CASCADE, related_name="warm")
    status = models.CharField(max_length=12, choices=STATUSES, default=BOOTING, db_index=True)
    memory_mib = models.PositiveIntegerField(default=0)  # what it holds of the pool budget while not handed out
    title = models.CharField(max_length=200, blank=True)
    handed_to = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    handed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self) -> str:
        return f"warm machine {self.domain_id} of {self.template_id} ({self.status})"
