"""What the HTML views share: fetching what the user may see, and the one boundary for their failures.

Views hold their happy path. A failure they do not expect to render around -- a `VirtError` from
libvirt, a `Denied` from the policy, a `ValidationError` from `cleaned` -- leaves the view and reaches
`ErrorBoundary`, which answers it the same way for every page (see there). A page that deliberately
goes on rendering despite a failure says so where it happens:

- `attempt(lambda: ...)` gives back the value or the `VirtError`, for pages that show live state and
  still work when a host is down (the error is rendered in the page);
- `with shown_here(request, form):` puts the sentence on the form (or, without a form, in the
  page's messages) and lets the view render the page again, for forms and confirmation pages.

Whichever way, an object the user may not see answers 404, like anything else that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlsplit

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.forms import BaseForm
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from webvirt.accounts import policy
from webvirt.accounts.policy import Denied
from webvirt.virt.errors import VirtError

if TYPE_CHECKING:  # Only named: the auth models may not be loaded yet when this module is.
    pass

T = TypeVar("T")
D = TypeVar("D")
M = TypeVar("M", bound=Model)
F = TypeVar("F", bound=forms.Field)
View = TypeVar("View", bound=Callable[..., HttpResponseBase])

# What the boundary turns into a sentence; anything else is a bug and stays a 500.
FAILURES = (VirtError, Denied, ValidationError)


def visible_or_404(request: HttpRequest, queryset: QuerySet[M], pk: Any) -> M:
    return get_object_or_404(policy.visible(request.user, queryset), pk=pk)


def safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


# Declarations a view makes about its failures ---------------------------------------------------

def fallback(to: Callable[..., str]) -> Callable[[View], View]:
    """Declare where a failure of this view sends the user: `to(request, **url_kwargs)` gives the URL.

    Needed when "the same page" is no answer: POST-only actions, and pages of an object that is gone.
    """

    def declare(view: View) -> View:
        view.error_fallback = to  # type: ignore[attr-defined]  # a declaration kept on the function itself
        return view

    return declare


def plain_errors(view: View) -> View:
    """Declare that this view answers a failure as a short text and a status, not with a page or a
    redirect: it serves something a page embeds (an image), where a redirect would show nothing."""
    view.plain_errors = True  # type: ignore[attr-defined]  # a declaration kept on the function itself
    return view


# Failures a page renders around -----------------------------------------------------------------

@overload
def attempt(call: Callable[[], T]) -> tuple[T | None, VirtError | None]: ...
@overload
def attempt(call: Callable[[], T], default: D) -> tuple[T | D, VirtError | None]: ...
def attempt(call: Callable[[], T], default: object = None) -> tuple[object, VirtError | None]:
    """`call()`, or `default` and the VirtError: for pages that still work when a host is down.

    Only libvirt's failures are caught; a refusal by the policy goes on to the boundary.
    """
    try:
        return call(), None
    except VirtError as exc:
        return default, exc


@contextmanager
def shown_here(request: HttpRequest, form: BaseForm | None = None) -> Iterator[None]:
    """Say a failure inside on the page the view renders next, instead of leaving the view.

    libvirt's sentence goes on the form (next to what the user typed), or among the page's messages
    when there is no form; a refusal goes among the messages; a hidden object is a 404.
    """
    try:
        yield
    except VirtError as exc:
        if form is not None:
            form.add_error(None, exc.message)
        else:
            messages.error(request, exc.message)
    except Denied as exc:
        if exc.hidden:
            raise Http404(exc.message) from None
        messages.error(request, exc.message)


def field_of(form: BaseForm, name: str, kind: type[F]) -> F:
    """The form's field `name`, known to be a `kind`: `form.fields` holds them as plain Fields, and a
    form that sets a field's choices or queryset at run time needs it as what it is."""
    field = form.fields[name]
    if not isinstance(field, kind):
        raise TypeError(f"{type(form).__name__}.{name} is a {type(field).__name__}, not a {kind.__name__}.")
    return field


def cleaned(form: BaseForm, sentence: str = "") -> dict[str, Any]:
    """The form's data, or a ValidationError for the boundary to say: for action views whose form
    has no page of its own to be shown again on."""
    if form.is_valid():
        return form.cleaned_data
    raise ValidationError(sentence or " ".join(f"{name}: {errors[0]}" for name, errors in form.errors.items()))


# The boundary ------------------------------------------------------------------------------------

def sentence_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(getattr(exc, "message", exc))


def status_of(exc: Exception) -> int:
    """The HTTP status of a failure, the same the API would answer for it."""
    # Imported here: the API's module loads every viewset, which the pages need only once this runs.
    from webvirt.api import STATUS_BY_KIND

    if isinstance(exc, Denied):
        return 404 if exc.hidden else 403
    if isinstance(exc, VirtError):
        return STATUS_BY_KIND.get(exc.kind, 400)
    return 400


class ErrorBoundary:
    """Answers every failure a page's view let through, the same way everywhere.

    - an object the user may not see: 404, as if it did not exist;
    - otherwise the sentence as an error message, and a redirect: to a safe `next`, else to the
      view's declared `fallback`, else, after a POST, back to the page that was posted (its form
      shown fresh);
    - a GET with nowhere else to go (or whose way back is itself) gets a small page with the
      sentence, a link back and a 4xx status: never a redirect loop, never a 500.

    The API has its own handler (webvirt.api.exception_handler) and is left to it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, FAILURES) or request.path.startswith("/api/"):
            return None
        view = request.resolver_match.func if request.resolver_match else None
        if getattr(view, "plain_errors", False):
            return HttpResponse(sentence_of(exc), status=status_of(exc), content_type="text/plain")
        if isinstance(exc, Denied) and exc.hidden:
            raise Http404(exc.message) from None
        target = _way_back(request, view)
        if target is None:
            return render(request, "error.html", {"sentence": sentence_of(exc), "back": _referer(request)},
                          status=status_of(exc))
        messages.error(request, sentence_of(exc))
        return redirect(target)


def _way_back(request: HttpRequest, view: Callable[..., Any] | None) -> str | None:
    to = getattr(view, "error_fallback", None)
    declared = to(request, **request.resolver_match.kwargs) if to and request.resolver_match else ""
    posted_page = request.get_full_path() if request.method == "POST" else ""
    target = safe_next(request, declared or posted_page)
    if not target or (request.method != "POST" and urlsplit(target).path == request.path):
        return None  # A GET sent back to itself would fail again, forever.
    return target


def _referer(request: HttpRequest) -> str:
    referer = request.headers.get("Referer", "")
    same_site = url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()})
    return referer if same_site and urlsplit(referer).path != request.path else "/"


def render_live(request: HttpRequest, page: str, part: str, context: dict[str, Any]) -> HttpResponse:
    """A page that refreshes itself in part (htmx, after a live event): the part alone for htmx's
    request, the whole page otherwise."""
    return render(request, part if request.headers.get("HX-Request") else page, context)
