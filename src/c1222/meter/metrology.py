"""The meter's measuring front end: simulated analog channels, ADC and the per-second DSP.

The meter never sees the true waveforms of :mod:`c1222.meter.loads`. Each simulated second the
voltage and current are scaled by the analog front end, biased to mid-scale, given Gaussian
noise, quantised and clipped by the ADC (:meth:`FrontEnd.quantise`); the DSP then works from
the integer codes alone (:func:`measure_batch`). The same code path serves one meter
(:class:`Metrology`) and hundreds (:class:`MeterBank`, arrays shaped (meters, samples)).
Nothing here reads a clock or global randomness: second ``t`` is an input and the noise of
second ``t`` comes from ``numpy.random.default_rng((seed, t))``, so a run is repeatable and a
simulated second costs the same at any ``--speed``.

DSP, per second and per meter
-----------------------------
- DC removal: the mean of the second's codes is subtracted. The bias is static, so this block
  mean is a high-pass with a 1 Hz corner; the partial cycle at the window edge puts at most
  0.4 % of the RMS into that mean, which changes the RMS by under 1e-5.
- RMS: sqrt(mean(x^2) - noise^2). The noise variance (analog noise + LSB^2/12) is a known
  property of the front end, subtracted as an ADE775x-style RMS offset calibration; without
  it a 10-bit meter would read small currents high.
- Active power: mean(v * i). Apparent: Vrms * Irms. Power factor: P / S.
- Reactive power: fundamental reactive power Q1 = V1 I1 sin(phi1) (IEEE 1459), positive when
  the current lags (inductive). V1 and I1 come from a Hann-windowed DFT at the line frequency
  (more than 0.25 Hz off: at the measured frequency, on a 0.1 Hz grid); both see the same
  window response at the actual frequency, so the phase is exact and the magnitude is
  corrected by the window's |W(df)|^2 for the measured offset. For distorted waves S^2 >
  P^2 + Q1^2: the rest is distortion power, which lowers the power factor, not Q.
- Frequency: rising crossings of a level at 25 % of the peak (steep part of the wave, above the
  noise), linearly interpolated between samples. Noise can make the wave cross the level
  several times: a crossing counts only if the wave was negative a quarter cycle before, and
  of a burst of crossings within half a cycle only the first. f = (crossings - 1) / span.
- Anti-creep: below ``FrontEnd.start_current`` the current and powers read 0 and no energy is
  registered (IEC 62053-21 "no-load condition"), so noise never creeps into the registers.
- Over-range: a sample at code 0 or 2^bits - 1 sets ``voltage_clipped`` / ``current_clipped``.

Energy registers accumulate whole millijoules as integers plus the exact float remainder, so a
simulated day (or year) of additions has no drift.

Not modelled: gain and phase errors of real components (CT phase shift, divider tolerance).
The calibration is the exact inverse of the nominal scaling, so the errors measured against
the exact integrals are those of sampling, quantisation, noise and the DSP itself.

Public API
----------
``FrontEnd(...)``                              settings of the analog front end and ADC
``FrontEnd.reference_10bit()``                 the reference design (10-bit SAR, 4.8 kHz)
``FrontEnd.sigma_delta_16bit()``               the 16-bit sigma-delta profile (4 kHz)
``FrontEnd.named(name)``                       "reference" or "sigma-delta" (profile key)
``FrontEnd.quantise(volts, amps, rng) -> (v_codes, i_codes)``   analog -> ADC codes
``FrontEnd.calibrate(v_codes, i_codes) -> (volts, amps)``       codes -> instantaneous values
``Measurement``                                one meter-second (frozen)
``BatchMeasurement``                           the same, as arrays over N meters; ``.row(i)``
``measure_batch(front_end, v_codes, i_codes, time) -> BatchMeasurement``   the DSP alone
``EnergyRegisters``                            Wh/VAh/varh registers, ``to_dict()/from_dict()``
``MeterBank(loads, front_end, mains, seed, chunk)``
                                               N simulated meters: ``measure_second(t)``,
                                               ``simulate(t)`` (the truth), ``codes(t)``,
                                               ``registers(k)``, ``restore(k, registers)``
``Metrology(load, front_end, mains, seed, registers)``
                                               one simulated meter: ``measure_second(t)``,
                                               ``simulate(t)``, ``codes(t)``, ``registers``
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np

from c1222.errors import ConfigurationError
from c1222.meter.loads import ORDERS, Load, Mains, Supply, _basis

NOMINAL_PEAK = 220.0 * math.sqrt(2)      # 311 V
MAX_CURRENT = 100.0                      # A RMS, the meter's Imax
CT_VOLTS_PER_AMP = 0.055                 # the reference CT with its burden: 100 A -> 5.5 V RMS


@dataclass(frozen=True)
class FrontEnd:
    """Analog front end and ADC settings. Codes are offset binary, 0 .. 2^adc_bits - 1.

    ``full_scale``: ADC input span (V); ``voltage_gain``: volts at the ADC per mains volt;
    ``current_gain``: volts at the ADC per ampere; ``*_bias``: DC level at the ADC input (V),
    mid-scale by design; ``noise_rms``: analog + converter noise at each ADC input (V RMS);
    ``line_frequency``: the mains the meter is built for (Hz); ``start_current``: the no-load
    threshold (A RMS). Bad settings raise :class:`ConfigurationError` naming the field.
    """

    name: str = "custom"
    adc_bits: int = 10
    sample_rate: int = 4800
    full_scale: float = 5.0
    voltage_gain: float = 2.0 / NOMINAL_PEAK
    current_gain: float = 2.5 / 160.0
    voltage_bias: float = 2.5
    current_bias: float = 2.5
    noise_rms: float = 2.5e-3
    line_frequency: float = 60.0
    start_current: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigurationError(f"name: {self.name!r} is not a string")
        _int("adc_bits", self.adc_bits, 8, 24)
        _num("line_frequency", self.line_frequency, 40.0, 70.0)
        # 32 samples per cycle keeps the 15th harmonic under Nyquist; 200 kHz bounds memory.
        low = math.ceil(32 * self.line_frequency)
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate,
                                                                (int, np.integer)):
            raise ConfigurationError(f"sample_rate: {self.sample_rate!r} is not an integer (Hz)")
        if not low <= self.sample_rate <= 200_000:
            raise ConfigurationError(f"sample_rate: {self.sample_rate} Hz is not in [{low}, "
                                     f"200000] (at least 32 samples per "
                                     f"{self.line_frequency:g} Hz cycle)")
        _num("full_scale", self.full_scale, 0.0, 100.0, low_open=True)
        _num("voltage_gain", self.voltage_gain, 0.0, 1.0, low_open=True)
        _num("current_gain", self.current_gain, 0.0, 10.0, low_open=True)
        _num("voltage_bias", self.voltage_bias, 0.0, self.full_scale)
        _num("current_bias", self.current_bias, 0.0, self.full_scale)
        _num("noise_rms", self.noise_rms, 0.0, self.full_scale)
        _num("start_current", self.start_current, 0.0, 1000.0)

    # --- the two profiles ---

    @classmethod
    def reference_10bit(cls) -> FrontEnd:
        """The reference design: 10-bit SAR ADC, 0-5 V, 4,800 Hz (80 samples per 60 Hz cycle).

        Voltage: a 220:12 V transformer (17 V peak) and a divider of 0.118 put the nominal
        311 V peak at +/-2.0 V around the 2.5 V bias: 4 V of the 5 V p-p span, so the channel
        clips only above 389 V peak (275 V RMS, +25 %) and a 10 % overvoltage is measured.
        LSB = 0.76 V of mains. Current: the CT and burden give 55 mV/A (100 A -> 5.5 V RMS,
        7.8 V peak); a 0.284 divider makes it 15.6 mV/A, so +/-2.5 V = +/-160 A peak and
        Imax 100 A RMS (141 A peak) uses 88 % of the half-span. LSB = 0.31 A; noise of 2.5 mV
        (half an LSB) dithers the quantiser, and the start current is 0.1 A.
        """
        return cls(name="reference", adc_bits=10, sample_rate=4800, full_scale=5.0,
                   voltage_gain=(12 / 220) * (2.0 / (12 * math.sqrt(2))),
                   current_gain=CT_VOLTS_PER_AMP * (2.5 / 160.0 / CT_VOLTS_PER_AMP),
                   voltage_bias=2.5, current_bias=2.5, noise_rms=2.5e-3,
                   line_frequency=60.0, start_current=0.1)

    @classmethod
    def sigma_delta_16bit(cls) -> FrontEnd:
        """A metering sigma-delta converter: 16 bits, +/-0.5 V differential, 4,000 Hz output.

        Modelled as offset binary over a 1 V span with the bias at mid-scale. Voltage: a
        resistive divider puts 311 V peak at +/-0.4 V (the same 25 % headroom). Current: the
        55 mV/A CT through a 0.057 divider, 3.125 mV/A: +/-0.5 V = +/-160 A peak. LSB =
        4.9 mA; noise 30 uV (2 LSB); start current 0.02 A (0.004 Ib for Ib = 5 A).
        """
        return cls(name="sigma-delta", adc_bits=16, sample_rate=4000, full_scale=1.0,
                   voltage_gain=0.4 / NOMINAL_PEAK, current_gain=0.5 / 160.0,
                   voltage_bias=0.5, current_bias=0.5, noise_rms=30e-6,
                   line_frequency=60.0, start_current=0.02)

    @classmethod
    def named(cls, name: str) -> FrontEnd:
        """The profile key of a meter profile (``front_end = "reference"``) -> settings."""
        presets = {"reference": cls.reference_10bit, "sigma-delta": cls.sigma_delta_16bit}
        if name not in presets:
            raise ConfigurationError(f"front_end: {name!r} is not one of {', '.join(presets)}")
        return presets[name]()

    # --- derived figures ---

    @property
    def lsb(self) -> float:
        """One code step at the ADC input (V)."""
        return self.full_scale / (1 << self.adc_bits)

    @property
    def max_code(self) -> int:
        return (1 << self.adc_bits) - 1

    @property
    def volts_per_code(self) -> float:
        return self.lsb / self.voltage_gain

    @property
    def amps_per_code(self) -> float:
        return self.lsb / self.current_gain

    @property
    def voltage_range(self) -> float:
        """RMS of the largest sine the voltage channel takes without clipping (V)."""
        room = min(self.voltage_bias, self.full_scale - self.lsb - self.voltage_bias)
        return room / self.voltage_gain / math.sqrt(2)

    @property
    def current_range(self) -> float:
        """RMS of the largest sine the current channel takes without clipping (A)."""
        room = min(self.current_bias, self.full_scale - self.lsb - self.current_bias)
        return room / self.current_gain / math.sqrt(2)

    @property
    def noise_codes(self) -> float:
        """RMS error of one sample in codes: analog noise plus uniform quantisation."""
        return math.sqrt((self.noise_rms / self.lsb) ** 2 + 1 / 12)

    # --- the converter and its calibration ---

    def quantise(self, volts: Any, amps: Any, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Mains volts and line amps (any shape) -> ADC codes (int32), with noise from ``rng``.

        ``rng=None`` means a noiseless converter (still quantised and clipped).
        """
        v = np.asarray(volts, dtype=float)
        i = np.asarray(amps, dtype=float)
        noise = (None, None) if rng is None else self._noise(
            rng, (2, *np.broadcast_shapes(v.shape, i.shape)))
        vc = self._adc(v, self.voltage_gain, self.voltage_bias, noise[0])
        ic = self._adc(i, self.current_gain, self.current_bias, noise[1])
        return (vc.astype(np.int32).reshape(v.shape), ic.astype(np.int32).reshape(i.shape))

    def _noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Gaussian noise in codes: ``noise_rms`` volts at the ADC input, per sample."""
        return _gaussian_table(self.noise_rms / self.lsb)[
            rng.integers(0, 1 << 16, shape, dtype=np.uint16)]

    def _adc(self, x: np.ndarray, gain: float, bias: float, noise: np.ndarray | None
             ) -> np.ndarray:
        """Codes as float64 holding integers (the meter's DSP takes them as they are)."""
        codes = np.array(x * (gain / self.lsb), ndmin=1)
        codes += bias / self.lsb
        if noise is not None:
            codes += noise
        np.rint(codes, out=codes)
        return np.clip(codes, 0, self.max_code, out=codes)

    def calibrate(self, v_codes: Any, i_codes: Any) -> tuple[np.ndarray, np.ndarray]:
        """ADC codes -> instantaneous mains volts and line amps (the inverse of the scaling)."""
        v = (np.asarray(v_codes, dtype=float) - self.voltage_bias / self.lsb) * self.volts_per_code
        i = (np.asarray(i_codes, dtype=float) - self.current_bias / self.lsb) * self.amps_per_code
        return v, i


@lru_cache(maxsize=8)
def _gaussian_table(sigma: float) -> np.ndarray:
    """Inverse-transform sampling: the normal quantiles at (k + 1/2) / 2^16, times ``sigma``.

    Indexing it with uniform 16-bit integers draws Gaussian noise (tails cut at 4.3 sigma)
    three times faster than ``Generator.standard_normal``, which dominated a meter-second.
    """
    normal = NormalDist(0.0, sigma) if sigma > 0 else None
    if normal is None:
        return np.zeros(1 << 16)
    return np.array([normal.inv_cdf((k + 0.5) / (1 << 16)) for k in range(1 << 16)])


def _num(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"{name}: {value!r} is not a number")
    x = float(value)
    if not math.isfinite(x) or x < low or x > high or (low_open and x <= low):
        raise ConfigurationError(f"{name}: {value!r} is not in "
                                 f"{'(' if low_open else '['}{low:g}, {high:g}]")
    return x


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigurationError(f"{name}: {value!r} is not an integer")
    if not low <= value <= high:
        raise ConfigurationError(f"{name}: {value} is not in [{low}, {high}]")
    return int(value)


# --- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """One second of one meter. Powers are averages over the second (W, VA, var)."""

    time: int
    voltage_rms: float
    current_rms: float
    active_power: float
    apparent_power: float
    reactive_power: float
    power_factor: float
    frequency: float
    voltage_clipped: bool = False
    current_clipped: bool = False

    @property
    def clipped(self) -> bool:
        """A channel hit the ADC rail: the figures of this second are not trustworthy."""
        return self.voltage_clipped or self.current_clipped


_FIELDS = tuple(f.name for f in fields(Measurement))


@dataclass(frozen=True, eq=False)
class BatchMeasurement:
    """One second of N meters: each field of :class:`Measurement` as an array of length N."""

    time: int
    voltage_rms: np.ndarray
    current_rms: np.ndarray
    active_power: np.ndarray
    apparent_power: np.ndarray
    reactive_power: np.ndarray
    power_factor: np.ndarray
    frequency: np.ndarray
    voltage_clipped: np.ndarray
    current_clipped: np.ndarray

    def __len__(self) -> int:
        return len(self.voltage_rms)

    def row(self, i: int) -> Measurement:
        values = [getattr(self, name)[i].item() for name in _FIELDS[1:]]
        return Measurement(self.time, *values)


@lru_cache(maxsize=16)
def _dft_basis(sample_rate: int, frequency: float) -> np.ndarray:
    """(S, 2): Hann-windowed cos and sin at ``frequency``; periodic Hann, sum = S / 2."""
    n = np.arange(sample_rate)
    window = 0.5 - 0.5 * np.cos(2 * math.pi * n / sample_rate)
    angle = 2 * math.pi * frequency * n / sample_rate
    return np.ascontiguousarray(np.stack([window * np.cos(angle), window * np.sin(angle)], 1))


def _hann_gain(df: np.ndarray) -> np.ndarray:
    """|W(df)| / |W(0)| of a 1 s Hann window, df in Hz: sinc(df) / (1 - df^2)."""
    return np.sinc(df) / (1 - df * df)


def measure_batch(front_end: FrontEnd, v_codes: Any, i_codes: Any, time: int = 0
                  ) -> BatchMeasurement:
    """The DSP of one second for N meters: codes shaped (N, sample_rate) -> measurements.

    Works from the codes only (see the module docstring for each step). Float arrays holding
    integer codes are taken as they are, which saves the bank a conversion.
    """
    fe = front_end
    v = np.array(v_codes, dtype=float, ndmin=2)      # a copy: DC removal works in place
    i = np.array(i_codes, dtype=float, ndmin=2)
    if v.shape != i.shape or v.ndim != 2 or v.shape[1] != fe.sample_rate:
        raise ValueError(f"codes must be shaped (N, {fe.sample_rate}); got {v.shape} and "
                         f"{i.shape}")
    n, s = v.shape
    v_clip = (v.min(axis=1) <= 0) | (v.max(axis=1) >= fe.max_code)
    i_clip = (i.min(axis=1) <= 0) | (i.max(axis=1) >= fe.max_code)
    v -= v.mean(axis=1, keepdims=True)
    i -= i.mean(axis=1, keepdims=True)

    kv, ki = fe.volts_per_code, fe.amps_per_code
    noise = fe.noise_codes ** 2
    msv = np.einsum("ij,ij->i", v, v) / s            # codes^2
    msi = np.einsum("ij,ij->i", i, i) / s
    vrms = np.sqrt(np.maximum(msv - noise, 0.0)) * kv
    irms = np.sqrt(np.maximum(msi - noise, 0.0)) * ki
    p = np.einsum("ij,ij->i", v, i) * (kv * ki / s)

    freq = _frequency(v, np.sqrt(2 * msv), math.sqrt(noise), fe.sample_rate, fe.line_frequency)

    basis = _dft_basis(s, fe.line_frequency)
    dv, di = v @ basis, i @ basis
    df = freq - fe.line_frequency
    far = np.flatnonzero((freq > 0) & (np.abs(df) > 0.25))
    for row in far:
        # Off-nominal mains: DFT near the actual f, on a 0.1 Hz grid so that meters on one
        # grid share a cached basis; the window correction covers the rest (<= 0.05 Hz).
        f_dft = round(float(freq[row]), 1)
        b = _dft_basis(s, f_dft)
        dv[row], di[row] = v[row] @ b, i[row] @ b
        df[row] = freq[row] - f_dft
    df[freq <= 0] = 0.0
    v1 = dv[:, 0] - 1j * dv[:, 1]
    i1 = di[:, 0] - 1j * di[:, 1]
    # phasor (RMS) = sqrt(2) * DFT / (S/2); both channels share |W(df)|, divided out here.
    scale = 2 * (2 / s) ** 2 * kv * ki / _hann_gain(df) ** 2
    q = (v1 * np.conj(i1)).imag * scale

    sva = vrms * irms
    idle = irms < fe.start_current
    irms[idle] = 0.0
    p[idle] = q[idle] = sva[idle] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        pf = np.where(sva > 0, np.clip(p / sva, -1.0, 1.0), 1.0)
    return BatchMeasurement(time, vrms, irms, p, sva, q, pf, freq, v_clip, i_clip)


def _frequency(v: np.ndarray, peak: np.ndarray, noise: float, sample_rate: int,
               nominal: float) -> np.ndarray:
    """Hz per row from interpolated rising crossings of 0.25 * peak (0.0 when no signal)."""
    level = (0.25 * peak)[:, None]
    rising = (v[:, :-1] <= level) & (v[:, 1:] > level)
    rows, cols = np.nonzero(rising)
    # A true rising edge has the wave well below zero a quarter cycle before (or above zero
    # a quarter cycle after, at the start of the window); noise on the falling edge does not.
    quarter = round(sample_rate / nominal / 4)
    back = cols >= quarter
    before = v[rows, np.where(back, cols - quarter, 0)]
    after = v[rows, np.minimum(cols + quarter, v.shape[1] - 1)]
    true_edge = np.where(back, before < 0, after > 0)
    rows, cols = rows[true_edge], cols[true_edge]
    a, b = v[rows, cols], v[rows, cols + 1]
    when = cols + (level[rows, 0] - a) / (b - a)     # in samples
    if len(rows) > 1:                                # noise chatter: keep a burst's first
        keep = np.ones(len(rows), dtype=bool)
        keep[1:] = (rows[1:] != rows[:-1]) | (np.diff(when) > 0.5 * sample_rate / nominal)
        rows, when = rows[keep], when[keep]
    count = np.bincount(rows, minlength=len(v))
    last = np.cumsum(count) - 1
    first = last - count + 1
    ok = (count >= 2) & (peak > 10 * noise)
    freq = np.zeros(len(v))
    span = when[last[ok]] - when[first[ok]]
    freq[ok] = (count[ok] - 1) * sample_rate / span
    return freq


# --- energy registers ---------------------------------------------------------------------------

REGISTERS = ("wh_delivered", "wh_received", "vah", "varh_lagging", "varh_leading")
_MJ_PER_WH = 3_600_000


def _split(powers: tuple[float, float, float], seconds: float) -> tuple[float, ...]:
    """(P, S, Q) over ``seconds`` -> joules per register, in REGISTERS order."""
    p, s, q = powers
    return (max(p, 0.0) * seconds, max(-p, 0.0) * seconds, s * seconds,
            max(q, 0.0) * seconds, max(-q, 0.0) * seconds)


class EnergyRegisters:
    """Wh delivered/received, VAh, varh lagging (inductive) and leading (capacitive).

    Each register is an integer count of millijoules plus the float remainder below one
    millijoule, so additions never lose the small change a float running total would drop
    (no drift over days). Read as Wh (``wh_delivered``, ...) or exactly (``millijoules``).
    """

    def __init__(self) -> None:
        self._mj = dict.fromkeys(REGISTERS, 0)
        self._rest = dict.fromkeys(REGISTERS, 0.0)

    def add(self, m: Measurement, seconds: float = 1.0) -> None:
        """Accumulate one measurement held for ``seconds``."""
        self.add_joules(_split((m.active_power, m.apparent_power, m.reactive_power), seconds))

    def add_joules(self, joules: Sequence[float]) -> None:
        for name, e in zip(REGISTERS, joules):
            x = e * 1000.0 + self._rest[name]
            whole = math.floor(x)
            self._mj[name] += whole
            self._rest[name] = x - whole

    def millijoules(self, name: str) -> int:
        return self._mj[name]

    def wh(self, name: str) -> float:
        return (self._mj[name] + self._rest[name]) / _MJ_PER_WH

    wh_delivered = property(lambda self: self.wh("wh_delivered"))
    wh_received = property(lambda self: self.wh("wh_received"))
    vah = property(lambda self: self.wh("vah"))
    varh_lagging = property(lambda self: self.wh("varh_lagging"))
    varh_leading = property(lambda self: self.wh("varh_leading"))

    @property
    def varh(self) -> float:
        """Net reactive energy, lagging minus leading (varh)."""
        return self.varh_lagging - self.varh_leading

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: Wh per register for people, and the exact [mJ, remainder] pairs."""
        return {**{name: self.wh(name) for name in REGISTERS},
                "exact_mj": {name: [self._mj[name], self._rest[name]] for name in REGISTERS}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyRegisters:
        """Inverse of :meth:`to_dict`; a dict with only Wh values is accepted too."""
        regs = cls()
        if not isinstance(data, Mapping):
            raise ConfigurationError("registers: a table of register values")
        exact = data.get("exact_mj")
        for name in REGISTERS:
            if isinstance(exact, Mapping) and name in exact:
                pair = exact[name]
                if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                        or isinstance(pair[0], bool) or not isinstance(pair[0], int)):
                    raise ConfigurationError(f"registers.exact_mj.{name}: [millijoules, rest]")
                mj, rest = pair[0], _num(f"registers.exact_mj.{name}", pair[1], 0.0, 1.0)
            else:
                wh = _num(f"registers.{name}", data.get(name, 0.0), 0.0, 1e15)
                x = wh * _MJ_PER_WH
                mj = math.floor(x)
                rest = x - mj
            if mj < 0:
                raise ConfigurationError(f"registers.{name}: negative")
            regs._mj[name], regs._rest[name] = mj, rest
        return regs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnergyRegisters):
            return NotImplemented
        return self._mj == other._mj and self._rest == other._rest

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={self.wh(name):.6f}" for name in REGISTERS)
        return f"EnergyRegisters({inner})"


# --- simulated meters ----------------------------------------------------------------------------

class MeterBank:
    """N simulated meters measured together, one second per call.

    ``loads[k]`` hangs behind meter k; ``mains`` is one :class:`Mains` for all or one per
    meter. Meters that share a grid (same frequency and phase) share the time base, so the
    true waveforms of a whole group are one matrix product. The noise of second ``t`` comes
    from ``default_rng((seed, t))``, drawn meter by meter: results are a pure function of the
    inputs, and meter 0 of a bank reads what a :class:`Metrology` with the same seed reads.
    Rows are processed ``chunk`` meters at a time to keep the working set in cache.
    """

    def __init__(self, loads: Sequence[Load], front_end: FrontEnd | None = None,
                 mains: Mains | Sequence[Mains] | None = None, seed: int = 0,
                 chunk: int = 32) -> None:
        self.loads = list(loads)
        if not self.loads:
            raise ConfigurationError("loads: a bank needs at least one meter")
        self.front_end = front_end or FrontEnd.reference_10bit()
        mains = Mains() if mains is None else mains
        self.mains = [mains] * len(self.loads) if isinstance(mains, Mains) else list(mains)
        if len(self.mains) != len(self.loads):
            raise ConfigurationError(f"mains: {len(self.mains)} supplies for "
                                     f"{len(self.loads)} loads")
        self.seed = _int("seed", seed, 0, 2**63)
        self.chunk = _int("chunk", chunk, 1, 1 << 20)
        self._mj = np.zeros((len(self.loads), len(REGISTERS)), dtype=np.int64)
        self._rest = np.zeros((len(self.loads), len(REGISTERS)))

    def __len__(self) -> int:
        return len(self.loads)

    def simulate(self, t: int) -> tuple[list[Supply], np.ndarray]:
        """The truth of second ``t``: each meter's supply and current phasors (N, ORDERS)."""
        t = _second(t)
        cache: dict[int, Supply] = {}
        supplies = []
        for m in self.mains:
            if id(m) not in cache:
                cache[id(m)] = m.supply(t)
            supplies.append(cache[id(m)])
        currents = np.array([load.phasors(t, s) for load, s in zip(self.loads, supplies)],
                            dtype=complex).reshape(len(self.loads), len(ORDERS))
        return supplies, currents

    def codes(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The ADC codes of second ``t`` (N, sample_rate) as float arrays of integers."""
        supplies, currents = self.simulate(t)
        rng = np.random.default_rng((self.seed, t))
        parts = [self._codes(t, supplies, currents, slice(start, start + self.chunk), rng)
                 for start in range(0, len(self), self.chunk)]
        return (np.concatenate([vc for vc, _ in parts]), np.concatenate([ic for _, ic in parts]))

    def _codes(self, t: int, supplies: list[Supply], currents: np.ndarray, rows: slice,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        fe = self.front_end
        sub = supplies[rows]
        volts = np.array([s.voltage for s in sub])
        amps = currents[rows]
        active = np.flatnonzero(np.any(volts != 0, axis=0) | np.any(amps != 0, axis=0))
        n, size = len(sub), fe.sample_rate
        v_true = np.empty((n, size))
        i_true = np.empty((n, size))
        groups: dict[tuple[float, float], list[int]] = {}
        for k, s in enumerate(sub):
            groups.setdefault((s.frequency, s.phase), []).append(k)
        for (f, phase), members in groups.items():
            basis = _basis(f, phase, size, active) if len(active) else np.zeros((0, size))
            for source, target in ((volts, v_true), (amps, i_true)):
                c = source[members][:, active]
                coeffs = np.concatenate([c.real, -c.imag], axis=1) * math.sqrt(2)
                target[members] = coeffs @ basis
        # Meter-major order: each meter gets the same draws whatever the chunking.
        noise = fe._noise(rng, (n, 2, size))
        return (fe._adc(v_true, fe.voltage_gain, fe.voltage_bias, noise[:, 0]),
                fe._adc(i_true, fe.current_gain, fe.current_bias, noise[:, 1]))

    def measure_second(self, t: int) -> BatchMeasurement:
        """Simulate and measure second ``t`` for every meter, and add it to the registers."""
        t = _second(t)
        supplies, currents = self.simulate(t)
        rng = np.random.default_rng((self.seed, t))
        parts = []
        for start in range(0, len(self), self.chunk):
            rows = slice(start, start + self.chunk)
            vc, ic = self._codes(t, supplies, currents, rows, rng)
            parts.append(measure_batch(self.front_end, vc, ic, t))
        batch = BatchMeasurement(t, *(np.concatenate([getattr(p, name) for p in parts])
                                      for name in _FIELDS[1:]))
        self._accumulate(batch)
        return batch

    def _accumulate(self, b: BatchMeasurement, seconds: float = 1.0) -> None:
        p, s, q = b.active_power, b.apparent_power, b.reactive_power
        joules = np.stack([np.maximum(p, 0), np.maximum(-p, 0), s,
                           np.maximum(q, 0), np.maximum(-q, 0)], axis=1) * seconds
        x = joules * 1000.0 + self._rest
        whole = np.floor(x)
        self._mj += whole.astype(np.int64)
        self._rest = x - whole

    def registers(self, k: int) -> EnergyRegisters:
        """A snapshot of meter k's registers."""
        regs = EnergyRegisters()
        for j, name in enumerate(REGISTERS):
            regs._mj[name] = int(self._mj[k, j])
            regs._rest[name] = float(self._rest[k, j])
        return regs

    def restore(self, k: int, registers: EnergyRegisters) -> None:
        """Set meter k's registers (after a restart, from the persisted state)."""
        for j, name in enumerate(REGISTERS):
            self._mj[k, j] = registers._mj[name]
            self._rest[k, j] = registers._rest[name]


class Metrology:
    """One simulated meter: ``measure_second(t)`` simulates, measures and registers second t."""

    def __init__(self, load: Load, front_end: FrontEnd | None = None,
                 mains: Mains | None = None, seed: int = 0,
                 registers: EnergyRegisters | None = None) -> None:
        self._bank = MeterBank([load], front_end, mains, seed)
        if registers is not None:
            self._bank.restore(0, registers)

    front_end = property(lambda self: self._bank.front_end)
    load = property(lambda self: self._bank.loads[0])
    mains = property(lambda self: self._bank.mains[0])

    @property
    def registers(self) -> EnergyRegisters:
        return self._bank.registers(0)

    @registers.setter
    def registers(self, value: EnergyRegisters) -> None:
        self._bank.restore(0, value)

    def simulate(self, t: int) -> tuple[Supply, np.ndarray]:
        """The truth of second ``t``: supply and current phasors (what the meter must find)."""
        supplies, currents = self._bank.simulate(t)
        return supplies[0], currents[0]

    def codes(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The ADC codes of second ``t``, shape (sample_rate,) each."""
        vc, ic = self._bank.codes(t)
        return vc[0], ic[0]

    def measure_second(self, t: int) -> Measurement:
        return self._bank.measure_second(t).row(0)


def _second(t: Any) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"t: {t!r} is not a whole second >= 0")
    return int(t)
