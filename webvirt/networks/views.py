"""Network and host interface pages. Views only wire forms and templates to `webvirt.networks.services`;
their failures are answered by the pages' error boundary (webvirt.ui)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts.policy import Actor
from webvirt.domains.forms import XMLForm
from webvirt.hosts.models import Host
from webvirt.networks import services
from webvirt.networks.forms import BridgeForm, DHCPHostForm, NetworkForm
from webvirt.ui import attempt, cleaned, fallback, render_live, shown_here, visible_or_404


def _host(request: HttpRequest, pk: int) -> Host:
    return visible_or_404(request, Host.objects.all(), pk)


def _host_of(oid: str) -> Host:
    head = oid.split(":", 1)[0]
    host = Host.objects.filter(pk=int(head)).first() if head.isdigit() else None
    if host is None:
        raise Http404("No such host.")
    return host


# Where a failure sends the user (webvirt.ui.fallback): a network that is gone is explained on its
# host's list of networks, which still renders when the host is down.

def _network_list(request: HttpRequest, oid: str, **_: str) -> str:
    return reverse("networks:list", args=[_host_of(oid).pk])


def _network_page(request: HttpRequest, oid: str, **_: str) -> str:
    return reverse("networks:detail", args=[oid])


def _interface_list(request: HttpRequest, oid: str, **_: str) -> str:
    return reverse("networks:interfaces", args=[_host_of(oid).pk])


def _after_interface_action(request: HttpRequest, oid: str, verb: str) -> str:
    """An undefined interface has no page left; any other action returns to the interface's page."""
    return _interface_list(request, oid) if verb == "undefine" else reverse("networks:interface", args=[oid])


def network_list(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    actor = Actor.from_request(request)
    networks, error = attempt(lambda: services.list_networks(actor, host), [])
    context = {"host": host, "networks": [(services.network_id(host, n), n) for n in networks], "error": error,
               "tab": "networks"}
    return render_live(request, "networks/list.html", "networks/_table.html", context)


def network_create(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    form = NetworkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        with shown_here(request, form):
            info = services.create_network(Actor.from_request(request), host, spec=form.spec(), xml=d["xml"],
                                           start=d["start"], autostart=d["autostart"])
            messages.success(request, f"Network {info.name} is {'running' if info.active else 'defined'}.")
            return redirect("networks:detail", oid=services.network_id(host, info))
    return render(request, "networks/create.html", {"host": host, "form": form, "tab": "networks"})


@fallback(_network_list)
def network_detail(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    host, info = services.get_network(actor, oid)
    leases = services.leases(actor, oid)
    ids = services.domain_ids(host, [le.domain_uuid for le in leases or [] if le.domain_uuid])
    rows = None if leases is None else [{**le.as_dict(), "domain": ids.get(le.domain_uuid)} for le in leases]
    context = {"host": host, "net": info, "oid": oid, "leases": rows, "xml": services.get_xml(actor, oid),
               "dhcp_hosts": services.dhcp_hosts(actor, oid), "dhcp_form": DHCPHostForm(), "tab": "networks"}
    return render_live(request, "networks/detail.html", "networks/_detail.html", context)


@fallback(_network_page)
@require_POST
def network_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    actor = Actor.from_request(request)
    if verb in ("autostart_on", "autostart_off"):
        info = services.set_autostart(actor, oid, verb == "autostart_on")
        messages.success(request, f"Autostart is {'on' if info.autostart else 'off'} for network {info.name}.")
    else:
        info = services.run_action(actor, oid, verb, bool(request.POST.get("force")))
        messages.success(request, f"Network {info.name} is {'running' if info.active else 'stopped'}.")
    return redirect("networks:detail", oid=oid)


@fallback(_network_list)
def network_delete(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    host, info = services.get_network(actor, oid)
    if request.method == "POST":
        with shown_here(request):
            services.delete_network(actor, oid, bool(request.POST.get("force")))
            messages.success(request, f"Network {info.name} is deleted.")
            return redirect("networks:list", host_pk=host.pk)
    return render(request, "networks/delete.html", {"host": host, "net": info, "oid": oid, "tab": "networks"})


@fallback(_network_list)
def network_xml(request: HttpRequest, oid: str) -> HttpResponse:
    """Edit a network's definition; libvirt validates it and a rejected edit changes nothing."""
    actor = Actor.from_request(request)
    host, info = services.get_network(actor, oid)
    form, error = XMLForm(request.POST or None), None
    if request.method == "POST" and form.is_valid():
        (_info, applied), error = attempt(lambda: services.update_xml(actor, oid, form.cleaned_data["xml"]),
                                          (None, []))
        if error is None:
            live = f" Applied to the running network: {'; '.join(applied)}." if applied else ""
            messages.success(request, f"The definition of network {info.name} is saved.{live}")
            return redirect("networks:detail", oid=oid)
    elif request.method != "POST":
        form = XMLForm(initial={"xml": services.get_xml(actor, oid)})
    return render(request, "_xml_edit.html", {
        "host": host, "title": f"network {info.name}", "form": form, "error": error, "tab": "networks",
        "back": reverse("networks:detail", args=[oid]), "download": reverse("networks:xml_download", args=[oid]),
        "note": "DHCP host entries you add or remove reach the running network at once; other changes take "
                "effect when the network is next started."})


@fallback(_network_list)
def network_xml_download(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    _host_obj, info = services.get_network(actor, oid)
    response = HttpResponse(services.get_xml(actor, oid), content_type="application/xml")
    response["Content-Disposition"] = f'attachment; filename="network-{info.name}.xml"'
    return response


@fallback(_network_page)
@require_POST
def dhcp_host_add(request: HttpRequest, oid: str) -> HttpResponse:
    d = cleaned(DHCPHostForm(request.POST))
    services.add_dhcp_host(Actor.from_request(request), oid, d["mac"], d["ip"], d["name"])
    messages.success(request, f"{d['mac']} gets {d['ip']} from now on.")
    return redirect("networks:detail", oid=oid)


@fallback(_network_page)
@require_POST
def dhcp_host_remove(request: HttpRequest, oid: str) -> HttpResponse:
    services.remove_dhcp_host(Actor.from_request(request), oid, request.POST.get("mac", ""))
    messages.success(request, f"The DHCP entry for {request.POST.get('mac')} is removed.")
    return redirect("networks:detail", oid=oid)


# Host interfaces --------------------------------------------------------------------------------

def interface_list(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    actor = Actor.from_request(request)
    form = BridgeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        with shown_here(request, form):
            info = services.define_bridge(actor, host, d["name"], form.member_list(), d["stp"], d["start"])
            messages.success(request, f"Bridge {info.name} is defined.")
            return redirect("networks:interfaces", host_pk=host.pk)
    interfaces, error = attempt(lambda: services.list_interfaces(actor, host), [])
    return render(request, "networks/interfaces.html", {"host": host, "interfaces": interfaces, "error": error,
                                                        "form": form, "tab": "interfaces"})


@fallback(_interface_list)
def interface_detail(request: HttpRequest, oid: str) -> HttpResponse:
    xml = services.interface_xml(Actor.from_request(request), oid)
    host, name = _host_of(oid), oid.split(":", 1)[1]
    return render(request, "networks/interface.html", {"host": host, "name": name, "oid": oid, "xml": xml,
                                                       "tab": "interfaces"})


@fallback(_after_interface_action)
@require_POST
def interface_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    services.interface_action(Actor.from_request(request), oid, verb)
    messages.success(request, f"Interface {oid.split(':', 1)[1]}: {verb} done.")
    return redirect(_after_interface_action(request, oid, verb))
