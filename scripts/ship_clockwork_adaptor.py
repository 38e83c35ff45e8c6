"""Copy a finished `unetlab train clockwork` run's EMA adaptor into the package
(models/weights/clockwork-adaptor-<name>/) with its training record and model card.

    python scripts/ship_clockwork_adaptor.py shapes runs/clockwork-shapes --bench docs/bench_clockwork_adaptor.json \
        --wall-s 1500 --bench-command "unetlab bench ..."
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from unetlab.accel.clockwork_adaptor import shipped_path
from unetlab.atomic import write, write_json
from unetlab.checkpoint import latest
from unetlab.models.registry import CLOCKWORK_ADAPTORS

HARDWARE = "a 2-core CPU shared with other jobs (no GPU), one torch thread"
PROMPTS = {
    "digits": "none: the shipped `digits` model is unconditional, so the trajectories start from noise only",
    "shapes": "captions of the shapes caption grammar over the training attribute combinations (drawn with "
    "the run's seed); guidance 5 (the bench's), so each trajectory gives the UNet's unconditional "
    "and conditional rows; the held-out evaluation uses held-out combinations",
    "mini-sd": "256 captions of the scenes train split (`unetlab.data.scenes.sample(256, seed=10000, "
    "split='train')`, one a line in the --prompts file); guidance 7.5 (the bench's), so each trajectory gives the "
    "UNet's unconditional and conditional rows; the evaluation trajectories use the same captions at other seeds",
}


def _command(run: dict, cfg: dict) -> str:
    return (
        f"unetlab train clockwork --model {run['model']} --out runs/{Path(cfg['out']).name} "
        f"--trajectories {run['trajectories']} --trajectory-steps {run['trajectory_steps']} "
        f"--level {run['level']} --clock {run['clock']} --steps {cfg['steps']} --batch-size {cfg['batch_size']} "
        f"--lr {cfg['lr']} --warmup {cfg['warmup']} --checkpoint-every {cfg['checkpoint_every']} --threads 1 "
        f"--seed {cfg['seed']}"
        + ("" if run.get("prompts") is None else " --prompts PROMPTS.txt")
        + ("" if run.get("guidance_scale") is None else f" --guidance-scale {run['guidance_scale']}")
    )


def _bench_table(rows: list[dict]) -> str:
    lines = [
        "| method | FLOPs × | wall × (min–max) | PSNR to DDIM-50 (dB) | SSIM | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        wall = (
            "—"
            if r["speedup_wall"] is None
            else f"{r['speedup_wall']:.2f} ({r['speedup_wall_min']:.2f}–{r['speedup_wall_max']:.2f})"
        )
        psnr = "—" if r["psnr"] is None else f"{r['psnr']:.2f}"
        ssim = "—" if r["ssim"] is None else f"{r['ssim']:.4f}"
        lines.append(f"| {r['method']} | {r['speedup_flops']:.3f} | {wall} | {psnr} | {ssim} | {r['accuracy']:.3f} |")
    return "\n".join(lines)


def model_card(
    name: str,
    state: dict,
    adaptor_config: dict,
    bench_rows: list[dict],
    size_mb: float,
    wall_s: float,
    bench_command: str,
) -> str:
    cfg, run = state["config"], state["config"]["run"]
    last = state["history"][-1]
    params = adaptor_config
    lines = [
        f"# unetlab Clockwork adaptor for `{name}`",
        "",
        f'Shipped with unetlab; use with `unetlab.clockwork(unetlab.load("{name}"), clock={run["clock"]}, '
        f'adaptor="{name}")`.',
        "",
        "- **Method**: Clockwork's learned adaptor (Habibian et al., CVPR 2024, Sec. 3.2): strided conv, "
        + ("projection of the pooled text embedding, " if params.get("text_dim") else "")
        + f"two ResNet blocks on the UNet's time embedding, transposed conv, residual from the previous step's "
        f"low-resolution output; cut level {params['level']} (in {params['in_channels']} channels, out "
        f"{params['out_channels']}, width {params['channels']}).",
        f"- **Data**: {run['trajectories']} sampling trajectories of the shipped `{name}` model itself "
        f"(DDIM, {run['trajectory_steps']} steps, the bench's sampler), recorded at seeds from 10,000 (the "
        f"bench samples from seed 0); prompts: {PROMPTS.get(name, 'from --prompts')}. No image data. The "
        f"adaptor is trained at the steps it runs at with clock {run['clock']} (step % {run['clock']} != 0), "
        "on the L2 distance to the full UNet's low-resolution output.",
        f"- **Training**: {state['step']} optimiser steps, batch {cfg['batch_size']}, AdamW lr {cfg['lr']} "
        f"(warm-up {cfg['warmup']}, cosine to {cfg['min_lr_ratio']}x), grad-clip {cfg['grad_clip']}, EMA "
        f"{cfg['ema_decay']}, seed {cfg['seed']}; these are the EMA weights.",
        f"- **Time and hardware**: {wall_s / 60:.1f} min of wall time in all (recording the trajectories and "
        f"{state['elapsed_s'] / 60:.1f} min of the training loop) on {HARDWARE}.",
        f"- **Size**: {size_mb:.2f} MB of safetensors (float32).",
        "",
        "## Quality",
        "",
        f"Held-out trajectories (other seeds{', held-out captions' if name == 'shapes' else ''}): mean squared "
        f"error of the low-resolution output {last['eval_mse']:.3g} against the identity adaptor's "
        f"{last['identity_mse']:.3g} (ratio {last['mse_ratio']:.3f}).",
        "",
    ]
    if bench_rows:
        lines += [
            "`unetlab bench` (DDIM-50 baseline; PSNR to its images; accuracy by the model's shipped judge):",
            "",
            _bench_table(bench_rows),
            "",
            "```",
            bench_command,
            "```",
            "",
        ]
    lines += [
        "## Reproduce",
        "",
        "```",
        _command(run, cfg),
        f"python scripts/ship_clockwork_adaptor.py {name} "
        f"runs/{Path(cfg['out']).name} --wall-s {wall_s:.0f} --bench BENCH_JSON",
        "```",
        "",
    ]
    return "\n".join(lines)


def ship(name: str, run: Path, bench_json: Path | None, wall_s: float, bench_command: str = "") -> Path:
    if name not in CLOCKWORK_ADAPTORS:
        raise ValueError(f"name: {name!r} is not one of {', '.join(CLOCKWORK_ADAPTORS)}")
    checkpoint = latest(run)
    if checkpoint is None:
        raise FileNotFoundError(f"run: {run} has no checkpoint")
    state = json.loads((checkpoint / "state.json").read_text())
    rows = []
    if bench_json is not None:
        rows = [r for r in json.loads(bench_json.read_text())["rows"] if r["model"] == name and r["psnr"] is not None]

    def fill(tmp: Path) -> None:
        shutil.copytree(checkpoint / "pipeline", tmp)
        adaptor_config = json.loads((tmp / "config.json").read_text())
        write_json(
            tmp / "training.json",
            {
                "steps": state["step"],
                "elapsed_s": state["elapsed_s"],
                "wall_s": wall_s,
                "hardware": HARDWARE,
                "history": state["history"],
                "run": state["config"]["run"],
            },
        )
        size_mb = sum(p.stat().st_size for p in tmp.rglob("*.safetensors")) / 1e6
        (tmp / "README.md").write_text(model_card(name, state, adaptor_config, rows, size_mb, wall_s, bench_command))

    return write(shipped_path(name), fill)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=CLOCKWORK_ADAPTORS)
    p.add_argument("run", type=Path)
    p.add_argument("--bench", type=Path, default=None, help="a bench.json with rows of this model")
    p.add_argument("--bench-command", default="", help="the `unetlab bench` line that measured it")
    p.add_argument("--wall-s", type=float, required=True, help="wall time of the whole training command")
    args = p.parse_args()
    print(ship(args.name, args.run, args.bench, args.wall_s, args.bench_command))


if __name__ == "__main__":
    main()
