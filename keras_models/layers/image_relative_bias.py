"""BEiT-style 2-D relative position bias for [CLS] + patch-grid attention.

A learned table of (2*Wh-1)*(2*Ww-1) + 3 rows (the last three: cls->token, token->cls,
cls->cls) by heads. For another patch grid the spatial part of the table is resized bilinearly
(PyTorch's ``align_corners=False``), as Transformers does, then gathered with a static index.
"""

import keras
import numpy as np
from keras import ops

from keras_models.layers.vision_embeddings import resize_grid


def relative_position_index(gh, gw):
    """(gh*gw + 1, gh*gw + 1) int index into a table for a gh x gw window plus [CLS]."""
    n_rel = (2 * gh - 1) * (2 * gw - 1) + 3
    coords = np.stack(np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel[:, :, 0] += gh - 1
    rel[:, :, 1] += gw - 1
    rel[:, :, 0] *= 2 * gw - 1
    n = gh * gw + 1
    index = np.zeros((n, n), np.int64)
    index[1:, 1:] = rel.sum(-1)
    index[0, :] = n_rel - 3
    index[:, 0] = n_rel - 2
    index[0, 0] = n_rel - 1
    return index


@keras.saving.register_keras_serializable(package="keras_models")
class RelativePositionBias(keras.layers.Layer):
    def __init__(self, window_size, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        wh, ww = self.window_size
        self.num_relative_distance = (2 * wh - 1) * (2 * ww - 1) + 3

    def build(self, input_shape=None):
        self.table = self.add_weight(name="table", shape=(self.num_relative_distance, self.num_heads),
                                     initializer="zeros")
        self.built = True

    def bias_for(self, grid):
        """grid: static (gh, gw) -> additive bias (1, heads, gh*gw+1, gh*gw+1)."""
        gh, gw = grid
        wh, ww = self.window_size
        table = self.table
        if (gh, gw) != (wh, ww):
            old_h, old_w = 2 * wh - 1, 2 * ww - 1
            sub = ops.reshape(table[: self.num_relative_distance - 3], (1, old_w, old_h, self.num_heads))
            sub = resize_grid(sub, 2 * gh - 1, 2 * gw - 1, mode="bilinear")
            sub = ops.reshape(sub, (-1, self.num_heads))
            table = ops.concatenate([sub, table[self.num_relative_distance - 3:]], axis=0)
        index = relative_position_index(gh, gw)
        n = index.shape[0]
        bias = ops.take(table, ops.convert_to_tensor(index.reshape(-1).astype("int32")), axis=0)
        bias = ops.reshape(bias, (n, n, self.num_heads))
        return ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)

    def get_config(self):
        c = super().get_config()
        c.update(window_size=list(self.window_size), num_heads=self.num_heads)
        return c
