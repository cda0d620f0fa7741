"""Batched egress: SRTP-protect each packet in place and send a fan-out with one syscall.

A fan-out of one speaker's packet to N subscribers who share one UDP socket
(``UdpMux``) is N datagrams to N addresses.  ``SendBatch`` gives every
subscriber slot a writer that copies the rewritten RTP into a preallocated
arena, SRTP-protects it there (libsrtp, no intermediate ``bytes``) and queues
it; the queue goes out in one ``sendmmsg(2)`` at the end of the event-loop
pass.  Measured on loopback against a protect-then-``sendto`` per subscriber:
about a third less CPU per forwarded packet, most of it the per-call overhead
that one syscall and no Python wrapper per packet save (docs/benchmarks.md).

Linux only (``sendmmsg``); elsewhere ``available()`` is false and callers send
datagram by datagram.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import cffi
from pylibsrtp import Session
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

logger = logging.getLogger(__name__)

SLOT_BYTES = 1500  # one datagram: RTP (≤ 1200 B from any sane Opus sender) + SRTP trailer
_SRTP_TRAILER = 16 + 128  # pylibsrtp's SRTP_MAX_TRAILER_LEN
_LIMIT = SLOT_BYTES - _SRTP_TRAILER

MMSGHDR_CDEF = """
    struct iovec { void *iov_base; size_t iov_len; };
    struct msghdr {
        void *msg_name; uint32_t msg_namelen;
        struct iovec *msg_iov; size_t msg_iovlen;
        void *msg_control; size_t msg_controllen;
        int msg_flags;
    };
    struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
"""
"""Linux's batched-datagram structures, for cffi (``recvmmsg`` users declare them too)."""

_ffi = cffi.FFI()
_ffi.cdef(
    MMSGHDR_CDEF + "int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);"
)
# Written per datagram with struct.pack_into on the raw arrays: a third of the cost
# of cffi's attribute access (msg_name + msg_namelen lead struct msghdr).
_NAME = struct.Struct("@PI")
_IOV_LEN = struct.Struct("@N")
_MSG_BYTES = _ffi.sizeof("struct mmsghdr")
_IOV_BYTES = _ffi.sizeof("struct iovec")
_IOV_LEN_AT = _ffi.offsetof("struct iovec", "iov_len")
assert _ffi.offsetof("struct msghdr", "msg_namelen") == _NAME.size - 4

try:
    _libc: Any = _ffi.dlopen(None)
    _sendmmsg: Any = _libc.sendmmsg
except (OSError, AttributeError):  # not Linux/glibc: no batching
    _sendmmsg = None

Address = tuple[Any, ...]
Writer = Callable[[bytes], None]


def available() -> bool:
    return _sendmmsg is not None


class SrtpError(RuntimeError):
    """libsrtp refused to protect a packet (e.g. its key expired)."""


def sockaddr(addr: Address) -> bytes:
    """``struct sockaddr_in`` / ``sockaddr_in6`` for ``addr`` (host byte order family)."""
    host, port = addr[0], addr[1]
    if ":" in host:
        return struct.pack("=H", socket.AF_INET6) + struct.pack(
            "!HI16sI", port, 0, socket.inet_pton(socket.AF_INET6, host), 0
        )
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", port, socket.inet_aton(host))


def write_all(data: bytes, sinks: Sequence[Writer]) -> int:
    """Write ``data`` to every sink; return how many failed.  Sinks on a send batch
    (all of them but IPv6 ones when the first is IPv4, say) take the batch's inlined path."""
    first = sinks[0] if sinks else None
    if type(first) is SrtpTarget:
        try:
            return first.batch.write_all(data, sinks)
        except (ValueError, OSError):  # too long for any slot, or the socket closed
            return len(sinks)
    failed = 0
    for sink in sinks:
        try:
            sink(data)
        except Exception:  # one broken transport must not stop the fan-out
            failed += 1
    return failed


class SrtpTarget:
    """One subscriber slot's egress on a ``SendBatch``: its SRTP keys and address."""

    __slots__ = ("addr", "batch", "context", "name", "name_at", "name_len", "srtp")

    def __init__(
        self, batch: SendBatch, session: Session, addr: Address, name: tuple[Any, int]
    ) -> None:
        self.batch = batch
        # The owning cdata frees the libsrtp context when collected (pylibsrtp's
        # ffi.gc): holding it keeps ``context`` valid for as long as this target.
        self.srtp = session._srtp  # see selfcheck.REQUIREMENTS
        self.context = self.srtp[0]
        self.addr = addr
        self.name = name[0]  # kept alive while a queued message may point at it
        self.name_at = int(_ffi.cast("uintptr_t", name[0]))
        self.name_len = name[1]

    def __call__(self, data: bytes) -> None:
        if self.batch.write_all(data, (self,)):
            raise SrtpError("srtp_protect failed")


