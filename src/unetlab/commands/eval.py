"""`unetlab eval <metric>`: evaluate a trained model (bpd, classifier, quality, codi)."""

from __future__ import annotations

from . import codi_eval, likelihood, quality


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a trained model: bpd, classifier, quality, codi", description=__doc__
    )
    sub = p.add_subparsers(dest="metric", metavar="METRIC", required=True)
    likelihood.register_bpd(sub)
    quality.register_classifier(sub)
    quality.register_quality(sub)
    codi_eval.register_eval(sub)
