"""The simulated world: mains and loads, checked against circuit theory and their specs."""

from __future__ import annotations

import cmath
import math
import tomllib

import numpy as np
import pytest

from c1222.errors import ConfigurationError
from c1222.meter.loads import (LOADS, ORDERS, Electronics, Fridge, Heater, Household, Mains,
                               Motor, Resistive, Sum, current_waveform, load_from_config,
                               waveform)

CLEAN = Mains(variation=0.0, drift=0.0, harmonics={})        # exactly 220 V, 60 Hz, a sine
GRID = Mains(seed=5, grid_seed=6)


def powers(load, t=0, mains=CLEAN):
    """(P, Q1, S) over whole cycles from the phasors: P = sum Re(V I*), S = Vrms Irms."""
    supply = mains.supply(t)
    i = load.phasors(t, supply)
    v = supply.voltage
    p = float(np.sum((v * np.conj(i)).real))
    q1 = float((v[0] * np.conj(i[0])).imag)
    s = math.sqrt(float(np.sum(abs(v) ** 2)) * float(np.sum(abs(i) ** 2)))
    return p, q1, s


def test_resistive_draws_its_rating_in_phase():
    p, q, s = powers(Resistive(1000))
    assert p == pytest.approx(1000) and q == pytest.approx(0, abs=1e-9) and s == pytest.approx(p)
    # on a distorted supply the current has the voltage's shape: PF stays exactly 1
    p, q, s = powers(Resistive(1000), 77, GRID)
    assert p / s == pytest.approx(1.0, abs=1e-12)


def test_motor_is_0_8_lagging_at_rated_voltage():
    p, q, s = powers(Motor(750, pf=0.8))
    assert p == pytest.approx(750)
    assert q == pytest.approx(750 / 0.8 * 0.6)              # positive: inductive
    assert p / s == pytest.approx(0.8)
    i = Motor(750).phasors(0, CLEAN.supply(0))
    assert -cmath.phase(i[0]) == pytest.approx(math.acos(0.8))   # current lags the voltage


def test_smps_draws_constant_power_with_harmonics_and_pf_from_distortion():
    load = Electronics(200)
    for t, mains in ((0, CLEAN), (123, GRID), (5000, Mains(voltage=200.0))):
        p, q, s = powers(load, t, mains)
        assert p == pytest.approx(200)                      # regulated: any voltage
        assert abs(q) < 0.02 * s
        assert p / s < 0.8                                  # PF < 1 from distortion alone
    i = load.phasors(0, CLEAN.supply(0))
    assert abs(i[1]) / abs(i[0]) == pytest.approx(0.75)
    assert abs(i[2]) / abs(i[0]) == pytest.approx(0.5)
    assert abs(i[3]) / abs(i[0]) == pytest.approx(0.25)
    # the pulses sit on the voltage peaks: the current's crest factor is high
    wave = current_waveform(load, 0, CLEAN.supply(0), 4800)
    assert np.max(np.abs(wave)) / np.sqrt(np.mean(wave ** 2)) > 2.0
    leading = Electronics(200, harmonics={}, phase_degrees=30)
    p, q, s = powers(leading)
    assert q < 0 and p / s == pytest.approx(math.cos(math.radians(30)))


def test_heater_follows_its_schedule():
    heater = Heater(1000, 2000, [[0, "off"], [60, "step1"], [120, "step2"]])
    assert [heater.state(t) for t in (0, 59, 60, 119, 120, 10**6)] == \
        ["off", "off", "step1", "step1", "step2", "step2"]
    assert powers(heater, 30)[0] == 0
    assert powers(heater, 60)[0] == pytest.approx(1000)
    assert powers(heater, 120)[0] == pytest.approx(2000)
    cyclic = Heater(500, 900, [[10, "step1"], [20, "step2"], [30, "off"]], start=1000, cycle=40)
    assert [cyclic.state(t) for t in (1005, 1010, 1025, 1035, 1045, 1050)] == \
        ["off", "step1", "step2", "off", "off", "step1"]


