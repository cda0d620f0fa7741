"""Readers of aiortc's RTCP statistics for ``sfu.stats``."""

from __future__ import annotations

from aiortc import RTCPeerConnection

from sfu.stats import UplinkSample


def uplink_samples(pc: RTCPeerConnection) -> list[UplinkSample]:
    """Statistics of the streams this peer sends us (fed by ``tracks.tap_receiver``)."""
    samples: list[UplinkSample] = []
    for transceiver in pc.getTransceivers():
        remote = getattr(transceiver.receiver, "_RTCRtpReceiver__remote_streams", None)
        for stream in (remote or {}).values():
            if stream.max_seq is None or stream.base_seq is None:
                continue  # nothing received yet
            samples.append(
                UplinkSample(
                    stream, stream.packets_expected, stream.packets_received, stream.jitter / 48_000
                )
            )
    return samples
