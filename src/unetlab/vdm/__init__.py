"""Variational Diffusion Models (Kingma et al. 2021) in PyTorch: schedules, the three-term bound, sampler, bpd."""

from .bpd import evaluate_bpd
from .model import VDM
from .sampler import ancestral_sample, ancestral_step
from .schedules import (
    GAMMA_MAX,
    GAMMA_MIN,
    FixedLinearSchedule,
    LearnedLinearSchedule,
    MonotoneSchedule,
    alpha2_sigma2,
    gamma_and_derivative,
)
from .score_net import NoDownsampleUNet
from .terms import antithetic_t, bins_to_x, images_to_x, nats_to_bpd, prior_kl, reconstruction_nll, x_to_bins

__all__ = [
    "GAMMA_MAX",
    "GAMMA_MIN",
    "VDM",
    "FixedLinearSchedule",
    "LearnedLinearSchedule",
    "MonotoneSchedule",
    "NoDownsampleUNet",
    "alpha2_sigma2",
    "ancestral_sample",
    "ancestral_step",
    "antithetic_t",
    "bins_to_x",
    "evaluate_bpd",
    "gamma_and_derivative",
    "images_to_x",
    "nats_to_bpd",
    "prior_kl",
    "reconstruction_nll",
    "x_to_bins",
]
