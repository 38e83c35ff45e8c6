"""Issue 29's and issue 32's targets, read from a bench.json (`unetlab bench` or `bash scripts/main.sh`), each
reported met or missed and by how much.

    python benchmarks/targets.py bench-out/bench.json [--model shapes --model mini-sd]

Issue 29, per model: guidance reuse stacked with branch caching >= 1.4x the speed of the same branch caching alone at
equal or higher PSNR; the best unetlab row at >= 38 dB >= 5x; at T-GATE's PSNR >= 1.3x T-GATE's speed; at
DeepCache's speed >= +2 dB. Issue 32 (judged models): the fastest unetlab row at the baseline's quality is faster
than the fastest fewer-steps row at it, than DeepCache's row and than T-GATE's (`unetlab.bench.verdict`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unetlab.bench.verdict import Criterion, fastest, group

STACK = ("branch cache N=2 B=0 + guidance reuse N=2", "branch cache N=2 B=0")


def _timed(rows: list[dict], model: str) -> list[dict]:
    return [r for r in rows if r["model"] == model and not r.get("unsupported") and r.get("speedup_wall")]


def _one(rows: list[dict], family: str) -> dict | None:
    return next((r for r in rows if r.get("family") == family), None)


def _fmt(r: dict) -> str:
    judged = "" if r.get("accuracy") is None else f", judged {r['accuracy']:.3f}, FD {r['fd']:.2f}"
    return f"{r['method']} ({r['speedup_wall']:.2f}×, {r['psnr']:.2f} dB{judged})"


def issue29(rows: list[dict], model: str) -> list[str]:
    """Issue 29's four comparisons on `model`."""
    timed = _timed(rows, model)
    mine = [r for r in timed if group(r) == "unetlab" and r.get("psnr") is not None]
    out = []
    stacked, alone = (next((r for r in timed if r["method"] == m), None) for m in STACK)
    if stacked and alone:
        ratio = stacked["speedup_wall"] / alone["speedup_wall"]
        ok = ratio >= 1.4 and stacked["psnr"] >= alone["psnr"]
        out.append(
            f"guidance reuse + branch cache vs branch cache alone: {ratio:.2f}× (target >= 1.4×), PSNR "
            f"{stacked['psnr']:.2f} vs {alone['psnr']:.2f} dB: {'met' if ok else 'missed'}"
        )
    at38 = max((r for r in mine if r["psnr"] >= 38), key=lambda r: r["speedup_wall"], default=None)
    out.append(
        "best unetlab row at >= 38 dB: "
        + ("none" if at38 is None else f"{_fmt(at38)}: {'met' if at38['speedup_wall'] >= 5 else 'missed'} (>= 5×)")
    )
    tgate, deepcache = _one(timed, "tgate"), _one(timed, "deepcache")
    if tgate is not None and tgate.get("psnr") is not None:
        best = max((r for r in mine if r["psnr"] >= tgate["psnr"]), key=lambda r: r["speedup_wall"], default=None)
        ratio = 0.0 if best is None else best["speedup_wall"] / tgate["speedup_wall"]
        out.append(
            f"at T-GATE's PSNR ({_fmt(tgate)}): "
            + ("no unetlab row" if best is None else f"{_fmt(best)}, {ratio:.2f}× T-GATE's speed")
            + f": {'met' if ratio >= 1.3 else 'missed'} (>= 1.3×)"
        )
    if deepcache is not None and deepcache.get("psnr") is not None:
        fast = [r for r in mine if r["speedup_wall"] >= deepcache["speedup_wall"]]
        best = max(fast, key=lambda r: r["psnr"], default=None)
        gain = -1e9 if best is None else best["psnr"] - deepcache["psnr"]
        out.append(
            f"at DeepCache's speed ({_fmt(deepcache)}): "
            + ("no unetlab row as fast" if best is None else f"{_fmt(best)}, {gain:+.2f} dB")
            + f": {'met' if gain >= 2 else 'missed'} (>= +2 dB)"
        )
    return out


def issue32(rows: list[dict], model: str, criterion: Criterion) -> list[str]:
    """Issue 32's comparison on `model`: the fastest unetlab row at the baseline's quality against the others."""
    best = fastest(rows, model, criterion)
    mine = best["unetlab"]
    if mine is None:
        return ["no unetlab row at the baseline's quality: missed"]
    timed = _timed(rows, model)
    out = [f"fastest unetlab row at the baseline's quality: {_fmt(mine)}"]
    rivals = {
        "the fastest fewer-steps row at it": best["fewer steps"],
        "DeepCache's row": _one(timed, "deepcache"),
        "T-GATE's row": _one(timed, "tgate"),
    }
    for name, r in rivals.items():
        if r is None:
            out.append(f"{name}: none (not run, or not at the baseline's quality)")
            continue
        ratio = mine["speedup_wall"] / r["speedup_wall"]
        at = "at" if criterion.matches(r, next(x for x in timed if x.get("family") == "baseline")) else "not at"
        out.append(
            f"vs {name}, {_fmt(r)} ({at} the baseline's quality): {ratio:.2f}× its speed: "
            f"{'met' if ratio > 1 else 'missed'}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="a bench.json")
    parser.add_argument("--model", action="append", help="models to report (default: every model in the file)")
    args = parser.parse_args()
    result = json.loads(args.bench.read_text())
    rows = result["rows"]
    models = args.model or list(dict.fromkeys(r["model"] for r in rows))
    print(f"{args.bench}: {result['date']}, {result['machine']}")
    for model in models:
        print(f"\n## {model}\n\nIssue 29:")
        print("\n".join(f"- {s}" for s in issue29(rows, model)))
        judged = any(r["model"] == model and r.get("accuracy") is not None for r in rows)
        if judged:
            print("\nIssue 32 (judged rate within 1 point, Fréchet distance within 10%):")
            print("\n".join(f"- {s}" for s in issue32(rows, model, Criterion())))


if __name__ == "__main__":
    main()
