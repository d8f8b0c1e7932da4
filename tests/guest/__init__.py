"""The tiny bootable test guest (no Django imports here)."""

from .guest import BUILD_SCRIPT, GUEST_IMAGE, ensure_image, make_overlay, tiny_domain_xml

__all__ = ["BUILD_SCRIPT", "GUEST_IMAGE", "ensure_image", "make_overlay", "tiny_domain_xml"]
