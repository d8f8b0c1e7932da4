"""The policy module: who may see and do what, and who is acting from where."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor, Denied
from webvirt.domains.models import Domain
from webvirt.hosts.models import Host

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_user("bob", "", "bob-password-1", is_staff=True)


def test_staff_and_superusers_are_administrators(admin, staff, stranger):
    assert policy.is_admin(admin) and policy.is_admin(staff)
    assert not policy.is_admin(stranger)
    assert not policy.is_admin(AnonymousUser())
    assert not policy.is_admin(None)


def test_a_deactivated_administrator_is_not_one(admin, test_host):
    admin.is_active = False
    assert not policy.is_admin(admin)
    assert not policy.visible(admin, Host.objects.all()).exists()


def test_administrators_see_everything_and_others_nothing(admin, stranger, test_host):
    assert list(policy.visible(admin, Host.objects.all())) == [test_host]
    assert not policy.visible(stranger, Host.objects.all()).exists()
    assert not policy.visible(stranger, Domain.objects.all()).exists()
    assert not policy.visible(AnonymousUser(), Host.objects.all()).exists()


def test_an_object_the_user_cannot_see_is_denied_as_missing(stranger, test_host):
    with pytest.raises(Denied) as caught:
        policy.require(stranger, policy.CHANGE, test_host)
    assert caught.value.hidden
    assert caught.value.message == "Not found."


def test_adding_is_denied_openly_when_nothing_is_hidden(stranger):
    with pytest.raises(Denied) as caught:
        policy.require(stranger, policy.ADD, Host)
    assert not caught.value.hidden
    assert caught.value.message == "You are not allowed to do that."


def test_an_administrator_may_do_everything(admin, test_host):
    for action in (policy.VIEW, policy.CHANGE, policy.OPERATE, policy.DELETE):
        policy.require(admin, action, test_host)
        assert policy.can(admin, action, test_host)
    policy.require(admin, policy.ADD, Host)


def test_only_administrators_pass_require_admin(admin, stranger):
    policy.require_admin(admin)
    with pytest.raises(Denied) as caught:
        policy.require_admin(stranger)
    assert caught.value.hidden


def test_the_actor_is_the_requests_user_and_address(admin):
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.9")
    request.user = admin
    actor = Actor.from_request(request, "api")
    assert (actor.user, actor.address, actor.via) == (admin, "127.0.0.9", "api")


def test_the_actor_ignores_a_forwarded_address_from_an_untrusted_client(admin):
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.7, 127.0.0.8")
    request.user = admin
    assert Actor.from_request(request).address == "127.0.0.1"


def test_the_actor_takes_the_address_a_trusted_proxy_saw(admin, settings):
    settings.WEBVIRT_TRUSTED_PROXIES = ["127.0.0.1"]
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.7, 127.0.0.8")
    request.user = admin
    assert Actor.from_request(request).address == "127.0.0.8"


def test_only_a_real_user_counts_and_a_lazy_one_is_the_user_it_wraps(admin, stranger, test_host):
    """The policy decides by what it is given: something that merely looks like an administrator (as
    any object can, with `is_staff = True`) is nobody; a lazy request.user is the user it wraps."""
    from types import SimpleNamespace

    from django.utils.functional import SimpleLazyObject

    lookalike = SimpleNamespace(pk=admin.pk, is_authenticated=True, is_active=True, is_staff=True, is_superuser=True)
    assert not policy.is_admin(lookalike)
    assert not policy.visible(lookalike, Host.objects.all()).exists()
    assert not policy.may_receive(lookalike, {"type": "host"})
    with pytest.raises(Denied):
        policy.require_admin(lookalike)
    assert policy.is_admin(SimpleLazyObject(lambda: admin))
    assert list(policy.visible(SimpleLazyObject(lambda: admin), Host.objects.all())) == [test_host]
    assert policy.active_user(SimpleLazyObject(lambda: stranger)) == stranger


def test_a_deactivated_user_is_told_nothing_and_may_do_nothing(stranger):
    domain_event = {"type": "domain", "owner": stranger.pk}
    assert policy.may_receive(stranger, domain_event)
    stranger.is_active = False
    assert not policy.may_receive(stranger, domain_event)
    assert not policy.may_receive(None, domain_event)
