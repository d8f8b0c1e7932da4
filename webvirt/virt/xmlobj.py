"""A small descriptor layer over lxml: libvirt XML as Python objects.

`XMLProperty("./memory", kind=int)` maps an element's text or an attribute to a Python attribute;
setting None removes it. Everything the classes do not model survives a round trip untouched,
because the object only ever edits the parsed tree it was given. New XML is made the same way:
`Volume.new(name=..., format="qcow2")` sets properties on an empty element, creating what they need.
"""

from __future__ import annotations

from typing import Any, Generic, Self, TypeVar

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


def detach(node: etree._Element) -> None:
    """Remove an element from its parent (a root stays as it is)."""
    parent = node.getparent()
    if parent is not None:
        parent.remove(node)


T = TypeVar("T")
X = TypeVar("X", bound="XMLObject")


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
        if value is None:
            node = obj.node.find(self.element_path)
            if node is not None:
                if self.attribute:
                    node.attrib.pop(self.attribute, None)
                else:
                    detach(node)
            return
        if self.kind is bool:
            value = "yes" if value else "no"
        node = obj.element(self.element_path)
        if self.attribute:
            node.set(self.attribute, str(value))
        else:
            node.text = str(value)


class XMLFlag:
    """An empty element whose presence means yes, such as `<readonly/>` or `<features><acpi/>`.

    Setting True adds it, False or None removes it.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __get__(self, obj: XMLObject | None, owner: type) -> Any:
        return self if obj is None else obj.node.find(self.path) is not None

    def __set__(self, obj: XMLObject, value: bool | None) -> None:
        if value:
            obj.element(self.path)
        else:
            obj.remove(self.path)


# libvirt's scaled integers (<memory unit='MiB'>, <capacity unit='G'>): the size of each unit in bytes.
SIZE_UNITS = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
              "g": 1024**3, "gib": 1024**3, "gb": 1000**3, "t": 1024**4, "tib": 1024**4}


def size_bytes(node: etree._Element | None, default_unit: str = "bytes") -> int:
    """A scaled integer element in bytes (0 when missing or not a number); an unknown unit counts as the default."""
    if node is None:
        return 0
    try:
        value = int((node.text or "").strip())
    except ValueError:
        return 0
    unit = (node.get("unit") or default_unit).lower()
    return value * SIZE_UNITS.get(unit, SIZE_UNITS[default_unit.lower()])


class XMLSize:
    """A scaled integer such as `<capacity unit='GiB'>2</capacity>` in bytes: read in any unit, written in bytes."""

    def __init__(self, path: str, default_unit: str = "bytes") -> None:
        self.path, self.default_unit = path, default_unit

    def __get__(self, obj: XMLObject | None, owner: type) -> Any:
        return self if obj is None else size_bytes(obj.node.find(self.path), self.default_unit)

    def __set__(self, obj: XMLObject, value: int | None) -> None:
        if value is None:
            obj.remove(self.path)
            return
        node = obj.element(self.path)
        node.set("unit", "bytes")
        node.text = str(int(value))


class XMLObject:
    """One libvirt XML element; subclasses declare XMLProperty attributes and child lists.

    Objects are read with `from_string` and made with `new(**values)`, which sets the named
    properties in order: a property whose element is missing creates it, so new XML is written
    through the same attributes that read it, and lxml does all the escaping.
    """

    tag = ""
    # Where a new child element of this one goes: after the children that come before it here (as
    # libvirt writes them), rather than at the end. Tags not listed are appended.
    child_order: tuple[str, ...] = ()

    def __init__(self, node: etree._Element) -> None:
        self.node = node

    @classmethod
    def from_string(cls, text: str | bytes) -> Self:
        root = parse(text)
        if cls.tag and root.tag != cls.tag:
            raise VirtError(f"Expected a <{cls.tag}> element at the top, found <{root.tag!s}>.", errors.INVALID)
        return cls(root)

    @classmethod
    def blank(cls) -> Self:
        return cls(etree.Element(cls.tag))

    @classmethod
    def new(cls, **values: Any) -> Self:
        """A new element with `values` set, in the order given (which is the order of the elements made)."""
        return cls.blank().set(**values)

    def set(self, **values: Any) -> Self:
        for name, value in values.items():
            if not hasattr(getattr(type(self), name, None), "__set__"):
                raise AttributeError(f"{type(self).__name__} has no settable XML property '{name}'.")
            setattr(self, name, value)
        return self

    def to_string(self) -> str:
        return etree.tostring(self.node, encoding="unicode")

    def children(self, path: str, cls: type[X]) -> list[X]:
        return [cls(node) for node in self.node.findall(path)]

    def add(self, cls: type[X], parent: str = ".", **values: Any) -> X:
        """A new child element of class `cls` at the end of `parent` (made if missing), with `values` set."""
        holder = self.element(parent)
        node = self._insert(holder, cls.tag) if holder is self.node else etree.SubElement(holder, cls.tag)
        return cls(node).set(**values)

    def element(self, path: str) -> etree._Element:
        """The element at `path` (such as `./target/format`), made with any missing parents."""
        node = self.node
        for part in (p for p in path.split("/") if p not in ("", ".")):
            child = node.find(part)
            if child is None:
                child = self._insert(node, part) if node is self.node else etree.SubElement(node, part)
            node = child
        return node

    def remove(self, path: str) -> None:
        """Remove every element at `path`."""
        for node in self.node.findall(path):
            detach(node)

    def _insert(self, parent: etree._Element, tag: str) -> etree._Element:
        if tag not in self.child_order:
            return etree.SubElement(parent, tag)
        rank = self.child_order.index(tag)
        earlier = [i for i, child in enumerate(parent)
                   if child.tag in self.child_order and self.child_order.index(child.tag) <= rank]
        node = etree.Element(tag)
        parent.insert(earlier[-1] + 1 if earlier else 0, node)
        return node