def test_fridge_cycles_with_its_duty():
    fridge = Fridge(150, period=600, duty=0.35, offset=17)
    running = [fridge.running(t) for t in range(6000)]
    assert sum(running) == 10 * 210
    changes = sum(a != b for a, b in zip(running, running[1:]))
    assert changes == 20                                     # on and off once per period
    p, q, s = powers(fridge, next(t for t in range(600) if fridge.running(t)))
    assert p == pytest.approx(150) and p / s == pytest.approx(0.8)
    assert powers(fridge, next(t for t in range(600) if not fridge.running(t)))[0] == 0


def test_household_day_has_a_quiet_night_and_peaks():
    house = Household(seed=1)
    minute_watts = np.array([powers(house, t, GRID)[0] for t in range(0, 86_400, 60)])
    hour = minute_watts.reshape(24, 60).mean(axis=1)
    night = hour[1:5].mean()
    assert 60 < night < 250                                 # base load and the fridge
    assert hour[18:21].mean() > 4 * night                   # evening: lights, oven, TV
    assert hour[6:9].max() > 2 * night                      # morning: lights, kettle
    kwh = minute_watts.sum() * 60 / 3.6e6
    assert 3 < kwh < 15
    # the oven steps 1 kW then 2 kW
    oven = next((s, e) for s, e, name in house.day(0) if name == "oven")
    assert powers(house, oven[0] + 60, GRID)[0] - powers(house, oven[0] - 1, GRID)[0] \
        == pytest.approx(1000, rel=0.1, abs=200)


def test_household_is_seeded():
    assert Household(3).day(0) == Household(3).day(0)
    assert Household(3).day(0) != Household(4).day(0)
    assert Household(3).day(0) != Household(3).day(1)
    house = Household(3)
    t = 1_700_000_000                                       # Unix time works: days by number
    assert house.active(t) == Household(3).active(t)
    shifted = Household(3, utc_offset=3600)
    assert shifted.active(t - 3600) == house.active(t)


def test_mains_wanders_within_bounds_and_its_phase_is_continuous():
    mains = Mains(seed=8, grid_seed=9, variation=0.02, drift=0.05)
    ts = list(range(0, 86_400, 97)) + [1_700_000_000 + k for k in range(5)]
    for t in ts:
        s = mains.supply(t)
        assert 220 * 0.98 - 1e-9 <= s.vrms <= 220 * 1.02 + 1e-9
        assert abs(s.frequency - 60) <= 0.05 + 1e-12
        nxt = mains.supply(t + 1)
        step = (s.phase + 2 * math.pi * s.frequency - nxt.phase) % (2 * math.pi)
        assert min(step, 2 * math.pi - step) < 1e-6           # no jump between seconds
    assert len({round(mains.supply(t).vrms, 6) for t in range(0, 3600, 60)}) > 30
    # frequency is grid-wide, voltage local
    other = Mains(seed=1, grid_seed=9, variation=0.02, drift=0.05)
    assert other.frequency_at(500) == mains.frequency_at(500)
    assert other.supply(500).vrms != mains.supply(500).vrms
    # 5th and 3rd harmonics in anti-phase at the peak: a flat top
    wave = waveform(GRID.supply(0).voltage, GRID.supply(0), 4800)
    assert np.max(np.abs(wave)) < math.sqrt(2) * np.sqrt(np.mean(wave ** 2))


def test_waveform_is_the_phasor_sum():
    supply = GRID.supply(42)
    i = Electronics(300, phase_degrees=10).phasors(42, supply) + Motor(400).phasors(42, supply)
    tau = np.arange(4000) / 4000
    theta = supply.phase + 2 * math.pi * supply.frequency * tau
    direct = sum(math.sqrt(2) * abs(x) * np.cos(h * theta + cmath.phase(x))
                 for h, x in zip(ORDERS, i))
    assert np.allclose(waveform(i, supply, 4000), direct, atol=1e-9)


