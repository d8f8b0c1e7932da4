"""Network and host interface pages. Views only wire forms and templates to `webvirt.networks.services`."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts.policy import Actor, Denied
from webvirt.domains.forms import XMLForm
from webvirt.hosts.models import Host
from webvirt.networks import services
from webvirt.networks.forms import BridgeForm, DHCPHostForm, NetworkForm
from webvirt.ui import show_error, visible_or_404
from webvirt.virt.errors import VirtError


def _host(request: HttpRequest, pk: int) -> Host:
    return visible_or_404(request, Host.objects.all(), pk)  # type: ignore[return-value]


def _host_of(oid: str) -> Host:
    head = oid.split(":", 1)[0]
    host = Host.objects.filter(pk=int(head)).first() if head.isdigit() else None
    if host is None:
        raise Http404("No such host.")
    return host


def _gone(request: HttpRequest, oid: str, exc: VirtError) -> HttpResponse:
    messages.error(request, str(exc))
    return redirect("networks:list", host_pk=_host_of(oid).pk)


def network_list(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    networks, error = [], None
    try:
        networks = [(services.network_id(host, n), n) for n in services.list_networks(Actor.from_request(request),
                                                                                        host)]
    except VirtError as exc:
        error = exc
    except Denied as exc:
        show_error(request, exc)
    context = {"host": host, "networks": networks, "error": error, "tab": "networks"}
    template = "networks/_table.html" if request.headers.get("HX-Request") else "networks/list.html"
    return render(request, template, context)


def network_create(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    form = NetworkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            info = services.create_network(Actor.from_request(request), host, spec=form.spec(), xml=d["xml"],
                                           start=d["start"], autostart=d["autostart"])
            messages.success(request, f"Network {info.name} is {'running' if info.active else 'defined'}.")
            return redirect("networks:detail", oid=services.network_id(host, info))
        except Denied as exc:
            show_error(request, exc)
        except VirtError as exc:
            form.add_error(None, str(exc))
    return render(request, "networks/create.html", {"host": host, "form": form, "tab": "networks"})


def network_detail(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        host, info = services.get_network(actor, oid)
        leases = services.leases(actor, oid)
        ids = services.domain_ids(host, [le.domain_uuid for le in leases or [] if le.domain_uuid])
        xml = services.get_xml(actor, oid)
        hosts = services.dhcp_hosts(actor, oid)
    except Denied as exc:
        show_error(request, exc)
        return redirect("hosts:list")
    except VirtError as exc:
        return _gone(request, oid, exc)
    rows = None if leases is None else [{**le.as_dict(), "domain": ids.get(le.domain_uuid)} for le in leases]
    context = {"host": host, "net": info, "oid": oid, "leases": rows, "xml": xml,
               "dhcp_hosts": hosts, "dhcp_form": DHCPHostForm(), "tab": "networks"}
    template = "networks/_detail.html" if request.headers.get("HX-Request") else "networks/detail.html"
    return render(request, template, context)


@require_POST
def network_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    actor = Actor.from_request(request)
    force = bool(request.POST.get("force"))
    try:
        if verb in ("autostart_on", "autostart_off"):
            info = services.set_autostart(actor, oid, verb == "autostart_on")
            messages.success(request, f"Autostart is {'on' if info.autostart else 'off'} for network {info.name}.")
        else:
            info = services.run_action(actor, oid, verb, force)
            messages.success(request, f"Network {info.name} is {'running' if info.active else 'stopped'}.")
    except (VirtError, Denied) as exc:
        show_error(request, exc)
    return redirect("networks:detail", oid=oid)


def network_delete(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        host, info = services.get_network(actor, oid)
    except (VirtError, Denied) as exc:
        show_error(request, exc)
        return redirect("hosts:list")
    if request.method == "POST":
        try:
            services.delete_network(actor, oid, bool(request.POST.get("force")))
            messages.success(request, f"Network {info.name} is deleted.")
            return redirect("networks:list", host_pk=host.pk)
        except (VirtError, Denied) as exc:
            show_error(request, exc)
    return render(request, "networks/delete.html", {"host": host, "net": info, "oid": oid, "tab": "networks"})


def network_xml(request: HttpRequest, oid: str) -> HttpResponse:
    """Edit a network's definition; libvirt validates it and a rejected edit changes nothing."""
    actor = Actor.from_request(request)
    try:
        host, info = services.get_network(actor, oid)
    except (VirtError, Denied) as exc:
        show_error(request, exc)
        return redirect("hosts:list")
    form, error = XMLForm(request.POST or None), None
    if request.method == "POST" and form.is_valid():
        try:
            _info, applied = services.update_xml(actor, oid, form.cleaned_data["xml"])
            live = f" Applied to the running network: {'; '.join(applied)}." if applied else ""
            messages.success(request, f"The definition of network {info.name} is saved.{live}")
            return redirect("networks:detail", oid=oid)
        except Denied as exc:
            show_error(request, exc)
        except VirtError as exc:
            error = str(exc)
    elif request.method != "POST":
        form = XMLForm(initial={"xml": services.get_xml(actor, oid)})
    return render(request, "_xml_edit.html", {
        "host": host, "title": f"network {info.name}", "form": form, "error": error, "tab": "networks",
        "back": reverse("networks:detail", args=[oid]), "download": reverse("networks:xml_download", args=[oid]),
        "note": "DHCP host entries you add or remove reach the running network at once; other changes take "
                "effect when the network is next started."})


