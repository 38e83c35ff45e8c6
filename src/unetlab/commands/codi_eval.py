"""`unetlab eval codi --task sr4 --run LABEL=PATH ...`: CoDi models and baselines on the held-out test split.

Each (run, steps) row is written to OUT/rows/ as soon as it is measured, and an existing row is reused, so the
table can be built up as training runs finish; every call rewrites OUT/<task>.md, .json and the sample grid
from all rows named on its command line.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from .args import positive_int

HARDWARE = "2-core shared CPU, 1 torch thread"


def register_eval(sub) -> None:
    p = sub.add_parser(
        "codi",
        help="CoDi / PE-CoDi / ControlNet-baseline table on the test split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", choices=("sr4", "inpaint"), required=True)
    p.add_argument(
        "--data",
        choices=("digits", "scenes"),
        default="digits",
        help="the test split: digits (CoDi on digits) or scenes (CoDi on mini-sd; captions as prompts, the mini-sd "
        "judge)",
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=1.0,
        help="scenes: classifier-free guidance on the caption (1: none)",
    )
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="LABEL=PATH[@STEPS]",
        help="a training folder (latest checkpoint), pipeline folder or shipped name; STEPS e.g. 4,20",
    )
    p.add_argument("--steps", default="1,2,4", help="steps of consistency-sampled models")
    p.add_argument("--ddim-steps", default="4,20,50,250", help="steps of DDIM-sampled models (ControlNet baseline)")
    p.add_argument("--seeds", default="0,1,2", help="sampling seeds (mean ± standard error over them)")
    p.add_argument(
        "--limit", type=positive_int, default=None, help="first N test images (default: digits all 359, scenes 200)"
    )
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--bilinear", action="store_true", help="sr4: add bilinear upsampling of the condition as a row")
    p.add_argument("--grid-examples", type=positive_int, default=8)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--out", required=True, help="folder for rows/, <task>.md, <task>.json, <task>-grid.png")
    p.set_defaults(func=run_eval)


def _ints(text: str, name: str, low: int = 0) -> list[int]:
    if not re.fullmatch(r"\d+(,\d+)*", text) or min(int(v) for v in text.split(",")) < low:
        raise ValueError(f"{name}: {text!r} is not a comma-separated list of integers >= {low}, e.g. 1,2,4")
    return [int(v) for v in text.split(",")]


def _parse_run(spec: str) -> tuple[str, str, list[int] | None]:
    if "=" not in spec:
        raise ValueError(f"run: {spec!r} is not LABEL=PATH[@STEPS]")
    label, rest = spec.split("=", 1)
    path, _, steps = rest.partition("@")
    return label, path, _ints(steps, "run steps", 1) if steps else None


def _check_model(pipe, run: str, task: str, data: str, channels: int, size: int, steps: list[int]) -> None:
    """One-line errors naming `run` when `pipe` is no CoDi model of `task` on these images or cannot take `steps`."""
    from ..codi import CoDiPipeline, TextCoDiPipeline
    from ..codi.degrade import condition_shape

    if not isinstance(pipe, CoDiPipeline):
        raise ValueError(
            f"run: {run} holds a {type(pipe).__name__}, not a CoDiPipeline (give a `unetlab train codi` run, its "
            "pipeline folder or a shipped CoDi name such as digits-sr4-codi)"
        )
    if isinstance(pipe, TextCoDiPipeline) != (data == "scenes"):
        kind = "mini-sd (text-to-image)" if isinstance(pipe, TextCoDiPipeline) else "digits"
        raise ValueError(f"run: {run} adapts a {kind} teacher; --data {data} needs one trained on {data}")
    want, cfg = condition_shape(task, channels, size), pipe.adapter.config
    if (cfg.condition_channels, cfg.condition_size) != want:
        raise ValueError(
            f"run: {run} takes {cfg.condition_channels}-channel {cfg.condition_size}x{cfg.condition_size} conditions; "
            f"--task {task} on the {size}x{size} {data} gives {want[0]}-channel {want[1]}x{want[1]} (another task?)"
        )
    most = pipe.config.grid_size if pipe.config.sampler == "consistency" else pipe.scheduler.config.num_train_timesteps
    if max(steps) > most:
        raise ValueError(f"steps: {max(steps)} for {run}, whose {pipe.config.sampler} sampler takes 1 to {most}")


def _pipeline_and_training(path: str):
    """The pipeline of `path` (a run folder's latest checkpoint, a pipeline folder or a shipped name) and its
    training record (steps, elapsed_s) when known."""
    from ..loading import load
    from ..models.registry import SHIPPED, weights_path

    folder = weights_path(path) if path in SHIPPED else Path(path)
    training = None
    if (folder / "latest").is_file():
        checkpoint = folder / (folder / "latest").read_text().strip()
        state = json.loads((checkpoint / "state.json").read_text())
        training = {"steps": state["step"], "elapsed_s": state["elapsed_s"]}
        folder = checkpoint / "pipeline"
    elif (folder / "training.json").is_file():
        training = json.loads((folder / "training.json").read_text())
    return load(path if path in SHIPPED else str(folder)), training


def run_eval(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file

    from ..atomic import write_json
    from ..codi import heldout_conditions
    from ..codi.evaluate import Heldout, condition_preview, evaluate, metrics
    from ..codi.report import grid, table
    from ..data import DigitsDataset, scenes

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = _ints(args.seeds, "seeds")
    runs = [_parse_run(s) for s in args.run]
    for text, name in ((args.steps, "steps"), (args.ddim_steps, "ddim-steps")):
        _ints(text, name, 1)  # before any model loads
    if not runs and not args.bilinear:
        raise ValueError("run: give at least one --run LABEL=PATH (or --bilinear for sr4)")
    if args.data == "scenes":
        if args.guidance_scale < 1:
            raise ValueError(f"guidance-scale: {args.guidance_scale}; expected a number >= 1 (1: no guidance)")
        n = args.limit or 200
        images, prompts, labels = scenes.sample(n, seed=0, split="test")
        data = Heldout(args.task, images, labels, heldout_conditions(args.task, images), prompts)
        text = {"guidance_scale": args.guidance_scale}
    else:
        if args.guidance_scale != 1.0:
            raise ValueError("guidance-scale: only --data scenes has prompts to guide")
        test = DigitsDataset("test", 16)
        n = min(args.limit or len(test), len(test))
        images, labels = test.images[:n], test.labels[:n]
        data, text = Heldout(args.task, images, labels, heldout_conditions(args.task, images)), {}
    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    k = args.grid_examples
    rows, firsts = [], []
    if args.bilinear:
        if args.task != "sr4":
            raise ValueError("bilinear: only a row of the sr4 task")
        up = F.interpolate(data.conditions, size=images.shape[-2:], mode="bilinear").clamp(0, 1)
        summary = {key: {"mean": v, "stderr": 0.0} for key, v in metrics(data, up, 0.0).items()}
        rows.append({"label": "bilinear upsampling (no model)", "sampler": "—", "steps": 0, "metrics": summary})
        firsts.append(up[:k])
    for label, path, steps in runs:
        pipe, training = _pipeline_and_training(path)
        pipe.set_progress_bar_config(disable=True)
        sampler = pipe.config.sampler if "sampler" in pipe.config else None
        steps = steps or _ints(args.ddim_steps if sampler == "ddim" else args.steps, "steps", 1)
        _check_model(pipe, f"{label}={path}", args.task, args.data, images.shape[1], images.shape[-1], steps)
        for step in steps:
            stem = out / "rows" / f"{args.task}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}-{step}"
            key = {"label": label, "path": path, "steps": step, "seeds": seeds, "n": n}
            key.update({"data": "scenes", **text} if text else {})
            if stem.with_suffix(".json").is_file() and json.loads(stem.with_suffix(".json").read_text())["key"] == key:
                row = json.loads(stem.with_suffix(".json").read_text())
                first = load_file(stem.with_suffix(".safetensors"))["outputs"][:k]
            else:
                summary, outputs = evaluate(pipe, data, step, seeds, args.batch_size, **text)
                row = {
                    "key": key,
                    "label": label,
                    "sampler": sampler,
                    "steps": step,
                    "metrics": summary,
                    "training": training,
                    "hardware": HARDWARE,
                    "test_images": n,
                    "seeds": seeds,
                }
                first = outputs[:k].contiguous()
                save_file({"outputs": first}, stem.with_suffix(".safetensors"))
                write_json(stem.with_suffix(".json"), row)
            print(
                f"{label} {sampler} {step}: "
                + ", ".join(f"{m} {v['mean']:.4g}±{v['stderr']:.2g}" for m, v in row["metrics"].items())
            )
            rows.append(row)
            firsts.append(first)
    (out / f"{args.task}.md").write_text(table(rows) + "\n")
    summary = {"task": args.task, "data": args.data, "test_images": n, "seeds": seeds, **text, "rows": rows}
    write_json(out / f"{args.task}.json", summary)
    grid(
        condition_preview(args.task, data.conditions[:k], images.shape[-1]),
        firsts,
        images[:k],
        out / f"{args.task}-grid.png",
    )
    print(f"wrote {out / (args.task + '.md')}, {args.task}.json and {args.task}-grid.png")
    return 0
