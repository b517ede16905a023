"""`twotier ledger plot`: training loss, validation loss, probe accuracy and chrF of several runs on one figure.

matplotlib is the optional `plot` extra (which `make` installs); it is imported only here.
"""

from __future__ import annotations

from pathlib import Path

from ...store import TwoTierError
from ...store.query import Curves
from ..text import printable


def plot_curves(all_curves: list[Curves], out: Path) -> None:
    """Three panels sharing the step axis, one colour per run; written as an image to `out`."""
    try:
        import matplotlib
    except ImportError:
        raise TwoTierError(
            "plot needs matplotlib, which is not installed: pip install matplotlib (make installs it into .venv)"
        ) from None
    matplotlib.use("Agg")  # files only: never open a window, also without a display
    import matplotlib.pyplot as plt

    figure, (train, val, accuracy) = plt.subplots(3, 1, sharex=True, figsize=(8, 8), constrained_layout=True)
    for curves in all_curves:
        # A `$` pair would start matplotlib's math text: a run name is shown as it is.
        label = printable(f"{curves.run.name} ({curves.run.id[:8]})").replace("$", r"\$")
        line = train.plot(curves.steps, curves.train_loss, label=label)[0]
        val.plot(curves.eval_steps, curves.val_loss, marker="o", color=line.get_color(), label=label)
        accuracy.plot(curves.eval_steps, curves.probe_accuracy, marker="o", color=line.get_color(), label=label)
        # The graded score (chrF) moves before the verdicts do: dashed, in the same colour.
        accuracy.plot(curves.eval_steps, curves.probe_score, linestyle="--", color=line.get_color())
    train.set_ylabel("training loss")
    val.set_ylabel("validation loss")
    accuracy.set_ylabel("probe accuracy, chrF --")
    accuracy.set_ylim(-0.05, 1.05)
    accuracy.set_xlabel("step")
    train.legend(loc="upper right", fontsize="small")
    for axes in (train, val, accuracy):
        axes.grid(alpha=0.3)
    try:
        figure.savefig(out, dpi=100)
    except OSError as err:
        raise TwoTierError(f"{out}: cannot write the plot: {err.strerror or err}") from err
    finally:
        plt.close(figure)
