"""`unetlab analyze trace|ablate|perturb|derive --model NAME_OR_PATH --out DIR`: JSON + PNG + Markdown summary."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import shutil
import tempfile
from pathlib import Path

from .args import any_float, nonnegative_float, positive_float, positive_int

SHIPPED = ("digits", "shapes", "mini-sd")


def register(sub) -> None:
    p = sub.add_parser("analyze", help="temporal dynamics of a model's UNet: trace, ablate, perturb, derive")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "trace": "per-part feature change, norm and spectrum across steps",
        "ablate": "component x step-window ablation grid (resumable)",
        "perturb": "output sensitivity to noise at each resolution level",
        "derive": "key steps, block-skip plan and DeepCache setting from trace.json / ablation.json in --out",
    }
    for name, text in helps.items():
        a = actions.add_parser(name, help=text)
        a.add_argument(
            "--model",
            required=True,
            help="'digits', 'shapes', 'mini-sd', a pipeline folder (model_index.json), a UNet folder, or tiny:FAMILY",
        )
        a.add_argument("--out", required=True, help="output folder")
        a.add_argument("--steps", type=positive_int, default=20, help="sampling steps (default 20)")
        a.add_argument("--seeds", type=positive_int, default=4, help="number of seeds 0..N-1 (default 4)")
        a.add_argument(
            "--prompts",
            nargs="+",
            default=None,
            help="prompts (text models; default: two captions of the model's data)",
        )
        a.add_argument("--guidance-scale", type=nonnegative_float, default=None, help="classifier-free guidance scale")
        a.add_argument("--batch-size", type=positive_int, default=None, help="samples per sampling call (default: all)")
        a.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
        if name == "ablate":
            a.add_argument("--windows", type=positive_int, default=4, help="number of equal step windows (default 4)")
            a.add_argument(
                "--replace",
                default="cached",
                choices=("zeros", "cached", "mean", "bypass"),
                help="what replaces the ablated component (default cached)",
            )
            a.add_argument("--components", default=None, help="comma-separated components (default: all)")
            a.add_argument(
                "--eval-as",
                default=None,
                choices=SHIPPED,
                help="score outputs with this shipped classifier or judge (default: --model when it is shipped)",
            )
        if name == "perturb":
            a.add_argument(
                "--sigmas",
                type=positive_float,
                nargs="+",
                default=[0.05, 0.1, 0.2, 0.5, 1.0],
                help="relative noise scales (default 0.05 0.1 0.2 0.5 1)",
            )
        if name == "derive":
            a.add_argument(
                "--num-keys", type=positive_int, default=None, help="key-step budget (default: steps // 4 + 1)"
            )
            a.add_argument("--threshold", type=positive_float, default=None, help="accumulated-change budget instead")
            a.add_argument(
                "--min-psnr", type=any_float, default=30.0, help="block-skip quality budget in dB (default 30)"
            )
            a.add_argument("--no-verify", action="store_true", help="do not run the plan to measure PSNR and FLOPs")
        a.set_defaults(func=run)


def load_model(name: str):
    """A pipeline or bare UNet from a shipped name, a folder, or `tiny:FAMILY` (random tiny UNet)."""
    if name.startswith("tiny:"):
        from unetlab.testing import FAMILIES, tiny_unet

        family = name.split(":", 1)[1]
        if family not in FAMILIES:
            raise ValueError(f"--model: tiny:{family} is not one of {', '.join('tiny:' + f for f in FAMILIES)}")
        return tiny_unet(family)
    path = Path(name)
    if name in SHIPPED or (path / "model_index.json").is_file():
        from unetlab.loading import load

        return load(name)
    if path.exists():
        from unetlab.unet import load_unet

        return load_unet(path).eval()
    raise FileNotFoundError(f"--model: {name!r} is not digits, shapes, mini-sd, tiny:FAMILY or an existing folder")


def _default_prompts(pipe, name: str) -> list[str] | None:
    """Two captions for a text-conditioned pipeline (mini-sd's grammar for mini-sd, else shapes'), else None."""
    if pipe is None or not hasattr(pipe, "text_encoder"):
        return None
    if name == "mini-sd":
        return [
            "a big red circle at the center on a blue plain background",
            "a small yellow star left of a big white square on a black striped background",
        ]
    return [
        "a red circle at the center on a blue background",
        "a yellow triangle at the top left on a black background",
    ]


def _check_prompts(args) -> None:
    """Prompts the mini-sd judge will read must follow its caption grammar: refused before any sampling."""
    if args.prompts and "mini-sd" in (args.model, getattr(args, "eval_as", None)):
        from unetlab.data.scenes import parse_caption

        for prompt in args.prompts:
            parse_caption(prompt)


def run(args) -> int:
    import torch

    if getattr(args, "windows", 1) > args.steps:
        raise ValueError(
            f"--windows: {args.windows} windows do not fit in --steps {args.steps}; expected 1..{args.steps}"
        )
    _check_prompts(args)
    from accelerate import Accelerator

    torch.set_num_threads(args.threads)
    accelerator = Accelerator()
    model = load_model(args.model)
    pipe = model if hasattr(model, "scheduler") else None
    prompts = args.prompts or _default_prompts(pipe, args.model)
    common = dict(
        prompts_or_batch=prompts,
        num_inference_steps=args.steps,
        seeds=list(range(args.seeds)),
        guidance_scale=args.guidance_scale,
        batch_size=args.batch_size,
    )
    if args.action != "derive":
        common["accelerator"] = accelerator
    if accelerator.is_main_process:
        return _report(model, args, Path(args.out), common)
    with tempfile.TemporaryDirectory() as private:  # the other processes share the sampling, not the writing
        if Path(args.out).is_dir():  # the inputs of derive and the cached ablation cells, as the main process sees
            shutil.copytree(args.out, private, dirs_exist_ok=True)  # them before the first shared chunk
        _report(model, args, Path(private), common, quiet=True)
    return 0


def _report(model, args, out: Path, common: dict, quiet: bool = False) -> int:
    from . import analyze_report as report

    out.mkdir(parents=True, exist_ok=True)
    header = _header(args)
    text = getattr(report, args.action)(model, args, out, common)
    path = out / f"{args.action}.md"
    path.write_text(header + text)
    if not quiet:
        print(f"wrote {path}")
    return 0


def command_line(args) -> str:
    """The command that reproduces this run, rebuilt from the parsed arguments."""
    parts = ["unetlab", "analyze", args.action]
    for key, value in vars(args).items():
        if key in ("command", "action", "func") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _header(args) -> str:
    cmd = command_line(args)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# unetlab analyze {args.action}: {args.model}\n\n`{cmd}`\n\n"
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU, {args.threads} thread(s), no GPU; {date}.\n\n"
    )
