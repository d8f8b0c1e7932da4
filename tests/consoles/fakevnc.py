"""A local stand-in for a VNC server: it greets like RFB 3.8, optionally demands VNC authentication,
then echoes. It counts every TCP connection that reaches it, so a test can prove that a refused
console never got as far as the VNC server.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from webvirt.consoles.tunnel import vnc_response

GREETING = b"RFB 003.008\n"
WELCOME = b"WELCOME"  # sent after a successful password check, before echoing


class FakeVncServer:
    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.auth_ok = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn.sendall(GREETING)
            if self.password is not None:
                self._read(conn, 12)
                conn.sendall(bytes([1, 2]))
                self._read(conn, 1)
                challenge = os.urandom(16)
                conn.sendall(challenge)
                ok = self._read(conn, 16) == vnc_response(self.password, challenge)
                conn.sendall(struct.pack(">I", 0 if ok else 1))
                if not ok:
                    return
                with self._lock:
                    self.auth_ok += 1
                conn.sendall(WELCOME)
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
