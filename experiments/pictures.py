"""The pictures every experiment draws: a terminal heat map always, and the same picture as a PNG
under --out when matplotlib is installed (it is optional). Drawing only: nothing here is a paper's."""
import numpy as np

import train


def save_png(args, filename, draw):
    """Call draw(plt) and save the figure under --out, if --out is given and matplotlib present."""
    path = train.out_path(args, filename)
    if path is None:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = plt.figure(figsize=(8, 5))
    draw(plt)
    fig.tight_layout()
    train.write_atomically(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)
    print(f"saved {path}")
    return path


def save_loss_curves(args, curves, filename="loss.png"):
    """curves: {label: [loss per step]} -> one PNG with a line per label."""
    def draw(plt):
        for label, losses in curves.items():
            plt.plot(np.arange(1, len(losses) + 1), losses, label=label, linewidth=1)
        plt.yscale("log")
        plt.xlabel("step")
        plt.ylabel("training loss")
        plt.legend()
    return save_png(args, filename, draw)


SHADES = " ░▒▓█"


def print_heatmap(matrix, row_labels, col_labels, title):
    """A terminal picture of a [rows, cols] matrix of values in [0, 1] (e.g. attention weights),
    shaded relative to its largest value; negative values (linear start's raw scores) show blank and
    a NaN (a diverged run) as '?'."""
    matrix = np.asarray(matrix, dtype=float)
    finite = matrix[np.isfinite(matrix)]
    scale = finite.max() if finite.size and finite.max() > 0 else 1.0
    width = max(len(str(r)) for r in row_labels)
    print(title)
    labels = [str(c)[:8] for c in col_labels]
    for depth in range(max(len(c) for c in labels)):  # column labels written downwards
        print(" " * (width + 1) + "".join(c[depth] if depth < len(c) else " " for c in labels))
    for label, row in zip(row_labels, matrix):
        cells = "".join("?" if not np.isfinite(v) else SHADES[min(max(int(v / scale * len(SHADES)), 0), len(SHADES) - 1)]
                        for v in row)
        print(f"{str(label):>{width}} {cells}")


def show_heatmap(args, filename, matrix, row_labels, col_labels, title):
    """The terminal picture, and the same matrix as a PNG under --out."""
    print_heatmap(matrix, row_labels, col_labels, title)

    def draw(plt):
        plt.imshow(np.asarray(matrix), cmap="Greys", aspect="auto")
        plt.xticks(range(len(col_labels)), col_labels, rotation=90, fontsize=7)
        plt.yticks(range(len(row_labels)), row_labels, fontsize=7)
        plt.title(title)
    return save_png(args, filename, draw)
