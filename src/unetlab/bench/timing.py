"""Wall-clock speed-ups a user can trust on a busy machine: `time_rounds`, the one timing function of
`unetlab bench` and `unetlab tune`; each configuration is a `Recipe`, applied with `unetlab.accelerate` around
its timed call.

One untimed warm-up call per configuration (peak memory measured on the way), then `rounds` rounds (at least
`MIN_ROUNDS`); round r times every configuration once, in the order rotated by r, so none is always first.

- The statistic is each configuration's **minimum** time over its rounds, and the speed-up is the baseline's
  minimum over the configuration's. Another process can only make a call slower, never faster, so a disturbed
  round (one slow call, or a whole slow round) cannot move a minimum taken over at least two rounds; the median of
  two paired ratios, used before, moved with it (one disturbed baseline call read 49.6x for a 1.3x recipe).
- The per-round paired ratios (baseline time / configuration time of the same round) are reported as the spread;
  the minimum-time speed-up always lies between their smallest and largest.
- A configuration is **re-timed** (another set of `rounds` rounds, together with the baseline) when its fastest
  `rounds` times spread by more than `SPREAD` (the machine was busy during its rounds), or when its measured
  speed-up disagrees with the `expected` one (FLOPs ratio, or the tuner's cost model) by more than `DISAGREE`
  times either way; at most `RETIMES` extra sets. A baseline that spreads re-times every configuration. What is
  still unsettled or in disagreement after that is reported as such (`timing_settled`, `timing_disagrees`).
- `consecutive=True` (a `torch.compile`d UNet): each configuration is applied once per set of rounds, its warm-up
  call (which compiles) followed by its `rounds` calls back to back, instead of being applied around every call in
  rotated order: `Handle.remove` drops the graphs traced while its patches were on, so re-applying at every call
  would compile again inside every timed call. The paired ratios pair the configuration's r-th call with the
  baseline's r-th. A re-timed configuration is applied (and compiled) again, with an untimed warm-up.

Every configuration's warm-up call is timed too (`warmup_s`): under `torch.compile` it holds the compilation.
"""

from __future__ import annotations

from collections.abc import Callable

from ..recipes import Recipe, accelerate
from .measure import peak_memory, wall_time

MIN_ROUNDS = 2
SPREAD = 0.25
DISAGREE = 2.0
RETIMES = 2


def spread(times: list[float], rounds: int) -> float:
    """How far the fastest `rounds` times spread: (largest of them - smallest) / smallest."""
    fastest = sorted(times)[:rounds]
    return fastest[-1] / fastest[0] - 1


def disagrees(measured: float, expected: float | None) -> bool:
    """Whether a measured speed-up is more than `DISAGREE` times above or below the expected one."""
    return expected is not None and not 1 / DISAGREE <= measured / expected <= DISAGREE


def time_rounds(
    w,
    recipes: dict[str, Recipe],
    timing_images: int,
    rounds: int,
    seed: int,
    bar=None,
    expected: dict[str, float] | None = None,
    consecutive: bool = False,
    clock: Callable[[Callable[[], object]], float] | None = None,
) -> dict[str, dict]:
    """Per configuration name (the first of `recipes` is the baseline): seconds per image and the wall speed-up over
    the baseline from minimum times, the min-max of the paired per-round ratios, the rounds, their spread, whether
    it was re-timed, peak memory and the warm-up call's seconds. `expected` maps names to predicted speed-ups;
    `consecutive` times each configuration's calls back to back (see the module docstring); `clock(run)` is the
    seconds of one call (default `measure.wall_time`; `measure.cpu_time` for per-call overheads on a shared CPU)."""
    clock = clock or wall_time
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < MIN_ROUNDS:
        raise ValueError(
            f"repeats: expected an integer >= {MIN_ROUNDS} (a minimum over one round is not robust), got {rounds!r}"
        )
    expected = expected or {}
    methods = list(recipes)
    base = methods[0]

    def tick(k: int = 1) -> None:
        if bar is not None:
            bar.update(k)

    def timed(name: str) -> float:
        n = recipes[name].num_inference_steps
        return clock(lambda: w.generate(timing_images, n, seed))

    def call(name: str) -> float:
        with accelerate(w.pipe, recipes[name]):
            return timed(name)

    peak: dict[str, float | None] = {}
    warmup: dict[str, float] = {}
    times: dict[str, list[float]] = {m: [] for m in methods}
    ratios: dict[str, list[float]] = {m: [] for m in methods}
    retimed = dict.fromkeys(times, 0)

    def rotated(subset: list[str]) -> None:
        for r in range(rounds):
            k = r % len(subset)
            t: dict[str, float] = {}
            for m in subset[k:] + subset[:k]:
                t[m] = call(m)
                tick()
            for m in subset:
                times[m].append(t[m])
                ratios[m].append(t[base] / t[m])

    def back_to_back(subset: list[str]) -> None:
        t: dict[str, list[float]] = {}
        for m in subset:
            with accelerate(w.pipe, recipes[m]):
                with peak_memory() as mem:
                    warm = timed(m)
                peak.setdefault(m, mem["mb"])
                warmup.setdefault(m, warm)
                tick()
                t[m] = []
                for _ in range(rounds):
                    t[m].append(timed(m))
                    tick()
        for m in subset:
            times[m] += t[m]
            ratios[m] += [b / x for b, x in zip(t[base], t[m])]

    if consecutive:
        run = back_to_back
    else:
        run = rotated
        for m in methods:
            with peak_memory() as mem:
                warmup[m] = call(m)
            peak[m] = mem["mb"]
            tick()

    def speedup(name: str) -> float:
        return min(times[base]) / min(times[name])

    def suspect(name: str) -> bool:
        return spread(times[name], rounds) > SPREAD or disagrees(speedup(name), expected.get(name))

    run(methods)
    for _ in range(RETIMES):
        todo = methods[1:] if spread(times[base], rounds) > SPREAD else [m for m in methods[1:] if suspect(m)]
        if not todo:
            break
        if bar is not None:
            bar.total += (rounds + consecutive) * (1 + len(todo))
        for m in todo:
            retimed[m] += 1
        run([base, *todo])
    return {
        m: {
            "seconds_per_image": min(times[m]) / timing_images,
            "speedup_wall": speedup(m),
            "speedup_wall_min": min(ratios[m]),
            "speedup_wall_max": max(ratios[m]),
            "timing_rounds": len(times[m]),
            "timing_spread": spread(times[m], rounds),
            "timing_settled": spread(times[m], rounds) <= SPREAD,
            "timing_retimed": retimed[m],
            "timing_disagrees": disagrees(speedup(m), expected.get(m)),
            "peak_mem_mb": peak[m],
            "warmup_s": warmup[m],
        }
        for m in methods
    }
