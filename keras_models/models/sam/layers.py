"""SAM's prompt encoder and two-way mask decoder (channels_last), as Keras layers.

* :class:`SamPromptEncoder`: random-Fourier positional encoding of prompt coordinates (the
  stored ``(2, num_pos_feats)`` matrix, shared with the image-wide encoding), learned point-type
  embeddings (negative / positive point, box corners), "not a point" for label -1 and nothing for
  the padding label -10; a mask prompt goes through a 2x2/2 -> 2x2/2 -> 1x1 conv stack with
  channel LayerNorms, else the learned no-mask embedding fills the image grid.
* :class:`SamMaskDecoder`: the IoU and mask tokens followed by the sparse prompt tokens attend
  both ways with the image embedding (two-way blocks: token self-attention, token -> image,
  MLP, image -> token; the first block's self-attention without positions and without a
  residual; their cross-attentions downsample by 2 whatever ``attention_downsample_rate``
  says, as in Transformers), a final token -> image attention (downsampled by that rate;
  LayerNorm eps 1e-5), two stride-2 transposed
  convolutions that upscale the image embedding x4, one hypernetwork MLP per mask token whose
  output is dotted with the upscaled map, and an IoU head.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.presets.weight_map import Rule, Transpose

_ser = keras.saving.register_keras_serializable(package="keras_models")


def conv_transpose_rules(prefix, conv):
    # torch ConvTranspose2d weight (in, out, kh, kw) <-> keras Conv2DTranspose kernel (kh, kw, out, in)
    return [Rule(f"{prefix}.weight", conv.kernel, Transpose((2, 3, 1, 0)), base=False),
            Rule(f"{prefix}.bias", conv.bias, base=False)]


def fourier_encode(coords, matrix):
    """Coordinates normalised to [0, 1] (..., 2) -> (..., 2 * num_pos_feats) sin / cos features."""
    c = 2.0 * ops.cast(coords, matrix.dtype) - 1.0
    c = ops.matmul(c, matrix) * (2.0 * math.pi)
    return ops.concatenate([ops.sin(c), ops.cos(c)], axis=-1)


@_ser
class SamFeedForward(keras.layers.Layer):
    """proj_in -> ReLU -> (num_layers - 2) x [Linear -> ReLU] -> proj_out."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.hidden_dim, self.output_dim, self.num_layers = input_dim, hidden_dim, output_dim, num_layers
        d = dict(dtype=self.dtype_policy)
        self.proj_in = keras.layers.Dense(hidden_dim, name="proj_in", **d)
        self.hidden = [keras.layers.Dense(hidden_dim, name=f"layers_{i}", **d) for i in range(num_layers - 2)]
        self.proj_out = keras.layers.Dense(output_dim, name="proj_out", **d)

    def build(self, input_shape=None):
        self.proj_in.build((None, self.input_dim))
        for layer in self.hidden:
            layer.build((None, self.hidden_dim))
        self.proj_out.build((None, self.hidden_dim))
        self.built = True

    def call(self, x):
        x = ops.relu(self.proj_in(x))
        for layer in self.hidden:
            x = ops.relu(layer(x))
        return self.proj_out(x)

    def rules(self, p):
        r = dense_rules(p + ".proj_in", self.proj_in, base=False)
        for i, layer in enumerate(self.hidden):
            r += dense_rules(f"{p}.layers.{i}", layer, base=False)
        return r + dense_rules(p + ".proj_out", self.proj_out, base=False)

    def get_config(self):
        c = super().get_config()
        c.update(input_dim=self.input_dim, hidden_dim=self.hidden_dim, output_dim=self.output_dim,
                 num_layers=self.num_layers)
        return c


