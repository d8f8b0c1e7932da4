"""A template's cloud-init settings and a clone request's password, on the test driver through the daemon.

The seed itself is uploaded as a volume, which the test driver cannot do (it has no volume upload): the
seeds' content is checked here in Python, and clones booting with their seeds on real QEMU in
tests/integration/test_qemu_seeds.py.
"""

from __future__ import annotations

import io
import logging
import uuid as uuidlib

import pycdlib
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.catalog.conftest import clone
from tests.people import api_for, client_for
from webvirt.accounts.models import AuditEntry
from webvirt.catalog import seeds
from webvirt.catalog.models import Template
from webvirt.jobs import runner
from webvirt.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"
CONFIG = "#cloud-config\npackage_update: false\nruncmd:\n  - echo hello\n"


def public_key(comment: str) -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}"


def enable(admin, template: Template, **settings) -> dict:  # type: ignore[no-untyped-def]
    body = {"cloud_init": {"enabled": True, "user_data": CONFIG, **settings}}
    response = api_for(admin).patch(f"/api/v1/templates/{template.pk}/", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def read_iso(data: bytes) -> dict[str, str]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        files = {}
        for name in ("meta-data", "user-data", "network-config"):
            out = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            except pycdlib.pycdlibexception.PyCdlibInvalidInput:
                continue
            files[name] = out.getvalue().decode()
        files["label"] = iso.pvd.volume_identifier.decode().strip()
        return files
    finally:
        iso.close()


def test_the_api_shows_and_changes_a_templates_cloud_init_settings(admin, template):
    shown = api_for(admin).get(f"/api/v1/templates/{template.pk}/").json()
    assert shown["cloud_init"] == {"enabled": False, "user_data": "", "network_config": "", "allow_password": False,
                                   "login_user": "", "guest_agent": False, "detach_seed": False}
    assert shown["sealed"] == "not_sealed"
    changed = enable(admin, template, login_user="student", allow_password=True)
    assert changed["cloud_init"]["enabled"] and changed["cloud_init"]["user_data"] == CONFIG.strip()
    assert changed["cloud_init"]["login_user"] == "student" and changed["cloud_init"]["allow_password"]
    # A PATCH of one setting keeps the others.
    response = api_for(admin).patch(f"/api/v1/templates/{template.pk}/", {"cloud_init": {"detach_seed": True}},
                                    format="json")
    assert response.json()["cloud_init"]["user_data"] == CONFIG.strip() and response.json()["cloud_init"]["detach_seed"]
    assert AuditEntry.objects.filter(action="template.update", object_id=str(template.pk), outcome="ok").count() == 2


def test_invalid_yaml_is_refused_with_its_line_and_nothing_changes(admin, template):
    body = {"cloud_init": {"enabled": True, "user_data": "#cloud-config\nusers:\n  - name: x\n   bad: [1, 2\n"}}
    response = api_for(admin).patch(f"/api/v1/templates/{template.pk}/", body, format="json")
    assert response.status_code == 400
    assert "YAML" in response.json()["error"] and "line" in response.json()["error"], response.json()
    template.refresh_from_db()
    assert not template.cloud_init and template.user_data == ""
    body = {"cloud_init": {"enabled": True, "user_data": "- just\n- a list\n"}}
    response = api_for(admin).patch(f"/api/v1/templates/{template.pk}/", body, format="json")
    assert response.status_code == 400 and "mapping" in response.json()["error"], response.json()


def test_settings_that_cannot_work_are_refused(admin, template):
    api = api_for(admin)
    response = api.patch(f"/api/v1/templates/{template.pk}/", {"cloud_init": {"allow_password": True}}, format="json")
    assert response.status_code == 400 and "login user" in response.json()["error"]
    response = api.patch(f"/api/v1/templates/{template.pk}/", {"cloud_init": {"login_user": "Root Me"}},
                         format="json")
    assert response.status_code == 400 and "user name" in response.json()["error"]
    # Warm machines are booted before they have an owner: without an agent, nothing can give them keys.
    Template.objects.filter(pk=template.pk).update(warm_count=1)
    response = api.patch(f"/api/v1/templates/{template.pk}/", {"cloud_init": {"enabled": True}}, format="json")
    assert response.status_code == 409 and "guest agent" in response.json()["error"]
    response = api.patch(f"/api/v1/templates/{template.pk}/", {"cloud_init": {
        "enabled": True, "guest_agent": True, "login_user": "student"}}, format="json")
    assert response.status_code == 200, response.json()
    # And the other way round: a pool for a cloud-init template without an agent.
    api.patch(f"/api/v1/templates/{template.pk}/", {"cloud_init": {"guest_agent": False}}, format="json")
    Template.objects.filter(pk=template.pk).update(warm_count=0)
    api.patch(f"/api/v1/templates/{template.pk}/", {"cloud_init": {"guest_agent": False}}, format="json")
    response = api.post(f"/api/v1/templates/{template.pk}/warm/", {"count": 1}, format="json")
    assert response.status_code == 409 and "guest agent" in response.json()["error"]


def test_only_administrators_change_templates(bob, stranger, template):
    template.users.add(bob)
    assert api_for(bob).patch(f"/api/v1/templates/{template.pk}/", {"name": "mine"}, format="json").status_code == 404
    assert api_for(stranger).patch(f"/api/v1/templates/{template.pk}/", {"name": "x"}, format="json").status_code == 404
    template.refresh_from_db()
    assert template.name != "mine"


def test_a_password_is_refused_where_the_template_takes_none(bob, template):
    template.users.add(bob)
    response = clone(bob, template, password=PASSWORD)
    assert response.status_code == 400 and "no password" in response.json()["error"]
    assert not Job.objects.exists()


def test_a_password_is_kept_only_as_a_hash_and_never_shown_or_logged(admin, bob, template, caplog):
    enable(admin, template, login_user="student", allow_password=True)
    template.users.add(bob)
    with caplog.at_level(logging.DEBUG):
        response = clone(bob, template, password=PASSWORD)
        assert response.status_code == 202, response.json()
        job = Job.objects.get(pk=response.json()["job"])
        runner.execute(job.pk)
    stored = job.params["password_hash"]
    assert stored.startswith("$6$") and PASSWORD not in str(job.params)
    shown = api_for(bob).get(f"/api/v1/jobs/{job.pk}/").json()
    assert "password_hash" not in shown["params"] and stored not in str(shown)
    for entry in AuditEntry.objects.all():
        text = " ".join(str(v) for v in entry.__dict__.values())
        assert PASSWORD not in text and stored not in text
    assert PASSWORD not in caplog.text and stored not in caplog.text
    # Too short: refused before anything is made.
    response = clone(bob, template, password="short", pattern=f"{template.name}-s{{n}}")
    assert response.status_code == 400 and "8" in response.json()["error"]


def test_a_clones_seed_has_its_own_identity_and_its_owners_keys(admin, bob, template):
    enable(admin, template, login_user="student", allow_password=True,
           network_config="version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")
    keys = [public_key("bob@laptop"), public_key("bob@desktop")]
    for key in keys:
        assert api_for(bob).post("/api/v1/me/ssh-keys/", {"public_key": key}, format="json").status_code == 201
    template.refresh_from_db()
    uuid = str(uuidlib.uuid4())
    files = read_iso(seeds.seed_of(template, "exam-07", uuid, bob.pk, seeds.check_password(template, PASSWORD)))
    assert files["label"] == "cidata"
    assert f"instance-id: {uuid}" in files["meta-data"] and "local-hostname: exam-07" in files["meta-data"]
    assert files["user-data"].startswith("#cloud-config\n")
    assert all(key in files["user-data"] for key in keys) and "echo hello" in files["user-data"]
    assert "$6$" in files["user-data"] and PASSWORD not in files["user-data"]
    assert "dhcp4: true" in files["network-config"]
    # A warm machine has no owner yet: nothing of anyone's in its seed.
    files = read_iso(seeds.seed_of(template, "warm-01", uuid, None))
    assert "ssh-ed25519" not in files["user-data"] and "$6$" not in files["user-data"]


def test_the_edit_page_saves_cloud_init_settings_and_shows_errors(admin, template):
    client = client_for(admin)
    page = client.get(f"/templates/{template.pk}/edit/")
    assert b"cloud-init" in page.content and b'name="user_data"' in page.content
    form = {"name": template.name, "description": "", "os": "", "max_lifetime_days": 10, "warm_count": 0,
            "boot_marker": "", "cloud_init": "on", "user_data": "a: [1", "login_user": ""}
    response = client.post(f"/templates/{template.pk}/edit/", form)
    assert response.status_code == 200 and b"not valid YAML" in response.content
    template.refresh_from_db()
    assert not template.cloud_init
    response = client.post(f"/templates/{template.pk}/edit/", {**form, "user_data": CONFIG})
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.cloud_init and template.user_data == CONFIG.strip()
    detail = client.get(f"/templates/{template.pk}/").content.decode()
    assert "its own seed: instance-id, hostname" in detail


def test_the_clone_form_asks_for_a_password_only_where_it_is_allowed(admin, bob, template):
    template.users.add(bob)
    assert b'name="password"' not in client_for(bob).get(f"/templates/{template.pk}/").content
    enable(admin, template, login_user="student", allow_password=True)
    page = client_for(bob).get(f"/templates/{template.pk}/").content.decode()
    assert 'name="password"' in page and "the password of student" in page


def test_sealing_a_template_on_a_host_without_real_disks_leaves_it_unsealed_and_says_why(admin, template_source):
    response = api_for(admin).post("/api/v1/templates/", {"domain": template_source.pk, "name": "sealed-one",
                                                          "seal": True}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["sealed"] == "sealing"
    template = Template.objects.get(pk=response.json()["id"])
    job = Job.objects.get(kind="seal", target_id=str(template.pk))
    # No clone while the disks may change.
    response = api_for(admin).post(f"/api/v1/templates/{template.pk}/clone/", {
        "count": 1, "name_pattern": "sealed-one-{n}", "start": False}, format="json")
    assert response.status_code == 409 and "being sealed" in response.json()["error"]
    runner.execute(job.pk)
    shown = api_for(admin).get(f"/api/v1/templates/{template.pk}/").json()
    assert shown["sealed"] == "not_sealed" and shown["seal_note"].startswith("Not sealed: "), shown
    assert Job.objects.get(pk=job.pk).state == Job.SUCCEEDED
    Template.objects.filter(pk=template.pk).delete()
