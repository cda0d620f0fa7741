"""A listener for load tests that costs its client a fraction of an aiortc one.

aiortc does ICE and DTLS (so the server sees an ordinary peer connection), then
the listener's UDP socket is taken off the event loop: one ``ThinReceiver`` per
process drains every attached socket with ``recvmmsg(2)`` every 100 ms, counts
RTP from the header SRTP leaves in clear (SSRC → slot, sequence numbers, gaps,
the kernel's arrival time from ``SO_TIMESTAMP``) and SRTP-unprotects one packet
in ``sample`` (authentication tag checked, header compared), so a broken stream
is still caught.  Everything that is not RTP
(STUN consent, DTLS, RTCP) goes on to aioice as before.

The sockets are read blindly, not waited on (no epoll): a listener's socket
has datagrams every 100 ms anyway, and a socket nobody waits on costs the
sender no wake-up callback.  Over loopback the server's ``sendmmsg`` pays for
the receiving side's kernel work too; a wait registered on each listener's
socket added ≈ 0.25 µs per datagram to it, which a server's real listeners,
on other machines, never cost it.

An aiortc listener costs ≈ 2.5 ms of CPU per listener-second (a datagram task
wake-up, SRTP, ``RtpPacket.parse`` and a receiver per packet); this one costs a
few µs per packet.  It needs asyncio's selector loop (not uvloop): the socket's
reader is removed with ``loop._remove_reader``.  Linux only (``recvmmsg``).
"""

from __future__ import annotations

import asyncio
import errno
import math
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cffi

from sfu.rtc.sendmmsg import MMSGHDR_CDEF

_ffi = cffi.FFI()
_ffi.cdef(
    MMSGHDR_CDEF + "int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags,"
    " void *timeout);"
)
_libc: Any = _ffi.dlopen(None)
_SOL_SOCKET = socket.SOL_SOCKET

SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)
MSG_DONTWAIT = 0x40
_DATAGRAM = 1500
_CONTROL = 32  # CMSG_SPACE(sizeof(struct timeval)) on 64-bit Linux
_MSG = _ffi.sizeof("struct mmsghdr")
_MSG_LEN_AT = _ffi.offsetof("struct mmsghdr", "msg_len")
_HEADER = struct.Struct("!BBHII")
_CMSG_TIMEVAL = struct.Struct("@Niiqq")  # cmsghdr (len, level, type) + struct timeval
_U32 = struct.Struct("@I")


@dataclass(slots=True)
class ThinPacket:
    """What the callback sees of one RTP packet (``payload`` only on verified samples)."""

    slot: int
    sequence_number: int
    timestamp: int
    arrival: float  # time.monotonic() seconds, from the kernel's receive timestamp
    payload: bytes


PacketHandler = Callable[[ThinPacket], None]


@dataclass(eq=False)
class ThinListener:
    """One attached listener's socket, keys and counts.

    ``in_window`` and ``per_slot`` count packets whose arrival falls inside the
    receiver's window; the rest count everything since ``attach``.
    """

    sock: Any
    protocol: Any
    remote: tuple[Any, ...]
    srtp: Any
    slots: dict[int, int]
    """SSRC → slot index, from the server's answer."""
    on_packet: PacketHandler | None = None
    sample: int = 50
    packets: int = 0
    lost: int = 0
    late: int = 0
    in_window: int = 0
    per_slot: list[int] = field(default_factory=lambda: [0] * 16)
    verified: int = 0
    auth_failures: int = 0
    first_arrival: float | None = None
    last_arrival: float | None = None
    highest: dict[int, int] = field(default_factory=dict)


def slot_ssrcs(answer_sdp: str) -> dict[int, int]:
    """SSRC → slot index: the answer's m-lines after the first (the uplink) are the slots."""
    found: dict[int, int] = {}
    for index, section in enumerate(answer_sdp.split("\r\nm=")[2:]):
        for line in section.split("\r\n"):
            if line.startswith("a=ssrc:"):
                found.setdefault(int(line[7:].split(" ", 1)[0]), index)
    return found


