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


def test_time_bound_refuses_when_the_expected_wait_is_over_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(adm.time, "perf_counter", lambda: now[0])
    a = Admission(slots=2, max_queue=100, queue_timeout_s=0.1)
    first = [a.admit() for _ in range(3)]  # no service time known yet: admitted by count alone
    a.check_wait(first[0])
    now[0] += 0.05
    a.finish(first[0], 0.05)  # a request held a slot 50 ms; no deviation seen yet
    assert a.pending == 2 and a.service_s == pytest.approx(0.05) and a.cautious_service_s() == pytest.approx(0.05)
    a.check_wait(first[1])  # both slots now busy: one just started, one (first[2]) not yet taken by a slot
    assert a.expected_wait_s() == pytest.approx(0.05)  # the next free slot: a whole service time away
    now[0] += 0.03
    a.check_wait(first[2])
    now[0] += 0.01  # first[1] has run 40 ms, first[2] 10 ms: 10 and 40 ms left
    assert a.expected_wait_s() == pytest.approx(0.01)
    for _ in range(4):
        a.admit()
    assert a.pending == 6  # a newcomer needs 5 completions: slot A at 10 ms, B at 40, A at 60, B at 90, A at 110
    assert a.expected_wait_s() == pytest.approx(0.11)
    with pytest.raises(Overloaded, match="LONGRANK_QUEUE_TIMEOUT_S") as info:
        a.admit()
    assert info.value.retry_after_s == 1 and a.pending == 6


def test_the_wait_is_estimated_with_the_service_times_deviation() -> None:
    """Requests that vary in length are budgeted at mean + 4 deviations (RFC 6298), so that the ones admitted
    rarely wait past the timeout."""
    a = Admission(slots=1, max_queue=100, queue_timeout_s=1)
    for held in (0.02, 0.06, 0.02, 0.06):
        a.finish(a.admit(), held)
    assert a.deviation_s > 0.01
    assert a.cautious_service_s() == pytest.approx(a.service_s + 4 * a.deviation_s)
    steady = Admission(slots=1, max_queue=100, queue_timeout_s=1)
    for held in (0.04,) * 4:
        steady.finish(steady.admit(), held)
    assert steady.deviation_s == 0 and steady.cautious_service_s() == pytest.approx(0.04)
    for b in (a, steady):
        b.admit()
        b.admit()  # one running (not started yet) and one queued: two service times
    assert a.expected_wait_s() > steady.expected_wait_s() == pytest.approx(0.08)


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
        a.finish(a.admit(), held)
    assert a.service_s == pytest.approx(0.8 * 0.1 + 0.2 * 0.2)
    assert a.deviation_s == pytest.approx(0.25 * 0.1)  # |0.2 − 0.1| against the average before the sample
    a.finish(a.admit(), None)  # refused in the executor: no work, no sample
    assert a.service_s == pytest.approx(0.12) and a.pending == 0


def test_a_finished_request_no_longer_counts_as_running() -> None:
    a = Admission(slots=1, max_queue=10, queue_timeout_s=1)
    admitted = a.admit()
    a.check_wait(admitted)
    assert list(a.running) == [admitted.number]
    a.finish(admitted, 0.01)
    assert a.running == {} and a.pending == 0
