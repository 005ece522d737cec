"""The fleet's households: seeded (a seed gives the same fleet), and measured like a meter."""

from __future__ import annotations

import numpy as np
import pytest

from c1222.errors import ConfigurationError
from c1222.fleet.households import (
    APPLIANCES, HouseholdBank, appliances, household_config, household_seed,
)
from c1222.meter.loads import load_from_config
from c1222.meter.metrology import FrontEnd, Metrology

# 2026-01-01 17:50 KST: the evening loads start within the next minutes in most houses
EVENING = 1767225600 + 8 * 3600 + 50 * 60


def test_a_seed_gives_the_same_households_and_another_seed_others():
    first = [household_config(7, i) for i in range(50)]
    assert first == [household_config(7, i) for i in range(50)]
    assert first != [household_config(8, i) for i in range(50)]
    seeds = {household_seed(7, i) for i in range(1000)}
    assert len(seeds) == 1000  # every meter its own house


def test_the_appliance_mix_follows_the_chances():
    n = 2000
    counts = np.zeros(len(APPLIANCES))
    for i in range(n):
        for k, offset in appliances(3, i):
            counts[k] += 1
            assert 0 <= offset < APPLIANCES[k][3]
    for k, (_, chance, *_rest) in enumerate(APPLIANCES):
        assert abs(counts[k] / n - chance) < 0.05


def test_two_banks_of_one_seed_measure_the_same():
    a, b = HouseholdBank(5, 0, 40), HouseholdBank(5, 0, 40)
    for t in range(EVENING, EVENING + 30):
        sa, sb = a.measure_second(t), b.measure_second(t)
        assert np.array_equal(sa.active_power, sb.active_power)
    assert np.array_equal(a.wh_delivered(), b.wh_delivered())


def test_a_bank_slice_measures_what_the_whole_bank_measures():
    # worker 2 of a fleet holds meters 10..19: the same houses as rows 10..19 of one bank
    whole, part = HouseholdBank(5, 0, 20), HouseholdBank(5, 10, 10)
    for t in range(EVENING, EVENING + 10):
        assert np.array_equal(whole.measure_second(t).active_power[10:],
                              part.measure_second(t).active_power)


def test_the_vectorised_bank_reads_what_a_single_meter_reads():
    """Each fleet meter against `c1222 meter`'s sampled front end on the same load: powers
    within 1 % (+2.5 W: the 10-bit ADC's LSB is 0.31 A, so a 60 W night load reads a watt or
    two apart from the ideal), energy over 5 minutes within 0.5 %."""
    count, seconds = 6, 300
    bank = HouseholdBank(11, 0, count)
    singles = [Metrology(load_from_config(household_config(11, i)), FrontEnd.reference_10bit())
               for i in range(count)]
    changed = 0
    for t in range(EVENING, EVENING + seconds):
        fleet = bank.measure_second(t)
        if t % 30 == 0 or t == EVENING:
            for i, meter in enumerate(singles):
                one = meter.measure_second(t)
                assert fleet.active_power[i] == pytest.approx(one.active_power, rel=0.01, abs=2.5)
                assert fleet.apparent_power[i] == pytest.approx(one.apparent_power, rel=0.01,
                                                                abs=2.5)
                assert fleet.power_factor[i] == pytest.approx(one.power_factor, abs=0.01)
                assert fleet.voltage_rms == pytest.approx(one.voltage_rms, rel=0.005)
        else:
            for meter in singles:
                meter.measure_second(t)
    wh = bank.wh_delivered()
    for i, meter in enumerate(singles):
        assert wh[i] == pytest.approx(meter.registers.wh_delivered, rel=0.005)
        changed += wh[i] > 10  # some houses cook: the test sees more than the base load
    assert changed >= 2


def test_a_disconnected_meter_draws_nothing_and_the_others_go_on():
    bank = HouseholdBank(5, 0, 4)
    bank.disconnected[1] = True
    second = bank.measure_second(EVENING)
    assert second.active_power[1] == 0 and second.current_rms[1] == 0
    assert (second.active_power[[0, 2, 3]] > 30).all()  # the base load at least


def test_registers_do_not_drift():
    bank = HouseholdBank(5, 0, 3)
    total = np.zeros(3)
    for t in range(EVENING, EVENING + 300):
        total += bank.measure_second(t).active_power
    assert bank.wh_delivered() == pytest.approx(total / 3600, rel=1e-12)


def test_an_empty_bank_is_refused():
    with pytest.raises(ConfigurationError):
        HouseholdBank(1, 0, 0)
