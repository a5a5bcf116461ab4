"""The replay's arrival schedule: Poisson for demos, evenly spaced for tests that compare two policies."""

from __future__ import annotations

import random

import pytest

from foresail.demo.load import arrivals


def test_even_arrivals_are_evenly_spaced_at_the_rate():
    (step,) = arrivals([2.0], 5.0, random.Random(0), even=True)
    assert step == pytest.approx([0.25 + 0.5 * k for k in range(10)])


def test_even_arrivals_carry_the_fraction_across_steps():
    """0.5 req/s in 5 s steps is 2.5 a step: 2 then 3, not 2 every step."""
    steps = arrivals([0.5] * 4 + [0.1] * 3, 5.0, random.Random(0), even=True)
    assert [len(s) for s in steps] == [2, 3, 2, 3, 0, 1, 0]
    assert steps[0] == pytest.approx([1.0, 3.0]) and steps[1] == pytest.approx([0.0, 2.0, 4.0])  # 2 s apart throughout
    assert sum(map(len, arrivals([0.37] * 100, 5.0, random.Random(0), even=True))) == round(0.37 * 5 * 100)


def test_even_arrivals_do_not_depend_on_the_seed():
    rates = [0.5 + 3.0 * i / 18 for i in range(18)]
    assert arrivals(rates, 5.0, random.Random(1), even=True) == arrivals(rates, 5.0, random.Random(2), even=True)


def test_poisson_arrivals_vary_and_keep_the_rate_on_average():
    counts = [len(s) for s in arrivals([2.0] * 2000, 5.0, random.Random(0))]
    assert len(set(counts)) > 5
    assert sum(counts) / len(counts) == pytest.approx(10.0, rel=0.05)
    assert all(0 < t < 5.0 for s in arrivals([2.0] * 10, 5.0, random.Random(1)) for t in s)


def test_no_arrivals_at_zero_rate():
    assert arrivals([0.0, 0.0], 5.0, random.Random(0)) == [[], []]
    assert arrivals([0.0, 0.0], 5.0, random.Random(0), even=True) == [[], []]
