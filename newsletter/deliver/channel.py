"""The pipe between a sending run and one worker: `wire` tuples over a socket pair.

    here, there = Channel.pair()     # one end for the run, one for the worker
    there.send(("done", 7, None))    # a 4-byte big-endian length, then a pickle
    here.read(block=False)           # every message that has arrived, in one read
    here.take(100)                   # [("done", 7, None)]

Why not multiprocessing.Pipe: its `recv` costs a poll and two reads per
message, and its `connection.wait` builds a new selector per call. The run
takes the workers' results ~5,000 times a second on a machine whose two cores
the workers and the relay need: here one read takes every result that has
arrived, and the run's selector is made once (`workers.Pool`). Works the same
between processes (fork inherits the sockets) and between threads.
"""

from __future__ import annotations

import pickle
import socket
from collections import deque
from typing import Any

_HEADER = 4
_READ = 1 << 18  # bytes per read: a few thousand results


class Channel:
    """One end of a duplex channel of picklable messages (plain tuples, `wire`).

    `send` writes one message (blocking until the socket takes it);
    `read` takes what has arrived into the inbox; `take`, `poll` and `recv`
    serve from the inbox. Not for concurrent use of one end by two threads.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._inbox: deque[Any] = deque()
        self.eof = False  # the other end closed (messages may still wait in the inbox)

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """Two connected ends (an AF_UNIX stream socket pair)."""
        a, b = socket.socketpair()
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Any) -> None:
        """Send one message. OSError (BrokenPipeError...) if the other end is gone."""
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        self._sock.sendall(len(data).to_bytes(_HEADER, "big") + data)

    def read(self, *, block: bool) -> None:
        """Read what has arrived into the inbox; with `block`, wait for something
        first. At the end of the stream `eof` becomes True."""
        if self.eof:
            return
        try:
            data = self._sock.recv(_READ, 0 if block else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by a peer that died: the end, as a close
            data = b""
        if not data:
            self.eof = True
            return
        buffer = self._buffer
        buffer += data
        start, size = 0, len(buffer)
        view = memoryview(buffer)
        try:
            while size - start >= _HEADER:
                length = int.from_bytes(view[start : start + _HEADER], "big")
                end = start + _HEADER + length
                if end > size:
                    break
                self._inbox.append(pickle.loads(view[start + _HEADER : end]))
                start = end
        finally:
            view.release()
        del buffer[:start]

    @property
    def waiting(self) -> int:
        """Messages read and not yet taken."""
        return len(self._inbox)

    def take(self, limit: int) -> list[Any]:
        """Up to `limit` messages from the inbox, oldest first (no reading)."""
        inbox = self._inbox
        if len(inbox) <= limit:
            out = list(inbox)
            inbox.clear()
            return out
        return [inbox.popleft() for _ in range(limit)]

    def poll(self) -> bool:
        """Whether `recv` would return at once (a message waits, or the stream ended)."""
        if not self._inbox:
            self.read(block=False)
        return bool(self._inbox) or self.eof

    def recv(self) -> Any:
        """The next message, waiting for it; EOFError when the other end has
        closed and nothing is left."""
        while not self._inbox:
            if self.eof:
                raise EOFError("the channel was closed at the other end")
            self.read(block=True)
        return self._inbox.popleft()

    def close(self) -> None:
        self._sock.close()
