"""REST API for users, groups and the CSV import: administrators only (anyone else hears 404).

The same services as the People pages. A password the API generates (a new user without one, a new
user of an import) is in that answer only; webvirt keeps nothing but its hash.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db.models import Count, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from webvirt.accounts import policy
from webvirt.accounts.policy import Actor
from webvirt.api_base import truthy
from webvirt.people import csvimport, services
from webvirt.people.csvimport import ImportRefused, Plan
from webvirt.people.services import UserData
from webvirt.virt import errors
from webvirt.virt.errors import VirtError


class UserSerializer(serializers.ModelSerializer):
    # Read from (and written as) is_staff; the answer says is_staff or is_superuser (to_representation).
    is_admin = serializers.BooleanField(required=False, source="is_staff",
                                        help_text="An administrator: sees and does everything.")
    groups: serializers.SlugRelatedField[Group] = serializers.SlugRelatedField(
        many=True, slug_field="name", queryset=Group.objects.all(), required=False,
        help_text="The names of the user's groups (they must exist).")
    machines = serializers.IntegerField(read_only=True, help_text="How many machines the user owns.")
    password = serializers.CharField(
        write_only=True, required=False, trim_whitespace=False, style={"input_type": "password"},
        help_text="A new user's password (left out: one is generated and answered once), or a new password.")

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "first_name", "last_name", "email", "is_active", "is_admin", "groups",
                  "date_joined", "last_login", "machines", "password"]
        read_only_fields = ["id", "date_joined", "last_login", "machines"]
        # Taken names are checked by the service (in any case, with a sentence), not by the model's validator.
        extra_kwargs: dict[str, dict[str, Any]] = {"username": {"validators": []}}

    def to_representation(self, instance: User) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        data["is_admin"] = services.is_admin(instance)
        data["machines"] = getattr(instance, "machines", None)
        if data["machines"] is None:
            data["machines"] = services.machines_of(instance).count()
        return data

    def validate_username(self, value: str) -> str:
        if self.instance is not None and value != self.instance.get_username():
            raise serializers.ValidationError("A user name cannot be changed.")
        return value


class NewUserSerializer(UserSerializer):
    generated_password = serializers.CharField(
        read_only=True, help_text="The generated password, when none was given: in this answer only.")

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "generated_password"]


class CsvParser(BaseParser):
    """A CSV body, read as the import reads an uploaded file (size, UTF-8): the same as JSON's {"csv": ...}."""

    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> dict[str, str]:
        return {"csv": csvimport.read(bytes(stream.read(csvimport.MAX_BYTES + 1)) if stream is not None else b"")}


