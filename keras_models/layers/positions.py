"""Fixed sinusoidal position tables (computed once in numpy, looked up by position id)."""

import math

import numpy as np


def sinusoidal_table(num_positions, dim, style="fairseq"):
    """(num_positions, dim) float32 table.

    "fairseq" (tensor2tensor / XGLM): [sin | cos] halves with frequencies
    exp(-i * log(10000) / (dim/2 - 1)), zero-padded when dim is odd.
    "ctrl": [sin | cos] halves with frequencies 10000^(-2i / dim).
    """
    half = dim // 2
    if style == "fairseq":
        freq = np.exp(np.arange(half, dtype=np.float64) * -(math.log(10000.0) / (half - 1)))
    elif style == "ctrl":
        freq = 1.0 / np.power(10000.0, 2.0 * np.arange(half, dtype=np.float64) / dim)
    else:
        raise ValueError(f"unknown sinusoidal style {style!r}")
    angles = np.arange(num_positions, dtype=np.float64)[:, None] * freq[None, :]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2:
        table = np.concatenate([table, np.zeros((num_positions, 1))], axis=1)
    return table.astype("float32")