class ThinReceiver:
    """Drains every attached listener's socket every ``interval`` seconds (one process)."""

    def __init__(
        self, interval: float = 0.1, batch: int = 32, consent_interval: float = 10.0
    ) -> None:
        """``interval``: how often sockets are drained (arrival times are the kernel's, so
        this only sets how many datagrams one ``recvmmsg`` gets: ~5 at 50 packets/s).
        ``consent_interval``: aioice's ICE consent checks, process-wide; they were a tenth
        of a thin listener's cost at aioice's 5 s, and the server waits 30 s for one."""
        import aioice.ice

        aioice.ice.CONSENT_INTERVAL = consent_interval  # type: ignore[assignment]
        self.interval = interval
        self.listeners: dict[int, ThinListener] = {}  # by file descriptor
        self._batch = batch
        self._arena = _ffi.new("char[]", batch * _DATAGRAM)
        self._control = _ffi.new("char[]", batch * _CONTROL)
        self._iov = _ffi.new("struct iovec[]", batch)
        self._msgs = _ffi.new("struct mmsghdr[]", batch)
        for i in range(batch):
            self._iov[i].iov_base = self._arena + i * _DATAGRAM
            self._iov[i].iov_len = _DATAGRAM
            self._msgs[i].msg_hdr.msg_iov = self._iov + i
            self._msgs[i].msg_hdr.msg_iovlen = 1
            self._msgs[i].msg_hdr.msg_control = self._control + i * _CONTROL
            self._msgs[i].msg_hdr.msg_controllen = _CONTROL
        self._view = _ffi.buffer(self._arena)
        self._control_view = _ffi.buffer(self._control)
        self._msg_view = _ffi.buffer(self._msgs)
        self._pristine = bytes(self._msg_view)
        self.window = (math.inf, math.inf)
        """Arrival-time bounds (``time.monotonic``) of what ``in_window``/``per_slot`` count."""
        self._task: asyncio.Task[None] | None = None
        self.syscalls = 0

    def attach(
        self, client: Any, on_packet: PacketHandler | None = None, sample: int = 50
    ) -> ThinListener:
        """Take over ``client``'s (a connected ``PodiumClient``) media socket."""
        pc = client.pc
        dtls = pc.getTransceivers()[0].receiver.transport
        pair = dtls.transport._connection._nominated[1]
        transport = pair.protocol.transport
        sock = transport.get_extra_info("socket")
        loop = asyncio.get_running_loop()
        if not hasattr(loop, "_remove_reader"):
            raise RuntimeError("thin listeners need asyncio's selector event loop (not uvloop)")
        fd = sock.fileno()
        loop._remove_reader(fd)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        listener = ThinListener(
            sock=sock,
            protocol=pair.protocol,
            remote=pair.remote_addr,
            srtp=dtls._rx_srtp,
            slots=slot_ssrcs(pc.remoteDescription.sdp),
            on_packet=on_packet,
            sample=sample,
        )
        self.listeners[fd] = listener
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return listener

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.poll()

    def poll(self) -> None:
        offset = time.time() - time.monotonic()
        for fd, listener in list(self.listeners.items()):
            if listener.sock.fileno() != fd:  # closed with its client
                self.listeners.pop(fd, None)
                continue
            while self._drain(listener, fd, offset) == self._batch:
                pass

    def _drain(self, listener: ThinListener, fd: int, offset: float) -> int:
        msgs = self._msg_view
        n = _libc.recvmmsg(fd, self._msgs, self._batch, MSG_DONTWAIT, _ffi.NULL)
        self.syscalls += 1
        if n <= 0:
            code = _ffi.errno
            if n < 0 and code not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                self.listeners.pop(fd, None)  # e.g. EBADF: stop reading it
            return 0
        view, control = self._view, self._control_view
        start, end = self.window
        slots, highest, sample = listener.slots, listener.highest, listener.sample
        packets, lost, late, in_window = listener.packets, 0, 0, 0
        per_slot = listener.per_slot
        arrival = time.monotonic()
        for i in range(n):
            at = i * _DATAGRAM
            first, second, seq, ts, ssrc = _HEADER.unpack_from(view, at)
            if not 128 <= first < 192 or 192 <= second <= 223:  # STUN, DTLS, RTCP: aioice's
                size = _U32.unpack_from(msgs, i * _MSG + _MSG_LEN_AT)[0]
                listener.protocol.datagram_received(bytes(view[at : at + size]), listener.remote)
                continue
            _, level, kind, sec, usec = _CMSG_TIMEVAL.unpack_from(control, i * _CONTROL)
            if kind == SO_TIMESTAMP and level == _SOL_SOCKET:
                arrival = sec + usec * 1e-6 - offset
            packets += 1
            last = highest.get(ssrc)
            if last is not None:
                delta = (seq - last) & 0xFFFF
                if delta == 0 or delta >= 0x8000:
                    late += 1  # a duplicate, or reordered behind a later one
                else:
                    lost += delta - 1
                    highest[ssrc] = seq
            else:
                highest[ssrc] = seq
            if start <= arrival < end:
                in_window += 1
                per_slot[slots.get(ssrc, 0)] += 1
            payload = b""
            if packets % sample == 1 or sample == 1:
                size = _U32.unpack_from(msgs, i * _MSG + _MSG_LEN_AT)[0]
                payload = self._verify(listener, bytes(view[at : at + size]), seq)
            if listener.on_packet is not None:
                listener.on_packet(ThinPacket(slots.get(ssrc, 0), seq, ts, arrival, payload))
        msgs[: n * _MSG] = self._pristine[: n * _MSG]  # msg_controllen back for the next call
        if listener.first_arrival is None and packets:
            listener.first_arrival = arrival
        listener.last_arrival = arrival
        listener.packets = packets
        listener.lost += lost
        listener.late += late
        listener.in_window += in_window
        return int(n)

    @staticmethod
    def _verify(listener: ThinListener, data: bytes, seq: int) -> bytes:
        """SRTP-unprotect one packet: tag verified, clear header unchanged; its payload."""
        try:
            plain: bytes = listener.srtp.unprotect(data)
        except Exception:
            listener.auth_failures += 1
            return b""
        if plain[:12] != data[:12] or _HEADER.unpack_from(plain)[2] != seq:
            listener.auth_failures += 1
            return b""
        listener.verified += 1
        extension = 12 + 4 * (plain[0] & 0x0F)
        if plain[0] & 0x10:
            extension += 4 + 4 * struct.unpack_from("!H", plain, extension + 2)[0]
        return plain[extension:]