class SendBatch:
    """Datagrams queued on one socket during one event-loop pass, flushed by one ``sendmmsg``.

    ``fallback`` sends one datagram the ordinary way (the transport's ``sendto``,
    which buffers): used for what the kernel would not take at once (EAGAIN).
    """

    def __init__(
        self, fd: int, fallback: Callable[[bytes, Address], None], capacity: int = 256
    ) -> None:
        self._fd = fd
        self._fallback = fallback
        self._capacity = capacity
        self._arena = _ffi.new("char[]", capacity * SLOT_BYTES)
        self._view = _ffi.buffer(self._arena)
        base = int(_ffi.cast("uintptr_t", self._arena))
        self._iov = _ffi.new("struct iovec[]", capacity)
        self._msgs = _ffi.new("struct mmsghdr[]", capacity)
        for i in range(capacity):
            self._iov[i].iov_base = self._arena + i * SLOT_BYTES
            self._msgs[i].msg_hdr.msg_iov = self._iov + i
            self._msgs[i].msg_hdr.msg_iovlen = 1
        self._msg_view = _ffi.buffer(self._msgs)
        self._iov_view = _ffi.buffer(self._iov)
        # Per slot, made once and read with one index: where its data starts, the
        # pointer libsrtp's cffi wants (its own pointer type), where its iovec length
        # and its message header live.
        self._places = [
            (
                i * SLOT_BYTES,
                srtp_ffi.cast("char *", base + i * SLOT_BYTES),
                i * _IOV_BYTES + _IOV_LEN_AT,
                i * _MSG_BYTES,
            )
            for i in range(capacity)
        ]
        # The target whose address slot i's message header holds: a fan-out to the
        # same audience fills the same slots in the same order, so the address is
        # written only when a slot changes hands.  Holding the target keeps the
        # address buffer the header points at alive (and, for at most ``capacity``
        # departed listeners, their SRTP context until the slot is reused).
        self._holders: list[SrtpTarget | None] = [None] * capacity
        # Socket addresses by destination, shared by that destination's targets.
        self._names: dict[Address, tuple[Any, int]] = {}
        self._length = srtp_ffi.new("int *")
        self._count = 0
        self._flush_scheduled = False
        self._closed = False
        self.datagrams = 0
        self.syscalls = 0
        self.errors = 0

    def srtp_writer(self, session: Session, addr: Address) -> SrtpTarget:
        """A writer for one subscriber slot: SRTP-protect with ``session``, send to ``addr``."""
        name = self._names.get(addr)
        if name is None:
            raw = sockaddr(addr)
            name = self._names[addr] = (_ffi.new("char[]", raw), len(raw))
        return SrtpTarget(self, session, addr, name)

    def write_all(self, data: bytes, targets: Sequence[Writer]) -> int:
        """Queue ``data`` for every target, each SRTP-protected with its own keys; return
        how many failed.  One pass with everything per listener inlined: this loop is the
        whole per-listener cost of a fan-out (a target of another batch is just called)."""
        size = len(data)
        if size > _LIMIT:
            raise ValueError("packet is too long")
        if self._closed:
            raise OSError("the socket is closed")
        view, places, holders = self._view, self._places, self._holders
        msg_view, iov_view = self._msg_view, self._iov_view
        set_name, set_len = _NAME.pack_into, _IOV_LEN.pack_into
        length, protect, capacity = self._length, srtp_lib.srtp_protect, self._capacity
        failed = 0
        i = self._count
        for target in targets:
            if type(target) is not SrtpTarget or target.batch is not self:
                try:
                    target(data)
                except Exception:
                    failed += 1
                continue
            if i == capacity:
                self._count = i
                self.flush()
                i = 0
            offset, slot, len_at, msg_at = places[i]
            view[offset : offset + size] = data
            length[0] = size
            if protect(target.context, slot, length):
                failed += 1
                continue
            set_len(iov_view, len_at, length[0])
            if holders[i] is not target:
                set_name(msg_view, msg_at, target.name_at, target.name_len)
                holders[i] = target
            i += 1
        self._count = i
        if i and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return failed

    def flush(self) -> None:
        """Send everything queued: one syscall unless the kernel pushes back."""
        self._flush_scheduled = False
        if self._closed:  # a flush scheduled before close() found nothing left
            return
        count, self._count = self._count, 0
        sent = 0
        while sent < count:
            result = _sendmmsg(self._fd, self._msgs + sent, count - sent, 0)
            self.syscalls += 1
            if result > 0:
                sent += result
                continue
            code = _ffi.errno
            if code == errno.EINTR:
                continue
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                for i in range(sent, count):  # the transport buffers them
                    size = self._iov[i].iov_len
                    start = i * SLOT_BYTES
                    holder = self._holders[i]
                    assert holder is not None
                    self._fallback(bytes(self._view[start : start + size]), holder.addr)
                sent = count
                break
            self.errors += 1  # this one datagram is lost (unreachable etc.); go on
            holder = self._holders[sent]
            assert holder is not None
            logger.debug("sendmmsg to %s failed: %s", holder.addr, errno.errorcode.get(code))
            sent += 1
        self.datagrams += count

    def close(self) -> None:
        """The socket closes: send what is queued; later writes fail (counted as send errors)."""
        self.flush()
        self._closed = True
        self._holders = [None] * self._capacity

    def forget(self, addr: Address) -> None:
        """A destination left: drop its cached socket address (its targets keep theirs)
        and the slots that hold it, unless a queued message still points at it."""
        self._names.pop(addr, None)
        holders = self._holders
        for i in range(self._count, self._capacity):
            holder = holders[i]
            if holder is not None and holder.addr == addr:
                holders[i] = None
