"""libvirt streams (volume upload and download, screenshots): finished when the work on them
succeeds, aborted when it fails, so libvirt never keeps a half-used stream open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import libvirt


@contextmanager
def finished(stream: libvirt.virStream) -> Iterator[libvirt.virStream]:
    try:
        yield stream
        stream.finish()  # errors on libvirt's side surface here
    except BaseException:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        raise
