"""Trainable parameter counts of the built-in families (MODELS.md's formulas), without Keras.

The sweep plans its grid with them in the main process, which must not import TensorFlow
(``tinyloc_tf/tf_log.py``); the encoders (``models/mamba.py``, ``models/mdcsa.py``, ``models/mlp.py``) are
tested against them.
"""

from __future__ import annotations

import math

from tinyloc_tf.errors import TinylocError

# MDCSA's DCSA branches: one per kernel size.
KERNELS_BY_LAYERS = {1: (1,), 3: (1, 4, 7)}


def mamba_param_count(features: int, classes: int, hidden: int, layers: int,
                      d_state: int = 16, expand: int = 2, d_conv: int = 4, crf: bool = True) -> int:
    """MODELS.md's formula for the trainable parameters (with the CRF's K^2 + 2K when ``crf``)."""
    F, K, H, L, N = features, classes, hidden, layers, d_state
    D, r = expand * hidden, math.ceil(hidden / 16)
    block = H + 2 * D * H + (d_conv * D + D) + D * (r + 2 * N) + (r * D + D) + N * D + D + D * H
    total = F * H + H + L * block + H * K
    return total + (K * K + 2 * K if crf else 0)


def mdcsa_param_count(
    features: int, classes: int, hidden: int, layers: int, crf: bool = True, unused: bool = False
) -> int:
    """MODELS.md's formula for MDCSA's trainable parameters.

    ``crf`` adds the CRF's ``K^2 + 2K``. ``unused`` adds what the reference also builds for
    a second (accelerometer) modality that RSSI-only models never use, per branch
    ``2H + 2(H*H*k+H) + 4H*H``: the paper's counts include it, this port does not build it.
    """
    if int(layers) not in KERNELS_BY_LAYERS:
        raise TinylocError(f"MDCSA supports layers=1 or layers=3, got {layers}")
    F, K, H = features, classes, hidden
    total = F * H + H + 2 * H  # embedding, fusion LayerNorm
    for k in KERNELS_BY_LAYERS[int(layers)]:
        total += 2 * H + 2 * (H * H * k + H)  # LayerNorm, key and query convs
        total += (4 * H * H + 4 * H) + (16 * H * H + 4 * H) + (8 * H * H + 2 * H) + 2 * H  # GRN
        if unused:
            total += 2 * H + 2 * (H * H * k + H) + 4 * H * H
    total += (3 * H * H + H) + (H * K + K)  # fusion conv, head
    return total + (K * K + 2 * K if crf else 0)


def mlp_param_count(features: int, classes: int, hidden: int, layers: int, crf: bool = True) -> int:
    """The MLP family's trainable parameters (``models/mlp.py``), with the CRF's K^2 + 2K when ``crf``."""
    F, K, H, L = features, classes, hidden, layers
    total = F * H + H + (L - 1) * (H * H + H) + H * K + K
    return total + (K * K + 2 * K if crf else 0)


def shortcut_param_count(features: int, classes: int) -> int:
    """What the linear shortcut adds (``models/shortcut.py``): its ``[F, K]`` kernel and ``[K]`` bias."""
    return int(features) * int(classes) + int(classes)
