"""Training curves as a PNG: loss and accuracy per epoch, unfreezing events marked."""
from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe = "l2" in history[0]  # a linear probe: one row per L2 strength, not per epoch
    epochs = [h["l2"] if probe else h["epoch"] for h in history]
    xlabel = "L2 strength of the head (L-BFGS to convergence)" if probe else "epoch"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "s-", label="val")
    ax_loss.set(xlabel=xlabel, ylabel="loss", title="loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [h["val_accuracy"] for h in history], "s-", label="val")
    ax_acc.set(xlabel=xlabel, ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for prev, cur in zip(history, history[1:]):
        if cur["trainable_stages"] != prev["trainable_stages"]:
            for ax in (ax_loss, ax_acc):
                ax.axvline(cur["epoch"] - 0.5, color="grey", lw=0.8, ls=":")
    best = max(history, key=lambda h: h["val_accuracy"])
    ax_acc.annotate(f"best {best['val_accuracy']:.3f}", (best["l2"] if probe else best["epoch"], best["val_accuracy"]),
                    textcoords="offset points", xytext=(0, -18), ha="center")
    for ax in (ax_loss, ax_acc):
        if probe:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
