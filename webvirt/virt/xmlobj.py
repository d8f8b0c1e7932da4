"""A small descriptor layer over lxml: libvirt XML as Python objects.

`XMLProperty("./memory", kind=int)` maps an element's text or an attribute to a Python attribute;
setting None removes it. Everything the classes do not model survives a round trip untouched,
because the object only ever edits the parsed tree it was given.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from lxml import etree

from webvirt.virt import errors
from webvirt.virt.errors import VirtError

MAX_XML_BYTES = 1024 * 1024

# No entities, no network, no DTDs: hostile XML (billion laughs, external entities) is refused.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_blank_text=False)


def parse(text: str | bytes) -> etree._Element:
    """Parse untrusted XML, or raise a VirtError that says what is wrong with it."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_XML_BYTES:
        raise VirtError("The XML is larger than 1 MiB; libvirt definitions are much smaller.", errors.INVALID)
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise VirtError("The XML contains a DOCTYPE or entity declaration, which webvirt does not accept.",
                        errors.INVALID)
    try:
        root = etree.fromstring(raw.strip(), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise VirtError(f"The XML is not well-formed: {exc}.", errors.INVALID) from None
    if root is None:
        raise VirtError("The XML is empty.", errors.INVALID)
    return root


T = TypeVar("T")


class XMLProperty(Generic[T]):
    """An element's text (`./name`) or attribute (`./os/type/@arch`, `./@type`) as a typed value."""

    def __init__(self, path: str, kind: type = str) -> None:
        self.element_path, _, self.attribute = path.partition("/@") if "/@" in path else (path, "", "")
        if path.startswith("@"):
            self.element_path, self.attribute = ".", path[1:]
        self.kind = kind

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: XMLObject | None, owner: type) -> Any:
        if obj is None:
            return self
        node = obj.node.find(self.element_path)
        if node is None:
            return None
        raw = node.get(self.attribute) if self.attribute else node.text
        if raw is None:
            return None
        raw = raw.strip()
        if self.kind is bool:
            return raw in {"yes", "on", "1", "true"}
        if self.kind is int:
            try:
                return int(raw)
            except ValueError:
                return None
        return raw

    def __set__(self, obj: XMLObject, value: Any) -> None:
        node = obj.node.find(self.element_path)
        if value is None:
            if node is not None:
                if self.attribute:
                    node.attrib.pop(self.attribute, None)
                elif node.getparent() is not None:
                    node.getparent().remove(node)
            return
        if self.kind is bool:
            value = "yes" if value else "no"
        if node is None:
            node = _make_path(obj.node, self.element_path)
        if self.attribute:
            node.set(self.attribute, str(value))
        else:
            node.text = str(value)


def _make_path(root: etree._Element, path: str) -> etree._Element:
    node = root
    for part in path.strip("./").split("/"):
        child = node.find(part)
        node = child if child is not None else etree.SubElement(node, part)
    return node


class XMLObject:
    """One libvirt XML element; subclasses declare XMLProperty attributes and child lists."""

    tag = ""

    def __init__(self, node: etree._Element) -> None:
        self.node = node

    @classmethod
    def from_string(cls, text: str | bytes) -> XMLObject:
        root = parse(text)
        if cls.tag and root.tag != cls.tag:
            raise VirtError(f"Expected a <{cls.tag}> element at the top, found <{root.tag}>.", errors.INVALID)
        return cls(root)

    def to_string(self) -> str:
        return etree.tostring(self.node, encoding="unicode")

    def children(self, path: str, cls: type[X]) -> list[X]:
        return [cls(node) for node in self.node.findall(path)]


X = TypeVar("X", bound=XMLObject)
