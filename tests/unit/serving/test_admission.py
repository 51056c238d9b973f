"""Admission by count and by time (serving/admission.py): pure logic, a fake clock where time matters."""

from __future__ import annotations

import pytest

from serving import admission as adm
from serving.admission import Admission, Overloaded


def test_count_bound_refuses_past_max_queue() -> None:
    a = Admission(slots=1, max_queue=2, queue_timeout_s=10)
    a.admit()
    a.admit()
    with pytest.raises(Overloaded, match="LONGRANK_MAX_QUEUE"):
        a.admit()
    assert a.pending == 2


def test_time_bound_refuses_when_the_expected_wait_is_over_the_timeout() -> None:
    a = Admission(slots=2, max_queue=100, queue_timeout_s=0.1)
    for _ in range(3):  # no service time known yet: admitted by count alone
        a.admit()
    a.finish(0.05)  # a request held a slot 50 ms
    assert a.pending == 2 and a.service_s == pytest.approx(0.05)
    assert a.expected_wait_s() == pytest.approx(0.5 * 0.05 / 2)  # both slots busy, half done on average
    for _ in range(4):
        a.admit()
    assert a.pending == 6  # a newcomer waits for 5 completions: 4.5 * 50 / 2 = 112.5 ms, over the timeout
    assert a.expected_wait_s() == pytest.approx(4.5 * 0.05 / 2)
    with pytest.raises(Overloaded, match="LONGRANK_QUEUE_TIMEOUT_S") as info:
        a.admit()
    assert info.value.retry_after_s == 1 and a.pending == 6


def test_free_slots_never_wait() -> None:
    a = Admission(slots=4, max_queue=100, queue_timeout_s=0.001, service_s=10.0)
    for _ in range(4):
        a.admit()
    with pytest.raises(Overloaded):
        a.admit()


def test_a_request_that_waited_too_long_is_refused_when_its_slot_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    a = Admission(slots=1, max_queue=10, queue_timeout_s=0.1)
    now = [100.0]
    monkeypatch.setattr(adm.time, "perf_counter", lambda: now[0])
    admitted = a.admit()
    now[0] += 0.05
    assert a.check_wait(admitted) == 100.05
    now[0] += 0.2
    with pytest.raises(Overloaded, match="waited 250 ms"):
        a.check_wait(admitted)


def test_the_service_time_is_a_moving_average() -> None:
    a = Admission(slots=1, max_queue=10, queue_timeout_s=1)
    for held in (0.1, 0.2):
        a.admit()
        a.finish(held)
    assert a.service_s == pytest.approx(0.8 * 0.1 + 0.2 * 0.2)
    a.admit()
    a.finish(None)  # refused in the executor: no work, no sample
    assert a.service_s == pytest.approx(0.12) and a.pending == 0
