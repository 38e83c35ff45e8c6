"""Run `unetlab bench` and `unetlab analyze trace|ablate|perturb` on tiny models into OUT: `python reports.py
PIPELINE OUT`, alone or under `accelerate launch` (the same commands, in one process group)."""

import sys

import torch

from unetlab.cli import main

COMMON = ["--steps", "3", "--seeds", "3", "--batch-size", "1"]


def commands(pipe: str, out: str) -> list[list[str]]:
    return [
        [
            "bench",
            "--model",
            pipe,
            "--out",
            f"{out}/bench",
            "--steps",
            "4",
            "--num-images",
            "3",
            "--batch-size",
            "1",
            "--timing-images",
            "1",
            "--repeats",
            "2",
            "--quick",
            "--method",
            "branch cache N=2 B=0",
        ],
        ["analyze", "trace", "--model", "tiny:ddpm", "--out", f"{out}/analyze", *COMMON],
        [
            "analyze",
            "ablate",
            "--model",
            "tiny:ddpm",
            "--out",
            f"{out}/analyze",
            *COMMON,
            "--windows",
            "1",
            "--components",
            "mid_block",
        ],
        ["analyze", "perturb", "--model", "tiny:ddpm", "--out", f"{out}/analyze", *COMMON, "--sigmas", "0.5"],
    ]


def run_all(pipe: str, out: str) -> None:
    for argv in commands(pipe, out):
        assert main(argv) == 0, argv


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_all(sys.argv[1], sys.argv[2])