class PlainTextParser(CsvParser):
    media_type = "text/plain"


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[User]):
    """Users: list (`?search=` user name, name or e-mail), create, read, change. Administrators only."""

    serializer_class = UserSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[User]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator asks as nobody
            return get_user_model().objects.none()
        policy.require_admin(self.request.user)
        return services.search(self.request.query_params.get("search", "")[:100])

    @extend_schema(responses={201: NewUserSerializer})
    def create(self, request: Request) -> Response:
        policy.require_admin(request.user)
        given = UserSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        d = given.validated_data
        data = UserData(username=d["username"], first_name=d.get("first_name", ""), last_name=d.get("last_name", ""),
                        email=d.get("email", ""), groups=list(d.get("groups", [])), is_admin=d.get("is_staff", False),
                        is_active=d.get("is_active", True))
        user, generated = services.create_user(Actor.from_request(request, "api"), data, d.get("password", ""))
        answer = {**UserSerializer(self.get_queryset().get(pk=user.pk)).data}
        if generated:
            answer["generated_password"] = generated
        return Response(answer, status=201, headers={"Cache-Control": "no-store"})

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Change what is given: names, e-mail, groups, administrator, active, password."""
        user = self.get_object()
        given = UserSerializer(user, data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        d = given.validated_data
        actor = Actor.from_request(request, "api")
        data = services.data_of(user)
        for key in ("first_name", "last_name", "email", "is_active"):
            if key in d:
                setattr(data, key, d[key])
        if "is_staff" in d:
            data.is_admin = d["is_staff"]
        if "groups" in d:
            data.groups = list(d["groups"])
        if set(d) - {"password", "username"}:
            services.update_user(actor, user, data)
        if "password" in d:
            if not d["password"]:
                raise VirtError("Give the new password, or leave `password` out.", errors.INVALID)
            services.reset_password(actor, user, d["password"])
        return Response(UserSerializer(self.get_queryset().get(pk=user.pk)).data)

    @extend_schema(
        request={"text/csv": OpenApiTypes.STR, "application/json": {"type": "object",
                                                                     "properties": {"csv": {"type": "string"}}}},
        parameters=[OpenApiParameter("dry_run", OpenApiTypes.BOOL, description="Only answer what it would do.")],
        responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    @action(detail=False, methods=["post"], url_path="import", url_name="import",
            parser_classes=[JSONParser, CsvParser, PlainTextParser])
    def import_csv(self, request: Request) -> Response:
        """Import people from CSV (`username,name,email,groups[,password]`): all lines or none.

        `?dry_run=true` answers what it would do (200). A file with a bad line answers 400 with every
        line; an import answers 201 with the counts and the generated passwords, once.
        """
        policy.require_admin(request.user)
        text = _csv_of(request)
        if truthy(request.query_params.get("dry_run", "")):
            plan = csvimport.plan(text)
            return Response(_preview(plan), status=200 if plan.ok else 400)
        try:
            result = csvimport.apply(Actor.from_request(request, "api"), text)
        except ImportRefused as exc:
            return Response({"error": exc.message, "code": exc.kind, **_preview(exc.plan)}, status=400)
        return Response({"created": len(result.created), "updated": len(result.updated),
                         "unchanged": len(result.unchanged), "new_groups": result.new_groups,
                         "users": {"created": result.created, "updated": result.updated,
                                   "unchanged": result.unchanged},
                         "passwords": [{"username": u, "password": p} for u, p in result.passwords]},
                        status=201, headers={"Cache-Control": "no-store"})


def _csv_of(request: Request) -> str:
    body = request.data
    if request.content_type.split(";")[0].strip() in (CsvParser.media_type, PlainTextParser.media_type) and not body:
        return ""  # an empty body is not parsed at all: an empty file
    if isinstance(body, dict) and isinstance(body.get("csv"), str):
        return str(body["csv"])
    raise VirtError('Send the CSV as the body (Content-Type: text/csv), or as JSON {"csv": "..."}.', errors.INVALID)


def _preview(plan: Plan) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "ok": plan.ok, "counts": plan.counts, "new_groups": plan.new_groups, "errors": plan.errors,
        "lines": [{"line": line.number, "username": line.username, "action": line.action, "changes": line.changes,
                   "notes": line.notes, "errors": line.errors} for line in plan.lines]}
    if not plan.ok:
        answer = {"error": plan.summary(), "code": errors.INVALID, **answer}
    return answer


class GroupSerializer(serializers.ModelSerializer):
    members: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        many=True, slug_field="username", source="user_set", queryset=get_user_model().objects.all(),
        required=False, help_text="The user names of its members; a PATCH with it sets exactly these.")

    class Meta:
        model = Group
        fields = ["id", "name", "members"]
        # Taken names are checked by the service (in any case, with a sentence), not by the model's validator.
        extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}


class GroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Group]):
    """Groups and their members: list, create, read, rename or set members, delete. Administrators only."""

    serializer_class = GroupSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[Group]:
        if getattr(self, "swagger_fake_view", False):
            return Group.objects.none()
        policy.require_admin(self.request.user)
        return Group.objects.annotate(member_count=Count("user")).prefetch_related("user_set").order_by("name")

    def create(self, request: Request) -> Response:
        policy.require_admin(request.user)
        given = GroupSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        group = services.create_group(Actor.from_request(request, "api"), given.validated_data["name"],
                                      given.validated_data.get("user_set", []))
        return Response(GroupSerializer(group).data, status=201)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        group = self.get_object()
        given = GroupSerializer(group, data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        actor = Actor.from_request(request, "api")
        if "name" in given.validated_data and given.validated_data["name"] != group.name:
            services.rename_group(actor, group, given.validated_data["name"])
        if "user_set" in given.validated_data:
            services.set_members(actor, group, given.validated_data["user_set"])
        return Response(GroupSerializer(Group.objects.get(pk=group.pk)).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.delete_group(Actor.from_request(request, "api"), self.get_object())
        return Response(status=204)


router = SimpleRouter()
router.register("users", UserViewSet, basename="user")
router.register("groups", GroupViewSet, basename="group")
urlpatterns = router.urls
