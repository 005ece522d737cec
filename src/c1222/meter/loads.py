"""The simulated world a software meter measures: the mains supply and the loads behind it.

Everything here is a pure function of its inputs and of explicit seeds: no clock, no global
randomness. Time enters as ``t``, an integer second (Unix time or seconds since a start; the
caller chooses, :class:`Household` reads the time of day as ``t % 86400``). Inside one second the
supply and every load are steady, so the world changes only at whole seconds — which makes the
exact energy of each second computable in closed form (the tests do so).

Waveforms are described by harmonic phasors instead of samples. A quantity ``x`` is::

    x(tau) = sum over h in ORDERS of sqrt(2) * Re(X[h] * exp(1j * h * theta(tau)))
    theta(tau) = supply.phase + 2 * pi * supply.frequency * tau,   0 <= tau < 1 s

with ``X`` a complex RMS phasor per odd harmonic order (the voltage fundamental is the phase
reference: real and positive). A load answers ``phasors(t, supply) -> current phasors``;
:func:`waveform` turns phasors into samples. Sign convention: an inductive current lags the
voltage, so its fundamental reactive power ``Im(V1 * conj(I1))`` is positive.

Public API
----------
``ORDERS``                                  the harmonic orders a phasor array holds (1, 3, ... 15)
``Mains(voltage, frequency, variation, drift, harmonics, seed, grid_seed)``
                                            220 V / 60 Hz supply with slow seeded wander
``Mains.supply(t) -> Supply``               frequency, phase and voltage phasors of second ``t``
``Supply``                                  one second of supply (``.vrms`` for convenience)
``Load`` (protocol)                         ``phasors(t, supply) -> ndarray`` (complex, ORDERS)
``Resistive(watts)``                        a resistance rated ``watts`` at 220 V
``Motor(watts, pf=0.8)``                    R + jX load, PF ``pf`` lagging at the fundamental
``Electronics(watts, harmonics, phase_degrees)``
                                            constant-power SMPS with odd current harmonics
``Heater(step1, step2, schedule, start, cycle)``
                                            the two-step heater of the reference test
``Fridge(watts, period, duty, pf, offset)`` a compressor cycling on a duty cycle
``Household(seed, utc_offset)``             a day profile built from the loads above
``household_day(seed, day)``                its events of one day (start, end, name)
``Sum(loads)``                              loads in parallel
``waveform(phasors, supply, sample_rate)``  samples of one second, shape (..., sample_rate)
``load_from_config(dict) -> Load``          a load named in a TOML profile; ``LOADS`` lists types
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from c1222.errors import ConfigurationError

#: Harmonic orders carried by phasor arrays. Odd only: the loads modelled here are half-wave
#: symmetric, and 15 x 60 Hz stays below the Nyquist rate of both front ends.
ORDERS = np.arange(1, 16, 2)
_INDEX = {int(h): i for i, h in enumerate(ORDERS)}
NOMINAL_VOLTAGE = 220.0
NOMINAL_FREQUENCY = 60.0
DAY = 86_400


def _zero() -> np.ndarray:
    return np.zeros(len(ORDERS), dtype=complex)


# --- validation helpers: every message starts with the field's name ---------------------------

def _number(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
            low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"{name}: {value!r} is not a number")
    x = float(value)
    if not math.isfinite(x) or x < low or x > high or (low_open and x == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise ConfigurationError(f"{name}: {value!r} is not in {bound}")
    return x


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigurationError(f"{name}: {value!r} is not an integer")
    if not low <= int(value) <= high:
        raise ConfigurationError(f"{name}: {value} is not in [{low}, {high}]")
    return int(value)


def _harmonics(name: str, value: Any, high: float) -> tuple[tuple[int, float], ...]:
    """``{order: ratio}`` (keys may be strings, as TOML writes them) -> sorted tuple."""
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = [(k, v) for k, v in items]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}: a table of harmonic order -> ratio") from None
    out = []
    for order, ratio in pairs:
        try:
            h = int(order)
        except (TypeError, ValueError):
            raise ConfigurationError(f"{name}: order {order!r} is not an integer") from None
        if h == 1 or h not in _INDEX:
            raise ConfigurationError(f"{name}: order {order!r} is not one of 3, 5, ... 15")
        out.append((h, _number(f"{name}.{h}", ratio, 0.0, high)))
    return tuple(sorted(out))


# --- the supply --------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Supply:
    """One second of mains at one supply point.

    ``phase`` is the fundamental's phase (radians) at the start of the second, ``voltage`` the
    complex RMS phasors over :data:`ORDERS` (fundamental real and positive).
    """

    time: int
    frequency: float
    phase: float
    voltage: np.ndarray

    @property
    def vrms(self) -> float:
        return float(np.sqrt(np.sum(np.abs(self.voltage) ** 2)))


def _wander(rng: np.random.Generator, total: float, periods: Sequence[tuple[float, float]]
            ) -> tuple[tuple[float, float, float], ...]:
    """Slow sinusoidal wander: (amplitude, angular rate per second, phase) per component.

    Amplitudes add up to ``total`` so the excursion never exceeds it; periods come from the
    given ranges (minutes, hours, a day) so both fast flicker-free drift and daily swing appear.
    """
    weights = rng.random(len(periods)) + 0.2
    weights = weights / weights.sum()
    return tuple((float(total * w), float(2 * math.pi / rng.uniform(lo, hi)),
                  float(rng.uniform(0, 2 * math.pi)))
                 for w, (lo, hi) in zip(weights, periods))


@dataclass(frozen=True)
class Mains:
    """220 V / 60 Hz mains with seeded slow wander, steady within each second.

    ``variation`` bounds the relative RMS excursion (0.02 = +/-2 %), ``drift`` the frequency
    excursion in Hz. Harmonics are ratios to the fundamental, in anti-phase at the voltage
    peak (the flat-topped wave of a real low-voltage grid). ``seed`` drives the local voltage,
    ``grid_seed`` the frequency: frequency is grid-wide, so meters with the same ``grid_seed``
    see the same frequency and phase (which also lets a bank of meters share one time base).
    The phase is continuous across seconds: cycles before second ``t`` are summed in closed form,
    so :meth:`supply` is a pure function of ``t`` with no history.
    """

    voltage: float = NOMINAL_VOLTAGE
    frequency: float = NOMINAL_FREQUENCY
    variation: float = 0.02
    drift: float = 0.02
    harmonics: Any = ((3, 0.01), (5, 0.02))
    seed: int = 0
    grid_seed: int = 0
    _v: tuple = field(init=False, repr=False, compare=False)
    _f: tuple = field(init=False, repr=False, compare=False)
    _shape: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _number("voltage", self.voltage, 0.0, 1000.0)
        _number("frequency", self.frequency, 40.0, 70.0)
        _number("variation", self.variation, 0.0, 0.2)
        _number("drift", self.drift, 0.0, 1.0)
        _integer("seed", self.seed, 0, 2**63)
        _integer("grid_seed", self.grid_seed, 0, 2**63)
        harmonics = _harmonics("harmonics", self.harmonics, 0.2)
        object.__setattr__(self, "harmonics", harmonics)
        object.__setattr__(self, "_v", _wander(np.random.default_rng((self.seed, 1)),
                                               self.variation,
                                               ((60, 600), (600, 3600), (3600, DAY))))
        object.__setattr__(self, "_f", _wander(np.random.default_rng((self.grid_seed, 2)),
                                               self.drift, ((20, 120), (120, 900), (900, 7200))))
        shape = _zero()
        shape[0] = 1.0
        for h, ratio in harmonics:
            shape[_INDEX[h]] = -ratio
        object.__setattr__(self, "_shape", shape)

    def frequency_at(self, t: int) -> tuple[float, float]:
        """(frequency in Hz, fundamental phase in radians at the start of second ``t``)."""
        f = self.frequency
        # Whole cycles cancel; only the fraction of f0 * t matters for the phase.
        cycles = math.fmod(math.fmod(f, 1.0) * t, 1.0)
        for a, w, p in self._f:
            f += a * math.sin(w * t + p)
            # sum_{k<t} sin(w k + p), closed form (a geometric series of complex exponentials)
            cycles += a * math.sin(p + w * (t - 1) / 2) * math.sin(w * t / 2) / math.sin(w / 2)
        return f, 2 * math.pi * (cycles % 1.0)

    def supply(self, t: int) -> Supply:
        f, phase = self.frequency_at(t)
        vrms = self.voltage * (1.0 + sum(a * math.sin(w * t + p) for a, w, p in self._v))
        # The phasors are RMS values; scale so the whole wave (with harmonics) has RMS vrms.
        fundamental = vrms / math.sqrt(1.0 + sum(r * r for _, r in self.harmonics))
        return Supply(t, f, phase, self._shape * fundamental)


def waveform(phasors: np.ndarray, supply: Supply, sample_rate: int) -> np.ndarray:
    """Samples at ``tau = n / sample_rate``, n < sample_rate, of phasors shaped (..., ORDERS)."""
    basis = _basis(supply.frequency, supply.phase, sample_rate, np.arange(len(ORDERS)))
    coeffs = np.concatenate([phasors.real, -phasors.imag], axis=-1) * math.sqrt(2)
    return coeffs @ basis


def _basis(frequency: float, phase: float, sample_rate: int, index: np.ndarray) -> np.ndarray:
    """Rows cos(h theta), then sin(h theta), for ORDERS[index]; shape (2 * len(index), S).

    Powers of exp(j theta) by repeated multiplication: one cos/sin pass instead of one per order.
    """
    theta = phase + (2 * math.pi * frequency / sample_rate) * np.arange(sample_rate)
    z = np.exp(1j * theta)
    z2 = z * z
    top = int(ORDERS[index[-1]]) if len(index) else 1
    powers = [z]
    while 2 * len(powers) - 1 < top:
        powers.append(powers[-1] * z2)
    rows = np.array([powers[i] for i in index])
    return np.concatenate([rows.real, rows.imag])


# --- loads -------------------------------------------------------------------------------------

class Load(Protocol):
    """Anything that draws current: complex RMS current phasors over ORDERS for second ``t``."""

    def phasors(self, t: int, supply: Supply) -> np.ndarray: ...


def current_waveform(load: Load, t: int, supply: Supply, sample_rate: int) -> np.ndarray:
    """The current samples of second ``t`` (convenience over :meth:`Load.phasors`)."""
    return waveform(load.phasors(t, supply), supply, sample_rate)


class Resistive:
    """A resistance drawing ``watts`` at ``voltage`` (current follows the voltage, PF 1)."""

    def __init__(self, watts: float, voltage: float = NOMINAL_VOLTAGE) -> None:
        self.watts = _number("watts", watts, 0.0, 100_000.0)
        self.conductance = self.watts / _number("voltage", voltage, 0.0, 1000.0, True) ** 2

    def phasors(self, t: int, supply: Supply) -> np.ndarray:
        return supply.voltage * self.conductance

    def __repr__(self) -> str:
        return f"Resistive({self.watts:g})"


class Motor:
    """An induction motor as a fixed R + jX: ``watts`` at ``pf`` lagging at the rated voltage.

    The reactance grows with harmonic order (jhX), so voltage harmonics draw little current.
    """

    def __init__(self, watts: float, pf: float = 0.8, voltage: float = NOMINAL_VOLTAGE) -> None:
        self.watts = _number("watts", watts, 0.0, 100_000.0)
        self.pf = _number("pf", pf, 0.0, 1.0, low_open=True)
        v = _number("voltage", voltage, 0.0, 1000.0, True)
        if self.watts == 0:
            self.admittance = np.zeros(len(ORDERS), dtype=complex)
            return
        z = v * v * self.pf / self.watts          # |Z| = V^2 / S, S = P / pf
        r, x = z * self.pf, z * math.sqrt(1 - self.pf ** 2)
        self.admittance = 1.0 / (r + 1j * ORDERS * x)

    def phasors(self, t: int, supply: Supply) -> np.ndarray:
        return supply.voltage * self.admittance

    def __repr__(self) -> str:
        return f"Motor({self.watts:g}, pf={self.pf:g})"


#: A capacitor-input rectifier without PFC: current pulses at the voltage peaks.
SMPS_HARMONICS = ((3, 0.75), (5, 0.5), (7, 0.25))


class Electronics:
    """Switch-mode electronics: constant ``watts`` whatever the voltage, odd current harmonics.

    ``harmonics`` are current ratios to the fundamental (default 3rd 75 %, 5th 50 %, 7th 25 %:
    distortion power factor about 0.75 even with the fundamental in phase). Each harmonic is
    aligned so the pulses sit on the voltage peaks. ``phase_degrees`` shifts the fundamental
    (positive = leading, as the input filter capacitor makes it).
    """

    def __init__(self, watts: float, harmonics: Any = SMPS_HARMONICS,
                 phase_degrees: float = 0.0) -> None:
        self.watts = _number("watts", watts, 0.0, 100_000.0)
        self.harmonics = _harmonics("harmonics", harmonics, 1.5)
        self.phase_degrees = _number("phase_degrees", phase_degrees, -90.0, 90.0)
        shape = _zero()
        shape[0] = 1.0
        for h, ratio in self.harmonics:
            shape[_INDEX[h]] = ratio
        self.shape = shape * np.exp(1j * ORDERS * math.radians(self.phase_degrees))

    def phasors(self, t: int, supply: Supply) -> np.ndarray:
        if self.watts == 0:
            return _zero()
        # Scale so the active power (all harmonics) is exactly `watts`: a regulated supply.
        unit_power = float(np.sum((supply.voltage * np.conj(self.shape)).real))
        if unit_power <= 0:
            return _zero()
        return self.shape * (self.watts / unit_power)

    def __repr__(self) -> str:
        return f"Electronics({self.watts:g})"


HEATER_STATES = ("off", "step1", "step2")


class Heater:
    """The two-step heater of the reference test: off, step 1 or step 2 by a schedule.

    ``schedule`` lists ``(seconds, state)`` pairs, seconds counted from ``start``; each state
    holds until the next entry (before the first entry: off). With ``cycle`` the schedule
    repeats every ``cycle`` seconds.
    """

    def __init__(self, step1: float = 1000.0, step2: float = 2000.0,
                 schedule: Any = ((0, "off"), (60, "step1"), (120, "step2")),
                 start: int = 0, cycle: int | None = None) -> None:
        self.steps = {"off": None, "step1": Resistive(_number("step1", step1, 0.0, 100_000.0)),
                      "step2": Resistive(_number("step2", step2, 0.0, 100_000.0))}
        self.start = _integer("start", start, -2**62, 2**62)
        self.cycle = None if cycle is None else _integer("cycle", cycle, 1, 2**40)
        try:
            entries = [(e[0], e[1]) for e in schedule]
        except (TypeError, IndexError, KeyError):
            raise ConfigurationError("schedule: a list of [seconds, state] pairs") from None
        if not entries:
            raise ConfigurationError("schedule: empty")
        times, states = [], []
        for i, (when, state) in enumerate(entries):
            when = _integer(f"schedule[{i}][0]", when, 0, 2**62)
            if times and when <= times[-1]:
                raise ConfigurationError(f"schedule[{i}][0]: {when} is not after {times[-1]}")
            if state not in HEATER_STATES:
                raise ConfigurationError(f"schedule[{i}][1]: {state!r} is not one of "
                                         f"{', '.join(HEATER_STATES)}")
            times.append(when)
            states.append(state)
        self.times, self.states = times, states

    def state(self, t: int) -> str:
        offset = t - self.start
        if self.cycle is not None:
            offset %= self.cycle
        i = int(np.searchsorted(self.times, offset, side="right")) - 1
        return "off" if i < 0 else self.states[i]

    def phasors(self, t: int, supply: Supply) -> np.ndarray:
        step = self.steps[self.state(t)]
        return _zero() if step is None else step.phasors(t, supply)

    def __repr__(self) -> str:
        return f"Heater({self.steps['step1'].watts:g}, {self.steps['step2'].watts:g})"


class Fridge:
    """A compressor: a motor (``pf`` lagging) on for ``duty`` of every ``period`` seconds."""

    def __init__(self, watts: float = 150.0, period: int = 2400, duty: float = 0.4,
                 pf: float = 0.8, offset: int = 0) -> None:
        self.motor = Motor(watts, pf)
        self.period = _integer("period", period, 2, 10**7)
        self.duty = _number("duty", duty, 0.0, 1.0)
        self.on_seconds = round(self.period * self.duty)
        self.offset = _integer("offset", offset, -2**62, 2**62)

    def running(self, t: int) -> bool:
        return (t + self.offset) % self.period < self.on_seconds

    def phasors(self, t: int, supply: Supply) -> np.ndarray:
        return self.motor.phasors(t, supply) if self.running(t) else _zero()

    def __repr__(self) -> str:
        return f"Fridge({self.motor.watts:g}, period={self.period}, duty={self.duty:g})"


class Sum:
    """Loads in parallel: their currents add."""

    def __init__(self, loads: Sequence[Load]) -> None:
        self.loads = tuple(loads)

    def phasors(self, t: int, supply: Supply) -> np.ndarray:
        total = _zero()
        for load in self.loads:
            total += load.phasors(t, supply)
        return total

    def __repr__(self) -> str:
        return f"Sum({list(self.loads)!r})"


class Household:
    """A home's day: night base load, a cycling fridge, morning and evening peaks, cooking.

    Always on: 40 W of standby electronics, 20 W resistive, a 150 W fridge (PF 0.8) cycling
    40 % of 40 min. By the time of day (``(t + utc_offset) % 86400``), each day with its own
    seeded jitter of the start times (so days differ but a day is repeatable): lights
    06:30-08:00 and 18:00-23:00, a 2 kW kettle in the morning and afternoon, a 1.5 kW hob at
    lunch, a two-step oven (a :class:`Heater`: 20 min at 1 kW, then 2 kW) at dinner, TV and
    computer (SMPS) in the evening, a washing machine (motor, PF 0.75) on some days. A day
    uses 5 to 7.5 kWh.
    """

    #: (name, start hh:mm, minutes, jitter minutes, probability, load factory); an event's load
    #: is called with the seconds since the event started.
    EVENTS: tuple[tuple[str, str, int, int, float, Callable[[], Load]], ...] = (
        ("lights-morning", "06:30", 90, 20, 1.0, lambda: Resistive(120)),
        ("kettle-morning", "07:00", 4, 20, 0.9, lambda: Resistive(2000)),
        ("toaster", "07:10", 3, 15, 0.5, lambda: Resistive(900)),
        ("washing", "10:00", 60, 60, 0.4, lambda: Motor(500, pf=0.75)),
        ("hob-lunch", "12:00", 25, 30, 0.6, lambda: Resistive(1500)),
        ("kettle-afternoon", "16:00", 4, 60, 0.7, lambda: Resistive(2000)),
        ("lights-evening", "18:00", 300, 30, 1.0, lambda: Resistive(180)),
        ("oven", "18:30", 45, 20, 0.9,
         lambda: Heater(1000, 2000, ((0, "step1"), (1200, "step2")))),
        ("tv", "19:00", 240, 30, 1.0, lambda: Electronics(120)),
        ("computer", "20:00", 120, 60, 0.6, lambda: Electronics(80, phase_degrees=10)),
    )

    def __init__(self, seed: int = 0, utc_offset: int = 0) -> None:
        self.seed = _integer("seed", seed, 0, 2**63)
        self.utc_offset = _integer("utc_offset", utc_offset, -DAY, DAY)
        self.base = Sum([Electronics(40), Resistive(20)])
        rng = np.random.default_rng((self.seed, 0))
        self.fridge = Fridge(150, 2400, 0.4, 0.8, int(rng.integers(0, 2400)))
        self._loads = {name: make() for name, *_, make in self.EVENTS}
        self._days: dict[int, list[tuple[int, int, str]]] = {}

    def day(self, day: int) -> list[tuple[int, int, str]]:
        """(start, end, event name) in seconds of the day, for day number ``day``."""
        if day not in self._days:
            events = household_day(self.seed, day)
            if len(self._days) > 4:      # a bounded cache: the meter walks forward in time
                self._days.clear()
            self._days[day] = events
        return self._days[day]

    def active(self, t: int) -> list[str]:
        """Names of the scheduled events running at second ``t``."""
        local = t + self.utc_offset
        second = local % DAY
        return [name for start, end, name in self.day(local // DAY) if start <= second < end]

    def phasors(self, t: int, supply: Supply) -> np.ndarray:
        total = self.base.phasors(t, supply) + self.fridge.phasors(t, supply)
        local = t + self.utc_offset
        second = local % DAY
        for start, end, name in self.day(local // DAY):
            if start <= second < end:
                # event loads see the time since the event started (the oven's steps)
                total += self._loads[name].phasors(second - start, supply)
        return total

    def __repr__(self) -> str:
        return f"Household(seed={self.seed})"


def household_day(seed: int, day: int) -> list[tuple[int, int, str]]:
    """The scheduled events of :class:`Household` ``seed`` on day ``day``: (start, end, name)
    in seconds of the day. A pure function of its arguments (the fleet draws every meter's day
    with it, without building a Household per meter)."""
    rng = np.random.default_rng((seed, 1, day))
    events = []
    for name, hhmm, minutes, jitter, probability, _ in Household.EVENTS:
        shift = int(rng.integers(-jitter * 60, jitter * 60 + 1))
        happens = rng.random() < probability
        if not happens:
            continue
        hours, mins = map(int, hhmm.split(":"))
        start = min(max(hours * 3600 + mins * 60 + shift, 0), DAY - 1)
        events.append((start, min(start + minutes * 60, DAY), name))
    return events


# --- configuration -----------------------------------------------------------------------------

def _build(cls: Callable[..., Load], fields: Sequence[str], required: Sequence[str] = ()
           ) -> Callable[[dict[str, Any]], Load]:
    def make(config: dict[str, Any]) -> Load:
        unknown = sorted(set(config) - set(fields) - {"type"})
        if unknown:
            raise ConfigurationError(f"load.{unknown[0]}: not a field of a "
                                     f"{config['type']} load (fields: {', '.join(fields)})")
        for name in required:
            if name not in config:
                raise ConfigurationError(f"load.{name}: required for a {config['type']} load")
        return cls(**{k: v for k, v in config.items() if k != "type"})
    return make


def _sum(config: dict[str, Any]) -> Load:
    unknown = sorted(set(config) - {"type", "loads"})
    if unknown:
        raise ConfigurationError(f"load.{unknown[0]}: not a field of a sum load (fields: loads)")
    items = config.get("loads")
    if not isinstance(items, list) or not items:
        raise ConfigurationError("load.loads: a non-empty list of load tables")
    loads = []
    for i, item in enumerate(items):
        try:
            loads.append(load_from_config(item))
        except ConfigurationError as exc:
            # "load.watts: ..." -> "load.loads[0].watts: ...", "load: ..." -> "load.loads[0]: ..."
            raise ConfigurationError(f"load.loads[{i}]{str(exc).removeprefix('load')}") \
                from None
    return Sum(loads)


#: Load types a profile may name, and the fields each accepts.
LOADS: dict[str, Callable[[dict[str, Any]], Load]] = {
    "resistive": _build(Resistive, ("watts",), ("watts",)),
    "heater": _build(Heater, ("step1", "step2", "schedule", "start", "cycle")),
    "motor": _build(Motor, ("watts", "pf"), ("watts",)),
    "electronics": _build(Electronics, ("watts", "harmonics", "phase_degrees"), ("watts",)),
    "fridge": _build(Fridge, ("watts", "period", "duty", "pf", "offset")),
    "household": _build(Household, ("seed", "utc_offset")),
    "sum": _sum,
}


def load_from_config(config: Any) -> Load:
    """A load from a profile table, e.g. ``{"type": "household", "seed": 1}``.

    Raises :class:`ConfigurationError` naming the field (``load.type``, ``load.step1``, ...).
    """
    if not isinstance(config, Mapping):
        raise ConfigurationError("load: a table with a `type`")
    config = dict(config)
    kind = config.get("type")
    if kind not in LOADS:
        raise ConfigurationError(f"load.type: {kind!r} is not one of {', '.join(LOADS)}")
    try:
        return LOADS[kind](config)
    except ConfigurationError as exc:
        message = str(exc)
        raise ConfigurationError(message if message.startswith("load") else f"load.{message}") \
            from None
