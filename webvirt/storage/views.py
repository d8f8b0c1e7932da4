"""Storage pages: pools per host, a pool's volumes, one volume. Views only wire forms and templates to
`webvirt.storage.services`; copying, uploading and downloading start jobs whose progress the pages show.
Their failures are answered by the pages' error boundary (webvirt.ui)."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webvirt.accounts.policy import Actor
from webvirt.domains.forms import XMLForm
from webvirt.hosts.models import Host
from webvirt.jobs.models import Job
from webvirt.storage import services
from webvirt.storage.forms import CloneForm, PoolDeleteForm, PoolForm, ResizeForm, UploadForm, VolumeForm
from webvirt.ui import attempt, cleaned, fallback, render_live, shown_here, visible_or_404


def _host(request: HttpRequest, pk: int) -> Host:
    return visible_or_404(request, Host.objects.all(), pk)


def _host_pk(oid: str) -> int:
    head = oid.split(":", 1)[0]
    if not head.isdigit():
        raise Http404("No such host.")
    return int(head)


def _pool_oid(volume_oid: str) -> str:
    return ":".join(volume_oid.split(":", 2)[:2])


# Where a failure sends the user (webvirt.ui.fallback): a pool that is gone is explained on its host's
# list of pools, a volume that is gone on its pool's page.

def _pool_list(request: HttpRequest, oid: str, **_: str) -> str:
    return reverse("storage:list", args=[_host_pk(oid)])


def _pool_page(request: HttpRequest, oid: str, **_: str) -> str:
    return reverse("storage:pool", args=[oid])


def _volume_pool_page(request: HttpRequest, oid: str, **_: str) -> str:
    return reverse("storage:pool", args=[_pool_oid(oid)])


def _volume_page(request: HttpRequest, oid: str, **_: str) -> str:
    return reverse("storage:volume", args=[oid])


def _job_page(request: HttpRequest, job_pk: int) -> str:
    return reverse("jobs:detail", args=[job_pk])


def pool_list(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    pools, error = attempt(lambda: services.list_pools(Actor.from_request(request), host), [])
    context = {"host": host, "pools": [(services.pool_id(host, p), p) for p in pools], "error": error,
               "tab": "storage"}
    return render_live(request, "storage/pools.html", "storage/_pools.html", context)


def pool_create(request: HttpRequest, host_pk: int) -> HttpResponse:
    host = _host(request, host_pk)
    actor = Actor.from_request(request)
    form = PoolForm(request.POST or None, types=services.offered_types(actor, host))
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        with shown_here(request, form):
            info = services.create_pool(actor, host, spec=form.spec(), xml=d["xml"], start=d["start"],
                                        build=d["build"], autostart=d["autostart"])
            messages.success(request, f"Pool {info.name} is {'running' if info.active else 'defined'}.")
            return redirect("storage:pool", oid=services.pool_id(host, info))
    return render(request, "storage/pool_create.html", {"host": host, "form": form, "tab": "storage"})


@fallback(_pool_list)
def pool_detail(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    host, pool = services.get_pool(actor, oid)
    volumes = [(services.volume_id(host, v), v) for v in services.list_volumes(actor, oid)]
    xml = services.pool_xml(actor, oid, inactive=False)
    jobs = services.jobs_for([vid for vid, _v in volumes]) + list(
        Job.objects.filter(kind="upload", host=host, params__pool=pool.name).order_by("-created")[:5])
    context = {"host": host, "pool": pool, "oid": oid, "volumes": volumes, "xml": xml, "tab": "storage",
               "volume_form": VolumeForm(), "upload_form": UploadForm(),
               "jobs": sorted(jobs, key=lambda j: j.created, reverse=True)[:8]}
    return render_live(request, "storage/pool.html", "storage/_pool.html", context)


@fallback(_pool_page)
@require_POST
def pool_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    actor = Actor.from_request(request)
    if verb in ("autostart_on", "autostart_off"):
        info = services.set_pool_autostart(actor, oid, verb == "autostart_on")
        messages.success(request, f"Autostart is {'on' if info.autostart else 'off'} for pool {info.name}.")
    else:
        info = services.pool_action(actor, oid, verb)
        messages.success(request, f"Pool {info.name}: {verb} done; it is {info.state}.")
    return redirect("storage:pool", oid=oid)


@fallback(_pool_list)
def pool_delete(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    host, pool = services.get_pool(actor, oid)
    form = PoolDeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        with shown_here(request):
            deleted = services.delete_pool(actor, oid, form.cleaned_data["delete_volumes"])
            kept = "; its volumes are kept"
            extra = f" with {len(deleted)} volume(s)" if form.cleaned_data["delete_volumes"] else kept
            messages.success(request, f"Pool {pool.name} is deleted{extra}.")
            return redirect("storage:list", host_pk=host.pk)
    return render(request, "storage/pool_delete.html", {"host": host, "pool": pool, "oid": oid, "form": form,
                                                        "tab": "storage"})


@fallback(_pool_list)
def pool_xml(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    host, pool = services.get_pool(actor, oid)
    form, error = XMLForm(request.POST or None), None
    if request.method == "POST" and form.is_valid():
        _, error = attempt(lambda: services.update_pool_xml(actor, oid, form.cleaned_data["xml"]))
        if error is None:
            messages.success(request, f"The definition of pool {pool.name} is saved; a running pool picks it up "
                                      "when it is next started.")
            return redirect("storage:pool", oid=oid)
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


@fallback(_pool_list)
def pool_xml_download(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    _host_obj, pool = services.get_pool(actor, oid)
    return _xml_file(services.pool_xml(actor, oid), f"pool-{pool.name}")


@fallback(_pool_page)
@require_POST
def volume_create(request: HttpRequest, oid: str) -> HttpResponse:
    d = cleaned(VolumeForm(request.POST))
    info = services.create_volume(Actor.from_request(request), oid, d["name"], d["format"], d["capacity_mib"])
    messages.success(request, f"Volume {info.name} ({d['format']}, {d['capacity_mib']:,} MiB) is created.")
    return redirect("storage:pool", oid=oid)


@fallback(_pool_page)
@require_POST
def volume_upload(request: HttpRequest, oid: str) -> HttpResponse:
    d = cleaned(UploadForm(request.POST, request.FILES), "Choose a file to upload.")
    job = services.start_upload(Actor.from_request(request), oid, d["name"], d["file"])
    messages.success(request, f"Uploading {job.params.get('name')}: follow its progress below.")
    return redirect("storage:pool", oid=oid)


@fallback(_volume_pool_page)
def volume_detail(request: HttpRequest, oid: str) -> HttpResponse:
    actor = Actor.from_request(request)
    host, volume = services.get_volume(actor, oid)
    context = {"host": host, "volume": volume, "oid": oid, "pool_oid": _pool_oid(oid),
               "xml": services.volume_xml(actor, oid), "tab": "storage", "jobs": services.jobs_for([oid]),
               "resize_form": ResizeForm(initial={"capacity_mib": volume.capacity // 1024**2}),
               "clone_form": CloneForm()}
    return render_live(request, "storage/volume.html", "storage/_volume.html", context)


@fallback(_volume_page)
@require_POST
def volume_action(request: HttpRequest, oid: str, verb: str) -> HttpResponse:
    actor = Actor.from_request(request)
    if verb == "delete":
        path = services.delete_volume(actor, oid)
        messages.success(request, f"Volume {path} is deleted.")
        return redirect("storage:pool", oid=_pool_oid(oid))
    if verb == "resize":
        info = services.resize_volume(actor, oid, cleaned(ResizeForm(request.POST))["capacity_mib"])
        messages.success(request, f"Volume {info.name} is now {info.capacity // 1024**2:,} MiB.")
    elif verb == "clone":
        name = cleaned(CloneForm(request.POST))["name"]
        services.start_clone(actor, oid, name)
        messages.success(request, f"Copying to {name}: follow its progress below.")
    elif verb == "download":
        services.start_download(actor, oid)
        messages.success(request, "Preparing the download: the file is offered below when it is ready.")
    else:
        messages.error(request, f"'{verb}' is not a volume action.")
    return redirect("storage:volume", oid=oid)


@fallback(_volume_pool_page)
def volume_xml_download(request: HttpRequest, oid: str) -> HttpResponse:
    return _xml_file(services.volume_xml(Actor.from_request(request), oid), f"volume-{oid.split(':', 2)[2]}")


@fallback(_job_page)
def download_file(request: HttpRequest, job_pk: int) -> FileResponse:
    """The file a finished download job wrote, for the administrator who may have it."""
    job = visible_or_404(request, Job.objects.all(), job_pk)
    path = services.downloaded_file(Actor.from_request(request), job)
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