def _attention(hidden, heads, downsample, name, dtype):
    inner = hidden // downsample
    return Attention(hidden, heads, head_dim=inner // heads, name=name, dtype=dtype)


def _attend(att, q, k, v):
    """SAM attention: separate query / key / value inputs (n, t, hidden) -> (n, t, hidden)."""
    q = att._split(att.query(q), att.num_heads)
    k = att._split(att.key(k), att.num_heads)
    v = att._split(att.value(v), att.num_heads)
    return att.output_dense(att.attend(q, k, v))


def _attention_rules(p, att):
    r = []
    for name, dense in (("q_proj", att.query), ("k_proj", att.key), ("v_proj", att.value),
                        ("out_proj", att.output_dense)):
        r += dense_rules(f"{p}.{name}", dense, base=False)
    return r


@_ser
class SamTwoWayBlock(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, mlp_dim, hidden_act="relu", downsample=2, layer_norm_eps=1e-6,
                 skip_first_layer_pe=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.mlp_dim, self.hidden_act = hidden_size, num_heads, mlp_dim, hidden_act
        self.downsample, self.layer_norm_eps, self.skip_first_layer_pe = downsample, layer_norm_eps, skip_first_layer_pe
        d = self.dtype_policy
        self.self_attn = _attention(hidden_size, num_heads, 1, "self_attn", d)
        self.token_to_image = _attention(hidden_size, num_heads, downsample, "cross_attn_token_to_image", d)
        self.image_to_token = _attention(hidden_size, num_heads, downsample, "cross_attn_image_to_token", d)
        self.norms = [keras.layers.LayerNormalization(epsilon=layer_norm_eps, name=f"layer_norm{i + 1}", dtype=d)
                      for i in range(4)]
        self.lin1 = keras.layers.Dense(mlp_dim, name="lin1", dtype=d)
        self.lin2 = keras.layers.Dense(hidden_size, name="lin2", dtype=d)
        self.act = get_activation(hidden_act)

    def build(self, input_shape=None):
        s = (None, None, self.hidden_size)
        for layer in [self.self_attn, self.token_to_image, self.image_to_token, self.lin1] + self.norms:
            layer.build(s)
        self.lin2.build((None, None, self.mlp_dim))
        self.built = True

    def call(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = _attend(self.self_attn, queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + _attend(self.self_attn, q, q, queries)
        queries = self.norms[0](queries)
        queries = queries + _attend(self.token_to_image, queries + query_pe, keys + key_pe, keys)
        queries = self.norms[1](queries)
        queries = self.norms[2](queries + self.lin2(self.act(self.lin1(queries))))
        keys = keys + _attend(self.image_to_token, keys + key_pe, queries + query_pe, queries)
        return queries, self.norms[3](keys)

    def rules(self, p):
        r = _attention_rules(p + ".self_attn", self.self_attn)
        r += _attention_rules(p + ".cross_attn_token_to_image", self.token_to_image)
        r += _attention_rules(p + ".cross_attn_image_to_token", self.image_to_token)
        for i, norm in enumerate(self.norms):
            r += norm_rules(f"{p}.layer_norm{i + 1}", norm, base=False)
        return r + dense_rules(p + ".mlp.lin1", self.lin1, base=False) + dense_rules(p + ".mlp.lin2", self.lin2,
                                                                                    base=False)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                 hidden_act=self.hidden_act, downsample=self.downsample, layer_norm_eps=self.layer_norm_eps,
                 skip_first_layer_pe=self.skip_first_layer_pe)
        return c


@_ser
class SamPromptEncoder(keras.layers.Layer):
    """Sparse (points, boxes) and dense (mask or no-mask) prompt embeddings, channels_last; also
    holds the shared Fourier matrix (checkpoint ``shared_image_embedding.positional_embedding``)."""

    def __init__(self, hidden_size, num_pos_feats, image_size, grid_size, mask_input_channels=16, hidden_act="gelu",
                 layer_norm_eps=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_pos_feats, self.image_size = hidden_size, num_pos_feats, image_size
        self.grid_size, self.mask_input_channels = grid_size, mask_input_channels
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        d = dict(dtype=self.dtype_policy)
        m = mask_input_channels
        self.mask_conv1 = keras.layers.Conv2D(m // 4, 2, strides=2, name="mask_conv1", **d)
        self.mask_conv2 = keras.layers.Conv2D(m, 2, strides=2, name="mask_conv2", **d)
        self.mask_conv3 = keras.layers.Conv2D(hidden_size, 1, name="mask_conv3", **d)
        self.mask_norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="mask_norm1", **d)
        self.mask_norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="mask_norm2", **d)
        self.act = get_activation(hidden_act)

    def build(self, input_shape=None):
        c, m = self.hidden_size, self.mask_input_channels
        self.positional_embedding = self.add_weight(name="positional_embedding", shape=(2, self.num_pos_feats),
                                                    initializer="random_normal")
        self.point_embed = [self.add_weight(name=f"point_embed_{i}", shape=(1, c), initializer="random_normal")
                            for i in range(4)]
        self.not_a_point_embed = self.add_weight(name="not_a_point_embed", shape=(1, c), initializer="random_normal")
        self.no_mask_embed = self.add_weight(name="no_mask_embed", shape=(1, c), initializer="random_normal")
        self.mask_conv1.build((None, None, None, 1))
        self.mask_norm1.build((None, None, None, m // 4))
        self.mask_conv2.build((None, None, None, m // 4))
        self.mask_norm2.build((None, None, None, m))
        self.mask_conv3.build((None, None, None, m))
        self.built = True

    def image_positional_embeddings(self):
        """(grid, grid, hidden): the Fourier encoding of every image-embedding cell's centre."""
        g = self.grid_size
        centres = (np.arange(g, dtype="float32") + 0.5) / g
        xy = np.stack(np.meshgrid(centres, centres, indexing="xy"), axis=-1)  # [..., 0] = x (column)
        return fourier_encode(ops.convert_to_tensor(xy), self.positional_embedding)

    def embed_points(self, points, labels, pad):
        points = ops.cast(points, self.compute_dtype) + 0.5
        labels = ops.cast(labels, "int32")
        if pad:
            b, pb = ops.shape(points)[0], ops.shape(points)[1]
            points = ops.concatenate([points, ops.zeros((b, pb, 1, 2), points.dtype)], axis=2)
            labels = ops.concatenate([labels, -ops.ones((b, pb, 1), "int32")], axis=2)
        pe = fourier_encode(points / float(self.image_size), self.positional_embedding)
        pe = ops.cast(pe, self.compute_dtype)
        lab = labels[..., None]
        pe = ops.where(lab == -1, ops.cast(self.not_a_point_embed, pe.dtype), pe)
        pe = ops.where(lab == -10, ops.zeros_like(pe), pe)
        pe = ops.where(lab == 0, pe + ops.cast(self.point_embed[0], pe.dtype), pe)
        return ops.where(lab == 1, pe + ops.cast(self.point_embed[1], pe.dtype), pe)

    def embed_boxes(self, boxes):
        boxes = ops.cast(boxes, self.compute_dtype) + 0.5
        corners = ops.reshape(boxes, (ops.shape(boxes)[0], ops.shape(boxes)[1], 2, 2))
        pe = ops.cast(fourier_encode(corners / float(self.image_size), self.positional_embedding), self.compute_dtype)
        corner_types = ops.cast(ops.concatenate([self.point_embed[2], self.point_embed[3]], axis=0), pe.dtype)
        return pe + corner_types

    def embed_masks(self, masks):
        x = ops.cast(masks, self.compute_dtype)
        if len(x.shape) == 3:
            x = x[..., None]
        x = self.act(self.mask_norm1(self.mask_conv1(x)))
        x = self.act(self.mask_norm2(self.mask_conv2(x)))
        return self.mask_conv3(x)

    def call(self, points=None, labels=None, boxes=None, masks=None, batch_size=1):
        sparse = None
        if points is not None:
            sparse = self.embed_points(points, labels, pad=boxes is None)
        if boxes is not None:
            box = self.embed_boxes(boxes)
            sparse = box if sparse is None else ops.concatenate([sparse, box], axis=2)
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            dense = ops.reshape(ops.cast(self.no_mask_embed, self.compute_dtype), (1, 1, 1, self.hidden_size))
        return sparse, dense

    def rules(self, p="prompt_encoder"):
        r = [Rule("shared_image_embedding.positional_embedding", self.positional_embedding, base=False,
                  aliases=(p + ".shared_embedding.positional_embedding",))]
        r += [Rule(f"{p}.point_embed.{i}.weight", w, base=False) for i, w in enumerate(self.point_embed)]
        r += [Rule(p + ".not_a_point_embed.weight", self.not_a_point_embed, base=False),
              Rule(p + ".no_mask_embed.weight", self.no_mask_embed, base=False)]
        for i, conv in enumerate((self.mask_conv1, self.mask_conv2, self.mask_conv3)):
            r += conv_rules(f"{p}.mask_embed.conv{i + 1}", conv, base=False)
        for i, norm in enumerate((self.mask_norm1, self.mask_norm2)):
            r += norm_rules(f"{p}.mask_embed.layer_norm{i + 1}", norm, base=False)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_pos_feats=self.num_pos_feats, image_size=self.image_size,
                 grid_size=self.grid_size, mask_input_channels=self.mask_input_channels,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps)
        return c


@_ser
class SamMaskDecoder(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads=8, mlp_dim=2048, num_layers=2, hidden_act="relu", downsample=2,
                 num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256, layer_norm_eps=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.mlp_dim, self.num_layers = hidden_size, num_heads, mlp_dim, num_layers
        self.hidden_act, self.downsample, self.num_multimask_outputs = hidden_act, downsample, num_multimask_outputs
        self.iou_head_depth, self.iou_head_hidden_dim, self.layer_norm_eps = iou_head_depth, iou_head_hidden_dim, layer_norm_eps
        self.num_mask_tokens = num_multimask_outputs + 1
        d = self.dtype_policy
        c = hidden_size
        # Transformers builds the two-way blocks' cross-attentions with its default downsampling of 2,
        # whatever attention_downsample_rate says; the rate applies to the final token -> image attention.
        self.blocks = [SamTwoWayBlock(c, num_heads, mlp_dim, hidden_act, 2, layer_norm_eps,
                                      skip_first_layer_pe=i == 0, name=f"layers_{i}", dtype=d)
                       for i in range(num_layers)]
        self.final_attn = _attention(c, num_heads, downsample, "final_attn_token_to_image", d)
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="layer_norm_final_attn", dtype=d)
        self.upscale_conv1 = keras.layers.Conv2DTranspose(c // 4, 2, strides=2, name="upscale_conv1", dtype=d)
        self.upscale_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="upscale_layer_norm", dtype=d)
        self.upscale_conv2 = keras.layers.Conv2DTranspose(c // 8, 2, strides=2, name="upscale_conv2", dtype=d)
        self.hypernetworks = [SamFeedForward(c, c, c // 8, 3, name=f"hyper_{i}", dtype=d)
                              for i in range(self.num_mask_tokens)]
        self.iou_head = SamFeedForward(c, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth,
                                       name="iou_prediction_head", dtype=d)

    def build(self, input_shape=None):
        c = self.hidden_size
        self.iou_token = self.add_weight(name="iou_token", shape=(1, c), initializer="random_normal")
        self.mask_tokens = self.add_weight(name="mask_tokens", shape=(self.num_mask_tokens, c),
                                           initializer="random_normal")
        for layer in self.blocks + [self.final_attn, self.final_norm]:
            layer.build((None, None, c))
        self.upscale_conv1.build((None, None, None, c))
        self.upscale_norm.build((None, None, None, c // 4))
        self.upscale_conv2.build((None, None, None, c // 4))
        for layer in self.hypernetworks + [self.iou_head]:
            layer.build()
        self.built = True

    def call(self, image_embeddings, image_pe, sparse, dense, multimask_output=True):
        """image_embeddings (b, g, g, C), image_pe (g, g, C), sparse (b, pb, n, C) or None, dense
        (b or 1, g, g, C) -> masks (b, pb, masks, 4g, 4g), iou scores (b, pb, masks)."""
        c = self.hidden_size
        g1, g2 = image_embeddings.shape[1], image_embeddings.shape[2]
        b = ops.shape(image_embeddings)[0]
        pb = 1 if sparse is None else ops.shape(sparse)[1]
        tokens = ops.cast(ops.concatenate([self.iou_token, self.mask_tokens], axis=0), self.compute_dtype)
        tokens = ops.broadcast_to(tokens[None, None], (b, pb, 1 + self.num_mask_tokens, c))
        if sparse is not None:
            tokens = ops.concatenate([tokens, ops.cast(sparse, tokens.dtype)], axis=2)
        t = tokens.shape[2]
        image = image_embeddings + ops.cast(dense, image_embeddings.dtype)
        image = ops.broadcast_to(ops.reshape(image, (b, 1, g1 * g2, c)), (b, pb, g1 * g2, c))
        keys = ops.reshape(image, (-1, g1 * g2, c))
        key_pe = ops.cast(ops.reshape(image_pe, (1, g1 * g2, c)), keys.dtype)
        point_pe = ops.reshape(tokens, (-1, t, c))
        queries = point_pe
        for block in self.blocks:
            queries, keys = block(queries, keys, point_pe, key_pe)
        queries = self.final_norm(queries + _attend(self.final_attn, queries + point_pe, keys + key_pe, keys))
        iou_out = queries[:, 0]
        mask_out = queries[:, 1: 1 + self.num_mask_tokens]
        x = ops.reshape(keys, (-1, g1, g2, c))
        x = ops.gelu(self.upscale_norm(self.upscale_conv1(x)), approximate=False)
        x = ops.gelu(self.upscale_conv2(x), approximate=False)
        h, w = x.shape[1], x.shape[2]
        hyper = ops.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(self.hypernetworks)], axis=1)
        masks = ops.einsum("nmc,npc->nmp", hyper, ops.reshape(x, (-1, h * w, c // 8)))
        masks = ops.reshape(masks, (b, pb, self.num_mask_tokens, h, w))
        iou = ops.reshape(self.iou_head(iou_out), (b, pb, self.num_mask_tokens))
        if multimask_output:
            return masks[:, :, 1:], iou[:, :, 1:]
        return masks[:, :, :1], iou[:, :, :1]

    def rules(self, p="mask_decoder"):
        r = [Rule(p + ".iou_token.weight", self.iou_token, base=False),
             Rule(p + ".mask_tokens.weight", self.mask_tokens, base=False)]
        for i, block in enumerate(self.blocks):
            r += block.rules(f"{p}.transformer.layers.{i}")
        r += _attention_rules(p + ".transformer.final_attn_token_to_image", self.final_attn)
        r += norm_rules(p + ".transformer.layer_norm_final_attn", self.final_norm, base=False)
        r += conv_transpose_rules(p + ".upscale_conv1", self.upscale_conv1)
        r += conv_transpose_rules(p + ".upscale_conv2", self.upscale_conv2)
        r += norm_rules(p + ".upscale_layer_norm", self.upscale_norm, base=False)
        for i, mlp in enumerate(self.hypernetworks):
            r += mlp.rules(f"{p}.output_hypernetworks_mlps.{i}")
        return r + self.iou_head.rules(p + ".iou_prediction_head")

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                 num_layers=self.num_layers, hidden_act=self.hidden_act, downsample=self.downsample,
                 num_multimask_outputs=self.num_multimask_outputs, iou_head_depth=self.iou_head_depth,
                 iou_head_hidden_dim=self.iou_head_hidden_dim, layer_norm_eps=self.layer_norm_eps)
        return c


__all__ = ["SamPromptEncoder", "SamMaskDecoder", "SamTwoWayBlock", "SamFeedForward", "fourier_encode"]