def network_xml_download(request: HttpRequest, oid: str) -> HttpResponse:
    try:
        _host_obj, info = services.get_network(Actor.from_request(request), oid)
        xml = services.get_xml(Actor.from_request(request), oid)
    except (VirtError, Denied) as exc:
        show_error(request, exc)
        return redirect("hosts:list")
    response = HttpResponse(xml, content_type="application/xml")
    response["Content-Disposition"] = f'attachment; filename="network-{info.name}.xml"'
    return response


@require_POST
def dhcp_host_add(request: HttpRequest, oid: str) -> HttpResponse:
    form = DHCPHostForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(f"{k}: {v[0]}" for k, v in form.errors.items()))
        return redirect("networks:detail", oid=oid)
    d = form.cleaned_data
    try:
        services.add_dhcp_host(Actor.from_request(request), oid, d["mac"], d["ip"], d["name"])
        messages.success(request, f"{d['mac']} gets {d['ip']} from now on.")
    except (VirtError, Denied) as exc:
        show_error(request, exc)
    return redirect("networks:detail", oid=oid)


@require_POST
def dhcp_host_remove(request: HttpRequest, oid: str) -> HttpResponse:
    try:
        services.remove_dhcp_host(Actor.from_request(request), oid, request.POST.get("mac", ""))
        messages.success(request, f"The DHCP entry for {request.POST.get('mac')} is removed.")
    except (VirtError, Denied) as exc:
        show_error(request, exc)
    return redirect("networks:detail", oid=oid)


# Host interfaces --------------------------------------------------------------------------------

def interface_list(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    actor = Actor.from_request(request)
    form = BridgeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            info = services.define_bridge(actor, host, d["name"], form.member_list(), d["stp"], d["start"])
            messages.success(request, f"Bridge {info.name} is defined.")
            return redirect("networks:interfaces", host_pk=host.pk)
        except Denied as exc:
            show_error(request, exc)
        except VirtError as exc:
            form.add_error(None, str(exc))
    interfaces, error = [], None
    try:
        interfaces = services.list_interfaces(actor, host)
    except VirtError as exc:
        error = exc
    return render(request, "networks/interfaces.html", {"host": host, "interfaces": interfaces, "error": error,
                                                        "form": form, "tab": "interfaces"})


def interface_detail(request: HttpRequest, oid: str) -> HttpResponse:
    try:
        xml = services.interface_xml(Actor.from_request(request), oid)
    except Denied as exc:
        show_error(request, exc)
        return redirect("hosts:list")
    except VirtError as exc:
        messages.error(request, str(exc))
        return redirect("networks:interfaces", host_pk=_host_of(oid).pk)
    host, name = _host_of(oid), oid.split(":", 1)[1]
    return render(request, "networks/interface.html", {"host": host, "name": name, "oid": oid, "xml": xml,
                                                       "tab": "interfaces"})


@require_POST
def interface_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    try:
        services.interface_action(Actor.from_request(request), oid, verb)
        messages.success(request, f"Interface {oid.split(':', 1)[1]}: {verb} done.")
    except (VirtError, Denied) as exc:
        show_error(request, exc)
    if verb == "undefine":
        return redirect("networks:interfaces", host_pk=_host_of(oid).pk)
    return redirect("networks:interface", oid=oid)
