"""The four `unetlab analyze` actions: run, write JSON and PNG into the output folder, return Markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path

from unetlab import analysis
from unetlab.analysis import plots

SHIPPED = ("digits", "shapes", "mini-sd")  # models whose shipped classifier or judge scores the ablation


def _fmt(v: float, spec: str = ".3g") -> str:
    return "inf" if v == math.inf else ("nan" if isinstance(v, float) and math.isnan(v) else format(v, spec))


def _median_iqr(values: list[float]) -> tuple[float, float]:
    v = sorted(x for x in values if not math.isnan(x))
    q = lambda f: v[min(len(v) - 1, int(round(f * (len(v) - 1))))]  # noqa: E731
    return q(0.5), q(0.75) - q(0.25)


def trace(model, args, out: Path, common: dict) -> str:
    r = analysis.trace(model, **common)
    r.save(out / "trace.json")
    plots.plot_change_curves(r, out / "trace_change.png", metric="mse")
    plots.plot_change_curves(r, out / "trace_change_logsnr.png", metric="rel_l1", x="log_snr")
    plots.plot_norm_boxes(r, out / "trace_norms.png")
    lines = [
        "Adjacent-step change, mean over steps 1..N-1 and over the blocks of each kind "
        "(Faster Diffusion eq. 2 is the per-element MSE):",
        "",
        "| half | decoder/encoder MSE ratio | decoder/encoder relative-L1 ratio |",
        "| --- | --- | --- |",
    ]
    for h in r.halves:
        lines.append(
            f"| {h} | {analysis.decoder_encoder_ratio(r, 'mse', h):.2f} | "
            f"{analysis.decoder_encoder_ratio(r, 'rel_l1', h):.2f} |"
        )
    lines += [
        "",
        f"Per part ({r.default_half} half):",
        "",
        "| part | resolution | mean MSE change | mean relative L1 | ‖channel-mean‖_F median | IQR |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in r.parts:
        mse = [v for v in r.curve(p, "mse")[1:] if not math.isnan(v)]
        rel = [v for v in r.curve(p, "rel_l1")[1:] if not math.isnan(v)]
        med, iqr = _median_iqr(r.curve(p, "fro_norm"))
        res = "x".join(map(str, r.resolutions[p]))
        lines.append(
            f"| {p} | {res} | {_fmt(sum(mse) / len(mse))} | {_fmt(sum(rel) / len(rel))} | {_fmt(med)} | {_fmt(iqr)} |"
        )
    lines += [
        "",
        "![change](trace_change.png)",
        "![change vs log-SNR](trace_change_logsnr.png)",
        "![norms](trace_norms.png)",
        "",
    ]
    return "\n".join(lines)


def ablate(model, args, out: Path, common: dict) -> str:
    components = args.components.split(",") if args.components else None
    g = analysis.ablate(
        model,
        components,
        windows=args.windows,
        replace=args.replace,
        out_dir=out,
        model_name=args.eval_as or (args.model if args.model in SHIPPED else None),
        **common,
    )
    g.save(out / "ablation.json")
    plots.plot_ablation_heatmap(g, out / "ablation_psnr.png")
    head = " | ".join(f"steps {a}-{b - 1}" for a, b in g.windows)
    lines = [
        f"PSNR (dB) of the final output against the unablated run, replace={g.replace}; "
        "high = the component is not needed in that window:",
        "",
        f"| component | {head} |",
        "| --- |" + " --- |" * len(g.windows),
    ]
    for c, row in zip(g.components, g.matrix("psnr")):
        lines.append(f"| {c} | " + " | ".join(_fmt(v, ".1f") for v in row) + " |")
    lines += ["", "Per window: blocks below 20 dB (needed) and at or above 30 dB (skippable):", ""]
    for w in g.windows:
        cells = {c: g.cell(c, w)["psnr"] for c in g.components if not c.startswith("skip.")}
        needed = [c for c, v in cells.items() if v < 20]
        free = [c for c, v in cells.items() if v >= 30]
        lines.append(
            f"- steps {w[0]}-{w[1] - 1}: needed {', '.join(needed) or '-'}; skippable {', '.join(free) or '-'}"
        )
    if g.baseline:
        lines += [
            "",
            f"Quality by the shipped {g.meta.get('quality_model')} classifier or judge (`unetlab.eval.accuracy`), "
            "baseline vs ablated:",
            "",
            "| component | window | " + " | ".join(g.baseline) + " |",
            "| --- | --- |" + " --- |" * len(g.baseline),
            "| (none) | - | " + " | ".join(f"{v:.3f}" for v in g.baseline.values()) + " |",
        ]
        for c in g.components:
            for w in g.windows:
                cell = g.cell(c, w)
                lines.append(
                    f"| {c} | {w[0]}-{w[1] - 1} | "
                    + " | ".join(f"{cell.get(k, math.nan):.3f}" for k in g.baseline)
                    + " |"
                )
    lines += ["", "![ablation](ablation_psnr.png)", ""]
    return "\n".join(lines)


def perturb(model, args, out: Path, common: dict) -> str:
    s = analysis.perturb(model, sigmas=args.sigmas, **common)
    s.save(out / "perturbation.json")
    plots.plot_sensitivity(s, out / "perturbation.png")
    lines = [
        "Final-output MSE against the clean run (same noise) when features of one resolution get "
        "x + σ·std(x)·ε at every step:",
        "",
        "| level | " + " | ".join(f"σ={x:g}" for x in s.sigmas) + " |",
        "| --- |" + " --- |" * len(s.sigmas),
    ]
    m = s.matrix("mse")
    for r, row in zip(s.levels, m):
        lines.append(f"| {r}x{r} | " + " | ".join(_fmt(v) for v in row) + " |")
    ratio = [hi / lo if lo > 0 else math.inf for hi, lo in zip(m[0], m[-1])]
    lines += [
        "",
        f"Highest / lowest resolution MSE ratio per σ: {', '.join(_fmt(x, '.1f') for x in ratio)}.",
        "",
        "![sensitivity](perturbation.png)",
        "",
    ]
    return "\n".join(lines)


def derive(model, args, out: Path, common: dict) -> str:
    from unetlab.unet import anatomy

    lines = []
    trace_path, grid_path = out / "trace.json", out / "ablation.json"
    if not trace_path.is_file() and not grid_path.is_file():
        raise FileNotFoundError(f"--out: neither {trace_path} nor {grid_path} exists; run analyze trace / ablate first")
    unet = model.unet if hasattr(model, "unet") else model
    a = anatomy(unet)
    if trace_path.is_file():
        r = analysis.TraceResult.load(trace_path)
        n = len(r.steps)
        budget = (
            dict(threshold=args.threshold)
            if args.threshold is not None
            else dict(num_keys=max(1, round(n * 9 / 50)) if args.num_keys is None else args.num_keys)
        )
        keys = analysis.derive_key_steps(r, **budget)
        keys.save(out / "key_steps.json")
        plots.plot_change_curves(r, out / "trace_keys.png", metric="rel_l1", key_steps=keys.key_steps, skips=True)
        dc = analysis.recommend_deepcache(r, a)
        (out / "deepcache.json").write_text(json.dumps(dc, indent=1))
        lines += [
            f"Key steps ({keys.source}): `{list(keys.key_steps)}` of {n} -> `key_steps.json`, for "
            "`unetlab.encoder_propagation(pipe, key_steps='key_steps.json')`.",
            "",
            f"DeepCache: branch {dc['branch']}, interval {dc['interval']} "
            f"(deep part {100 * dc['deep_flops_share']:.0f}% of the FLOPs, estimated "
            f"{100 * dc['flops_saved_fraction']:.0f}% saved): `{dc['usage']}`.",
            "",
            "![keys](trace_keys.png)",
            "",
        ]
    if grid_path.is_file():
        g = analysis.AblationGrid.load(grid_path)
        plan = analysis.derive_block_skip_plan(g, a, args.min_psnr)
        lines += [
            f"Block-skip plan at PSNR >= {args.min_psnr:g} dB from the ablation grid: {len(plan.windows)} "
            f"windows, predicted PSNR {_fmt(plan.meta['predicted_psnr'], '.1f')} dB, predicted FLOPs saved "
            f"{100 * plan.meta['flops_saved_fraction']:.1f}%."
        ]
        if not args.no_verify:
            sampler = analysis.Sampler(
                model, common["prompts_or_batch"], g.meta["num_inference_steps"], common["guidance_scale"]
            )
            plan, m = analysis.fit_plan(sampler, plan, args.min_psnr, seeds=g.meta["seeds"])
            lines += [
                f"Measured on seeds {g.meta['seeds']}: {len(plan.windows)} windows kept, PSNR "
                f"{_fmt(m['psnr'], '.1f')} dB, SSIM {m['ssim']:.4f}, FLOPs per sampling call "
                f"{m['flops_plain'] / 1e9:.3f} -> {m['flops_plan'] / 1e9:.3f} GFLOPs "
                f"(**{100 * m['flops_saved_fraction']:.1f}% saved**, counted with torch.utils.flop_counter)."
            ]
        plan.save(out / "block_skip_plan.json")
        lines += ["", "| component | steps | replace |", "| --- | --- | --- |"]
        lines += [f"| {w.component} | {w.start}-{w.end - 1} | {w.replace} |" for w in plan.windows]
        lines += ["", "-> `block_skip_plan.json`, for `unetlab.block_skip(pipe, 'block_skip_plan.json')`.", ""]
    return "\n".join(lines)
