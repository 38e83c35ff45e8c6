"""VDM and DiffEnc models from one validated config (build, save, load) and the task that trains either with
unetlab's training loop (`unetlab train vdm|diffenc`)."""

from .build import LikelihoodConfig, build_model, load_model, save_model
from .task import LikelihoodTask

__all__ = ["LikelihoodConfig", "LikelihoodTask", "build_model", "load_model", "save_model"]
