from __future__ import annotations

from typing import Any

import pytest

from signaling.room.attendees import Attendee, AttendeeConfig, AttendeeList, Identity
from signaling.room.roles import Role
from signaling.wire.errors import ErrorCode, PodiumError

H, M, S, L = Role.HOST, Role.MODERATOR, Role.SPEAKER, Role.LISTENER


def identity(pid: str) -> Identity:
    return Identity(
        f"user-{pid}",
        f"Person {pid}",
        "Staff Engineer at Example",
        f"https://cdn.example/{pid}.png",
        f"https://example.com/in/{pid}",
    )


def join(attendees: AttendeeList, pid: str, role: Role = L, now: float = 0.0) -> None:
    attendees.join(pid, identity(pid), role, now)


def counts(**by_role: int) -> dict[Role, int]:
    return {role: by_role.get(role.value, 0) for role in Role}


def test_300_joins_within_an_interval_make_one_delta() -> None:
    attendees = AttendeeList(AttendeeConfig(batch_interval=1.0))
    for i in range(300):
        join(attendees, f"p{i:03}", now=10.0 + i / 1000)
    assert attendees.get_timer() == 11.0
    assert attendees.poll(10.999) is None
    delta = attendees.poll(11.0)
    assert delta is not None
    assert delta.version == 1 and delta.total == 300
    assert [a.participant for a in delta.joined] == [f"p{i:03}" for i in range(300)]
    assert delta.joined[0] == Attendee("p000", identity("p000"), L, 10.0)
    assert delta.left == () and delta.updated == ()
    assert delta.counts == counts(listener=300)
    assert attendees.get_timer() is None and attendees.poll(20.0) is None


def test_the_window_opens_at_the_first_pending_change() -> None:
    attendees = AttendeeList(AttendeeConfig(batch_interval=2.0))
    assert attendees.get_timer() is None
    join(attendees, "a", now=5.0)
    join(attendees, "b", now=6.5)
    assert attendees.get_timer() == 7.0
    delta = attendees.poll(7.2)
    assert delta is not None and len(delta.joined) == 2
    join(attendees, "c", now=7.3)
    assert attendees.get_timer() == 9.3


def test_join_then_leave_within_an_interval_cancels_out() -> None:
    attendees = AttendeeList()
    join(attendees, "a")
    join(attendees, "b")
    attendees.leave("a", 0.5)
    delta = attendees.poll(1.0)
    assert delta is not None
    assert [a.participant for a in delta.joined] == ["b"] and delta.left == ()
    join(attendees, "c", now=2.0)
    attendees.leave("c", 2.1)
    assert attendees.poll(3.0) is None  # nothing to announce
    assert attendees.version == 1


def test_leaves_are_batched_too() -> None:
    attendees = AttendeeList()
    for pid in "abc":
        join(attendees, pid)
    attendees.poll(1.0)
    attendees.leave("a", 2.0)
    attendees.leave("c", 2.5)
    assert attendees.poll(2.9) is None
    delta = attendees.poll(3.0)
    assert delta is not None
    assert delta.left == ("a", "c") and delta.total == 1 and delta.counts == counts(listener=1)


def test_stage_changes_are_immediate_and_carry_pending_audience_changes() -> None:
    attendees = AttendeeList()
    join(attendees, "a", now=0.0)
    join(attendees, "host", H, now=0.2)
    assert attendees.get_timer() == 0.2
    delta = attendees.poll(0.2)
    assert delta is not None
    assert [a.participant for a in delta.joined] == ["a", "host"]
    assert delta.counts == counts(host=1, listener=1)

    attendees.set_role("a", S, 3.0)
    assert attendees.get_timer() == 3.0
    delta = attendees.poll(3.0)
    assert delta is not None
    assert delta.updated == (Attendee("a", identity("a"), S, 0.0),)
    assert delta.counts == counts(host=1, speaker=1)

    attendees.leave("a", 4.0)  # a speaker leaving is a stage change
    delta = attendees.poll(4.0)
    assert delta is not None and delta.left == ("a",)


def test_promotion_of_a_pending_joiner_is_announced_as_a_join() -> None:
    attendees = AttendeeList()
    join(attendees, "a", now=0.0)
    attendees.set_role("a", S, 0.1)
    delta = attendees.poll(0.1)
    assert delta is not None
    assert delta.joined == (Attendee("a", identity("a"), S, 0.0),) and delta.updated == ()


