"""The libvirt layer: connections, XML objects and operations. No Django imports here."""
