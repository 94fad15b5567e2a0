"""The training curves as a PNG: loss (log scale) and accuracy per epoch, train vs held-out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from manual_bp.train._loop import History

__all__ = ["plot_history"]


def plot_history(history: History, path: Path, title: str) -> None:
    """Write loss (log scale) and accuracy curves, train vs held-out, per epoch as a PNG."""
    from matplotlib.figure import Figure  # lazily: matplotlib is in the `train` extra

    epochs = np.arange(len(history.train_loss))
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, history.train_loss, label="train", color="tab:blue")
    loss_ax.plot(epochs, history.test_loss, label="held-out", color="tab:orange")
    loss_ax.set(title="Cross-entropy loss", xlabel="epoch", ylabel="mean loss (log scale)")
    loss_ax.set_yscale("log")
    loss_ax.legend(loc="upper right")
    train_acc = 100 * np.asarray(history.train_accuracy)
    test_acc = 100 * np.asarray(history.test_accuracy)
    acc_ax.plot(epochs, train_acc, color="tab:blue", label=f"train (final {train_acc[-1]:.2f}%)")
    acc_ax.plot(epochs, test_acc, color="tab:orange", label=f"held-out (final {test_acc[-1]:.2f}%)")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    # Zoom on the trained range: epoch 0 (chance level) would squash the curves that matter.
    low = min(train_acc[1:].min(), test_acc[1:].min()) if len(epochs) > 1 else test_acc.min()
    acc_ax.set_ylim(max(0.0, np.floor(low) - 1), 100.5)
    if test_acc[0] < acc_ax.get_ylim()[0]:
        note = f"epoch 0 (off scale): {train_acc[0]:.1f}% train, {test_acc[0]:.1f}% held-out"
        acc_ax.text(0.98, 0.03, note, transform=acc_ax.transAxes, ha="right", color="gray")
    acc_ax.legend(loc="center right")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
