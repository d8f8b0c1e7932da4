"""One error type for everything that goes wrong talking to libvirt, phrased for people."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import libvirt

Obj = TypeVar("Obj")
R = TypeVar("R")

# Kinds a caller can branch on; the API turns each into an HTTP status.
UNREACHABLE = "unreachable"
REFUSED = "refused"
AUTH = "authentication"
UNKNOWN_SCHEME = "unknown_scheme"
INVALID = "invalid"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
STATE = "state"
TIMEOUT = "timeout"
UNSUPPORTED = "unsupported"
OTHER = "error"


class VirtError(Exception):
    """A failure a person can act on: `message` is a full sentence, `kind` one of the above."""

    def __init__(self, message: str, kind: str = OTHER, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.detail = detail

    def __str__(self) -> str:
        return self.message


_CODE_KINDS = {
    libvirt.VIR_ERR_NO_DOMAIN: NOT_FOUND,
    libvirt.VIR_ERR_NO_NETWORK: NOT_FOUND,
    libvirt.VIR_ERR_NO_STORAGE_POOL: NOT_FOUND,
    libvirt.VIR_ERR_NO_STORAGE_VOL: NOT_FOUND,
    libvirt.VIR_ERR_OPERATION_INVALID: STATE,
    libvirt.VIR_ERR_OPERATION_DENIED: STATE,
    libvirt.VIR_ERR_XML_ERROR: INVALID,
    libvirt.VIR_ERR_XML_DETAIL: INVALID,
    libvirt.VIR_ERR_XML_INVALID_SCHEMA: INVALID,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: INVALID,
    libvirt.VIR_ERR_INVALID_ARG: INVALID,
    libvirt.VIR_ERR_DOM_EXIST: CONFLICT,
    libvirt.VIR_ERR_NO_SUPPORT: UNSUPPORTED,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: UNSUPPORTED,
    libvirt.VIR_ERR_AUTH_FAILED: AUTH,
    libvirt.VIR_ERR_AUTH_CANCELLED: AUTH,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE: AUTH,
    libvirt.VIR_ERR_NO_CONNECT: UNKNOWN_SCHEME,
    libvirt.VIR_ERR_OPERATION_TIMEOUT: TIMEOUT,
}


def _connect_failure(text: str) -> tuple[str, str] | None:
    """Classify why opening a connection failed, from libvirt's message."""
    lowered = text.lower()
    if "no connection driver available" in lowered or ("unsupported" in lowered and "uri" in lowered):
        return UNKNOWN_SCHEME, "libvirt has no driver for this URI's scheme. Check the URI (for example qemu:///system)."
    if "connection refused" in lowered:
        return REFUSED, "The host refused the connection. Is libvirtd running and listening there?"
    if "no such file or directory" in lowered and "socket" in lowered:
        return REFUSED, "libvirt's socket does not exist on that machine. Is libvirtd running?"
    if "authentication" in lowered or "permission denied" in lowered or ("auth" in lowered and "fail" in lowered):
        return AUTH, "The host rejected the credentials. Check the user name, password or SSH key."
    if any(s in lowered for s in ("name or service not known", "no route to host", "network is unreachable",
                                  "timed out", "could not resolve", "host is down")):
        return UNREACHABLE, "The host cannot be reached. Check its address and that the network allows the connection."
    return None


def from_libvirt(exc: libvirt.libvirtError, *, connecting: bool = False) -> VirtError:
    """Turn a libvirtError into a VirtError whose message says what to do."""
    text = exc.get_error_message() or str(exc)
    if connecting:
        classified = _connect_failure(text)
        if classified:
            kind, message = classified
            return VirtError(message, kind, detail=text)
    kind = _CODE_KINDS.get(exc.get_error_code(), OTHER)
    if connecting and kind == OTHER:
        kind = UNREACHABLE
    return VirtError(_sentence(text), kind, detail=text)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "libvirt reported an error without a message."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def found(lookup: Callable[[], object]) -> bool:
    """Whether a libvirt lookup finds its object (libvirt answers "no such thing" with an error)."""
    try:
        lookup()
    except libvirt.libvirtError:
        return False
    return True


def refuse_taken(lookup: Callable[[], object], message: str) -> None:
    """A name about to be given must be free: CONFLICT with `message` when the lookup finds it."""
    if found(lookup):
        raise VirtError(message, CONFLICT)


def read_present(objects: Iterable[Obj], read: Callable[[Obj], R], gone: int) -> list[R]:
    """`read` every listed object, leaving out those removed between the listing and the read
    (libvirt says so with the error code `gone`); any other error is raised."""
    result = []
    for obj in objects:
        try:
            result.append(read(obj))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != gone:
                raise
    return result


def quote(text: str, limit: int = 80) -> str:
    """User input inside an error message: never more than `limit` characters of it."""
    return text if len(text) <= limit else text[:limit] + "…"
