"""Cost of one simulated meter-second, and the accuracy the meter reaches, per front end.

Speed: a :class:`MeterBank` of 1, 100 and 500 households (each its own seed and local
voltage, one grid) measures consecutive seconds; the figure is wall time per meter-second
for the whole pipeline (loads, waveforms, noise, ADC, DSP, registers), and for the DSP
alone (:func:`measure_batch` on ready codes). Reference, same run, same array shape:
``np.sqrt(np.mean(x * x, axis=1))`` on one (N, samples) float64 array — the least any
per-second RMS meter must spend touching its samples once — and "generate + dot": drawing two
(N, samples) channels with ``Generator.standard_normal`` and one row-wise dot product, the
bare numpy cost of simulating noisy samples and computing one power figure from them.

Accuracy: registers after each scenario against the exact integral of the simulated
waveforms (closed form from the phasors, including the partial cycle of every second).

Writes the section "Metrology (benchmarks/metrology.py)" of BENCHMARKS.md.
Run: .venv/bin/python benchmarks/metrology.py
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _report import machine, write_section  # noqa: E402

from c1222.meter.loads import (ORDERS, Electronics, Fridge, Heater, Household,  # noqa: E402
                               Mains, Motor, Resistive)
from c1222.meter.metrology import FrontEnd, MeterBank, measure_batch  # noqa: E402

TITLE = "Metrology (benchmarks/metrology.py)"
PROFILES = (FrontEnd.reference_10bit(), FrontEnd.sigma_delta_16bit())
SIZES = (1, 100, 500)
REPEATS = 15
TARGET_SECONDS = 0.2


class _Timer:
    """Best wall seconds per call of ``fn(counter)``, over rounds run interleaved with others.

    On a shared machine a burst of someone else's work inflates whatever runs during it;
    interleaving the configurations and keeping each one's best round spreads the bursts.
    """

    def __init__(self, fn: Callable[[int], object]) -> None:
        self.fn = fn
        self.k = 0
        start = time.perf_counter()
        self._call()
        self.number = max(1, int(TARGET_SECONDS / max(time.perf_counter() - start, 1e-6)))
        self.best = math.inf

    def _call(self) -> None:
        self.fn(self.k)
        self.k += 1

    def round(self) -> None:
        start = time.perf_counter()
        for _ in range(self.number):
            self._call()
        self.best = min(self.best, (time.perf_counter() - start) / self.number)


def speed() -> list[dict[str, float | int | str]]:
    timers: list[tuple[str, int, dict[str, _Timer]]] = []
    for fe in PROFILES:
        for n in SIZES:
            bank = MeterBank([Household(seed=k) for k in range(n)], fe,
                             [Mains(seed=k, grid_seed=1) for k in range(n)], seed=1)
            t0 = 18 * 3600                     # evening: every household has loads running
            vc, ic = bank.codes(t0)
            x = np.random.default_rng(0).standard_normal((n, fe.sample_rate))
            timers.append((fe.name, n, {
                "full": _Timer(lambda k, bank=bank, t0=t0: bank.measure_second(t0 + k)),
                "dsp": _Timer(lambda k, fe=fe, vc=vc, ic=ic, c=bank.chunk: [
                    measure_batch(fe, vc[a:a + c], ic[a:a + c]) for a in range(0, len(vc), c)]),
                "ref": _Timer(lambda k, x=x: np.sqrt(np.mean(x * x, axis=1))),
                "gen": _Timer(lambda k, n=n, s=fe.sample_rate, g=np.random.default_rng(0):
                              np.einsum("ij,ij->i", *g.standard_normal((2, n, s)))),
            }))
    for _ in range(REPEATS):
        for _, _, group in timers:
            for timer in group.values():
                timer.round()
    return [{"profile": name, "meters": n, **{key: t.best / n for key, t in group.items()}}
            for name, n, group in timers]


# --- accuracy against the exact integral -------------------------------------------------------

def _mean_products(a: np.ndarray, b: np.ndarray, f: float, phase: float) -> np.ndarray:
    """Exact mean over the second of a(tau) * b(tau) for phasor rows a, b shaped (N, ORDERS)."""
    w = 2 * math.pi * f
    h = ORDERS[:, None]
    k = ORDERS[None, :]

    def mean_exp(m: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.exp(1j * m * phase) * (np.exp(1j * m * w) - 1) / (1j * m * w)
        return np.where(m == 0, 1.0, out)
    minus, plus = mean_exp(h - k), mean_exp(h + k)
    pair = (a[:, :, None] * np.conj(b)[:, None, :] * minus).real + \
        (a[:, :, None] * b[:, None, :] * plus).real
    return pair.sum(axis=(1, 2))


def scenario(fe: FrontEnd, loads: list, start: int, seconds: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(measured Wh, exact Wh, measured VAh, exact VAh) per meter after ``seconds``."""
    bank = MeterBank(loads, fe, Mains(seed=3, grid_seed=4), seed=7)
    joules = np.zeros(len(loads))
    va = np.zeros(len(loads))
    for t in range(start, start + seconds):
        supplies, currents = bank.simulate(t)
        s = supplies[0]
        v = np.tile(s.voltage, (len(loads), 1))
        joules += _mean_products(v, currents, s.frequency, s.phase)
        va += np.sqrt(_mean_products(v, v, s.frequency, s.phase)
                      * _mean_products(currents, currents, s.frequency, s.phase))
        bank.measure_second(t)
    regs = [bank.registers(k) for k in range(len(loads))]
    return (np.array([r.wh_delivered for r in regs]), joules / 3600,
            np.array([r.vah for r in regs]), va / 3600)