def test_role_flip_and_back_within_an_interval_is_no_change() -> None:
    attendees = AttendeeList()
    join(attendees, "a")
    attendees.poll(1.0)
    attendees.set_role("a", S, 2.0)
    attendees.set_role("a", L, 2.0)
    attendees.set_role("a", L, 2.0)
    assert attendees.poll(2.0) is None


def test_paging_is_stable_and_ordered_by_role_then_join() -> None:
    attendees = AttendeeList(AttendeeConfig(max_page_size=100))
    for i in range(250):
        join(attendees, f"l{i:03}")
    join(attendees, "s1", S)
    join(attendees, "mod", M)
    join(attendees, "host", H)
    attendees.poll(1.0)

    first = attendees.page(limit=100)
    assert first.total == 253 and first.version == 1
    assert [a.participant for a in first.items[:4]] == ["host", "mod", "s1", "l000"]
    # Churn between page requests neither skips nor repeats anyone still present.
    attendees.leave("l000", 2.0)
    join(attendees, "late", now=2.0)
    attendees.poll(3.0)
    assert first.next_cursor is not None
    second = attendees.page(first.next_cursor, limit=100)
    assert second.next_cursor is not None
    third = attendees.page(second.next_cursor, limit=100)
    assert third.next_cursor is None
    seen = [a.participant for page in (first, second, third) for a in page.items]
    assert len(seen) == len(set(seen)) == 254
    assert seen[-1] == "late"
    assert seen[3:-1] == [f"l{i:03}" for i in range(250)]
    assert attendees.page(limit=100) == attendees.page(limit=100)


def test_paging_filters_by_role() -> None:
    attendees = AttendeeList()
    for i in range(5):
        join(attendees, f"l{i}")
    join(attendees, "s1", S)
    join(attendees, "s2", S)
    join(attendees, "host", H)
    attendees.poll(0.0)
    speakers = attendees.page(role=S)
    assert [a.participant for a in speakers.items] == ["s1", "s2"]
    assert speakers.total == 2 and speakers.next_cursor is None
    page = attendees.page(limit=2, role=L)
    assert [a.participant for a in page.items] == ["l0", "l1"] and page.total == 5
    assert page.next_cursor is not None
    rest = attendees.page(page.next_cursor, limit=50, role=L)
    assert [a.participant for a in rest.items] == ["l2", "l3", "l4"]
    assert attendees.page(role=M).items == ()


def test_pages_show_published_state_only() -> None:
    attendees = AttendeeList()
    join(attendees, "a")
    assert attendees.page().items == () and attendees.page().version == 0
    attendees.poll(1.0)
    assert [a.participant for a in attendees.page().items] == ["a"]
    assert attendees.counts() == counts(listener=1)


@pytest.mark.parametrize("cursor", ["", "abc", "1.x", "1.2.3"])
def test_malformed_cursor(cursor: str) -> None:
    with pytest.raises(PodiumError) as error:
        AttendeeList().page(cursor)
    assert error.value.code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("limit", [0, 101])
def test_limit_bounds(limit: int) -> None:
    with pytest.raises(PodiumError) as error:
        AttendeeList().page(limit=limit)
    assert error.value.code == ErrorCode.INVALID_REQUEST


def test_membership_errors() -> None:
    attendees = AttendeeList()
    join(attendees, "a")
    with pytest.raises(PodiumError) as error:
        join(attendees, "a")
    assert error.value.code == ErrorCode.ALREADY_IN_ROOM
    with pytest.raises(PodiumError) as error:
        attendees.leave("zed", 0.0)
    assert error.value.code == ErrorCode.NO_SUCH_PARTICIPANT
    with pytest.raises(PodiumError) as error:
        attendees.set_role("zed", S, 0.0)
    assert error.value.code == ErrorCode.NO_SUCH_PARTICIPANT


def test_rejoin_with_the_same_id_before_a_flush() -> None:
    attendees = AttendeeList()
    join(attendees, "a")
    attendees.poll(1.0)
    attendees.leave("a", 2.0)
    join(attendees, "a", now=2.5)
    delta = attendees.poll(3.0)
    assert delta is not None
    assert delta.updated == (Attendee("a", identity("a"), L, 2.5),)
    assert [a.participant for a in attendees.page().items] == ["a"]


@pytest.mark.parametrize(
    "config", [{"batch_interval": 0.0}, {"max_page_size": 0}], ids=["interval", "page"]
)
def test_config_is_validated(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AttendeeConfig(**config)
