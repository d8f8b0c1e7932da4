"""Storage pages: pools per host, a pool's volumes, one volume. Views only wire forms and templates to
`webvirt.storage.services`; copying, uploading and downloading start jobs whose progress the pages show."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts.policy import Actor, Denied
from webvirt.domains.forms import XMLForm
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job
from webvirt.storage import services
from webvirt.storage.forms import CloneForm, PoolDeleteForm, PoolForm, ResizeForm, UploadForm, VolumeForm
from webvirt.ui import show_error, visible_or_404
from webvirt.virt.errors import VirtError


def _host(request: HttpRequest, pk: int) -> Host:
    return visible_or_404(request, Host.objects.all(), pk)  # type: ignore[return-value]


def _host_pk(oid: str) -> int:
    head = oid.split(":", 1)[0]
    if not head.isdigit():
        raise Http404("No such host.")
    return int(head)


def _pool_oid(volume_oid: str) -> str:
    return ":".join(volume_oid.split(":", 2)[:2])


def _failed(request: HttpRequest, exc: Exception, fallback: str) -> HttpResponse:
    show_error(request, exc)
    return redirect(fallback)


def pool_list(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    pools, error = [], None
    try:
        pools = [(services.pool_id(host, p), p) for p in services.list_pools(Actor.from_request(request), host)]
    except VirtError as exc:
        error = exc
    context = {"host": host, "pools": pools, "error": error, "tab": "storage"}
    template = "storage/_pools.html" if request.headers.get("HX-Request") else "storage/pools.html"
    return render(request, template, context)


def pool_create(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    actor = Actor.from_request(request)
    form = PoolForm(request.POST or None, types=services.offered_types(actor, host))
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            info = services.create_pool(actor, host, spec=form.spec(), xml=d["xml"], start=d["start"],
                                        build=d["build"], autostart=d["autostart"])
            messages.success(request, f"Pool {info.name} is {'running' if info.active else 'defined'}.")
            return redirect("storage:pool", oid=services.pool_id(host, info))
        except Denied as exc:
            show_error(request, exc)
        except VirtError as exc:
            form.add_error(None, str(exc))
    return render(request, "storage/pool_create.html", {"host": host, "form": form, "tab": "storage"})


def pool_detail(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        host, pool = services.get_pool(actor, oid)
        volumes = [(services.volume_id(host, v), v) for v in services.list_volumes(actor, oid)]
        xml = services.pool_xml(actor, oid, inactive=False)
    except (VirtError, Denied) as exc:
        return _failed(request, exc, reverse("storage:list", args=[_host_pk(oid)]))
    jobs = services.jobs_for([vid for vid, _v in volumes]) + list(
        Job.objects.filter(kind="upload", host=host, params__pool=pool.name).order_by("-created")[:5])
    context = {"host": host, "pool": pool, "oid": oid, "volumes": volumes, "xml": xml, "tab": "storage",
               "volume_form": VolumeForm(), "upload_form": UploadForm(),
               "jobs": sorted(jobs, key=lambda j: j.created, reverse=True)[:8]}
    template = "storage/_pool.html" if request.headers.get("HX-Request") else "storage/pool.html"
    return render(request, template, context)


@require_POST
def pool_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        if verb in ("autostart_on", "autostart_off"):
            info = services.set_pool_autostart(actor, oid, verb == "autostart_on")
            messages.success(request, f"Autostart is {'on' if info.autostart else 'off'} for pool {info.name}.")
        else:
            info = services.pool_action(actor, oid, verb)
            messages.success(request, f"Pool {info.name}: {verb} done; it is {info.state}.")
    except (VirtError, Denied) as exc:
        show_error(request, exc)
    return redirect("storage:pool", oid=oid)


def pool_delete(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        host, pool = services.get_pool(actor, oid)
    except (VirtError, Denied) as exc:
        return _failed(request, exc, reverse("storage:list", args=[_host_pk(oid)]))
    form = PoolDeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            deleted = services.delete_pool(actor, oid, form.cleaned_data["delete_volumes"])
            kept = "; its volumes are kept"
            extra = f" with {len(deleted)} volume(s)" if form.cleaned_data["delete_volumes"] else kept
            messages.success(request, f"Pool {pool.name} is deleted{extra}.")
            return redirect("storage:list", host_pk=host.pk)
        except (VirtError, Denied) as exc:
            show_error(request, exc)
    return render(request, "storage/pool_delete.html", {"host": host, "pool": pool, "oid": oid, "form": form,
                                                        "tab": "storage"})


def pool_xml(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        host, pool = services.get_pool(actor, oid)
    except (VirtError, Denied) as exc:
        return _failed(request, exc, reverse("storage:list", args=[_host_pk(oid)]))
    form, error = XMLForm(request.POST or None), None
    if request.method == "POST" and form.is_valid():
        try:
            services.update_pool_xml(actor, oid, form.cleaned_data["xml"])
            messages.success(request, f"The definition of pool {pool.name} is saved; a running pool picks it up "
                                      "when it is next started.")
            return redirect("storage:pool", oid=oid)
        except Denied as exc:
            show_error(request, exc)
        except VirtError as exc:
            error = str(exc)
    elif request.method != "POST":
        form = XMLForm(initial={"xml": services.pool_xml(actor, oid)})
    return render(request, "_xml_edit.html", {
        "host": host, "title": f"pool {pool.name}", "form": form, "error": error, "tab": "storage",
        "back": reverse("storage:pool", args=[oid]), "download": reverse("storage:pool_xml_download", args=[oid]),
        "note": "Changes to a running pool take effect when it is next started."})


def _xml_file(xml: str, name: str) -> HttpResponse:
    response = HttpResponse(xml, content_type="application/xml")
    response["Content-Disposition"] = f'attachment; filename="{name}.xml"'
    return response


def pool_xml_download(request: HttpRequest, oid: str) -> HttpResponse:
    try:
        _host_obj, pool = services.get_pool(Actor.from_request(request), oid)
        return _xml_file(services.pool_xml(Actor.from_request(request), oid), f"pool-{pool.name}")
    except (VirtError, Denied) as exc:
        return _failed(request, exc, reverse("storage:list", args=[_host_pk(oid)]))


@require_POST
def volume_create(request: HttpRequest, oid: str) -> HttpResponse:
    form = VolumeForm(request.POST)
    if form.is_valid():
        d = form.cleaned_data
        try:
            info = services.create_volume(Actor.from_request(request), oid, d["name"], d["format"], d["capacity_mib"])
            messages.success(request, f"Volume {info.name} ({d['format']}, {d['capacity_mib']:,} MiB) is created.")
        except (VirtError, Denied) as exc:
            show_error(request, exc)
    else:
        messages.error(request, " ".join(f"{k}: {v[0]}" for k, v in form.errors.items()))
    return redirect("storage:pool", oid=oid)


@require_POST
def volume_upload(request: HttpRequest, oid: str) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            job = services.start_upload(Actor.from_request(request), oid, form.cleaned_data["name"],
                                        form.cleaned_data["file"])
            messages.success(request, f"Uploading {job.params.get('name')}: follow its progress below.")
        except (VirtError, Denied) as exc:
            show_error(request, exc)
    else:
        messages.error(request, "Choose a file to upload.")
    return redirect("storage:pool", oid=oid)


def volume_detail(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        host, volume = services.get_volume(actor, oid)
        xml = services.volume_xml(actor, oid)
    except (VirtError, Denied) as exc:
        return _failed(request, exc, reverse("storage:pool", args=[_pool_oid(oid)]))
    context = {"host": host, "volume": volume, "oid": oid, "pool_oid": _pool_oid(oid), "xml": xml,
               "tab": "storage", "jobs": services.jobs_for([oid]),
               "resize_form": ResizeForm(initial={"capacity_mib": volume.capacity // 1024**2}),
               "clone_form": CloneForm()}
    template = "storage/_volume.html" if request.headers.get("HX-Request") else "storage/volume.html"
    return render(request, template, context)


@require_POST
def volume_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        if verb == "delete":
            path = services.delete_volume(actor, oid)
            messages.success(request, f"Volume {path} is deleted.")
            return redirect("storage:pool", oid=_pool_oid(oid))
        if verb == "resize":
            form = ResizeForm(request.POST)
            if form.is_valid():
                info = services.resize_volume(actor, oid, form.cleaned_data["capacity_mib"])
                messages.success(request, f"Volume {info.name} is now {info.capacity // 1024**2:,} MiB.")
        elif verb == "clone":
            form = CloneForm(request.POST)
            if form.is_valid():
                services.start_clone(actor, oid, form.cleaned_data["name"])
                messages.success(request, f"Copying to {form.cleaned_data['name']}: follow its progress below.")
        elif verb == "download":
            services.start_download(actor, oid)
            messages.success(request, "Preparing the download: the file is offered below when it is ready.")
        else:
            messages.error(request, f"'{verb}' is not a volume action.")
    except (VirtError, Denied) as exc:
        show_error(request, exc)
    return redirect("storage:volume", oid=oid)


def volume_xml_download(request: HttpRequest, oid: str) -> HttpResponse:
    try:
        return _xml_file(services.volume_xml(Actor.from_request(request), oid), f"volume-{oid.split(':', 2)[2]}")
    except (VirtError, Denied) as exc:
        return _failed(request, exc, reverse("storage:pool", args=[_pool_oid(oid)]))


def download_file(request: HttpRequest, job_pk: int) -> HttpResponse:
    """The file a finished download job wrote, for the administrator who may have it."""
    job = visible_or_404(request, Job.objects.all(), job_pk)
    try:
        path = services.downloaded_file(Actor.from_request(request), job)  # type: ignore[arg-type]
    except (VirtError, Denied) as exc:
        return _failed(request, exc, job.get_absolute_url())
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
