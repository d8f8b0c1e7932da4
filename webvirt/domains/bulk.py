"""Bulk actions: one request for many domains, checked here and carried out by one job
(webvirt.domains.jobs.run_bulk), a line per domain.

The request is checked as a whole (the action, its arguments, the selection's size); each domain is
checked when the job reaches it, by the same service the single action uses, so the policy, the audit
trail and every refusal are theirs. A selection is a list of ids or the list's filter (search, host,
state) over what the user sees, resolved to ids when asked, so the job acts on the N the user was told.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from webvirt.accounts import policy
from webvirt.accounts.audit import audited
from webvirt.accounts.policy import Actor
from webvirt.domains.filters import DomainFilter
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host
from webvirt.virt import errors
from webvirt.virt.errors import VirtError
from webvirt.virt.snapshots import check_name

MAX_SELECTION = 2000
FILTER_KEYS = ("search", "host", "state")


@dataclass(frozen=True)
class BulkAction:
    name: str
    label: str  # the button, and the job's title: "Shut down 10 domains"
    done: str  # a line's outcome: "shut down"
    destructive: bool = False  # asks for a confirmation naming how many


ACTIONS: dict[str, BulkAction] = {a.name: a for a in [
    BulkAction("start", "Start", "started"),
    BulkAction("shutdown", "Shut down", "asked to shut down"),
    BulkAction("reboot", "Reboot", "asked to reboot"),
    BulkAction("destroy", "Force off", "forced off", destructive=True),
    BulkAction("suspend", "Suspend", "suspended"),
    BulkAction("resume", "Resume", "resumed"),
    BulkAction("snapshot", "Snapshot", "snapshot taken"),
    BulkAction("remove", "Remove", "removed", destructive=True),
    BulkAction("extend", "Extend expiry", "expiry extended"),
]}


def check_args(action: str, args: Any) -> dict[str, Any]:
    """The action's arguments, checked and in the form the job keeps (JSON); a sentence when wrong."""
    if action not in ACTIONS:
        raise VirtError(f"'{action}' is not a bulk action. Use one of: {', '.join(ACTIONS)}.", errors.INVALID)
    if not isinstance(args, dict):
        raise VirtError("Give the action's arguments as an object, e.g. {}.", errors.INVALID)
    allowed = {"snapshot": {"name", "description"}, "extend": {"expires_at"}}.get(action, set())
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise VirtError(f"{ACTIONS[action].label} takes no argument {', '.join(unknown)}"
                        + (f"; it takes {', '.join(sorted(allowed))}." if allowed else "."), errors.INVALID)
    if action == "snapshot":
        name, description = args.get("name") or "", args.get("description") or ""
        if not isinstance(name, str) or not isinstance(description, str):
            raise VirtError("A snapshot's name and description are text.", errors.INVALID)
        return {"name": check_name(name.strip()) if name.strip() else "", "description": description[:1000]}
    if action == "extend":
        return {"expires_at": _expiry(args.get("expires_at", ""))}
    return {}


def _expiry(value: Any) -> str | None:
    if value is None:
        return None  # no expiry: administrators only, which extend_expiry checks per domain
    when = parse_datetime(value) if isinstance(value, str) else value if isinstance(value, datetime) else None
    if when is None:
        raise VirtError("Give the new expiry as a date and time, e.g. 2030-01-31T12:00:00Z.", errors.INVALID)
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    if when <= timezone.now():
        raise VirtError("The new expiry time is in the past.", errors.INVALID)
    return when.isoformat()


def select(actor: Actor, ids: Any = None, filters: Any = None) -> list[int]:
    """The domain ids a bulk action is for: the ids given (each checked by the job), or those the
    filter matches among the domains the user sees."""
    if (ids is None) == (filters is None):
        raise VirtError('Give either "ids" (a list of domain ids) or "filter" (search, host, state).',
                        errors.INVALID)
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise VirtError('"ids" is a list of domain ids (numbers).', errors.INVALID)
        chosen = list(dict.fromkeys(ids))
    else:
        chosen = _filtered(actor, filters)
    if not chosen:
        raise VirtError("No domain is selected." if ids is not None else "No domain matches this filter.",
                        errors.INVALID)
    if len(chosen) > MAX_SELECTION:
        raise VirtError(f"{len(chosen):,} domains are selected; a bulk action takes at most {MAX_SELECTION:,}. "
                        "Narrow the selection (by host or state) and run it in parts.", errors.INVALID)
    return chosen


def _filtered(actor: Actor, filters: Any) -> list[int]:
    if not isinstance(filters, dict) or set(filters) - set(FILTER_KEYS):
        raise VirtError(f'"filter" is an object with any of: {", ".join(FILTER_KEYS)}.', errors.INVALID)
    data = {key: str(value) for key, value in filters.items() if value not in (None, "")}
    found = DomainFilter(data, queryset=policy.visible(actor.user, Domain.objects.all()))
    found.form.fields["host"].queryset = policy.visible(actor.user, Host.objects.all())
    if not found.is_valid():
        problems = "; ".join(f"{name}: {errs[0]}" for name, errs in found.errors.items())
        raise VirtError(f"The filter is not valid ({problems}).", errors.INVALID)
    # Cut one past the limit: enough to say it is too many, without reading thousands of ids.
    return list(found.qs.order_by("name", "pk").values_list("pk", flat=True)[:MAX_SELECTION + 1])


def start(actor: Actor, action: str, args: Any, *, ids: Any = None, filters: Any = None) -> Any:
    """Check a bulk request and start its job; returns the Job. Audited as one request beside the
    per-domain entries the services write."""
    from webvirt.jobs.services import create_job

    with audited(actor, "domain.bulk") as target:
        target.detail.append(str(action)[:40])
        checked = check_args(action, args)
        chosen = select(actor, ids, filters)
        noun = "domain" if len(chosen) == 1 else "domains"
        title = f"{ACTIONS[action].label} {len(chosen)} {noun}"
        target.set(kind="bulk", text=title)
        target.detail.append("filter " + str({k: v for k, v in filters.items() if v}) if filters is not None
                             else f"ids {', '.join(map(str, chosen[:50]))}{'…' if len(chosen) > 50 else ''}")
        job = create_job(actor, "bulk", title, params={"action": action, "args": checked, "ids": chosen,
                                                        "address": actor.address, "via": actor.via})
        target.set(kind="job", ident=job.pk, text=title)
        return job
