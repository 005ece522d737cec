"""The fleet's households and their metrology, vectorised over every meter of a worker.

Each fleet meter measures a :class:`~c1222.meter.loads.Household` (its own seed) and, drawn
from the fleet seed, zero or more cycling appliances of :data:`APPLIANCES` (air conditioner,
water heater, pump, each a :class:`~c1222.meter.loads.Fridge`-like duty cycle with its own
offset). :func:`household_config` gives meter ``i``'s load as a meter profile table, so
``c1222 meter`` with that ``load`` measures the same house.

:class:`HouseholdBank` advances all meters one simulated second per call, with numpy:

* which components are on is a boolean matrix (meters x components): the base load, the
  fridge, each scheduled event of the day (from :func:`~c1222.meter.loads.household_day`,
  drawn once per simulated day), the oven's two steps, the appliances;
* each component's current phasors are computed once per second for the shared supply
  (:class:`~c1222.meter.loads.Mains`), so the meters' currents are one matrix product;
* the figures are those of an ideal meter, from the phasors (IEEE 1459): RMS values, active
  power ``Re(sum V conj(I))``, fundamental reactive power, apparent power ``Vrms Irms``, PF;
  the anti-creep threshold of the reference front end applies.

A fleet does not sample waveforms: the single meter's sampled front end costs about 140 us
per meter-second (BENCHMARKS.md, Metrology), 1.4 s per simulated second for 10,000 meters.
Its measured error against the exact integrals is under 0.04 % (same page), so the ideal
figures here agree with a single meter's within that (tests/unit/fleet).

Energy registers accumulate whole millijoules (int64) plus the float remainder, as
:class:`~c1222.meter.metrology.EnergyRegisters` does, so there is no drift. Pure: no clock, no
global randomness; second ``t`` is an argument and every draw comes from the seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from c1222.errors import ConfigurationError
from c1222.meter.loads import (
    DAY, Heater, Household, Mains, Motor, household_day,
)
from c1222.meter.metrology import REGISTERS, FrontEnd

#: Appliances a fleet household may have besides the Household's own loads: (name, chance,
#: watts, period s, duty, pf). Each runs as a Fridge (a motor at ``pf``; pf 1 is resistive).
APPLIANCES: tuple[tuple[str, float, float, int, float, float], ...] = (
    ("aircon", 0.3, 1200.0, 1800, 0.5, 0.85),
    ("water-heater", 0.2, 2000.0, 7200, 0.15, 1.0),
    ("pump", 0.1, 400.0, 3600, 0.25, 0.7),
)

_MJ_PER_WH = 3_600_000


def household_seed(fleet_seed: int, index: int) -> int:
    """Meter ``index``'s Household seed: distinct per meter, repeatable per fleet seed."""
    return int(np.random.default_rng((fleet_seed, index, 0)).integers(0, 2**62))


def appliances(fleet_seed: int, index: int) -> list[tuple[int, int]]:
    """(appliance number in APPLIANCES, offset s) of meter ``index``."""
    rng = np.random.default_rng((fleet_seed, index, 1))
    found = []
    for k, (_, chance, _, period, _, _) in enumerate(APPLIANCES):
        has, offset = rng.random() < chance, int(rng.integers(0, period))
        if has:
            found.append((k, offset))
    return found


def household_config(fleet_seed: int, index: int, utc_offset: int = 32400) -> dict[str, Any]:
    """Meter ``index``'s load as a meter profile ``load`` table (docs/fleet.md)."""
    house: dict[str, Any] = {"type": "household", "seed": household_seed(fleet_seed, index),
                             "utc_offset": utc_offset}
    extra = [{"type": "fridge", "watts": APPLIANCES[k][2], "period": APPLIANCES[k][3],
              "duty": APPLIANCES[k][4], "pf": APPLIANCES[k][5], "offset": offset}
             for k, offset in appliances(fleet_seed, index)]
    return {"type": "sum", "loads": [house, *extra]} if extra else house


@dataclass(frozen=True, eq=False)
class FleetSecond:
    """One simulated second of every meter: arrays of length N (W, VA, var, V, A, PF, Hz)."""

    time: int
    voltage_rms: float
    frequency: float
    current_rms: np.ndarray
    active_power: np.ndarray
    apparent_power: np.ndarray
    reactive_power: np.ndarray
    power_factor: np.ndarray