def test_sum_adds_currents():
    a, b = Resistive(500), Motor(300)
    s = GRID.supply(3)
    assert np.allclose(Sum([a, b]).phasors(3, s), a.phasors(3, s) + b.phasors(3, s))


# --- configuration ------------------------------------------------------------------------------

def test_every_load_type_builds_from_a_profile_table():
    profile = tomllib.loads("""
        house = { type = "household", seed = 1 }
        resistive = { type = "resistive", watts = 1500 }
        motor = { type = "motor", watts = 750, pf = 0.8 }
        smps = { type = "electronics", watts = 200, harmonics = { "3" = 0.7, "5" = 0.4 } }
        fridge = { type = "fridge", watts = 120, period = 1800, duty = 0.3 }
        [heater]
        type = "heater"
        step1 = 1000
        step2 = 2000
        schedule = [[0, "off"], [60, "step1"], [120, "step2"]]
        [both]
        type = "sum"
        loads = [{ type = "resistive", watts = 100 }, { type = "motor", watts = 50 }]
    """)
    built = {name: load_from_config(table) for name, table in profile.items()}
    assert isinstance(built["house"], Household) and built["house"].seed == 1
    assert built["heater"].state(61) == "step1"
    assert powers(built["smps"])[0] == pytest.approx(200)
    assert built["smps"].harmonics == ((3, 0.7), (5, 0.4))
    assert powers(built["both"])[0] == pytest.approx(150)
    assert {table["type"] for table in profile.values()} == set(LOADS)


@pytest.mark.parametrize("config,field", [
    ("household", "load"),
    ({"seed": 1}, "load.type"),
    ({"type": "toaster"}, "load.type"),
    ({"type": "resistive"}, "load.watts"),
    ({"type": "resistive", "watts": -5}, "load.watts"),
    ({"type": "resistive", "watts": "lots"}, "load.watts"),
    ({"type": "resistive", "watts": 5, "volts": 230}, "load.volts"),
    ({"type": "heater", "step1": -1000}, "load.step1"),
    ({"type": "heater", "step2": float("nan")}, "load.step2"),
    ({"type": "heater", "schedule": [[0, "off"], [60, "step3"]]}, r"load.schedule\[1\]\[1\]"),
    ({"type": "heater", "schedule": [[60, "off"], [0, "step1"]]}, r"load.schedule\[1\]\[0\]"),
    ({"type": "heater", "schedule": "off"}, "load.schedule"),
    ({"type": "heater", "schedule": []}, "load.schedule"),
    ({"type": "heater", "cycle": 0}, "load.cycle"),
    ({"type": "motor", "watts": 100, "pf": 0}, "load.pf"),
    ({"type": "motor", "watts": 100, "pf": 1.2}, "load.pf"),
    ({"type": "electronics", "watts": 100, "harmonics": {"2": 0.5}}, "load.harmonics"),
    ({"type": "electronics", "watts": 100, "harmonics": {"3": -0.5}}, "load.harmonics.3"),
    ({"type": "fridge", "duty": 1.5}, "load.duty"),
    ({"type": "fridge", "period": 0}, "load.period"),
    ({"type": "household", "seed": -1}, "load.seed"),
    ({"type": "household", "seed": 1.5}, "load.seed"),
    ({"type": "sum", "loads": []}, "load.loads"),
    ({"type": "sum", "loads": [{"type": "motor", "watts": -1}]}, r"load.loads\[0\].watts"),
])
def test_a_bad_load_table_names_the_field(config, field):
    with pytest.raises(ConfigurationError, match=f"^{field}: "):
        load_from_config(config)


@pytest.mark.parametrize("kwargs,field", [
    ({"voltage": -220}, "voltage"), ({"frequency": 0}, "frequency"),
    ({"variation": 0.5}, "variation"), ({"drift": -0.1}, "drift"),
    ({"harmonics": {4: 0.1}}, "harmonics"), ({"seed": -3}, "seed"),
])
def test_bad_mains_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigurationError, match=f"^{field}: "):
        Mains(**kwargs)
