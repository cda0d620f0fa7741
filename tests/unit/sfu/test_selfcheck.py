from __future__ import annotations

import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from sfu.rtc import selfcheck


def test_installed_aiortc_passes() -> None:
    selfcheck.check()


def test_missing_internal_is_named_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_handle_rtp_packet")
    with pytest.raises(selfcheck.SelfCheckError) as info:
        selfcheck.check()
    message = str(info.value)
    assert "RTCRtpReceiver._handle_rtp_packet" in message
    assert "tap decrypted RTP" in message and "aiortc 1.16" in message


def test_missing_instance_attribute_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    requirement = selfcheck.Requirement(
        "aiortc.rtcrtpsender", "RTCRtpSender", "__no_such_counter", "test", instance=True
    )
    monkeypatch.setattr(selfcheck, "REQUIREMENTS", (requirement,))
    with pytest.raises(selfcheck.SelfCheckError, match="__no_such_counter"):
        selfcheck.check()
