"""A host interface, by its id `<host>:<name>`, exists only for administrators (the policy, not luck).

Every route of one interface went through a service that checks the policy before the viewset read
the interface itself; these tests hold the viewset's own look-up to the same rule.
"""

from __future__ import annotations

import pytest
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from webvirt.accounts.policy import Denied
from webvirt.networks.api import InterfaceViewSet

pytestmark = pytest.mark.django_db


def stranger_api(stranger) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(stranger)
    return client


def test_a_non_admin_gets_404_for_an_interface_on_a_real_host(stranger, test_host):
    api = stranger_api(stranger)
    assert api.get(f"/api/v1/interfaces/{test_host.pk}:eth1/").status_code == 404
    assert api.post(f"/api/v1/interfaces/{test_host.pk}:eth1/start/").status_code == 404
    assert api.get(f"/api/v1/interfaces/{test_host.pk}:eth1/xml/").status_code == 404


def test_the_viewsets_own_look_up_refuses_a_non_admin(stranger, test_host):
    view = InterfaceViewSet()
    view.request = Request(APIRequestFactory().get("/"))
    view.request.user = stranger
    with pytest.raises(Denied) as refused:
        view._one(f"{test_host.pk}:eth1")
    assert refused.value.hidden  # "not found", as for a host that does not exist


def test_an_admin_gets_the_interface(api, test_host):
    response = api.get(f"/api/v1/interfaces/{test_host.pk}:eth1/")
    assert response.status_code == 200 and response.json()["id"] == f"{test_host.pk}:eth1"