class HouseholdBank:
    """N fleet households (meters ``first`` .. ``first + count - 1`` of the fleet seed)."""

    def __init__(self, fleet_seed: int, first: int, count: int, *, utc_offset: int = 32400,
                 mains: Mains | None = None, front_end: FrontEnd | None = None) -> None:
        if count < 1:
            raise ConfigurationError("count: a bank needs at least one meter")
        self.n = count
        self.utc_offset = int(utc_offset)
        self.mains = mains or Mains()
        self.start_current = (front_end or FrontEnd.reference_10bit()).start_current
        indices = range(first, first + count)
        self.seeds = [household_seed(fleet_seed, i) for i in indices]
        # Components: base, fridge, events (the oven as its steps), appliances.
        template = Household(0)
        self._events = [name for name, *_ in Household.EVENTS]
        loads: list[Any] = [template.base, template.fridge.motor]
        self._event_columns: dict[str, list[tuple[int, str | None]]] = {}
        self._heaters: dict[str, Heater] = {}
        for name, *_, make in Household.EVENTS:
            load = make()
            if isinstance(load, Heater):
                # one column per heater state, on while the event's elapsed time is in it
                cols = []
                for state in ("step1", "step2"):
                    cols.append((len(loads), state))
                    loads.append(load.steps[state])
                self._event_columns[name] = cols
                self._heaters[name] = load
            else:
                self._event_columns[name] = [(len(loads), None)]
                loads.append(load)
        self._appliance_col = len(loads)
        for _, _, watts, _, _, pf in APPLIANCES:
            loads.append(Motor(watts, pf))
        self.components: list[Any] = loads
        self.k = len(loads)
        # Per-meter cycling state: fridge offset, and each appliance (has, offset).
        self.fridge_offset = np.array([_fridge_offset(s) for s in self.seeds])
        fridge = template.fridge
        self._fridge = (fridge.period, fridge.on_seconds)
        self.has = np.zeros((count, len(APPLIANCES)), dtype=bool)
        self.app_offset = np.zeros((count, len(APPLIANCES)), dtype=np.int64)
        for row, i in enumerate(indices):
            for k, offset in appliances(fleet_seed, i):
                self.has[row, k] = True
                self.app_offset[row, k] = offset
        self._day: int | None = None
        self._start = np.zeros((count, len(self._events)), dtype=np.int64)
        self._end = np.zeros((count, len(self._events)), dtype=np.int64)
        #: meters whose remote-disconnect relay is open draw nothing
        self.disconnected = np.zeros(count, dtype=bool)
        self._mj = np.zeros((count, len(REGISTERS)), dtype=np.int64)
        self._rest = np.zeros((count, len(REGISTERS)))

    def _load_day(self, day: int) -> None:
        index = {name: j for j, name in enumerate(self._events)}
        self._start[:] = 0
        self._end[:] = 0
        for row, seed in enumerate(self.seeds):
            for start, end, name in household_day(seed, day):
                self._start[row, index[name]] = start
                self._end[row, index[name]] = end
        self._day = day

    def on(self, t: int) -> np.ndarray:
        """(N, K) float: 1 where a component draws current in second ``t``."""
        local = t + self.utc_offset
        day, second = divmod(local, DAY)
        if day != self._day:
            self._load_day(day)
        on = np.zeros((self.n, self.k))
        on[:, 0] = 1.0
        period, on_seconds = self._fridge
        on[:, 1] = (t + self.fridge_offset) % period < on_seconds
        running = (self._start <= second) & (second < self._end)
        elapsed = second - self._start
        for j, name in enumerate(self._events):
            for col, state in self._event_columns[name]:
                if state is None:
                    on[:, col] = running[:, j]
                else:
                    heater = self._heaters[name]
                    pos = np.searchsorted(heater.times, elapsed[:, j], side="right") - 1
                    states = np.asarray(heater.states)[np.maximum(pos, 0)]
                    on[:, col] = running[:, j] & (pos >= 0) & (states == state)
        for k, (_, _, _, period_k, duty, _) in enumerate(APPLIANCES):
            cycle = (t + self.app_offset[:, k]) % period_k < round(period_k * duty)
            on[:, self._appliance_col + k] = self.has[:, k] & cycle
        on[self.disconnected] = 0.0
        return on

    def measure_second(self, t: int) -> FleetSecond:
        """Every meter's figures of second ``t``, added to the registers."""
        supply = self.mains.supply(t)
        v = supply.voltage
        currents = np.array([load.phasors(0, supply) for load in self.components])  # (K, H)
        on = self.on(t)
        # real and imaginary parts as two float products (BLAS), not one complex product
        re, im = on @ currents.real, on @ currents.imag                  # (N, H) each
        vrms = float(math.sqrt(np.sum(np.abs(v) ** 2)))
        irms = np.sqrt(np.einsum("ij,ij->i", re, re) + np.einsum("ij,ij->i", im, im))
        p = re @ v.real + im @ v.imag                                    # Re(sum V conj(I))
        q = v[0].imag * re[:, 0] - v[0].real * im[:, 0]                  # Im(V1 conj(I1))
        s = vrms * irms
        idle = irms < self.start_current
        irms[idle] = p[idle] = q[idle] = s[idle] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            pf = np.where(s > 0, np.clip(p / s, -1.0, 1.0), 1.0)
        self._accumulate(p, s, q)
        return FleetSecond(t, vrms, supply.frequency, irms, p, s, q, pf)

    def _accumulate(self, p: np.ndarray, s: np.ndarray, q: np.ndarray) -> None:
        joules = np.stack([np.maximum(p, 0), np.maximum(-p, 0), s,
                           np.maximum(q, 0), np.maximum(-q, 0)], axis=1)
        x = joules * 1000.0 + self._rest
        whole = np.floor(x)
        self._mj += whole.astype(np.int64)
        self._rest = x - whole

    def wh_delivered(self) -> np.ndarray:
        """Wh delivered of every meter (float)."""
        return (self._mj[:, 0] + self._rest[:, 0]) / _MJ_PER_WH

    def reset(self, row: int) -> None:
        """Clear one meter's registers (the Clear Data procedure)."""
        self._mj[row] = 0
        self._rest[row] = 0.0


def _fridge_offset(seed: int) -> int:
    # as Household draws it: default_rng((seed, 0)).integers(0, 2400)
    return int(np.random.default_rng((seed, 0)).integers(0, 2400))


__all__ = ["APPLIANCES", "FleetSecond", "HouseholdBank", "appliances", "household_config",
           "household_seed"]
