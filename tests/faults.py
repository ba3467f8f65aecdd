"""A TCP proxy on 127.0.0.1 that can take an endpoint fully down (connection refused) and bring it back.

The strict fake (tests/strict_fake.py) injects faults *inside* HTTP exchanges (error answers, resets, hangs).
What it cannot do is disappear: a real outage often means nothing listens at all, which botocore reports as
``EndpointConnectionError`` before any request is written.  ``FaultProxy`` sits between botocore and the fake,
forwards bytes unchanged, and on ``down()`` closes its listening socket and resets every open connection, so
new connections are refused until ``up()`` listens again on the same port.
"""
from __future__ import annotations

import socket
import struct
import threading
from typing import List, Optional, Set
from urllib.parse import urlparse


class FaultProxy:
    def __init__(self, target_url: str) -> None:
        parsed = urlparse(target_url)
        self._target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._lock = threading.Lock()
        self._conns: Set[socket.socket] = set()
        self._listener: Optional[socket.socket] = None
        self._accepting = threading.Event()
        self._threads: List[threading.Thread] = []
        self.port = 0
        self.connections = 0  # accepted connections, for the record

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control ---------------------------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._listen()
        return self

    def up(self) -> None:
        if self._listener is None:
            self._listen()

    def down(self) -> None:
        """Stop listening (new connections are refused) and reset every open connection."""
        listener = self._listener
        self._listener = None
        self._accepting.clear()
        if listener is not None:
            try:
                listener.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            _reset(conn)

    def stop(self) -> None:
        self.down()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------------------------
    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(0.02)  # the accept loop polls so that down() never waits on a blocked accept()
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._accepting.set()
        thread = threading.Thread(target=self._accept_loop, args=(sock,), name="fault-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self, sock: socket.socket) -> None:
        while self._accepting.is_set() and self._listener is sock:
            try:
                client, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


def _reset(sock: socket.socket) -> None:
    """Close with linger 0: the peer sees a TCP reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
