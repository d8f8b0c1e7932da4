"""REST API for the audit trail (administrators only, read-only), and for one's own API tokens and SSH keys."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from webvirt.accounts import policy, sshkeys, tokens
from webvirt.accounts.models import ApiToken, AuditEntry, SshKey
from webvirt.accounts.policy import Actor
from webvirt.filtering import FilterSet


class AuditFilter(FilterSet):
    username = django_filters.CharFilter(lookup_expr="iexact", label="User")
    action = django_filters.CharFilter(lookup_expr="istartswith", label="Action")
    object = django_filters.CharFilter(field_name="object_repr", lookup_expr="icontains", label="Object")
    outcome = django_filters.ChoiceFilter(choices=AuditEntry.OUTCOMES, empty_label="Any outcome")
    since = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="gte", label="Since")

    class Meta:
        model = AuditEntry
        fields = ["username", "action", "object", "outcome", "since"]


class AuditSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "created", "username", "action", "object_type", "object_id", "object_repr", "address",
                  "via", "outcome", "detail"]


class AuditViewSet(viewsets.ReadOnlyModelViewSet[AuditEntry]):
    serializer_class = AuditSerializer
    filterset_class = AuditFilter

    def get_queryset(self) -> QuerySet[AuditEntry]:
        policy.require_admin(self.request.user)
        return AuditEntry.objects.all()


class ApiTokenSerializer(serializers.ModelSerializer):
    expires_days = serializers.IntegerField(
        write_only=True, required=False, allow_null=True, min_value=1, max_value=3650,
        help_text="Days until the token stops working; leave out for a token that never expires.")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "expires", "last_used", "expires_days"]
        read_only_fields = ["id", "prefix", "created", "expires", "last_used"]
        extra_kwargs = {"name": {"help_text": "What the token is for, e.g. the script that uses it."},
                        "prefix": {"help_text": "The key's first characters, to tell tokens apart."}}


class NewApiTokenSerializer(ApiTokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The token itself. Shown in this answer only: keep it.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]


class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                      viewsets.GenericViewSet[ApiToken]):
    """Your own API tokens: list them, create one (its key is in the answer, once), revoke one.

    Everyone sees only their own tokens, administrators too; anyone else's answers 404.
    """

    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()  # the schema is built without a user
        return ApiToken.objects.filter(user=policy.signed_in(self.request))

    @extend_schema(responses={201: NewApiTokenSerializer})
    def create(self, request: Request) -> Response:
        data = ApiTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        days = data.validated_data.get("expires_days")
        token, key = tokens.issue(Actor.from_request(request, "api"), request.user,
                                  name=data.validated_data.get("name", ""),
                                  expires_in=timedelta(days=days) if days else None)
        # The key is not stored (only its digest): the answer takes it from beside the row.
        answer = {**ApiTokenSerializer(token).data, "key": key}
        return Response(answer, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        tokens.revoke(Actor.from_request(self.request, "api"), instance)


class SshKeySerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="key_type", read_only=True,
                                 help_text="The key's type, as its line names it: ssh-ed25519, ssh-rsa...")

    class Meta:
        model = SshKey
        fields = ["id", "name", "public_key", "fingerprint", "type", "created"]
        read_only_fields = ["id", "fingerprint", "created"]
        extra_kwargs = {
            "name": {"required": False, "allow_blank": True,
                     "help_text": "What the key is for, e.g. the laptop it is on. Left out: the key's comment."},
            "public_key": {"trim_whitespace": False,
                           "help_text": "One OpenSSH public key line, as in a .pub file: type, key, comment. "
                                        "Answered normalised."},
            "fingerprint": {"help_text": "SHA256:..., as ssh-keygen -l prints it."},
        }


class SshKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                    viewsets.GenericViewSet[SshKey]):
    """Your own SSH public keys, which go into the machines cloned for you: list, add, delete.

    Everyone sees only their own keys, administrators too; anyone else's answers 404.
    """

    serializer_class = SshKeySerializer

    def get_queryset(self) -> QuerySet[SshKey]:
        if getattr(self, "swagger_fake_view", False):
            return SshKey.objects.none()  # the schema is built without a user
        return sshkeys.own_keys(policy.signed_in(self.request))

    @extend_schema(responses={201: SshKeySerializer})
    def create(self, request: Request) -> Response:
        data = SshKeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = sshkeys.add_key(Actor.from_request(request, "api"), policy.signed_in(request),
                              data.validated_data["public_key"], data.validated_data.get("name", ""))
        return Response(SshKeySerializer(key).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: SshKey) -> None:
        sshkeys.delete_key(Actor.from_request(self.request, "api"), instance)
