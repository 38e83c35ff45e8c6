"""The report's verdict: the fastest row of each group (unetlab, fewer steps, peers) at the baseline's quality."""

from unetlab.bench.verdict import Criterion, fastest, line


def _row(method, family, wall, accuracy=None, fd=None, psnr=None, model="m", unsupported=None):
    return dict(
        model=model, method=method, family=family, speedup_wall=wall, accuracy=accuracy, fd=fd, psnr=psnr,
        unsupported=unsupported,
    )  # fmt: skip


JUDGED = [
    _row("DDIM-50", "baseline", 1.0, accuracy=0.50, fd=10.0),
    _row("branch cache", "branch-cache", 2.0, accuracy=0.495, fd=10.9, psnr=30),  # within 1 point and 10%: matches
    _row("clockwork", "clockwork", 3.0, accuracy=0.48, fd=10.0, psnr=30),  # 2 points below: does not match
    _row("EP", "encoder-propagation", 4.0, accuracy=0.60, fd=11.5, psnr=30),  # Fréchet 15% above: does not match
    _row("DDIM-25", "fewer-steps", 1.9, accuracy=0.50, fd=10.5, psnr=30),
    _row("DDIM-10", "fewer-steps", 5.0, accuracy=0.30, fd=30.0, psnr=20),
    _row("DeepCache", "deepcache", 2.5, accuracy=0.51, fd=9.0, psnr=30),
    _row("T-GATE", "tgate", 9.0, unsupported="tgate is not installed"),
]


def test_the_fastest_matching_row_of_each_group():
    best = fastest(JUDGED, "m")
    assert {g: r and r["method"] for g, r in best.items()} == {
        "unetlab": "branch cache",
        "fewer steps": "DDIM-25",
        "peers": "DeepCache",
    }
    text = line(JUDGED, "m")
    assert "unetlab: branch cache 2.00×; fewer steps: DDIM-25 1.90×; peers: DeepCache 2.50×. And by PSNR" in text


def test_fidelity_decides_where_the_judge_reads_every_row_alike():
    """The line's second clause: PSNR >= 38 dB whatever the judge says."""
    rows = [
        _row("DDIM-50", "baseline", 1.0, accuracy=0.0, fd=100.0),
        _row("DDIM-25", "fewer-steps", 2.3, accuracy=0.0, fd=100.0, psnr=33.9),
        _row("clockwork", "clockwork", 1.45, accuracy=0.0, fd=100.0, psnr=44.8),
    ]
    assert fastest(rows, "m")["fewer steps"]["method"] == "DDIM-25"
    by_fidelity = fastest(rows, "m", Criterion(fidelity=True))
    assert by_fidelity["fewer steps"] is None and by_fidelity["unetlab"]["method"] == "clockwork"
    assert line(rows, "m").endswith("by PSNR >= 38 dB against the baseline's images — unetlab: clockwork 1.45×; "
                                    "fewer steps: none; peers: none.")  # fmt: skip


def test_a_looser_criterion_admits_more_rows():
    best = fastest(JUDGED, "m", Criterion(points=0.05, fd_ratio=1.2))
    assert best["unetlab"]["method"] == "EP"


def test_without_a_judge_psnr_decides_and_speed_only_has_no_verdict():
    rows = [
        _row("DDIM-50", "baseline", 1.0),
        _row("branch cache", "branch-cache", 2.0, psnr=39.0),
        _row("clockwork", "clockwork", 3.0, psnr=37.0),
    ]
    assert fastest(rows, "m")["unetlab"]["method"] == "branch cache"
    assert fastest(rows, "m")["peers"] is None and "peers: none" in line(rows, "m")
    speed_only = [_row("DDIM-50", "baseline", 1.0), _row("branch cache", "branch-cache", 2.0)]
    assert "no verdict" in line(speed_only, "m")
