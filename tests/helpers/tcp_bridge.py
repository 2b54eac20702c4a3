"""`tcp://127.0.0.1:PORT` in front of a unix socket, in threads: an engine reached over TCP, as
a remote one is, without socat. Each side's end of stream is passed on as a half-close, which
`docker run -i` relies on to tell the container its stdin ended."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, unix_path: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(unix_path))
        except OSError:
            client.close()
            upstream.close()
            continue
        pumps = [
            threading.Thread(target=_pump, args=(client, upstream), daemon=True),
            threading.Thread(target=_pump, args=(upstream, client), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        threading.Thread(target=_close_after, args=(pumps, client, upstream), daemon=True).start()


def _close_after(pumps: list[threading.Thread], *sockets: socket.socket) -> None:
    for pump in pumps:
        pump.join()
    for sock in sockets:
        sock.close()


@contextlib.contextmanager
def tcp_bridge(unix_path: Path) -> Iterator[str]:
    """`tcp://127.0.0.1:PORT` that leads to `unix_path`, for the block's time."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(listener, unix_path, stop), daemon=True)
    server.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        server.join(timeout=5)