SCENARIOS: list[tuple[str, Callable[[], list], int, int]] = [
    ("resistive 1 kW, 60 s", lambda: [Resistive(1000)], 0, 60),
    ("heater step 1 (1 kW), 60 s", lambda: [Heater(schedule=[[0, "step1"]])], 0, 60),
    ("heater step 2 (2 kW), 60 s", lambda: [Heater(schedule=[[0, "step2"]])], 0, 60),
    ("motor 750 W PF 0.8, 60 s", lambda: [Motor(750, 0.8)], 0, 60),
    ("SMPS 200 W (3rd/5th/7th), 60 s", lambda: [Electronics(200)], 0, 60),
    ("fridge 150 W, 50 % of 120 s, 120 s", lambda: [Fridge(150, 120, 0.5)], 0, 120),
    ("4 households 17:00-20:00", lambda: [Household(seed=k) for k in range(1, 5)],
     17 * 3600, 3 * 3600),
    ("4 households 01:00-02:00 (night)", lambda: [Household(seed=k) for k in range(1, 5)],
     1 * 3600, 3600),
]


def accuracy() -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    for name, make, start, seconds in SCENARIOS:
        row: dict[str, float | str] = {"scenario": name}
        for fe in PROFILES:
            wh, wh_true, vah, vah_true = scenario(fe, make(), start, seconds)
            row[f"{fe.name} wh"] = float(np.max(np.abs(wh / wh_true - 1)))
            row[f"{fe.name} pf"] = float(np.max(np.abs(wh / vah - wh_true / vah_true)))
            row["true wh"] = float(np.mean(wh_true))
        rows.append(row)
    return rows


def report(fast: list, acc: list, load: float) -> list[str]:
    lines = [
        machine().rstrip(".") + f", numpy {np.__version__}. Load average during the run: "
        f"{load:.1f} (a shared machine: absolute figures move by tens of per cent between "
        "runs; the ratio, measured in the same run, moves less).",
        "",
        "Cost of one simulated meter-second (households, one grid, evening loads). Full = "
        "`MeterBank.measure_second`: loads, true waveforms, Gaussian noise, ADC, DSP, "
        "registers. DSP = `measure_batch` on ready codes. Same run, same shape: RMS = "
        "`np.sqrt(np.mean(x * x, axis=1))` on one (N, samples) float64 array; generate + dot "
        "= `rng.standard_normal((2, N, samples))` and one row-wise `np.einsum` dot product. "
        f"Best of {REPEATS} rounds of about {TARGET_SECONDS} s each, the configurations "
        "interleaved.",
        "",
        "| front end | samples/s | meters | full µs/meter-s | DSP µs/meter-s "
        "| RMS µs/meter-s | generate + dot µs/meter-s | full / (generate + dot) "
        "| meter-seconds per second, one process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rates = {fe.name: fe.sample_rate for fe in PROFILES}
    for r in fast:
        full, dsp, ref, gen = (float(r[k]) for k in ("full", "dsp", "ref", "gen"))
        lines.append(f"| {r['profile']} | {rates[str(r['profile'])]:,} | {r['meters']} "
                     f"| {full * 1e6:,.0f} | {dsp * 1e6:,.0f} | {ref * 1e6:,.1f} "
                     f"| {gen * 1e6:,.0f} | {full / gen:,.1f}x | {1 / full:,.0f} |")
    lines += [
        "",
        "A lone meter pays the Python overhead of a batch (loads, supply, array set-up) by "
        "itself; from 100 meters on, that overhead is shared and the per-sample work "
        "dominates: drawing the noise (16-bit uniforms through a Gaussian quantile table), "
        "synthesising both channels (one matrix product per grid), the ADC's rounding and "
        "clipping, and about a dozen passes of the DSP. The RMS reference touches the "
        "samples of one channel once; generate + dot is what the simulation would cost with "
        "numpy's own Gaussian generator and no meter at all.",
        "",
        "Accuracy: the largest error over the meters of a scenario, registers against the "
        "exact integral of the simulated waveforms (IEC 62053-21 class 1 allows 1 % on "
        "energy; the tests require 0.01 on PF).",
        "",
        "| scenario | exact Wh | 10-bit energy error | 10-bit PF error "
        "| 16-bit energy error | 16-bit PF error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in acc:
        lines.append(f"| {r['scenario']} | {float(r['true wh']):,.2f} "
                     f"| {float(r['reference wh']) * 100:.3f} % "
                     f"| {float(r['reference pf']):.4f} "
                     f"| {float(r['sigma-delta wh']) * 100:.3f} % "
                     f"| {float(r['sigma-delta pf']):.4f} |")
    return lines


def main() -> None:
    fast = speed()
    acc = accuracy()
    lines = report(fast, acc, os.getloadavg()[0])
    print("\n".join(lines))
    write_section(TITLE, lines)


if __name__ == "__main__":
    main()
