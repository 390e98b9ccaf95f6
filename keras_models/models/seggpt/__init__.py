"""SegGPT (model_type ``seggpt``), channels_last.

The example image is stacked above the image to segment, and the example's mask above itself;
both stacks go through one patch embedding. The mask stack's bottom half (``bool_masked_pos``,
by default the lower half of the patches) is replaced by the learned mask token; segment tokens
(input / prompt), the [CLS]-less absolute position table (bicubically resized from
``pretrain_image_size``) and a type token ("instance" or "semantic") are added, and the two
stacks travel as one batch of 2 x batch through ViT blocks with decomposed relative positions
(global attention; ViTDet blocks). After block ``merge_index`` the two halves of the batch are
averaged. With ``feature_ensemble`` the attention outputs of the image halves are averaged over
the prompts of an image. The blocks named by ``intermediate_hidden_state_indices`` are
layer-normed and concatenated for the decoder: a linear layer to ``patch_size**2 x
decoder_hidden_size`` features per patch, unpatchified, then conv 3x3 -> channel LayerNorm ->
activation -> conv 1x1 to RGB.

:class:`SegGptBackbone` returns the last hidden state (batch, 2H/p, W/p, hidden) (Transformers'
``SegGptModel`` ``last_hidden_state``); :class:`SegGptInContextSegmenter` returns ``pred_masks``
(batch, 2H, W, 3).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules, resize_grid
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.seggpt.processor import SegGptImageProcessor
from keras_models.models.vit.backbone import _pair, one_or_pair
from keras_models.models.vitdet import VitDetBlock
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.in_context_segmenter import InContextSegmenter

_ser = keras.saving.register_keras_serializable(package="keras_models")
EMBEDDING_TYPES = ("instance", "semantic")


def _ints(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise ValueError("expected a list of integers")
    return tuple(v)


def _mlp_ratio(hidden, inner):
    ratio = inner / hidden
    while int(hidden * ratio) < inner:
        ratio = float(np.nextafter(ratio, np.inf))
    return ratio


@dataclass(frozen=True, kw_only=True)
class SegGptSpec(Spec):
    hidden_size: int = dim("hidden_size", 1024)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    hidden_act: str = hf("hidden_act", "gelu")
    hidden_dropout_prob: float = hf("hidden_dropout_prob", 0.0, doc="training only (not applied)")
    initializer_range: float = hf("initializer_range", 0.02)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    image_size: tuple = hf("image_size", (896, 448), read=_pair, write=one_or_pair,
                           doc="the stacked (example above image) size")
    patch_size: int = dim("patch_size", 16)
    num_channels: int = dim("num_channels", 3)
    qkv_bias: bool = hf("qkv_bias", True)
    mlp_dim: int | None = hf("mlp_dim", None)
    drop_path_rate: float = hf("drop_path_rate", 0.1, doc="training only (not applied)")
    pretrain_image_size: int = dim("pretrain_image_size", 224)
    decoder_hidden_size: int = dim("decoder_hidden_size", 64)
    use_relative_position_embeddings: bool = hf("use_relative_position_embeddings", True)
    merge_index: int = hf("merge_index", 2)
    intermediate_hidden_state_indices: tuple = hf("intermediate_hidden_state_indices", (5, 11, 17, 23), read=_ints)
    beta: float = hf("beta", 0.01, doc="training loss only")

    @property
    def inner_dim(self):
        return self.mlp_dim if self.mlp_dim is not None else 4 * self.hidden_size

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                              f"{self.num_heads}")
        if self.mlp_dim is not None and (not isinstance(self.mlp_dim, int) or self.mlp_dim <= 0):
            raise ConfigError(f"{source}: key 'mlp_dim' must be a positive integer, got {self.mlp_dim!r}")
        idx = self.intermediate_hidden_state_indices
        if not idx or any(i < 0 or i >= self.num_layers for i in idx):
            raise ConfigError(f"{source}: key 'intermediate_hidden_state_indices' {list(idx)} must name blocks "
                              f"0..{self.num_layers - 1}")
        if not 0 <= self.merge_index <= min(idx):
            raise ConfigError(f"{source}: key 'merge_index' ({self.merge_index}) must be in 0..min("
                              f"intermediate_hidden_state_indices) = {min(idx)}")
        h, w = self.image_size
        if h % (2 * self.patch_size) or w % self.patch_size:
            raise ConfigError(f"{source}: image_size {list(self.image_size)} must be (2 x a multiple of patch_size, "
                              f"a multiple of patch_size {self.patch_size})")
        try:
            get_activation(self.hidden_act)
        except ValueError as e:
            raise ConfigError(f"{source}: key 'hidden_act': {e}") from e

    def dummy_inputs(self):
        h, w = self.image_size
        x = np.zeros((1, h // 2, w, self.num_channels), "float32")
        return {"pixel_values": x, "prompt_pixel_values": x, "prompt_masks": x}


@_ser
@register_backbone("seggpt")
class SegGptBackbone(SpecBackbone):
    spec_cls = SegGptSpec
    base_model_prefix = "model"
    hf_architecture = "SegGptModel"
    verified_backends = ("jax", "torch", "tensorflow")  # tests/vision/test_seggpt.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, dict(dtype=self.dtype_policy)
        self.grid = (s.image_size[0] // s.patch_size, s.image_size[1] // s.patch_size)
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, s.num_channels, name="patch_embeddings",
                                              **d)
        ratio = _mlp_ratio(s.hidden_size, s.inner_dim)
        self.blocks = [VitDetBlock(s.hidden_size, s.num_heads, ratio, s.hidden_act, s.layer_norm_eps, s.qkv_bias,
                                   relative_positions=s.use_relative_position_embeddings, rel_size=self.grid,
                                   name=f"layers_{i}", **d) for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="layernorm", **d)

    def build(self, input_shape=None):
        s, c = self.spec, self.spec.hidden_size
        self.patch_embedding.build((None, None, None, s.num_channels))
        n = (s.pretrain_image_size // s.patch_size) ** 2 + 1
        self.position_embeddings = self.add_weight(name="position_embeddings", shape=(1, n, c), initializer="zeros")
        self.tokens = {name: self.add_weight(name=name, shape=(1, 1, 1, c), initializer="zeros")
                       for name in ("mask_token", "segment_token_input", "segment_token_prompt",
                                    "type_token_semantic", "type_token_instance")}
        for b in self.blocks:
            b.build((None, None, None, c))
        self.final_norm.build((None, None, None, c))
        self.built = True

    def _positions(self, h, w):
        table = self.position_embeddings[:, 1:]
        size = int(round(table.shape[1] ** 0.5))
        grid = ops.reshape(table, (1, size, size, self.spec.hidden_size))
        return resize_grid(grid, h, w, mode="bicubic")

    def _block(self, block, x, ensemble_cond, feature_ensemble):
        y = block.attend(block.norm1(x))
        n = x.shape[0]
        if feature_ensemble and n is not None and n // 2 >= ensemble_cond:
            half = y.shape[1] // 2
            prompt, inputs = y[:, :half], y[:, half:]
            if ensemble_cond == 2:
                k = n // 2
                avg = ops.mean(ops.reshape(inputs, (2, k, -1)), axis=1, keepdims=True)
                inputs = ops.reshape(ops.broadcast_to(avg, (2, k, avg.shape[-1])), ops.shape(prompt))
            else:
                inputs = ops.broadcast_to(ops.mean(inputs, axis=0, keepdims=True), ops.shape(inputs))
            y = ops.concatenate([prompt, inputs], axis=1)
        x = x + y
        return x + block.fc2(block.act(block.fc1(block.norm2(x))))

    def encode(self, inputs, feature_ensemble=False, embedding_type="instance", training=False):
        """(last hidden state, [layer-normed intermediate hidden states])."""
        s = self.spec
        if embedding_type not in EMBEDDING_TYPES:
            raise InputError(f"SegGPT: embedding_type must be one of {EMBEDDING_TYPES}, got {embedding_type!r}")
        for key in ("pixel_values", "prompt_pixel_values", "prompt_masks"):
            if key not in inputs:
                raise InputError(f"SegGPT needs {key} (batch, H, W, channels)")
        pixels, prompt, masks = inputs["pixel_values"], inputs["prompt_pixel_values"], inputs["prompt_masks"]
        labels = inputs.get("labels")
        images = ops.concatenate([ops.cast(prompt, self.compute_dtype), ops.cast(pixels, self.compute_dtype)], axis=1)
        lower = masks if labels is None else labels
        mask_stack = ops.concatenate([ops.cast(masks, self.compute_dtype), ops.cast(lower, self.compute_dtype)], axis=1)
        if tuple(images.shape[1:3]) != tuple(s.image_size):
            raise InputError(f"SegGPT: the example stacked above the image is {tuple(images.shape[1:3])}, the model "
                             f"expects image_size {tuple(s.image_size)} (each image {s.image_size[0] // 2}x"
                             f"{s.image_size[1]})")
        x_in = self.patch_embedding(images)
        x_pr = self.patch_embedding(mask_stack)
        ph, pw = x_in.shape[1], x_in.shape[2]
        masked = inputs.get("bool_masked_pos")
        if masked is None:
            n = ph * pw
            masked = np.concatenate([np.zeros(n // 2), np.ones(n - n // 2)]).astype("float32")[None]
        w = ops.reshape(ops.cast(masked, x_pr.dtype), (-1, ph, pw, 1))
        mask_token = ops.cast(self.tokens["mask_token"], x_pr.dtype)
        x_pr = x_pr * (1 - w) + mask_token * w
        pos = ops.cast(self._positions(ph, pw), x_in.dtype)
        kind = ops.cast(self.tokens[f"type_token_{embedding_type}"], x_in.dtype)
        x_in = x_in + ops.cast(self.tokens["segment_token_input"], x_in.dtype) + pos + kind
        x_pr = x_pr + ops.cast(self.tokens["segment_token_prompt"], x_in.dtype) + pos + kind
        x = ops.concatenate([x_in, x_pr], axis=0)
        intermediates = []
        for i, block in enumerate(self.blocks):
            x = self._block(block, x, 2 if s.merge_index > i else 1, feature_ensemble)
            if i == s.merge_index:
                half = x.shape[0] // 2
                x = (x[:half] + x[half:]) * 0.5
            if i in s.intermediate_hidden_state_indices:
                intermediates.append(self.final_norm(x))
        return x, intermediates

    def call(self, inputs, feature_ensemble=False, embedding_type="instance", training=False):
        return self.encode(inputs, feature_ensemble, embedding_type, training)[0]

    def weight_rules(self):
        r = conv_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)
        r.append(Rule("embeddings.position_embeddings", self.position_embeddings))
        r += [Rule(f"embeddings.{name}", v) for name, v in self.tokens.items()]
        for i, b in enumerate(self.blocks):
            q = f"encoder.layers.{i}."
            a = b.attention
            r += dense_rules(q + "attention.qkv", a.qkv) + dense_rules(q + "attention.proj", a.output_dense)
            r += norm_rules(q + "layernorm_before", b.norm1) + norm_rules(q + "layernorm_after", b.norm2)
            r += dense_rules(q + "mlp.lin1", b.fc1) + dense_rules(q + "mlp.lin2", b.fc2)
            if b.relative_positions:
                r += [Rule(q + "attention.rel_pos_h", b.rel_h), Rule(q + "attention.rel_pos_w", b.rel_w)]
        return r + norm_rules("encoder.layernorm", self.final_norm)


@_ser
@register_task(SegGptBackbone, "InContextSegmenter", ("SegGptForImageSegmentation",))
class SegGptInContextSegmenter(InContextSegmenter):
    hf_head_patterns = ("decoder.*",)

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        s, d = backbone.spec, dict(dtype=backbone.dtype_policy)
        self.decoder_embed = keras.layers.Dense(s.patch_size ** 2 * s.decoder_hidden_size, name="decoder_embed", **d)
        self.conv = keras.layers.Conv2D(s.decoder_hidden_size, 3, name="decoder_conv", **d)
        self.norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="decoder_layernorm", **d)
        self.head = keras.layers.Conv2D(3, 1, name="decoder_head", **d)
        self.act = get_activation(s.hidden_act)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.preprocessing.image import CONFIG_NAME

        if not (folder / CONFIG_NAME).is_file():
            return None
        return SegGptImageProcessor.from_preset(folder)

    def build(self, input_shape=None):
        s = self.backbone.spec
        self.decoder_embed.build((None, None, None, s.hidden_size * len(s.intermediate_hidden_state_indices)))
        for layer in (self.conv, self.head):
            layer.build((None, None, None, s.decoder_hidden_size))
        self.norm.build((None, None, None, s.decoder_hidden_size))
        self.built = True

    def call(self, inputs, feature_ensemble=None, embedding_type=None, training=False):
        s = self.backbone.spec
        ensemble = self.feature_ensemble if feature_ensemble is None else bool(feature_ensemble)
        kind = self.embedding_type if embedding_type is None else embedding_type
        _, intermediates = self.backbone.encode(inputs, ensemble, kind, training=training)
        x = self.decoder_embed(ops.concatenate(intermediates, axis=-1))
        n, ph, pw, p, d = ops.shape(x)[0], x.shape[1], x.shape[2], s.patch_size, s.decoder_hidden_size
        x = ops.reshape(x, (n, ph, pw, p, p, d))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (n, ph * p, pw * p, d))
        x = self.conv(ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
        return self.head(self.act(self.norm(x)))

    def head_rules(self):
        r = dense_rules("decoder.decoder_embed", self.decoder_embed, base=False)
        r += conv_rules("decoder.decoder_pred.conv", self.conv, base=False)
        r += norm_rules("decoder.decoder_pred.layernorm", self.norm, base=False)
        return r + conv_rules("decoder.decoder_pred.head", self.head, base=False)


__all__ = ["SegGptSpec", "SegGptBackbone", "SegGptInContextSegmenter", "SegGptImageProcessor"]
