"""``python -m manual_bp.train``: train on real data with the hand-derived gradients.

With no arguments it trains the one-hidden-layer network on scikit-learn's bundled digits
(64 -> 64 -> 10, 30 epochs of minibatch gradient descent, batch 32, learning rate 0.1),
shows progress over the epochs with loss and accuracy, and prints a summary. ``--help`` lists
every option; the command is :func:`manual_bp.train.cli.main`.
"""

from __future__ import annotations

from manual_bp.train.cli import DEFAULTS, main, parser, plot_history

__all__ = ["DEFAULTS", "main", "parser", "plot_history"]

if __name__ == "__main__":
    raise SystemExit(main())
