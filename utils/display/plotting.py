"""Figures as PNG files (matplotlib's Agg backend: no screen needed), shown in a notebook."""
import os
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from ..files import atomic_path  # noqa: E402

try:
    # In a notebook kernel with IPython >= 9, matplotlib 3.7's hook for IPython imports
    # `backend2gui`, which IPython removed; the hook is marked installed before that import,
    # so letting it fail once here keeps every later figure working.
    plt.install_repl_displayhook()
except ImportError:
    pass


def _in_notebook():
    ipython = sys.modules.get('IPython')
    shell = ipython.get_ipython() if ipython else None
    return shell is not None and 'IPKernelApp' in shell.config


def _as_numpy(img):
    return img.asnumpy() if hasattr(img, 'asnumpy') else img


def save_figure(fig, path):
    """Save `fig` as a PNG at `path` (atomically) and close it; return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight')
    plt.close(fig)
    if _in_notebook():
        from IPython.display import Image, display
        display(Image(filename=path))
    return path


def show_images(imgs, num_rows, num_cols, titles=None, scale=1.5, path=None):
    """Grid of images (HWC, values in [0, 1] or uint8); saved to `path` when given."""
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(num_cols * scale, num_rows * scale),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis('off')
        if i < len(imgs):
            img = _as_numpy(imgs[i])
            ax.imshow(img.squeeze() if img.ndim == 3 and img.shape[2] == 1 else img,
                      cmap='gray' if img.ndim == 2 or img.shape[-1] == 1 else None)
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=8)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_history(histories, path, title=None):
    """Test accuracy and training loss per epoch of several runs, {name: history}, as a PNG."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, history in histories.items():
        epochs = range(1, len(history['loss']) + 1)
        ax_acc.plot(epochs, history['test_acc'], marker='o', label=name)
        ax_loss.plot(epochs, history['loss'], marker='o', label=name)
    ax_acc.set(xlabel='epoch', ylabel='test accuracy')
    ax_loss.set(xlabel='epoch', ylabel='training loss')
    for ax in (ax_acc, ax_loss):
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return save_figure(fig, path)
