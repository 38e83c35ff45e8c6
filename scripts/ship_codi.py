"""Copy a finished CoDi run's EMA pipeline into the package (models/weights/<name>/, float16 safetensors to stay
small; `unetlab.load` returns float32) with its training record and model card. <name> is <teacher>-<task>-<variant>.

    python scripts/ship_codi.py digits-sr4-codi runs/sr4-codi --table docs/codi/sr4.json
    python scripts/ship_codi.py mini-sd-sr4-codi runs/sr4-codi --table docs/codi/mini-sd-sr4.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from unetlab.atomic import write, write_json
from unetlab.checkpoint import latest
from unetlab.codi.report import table
from unetlab.loading import load
from unetlab.models.clip_vocab import write_bpe_files
from unetlab.models.registry import CODI_MODELS, weights_path

HARDWARE = "a 2-core CPU shared with other jobs (no GPU), one torch thread"
TASK_TEXT = {
    "sr4": "4x super-resolution: condition = the 4x4 area average of the image",
    "inpaint": "inpainting: condition = [image with one box zeroed, box mask], the box a quarter to a half "
    "of the image at a random position",
}
TEACHER_TEXT = {
    "digits": "the shipped `digits` DDPM `UNet2DModel` (16x16 digits)",
    "mini-sd": "the shipped `mini-sd` `StableDiffusionPipeline` (64x64 scenes; the adapter and UNet work on its "
    '16x16x4 latents, the caption through its frozen text encoder, dropped to "" for 10% of the examples)',
}
DATA_TEXT = {
    "digits": '- **Data**: the digits train split (1,438 images, `unetlab.data.DigitsDataset("train", 16)`); '
    "conditions degraded on the fly; the test split (359 images) is never seen in training.",
    "mini-sd": "- **Data**: the scenes train split (`unetlab.data.scenes`, unlimited, with captions); conditions "
    "degraded on the fly; the test split's attribute combinations are never seen in training.",
}
CALL_TEXT = {
    "digits": '`pipe(image=condition, num_inference_steps=4, generator=..., output_type="pil"|"np"|"pt")`',
    "mini-sd": '`pipe(prompt, image=condition, num_inference_steps=4, generator=..., output_type="pil"|"np"|"pt")`',
}
NAME = re.compile(r"(digits|mini-sd)-(sr4|inpaint)-(codi|pe-codi)")
VARIANT_TEXT = {"codi": "CoDi: adapter and UNet trained", "pe-codi": "PE-CoDi: adapter trained, teacher UNet frozen"}


def _command(teacher: str, cfg: dict, args_line: str) -> str:
    return (
        f"unetlab train codi --teacher {teacher} --out runs/{Path(cfg['out']).name} "
        f"--batch-size {cfg['batch_size']} --lr {cfg['lr']} --warmup {cfg['warmup']} --steps {cfg['steps']} "
        f"--ema-decay {cfg['ema_decay']} --checkpoint-every {cfg['checkpoint_every']} "
        f"--threads 1 --seed {cfg['seed']} {args_line}"
    )


def model_card(
    name: str,
    teacher: str,
    task: str,
    variant: str,
    state: dict,
    pipe_config: dict,
    quality: list[dict],
    note: str,
    size_mb: float,
    command: str,
    eval_command: str,
) -> str:
    lines = [
        f"# unetlab `{name}` model",
        "",
        f'Shipped with unetlab; load with `unetlab.load("{name}")`, call with {CALL_TEXT[teacher]}.',
        "",
        f"- **Task**: {TASK_TEXT[task]}.",
        f"- **Method**: {VARIANT_TEXT[variant]} (Mei et al., CVPR 2024); teacher: {TEACHER_TEXT[teacher]}; "
        f"consistency grid N = {pipe_config['grid_size']} up to timestep {pipe_config['t_max']}, "
        f"EMA target (decay {state['config']['ema_decay']}), ODE step by the adapted model, noise-consistency term "
        "on, one t per example.",
        DATA_TEXT[teacher],
        f"- **Training**: {state['step']} optimiser steps, batch {state['config']['batch_size']}, AdamW lr "
        f"{state['config']['lr']} "
        f"(warm-up {state['config']['warmup']}, cosine to 0.1x), grad-clip 1.0, seed {state['config']['seed']}; "
        "these are the EMA weights, stored as float16.",
        f"- **Time and hardware**: {state['elapsed_s'] / 60:.1f} min of training on {HARDWARE}.",
        f"- **Size**: {size_mb:.1f} MB of safetensors.",
        "",
        "## Quality (held-out test split)",
        "",
    ]
    if quality:
        lines += [
            table(quality),
            "",
            "Mean ± standard error over the sampling seeds; see docs/codi.md for the baselines.",
        ]
    if note:
        lines += ["", note] if quality else [note]
    lines += ["", "## Reproduce", "", "```", command, eval_command, "```", ""]
    return "\n".join(lines)


def ship(name: str, run: Path, table_json: Path | None, eval_command: str, note: str = "") -> Path:
    if name not in CODI_MODELS or not NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} is not one of {', '.join(CODI_MODELS)}")
    if table_json is None and not note:
        raise ValueError("table/note: a model card needs its quality, give --table or --quality-note (or both)")
    checkpoint = latest(run)
    if checkpoint is None:
        raise FileNotFoundError(f"run: {run} has no checkpoint")
    state = json.loads((checkpoint / "state.json").read_text())
    pipe = load(str(checkpoint / "pipeline"))
    log = run.parent / f"{run.name}.log"
    teacher, task, variant = NAME.fullmatch(name).groups()
    extra = f"--task {task} --variant {variant} --resume --no-progress"
    quality = []
    if table_json is not None:
        rows = json.loads(table_json.read_text())["rows"]
        quality = [r for r in rows if r.get("key", {}).get("path") == name]

    def fill(tmp: Path) -> None:
        pipe.to(torch.float16).save_pretrained(tmp)
        if teacher == "mini-sd":
            write_bpe_files(pipe.tokenizer, tmp / "tokenizer")
        write_json(
            tmp / "training.json",
            {
                "steps": state["step"],
                "elapsed_s": state["elapsed_s"],
                "hardware": HARDWARE,
                "history": state["history"],
                "log": log.name if log.is_file() else None,
            },
        )
        size_mb = sum(p.stat().st_size for p in tmp.rglob("*.safetensors")) / 1e6
        card = model_card(
            name,
            teacher,
            task,
            variant,
            state,
            dict(pipe.config),
            quality,
            note,
            size_mb,
            _command(teacher, state["config"], extra),
            eval_command,
        )
        (tmp / "README.md").write_text(card)

    return write(weights_path(name), fill)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("run", type=Path)
    p.add_argument("--table", type=Path, default=None, help="an `unetlab eval codi` JSON with rows of this model")
    p.add_argument("--eval-command", default="", help="the `unetlab eval codi` line that measured the table")
    p.add_argument(
        "--quality-note", default="", help="quality measured otherwise (benchmarks/codi_realism.py), one paragraph"
    )
    args = p.parse_args()
    try:
        print(ship(args.name, args.run, args.table, args.eval_command, args.quality_note))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
