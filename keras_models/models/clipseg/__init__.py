"""CLIPSeg: CLIP's towers and a light transformer decoder that segments an image by a text (or
image) prompt (:class:`~keras_models.tasks.zero_shot_image_segmenter.ZeroShotImageSegmenter`);
the dual encoder alone scores images against texts as CLIP does (``ZeroShotImageClassifier``).

* Towers: CLIP's text tower; CLIP's vision tower whose position table is resized (bicubic,
  PyTorch's ``align_corners=False``) to the input's patch grid whenever that grid differs from
  the configured one (Transformers' ``interpolate_pos_encoding=True`` default), so any image size
  that is a multiple of the patch size works.
* Decoder: the vision tower's hidden states after the blocks listed in ``extract_layers`` (index
  ``i`` is ``hidden_states[i + 1]``, with Python's negative indexing), deepest first, each reduced
  to ``reduce_dim`` and added to the running output; at step ``conditional_layer`` the output is
  FiLM-modulated by the prompt embedding (``film_mul(p) * x + film_add(p)``); then one post-norm
  transformer block (ReLU MLP, whatever ``decoder_hidden_act`` says, as Transformers does) per
  step. The class token is dropped, the patch grid upsampled by a stride-``patch_size`` transposed
  convolution to one logit per pixel, or with ``use_complex_transposed_convolution`` by a 3x3
  convolution, ReLU and two transposed convolutions of stride ``patch_size // 4`` (an upsampling
  by (patch_size // 4)**2 in all: the input's size for 16-pixel patches).
* Weights: ``CLIPSegModel`` checkpoints hold the towers at the top level, ``CLIPSegForImageSegmentation``
  ones under ``clip.`` with the decoder under ``decoder.``.
"""

from dataclasses import dataclass, replace

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules, resize_grid
from keras_models.models.clip.dual import CLIPSpec, DualEncoderBackbone
from keras_models.models.clip.text import CLIPTextSpec, TextTower
from keras_models.models.clip.vision import CLIPVisionSpec, VisionTower
from keras_models.models.depth.layers import conv_transpose_rules
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import dim, hf, tower
from keras_models.tasks.zero_shot_image_classifier import ZeroShotImageClassifier
from keras_models.tasks.zero_shot_image_segmenter import ZeroShotImageSegmenter

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


# --- towers ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CLIPSegTextSpec(CLIPTextSpec):
    """CLIPSegTextConfig: CLIPTextConfig's keys and defaults."""


@_ser
@register_backbone("clipseg_text_model")
class CLIPSegTextBackbone(TextTower):
    spec_cls = CLIPSegTextSpec
    hf_architecture = "CLIPSegTextModel"
    verified_backends = _ALL


@dataclass(frozen=True, kw_only=True)
class CLIPSegVisionSpec(CLIPVisionSpec):
    """CLIPSegVisionConfig: CLIPVisionConfig's keys and defaults."""


@_ser
@register_backbone("clipseg_vision_model")
class CLIPSegVisionBackbone(VisionTower):
    """CLIP's vision tower taking any multiple of the patch size (position table resized)."""

    spec_cls = CLIPSegVisionSpec
    hf_architecture = "CLIPSegVisionModel"
    verified_backends = _ALL

    def embed(self, pixels):
        x = self.patch_embedding(pixels)
        b, gh, gw, d = ops.shape(x)[0], x.shape[1], x.shape[2], self.hidden_size
        if gh is None or gw is None:
            gh = gw = self.grid
        x = ops.reshape(x, (b, gh * gw, d))
        cls = ops.broadcast_to(ops.cast(self.class_embedding, x.dtype)[None, None, :], (b, 1, d))
        table = ops.cast(self.position_embedding, x.dtype)
        patches = ops.reshape(table[1:], (1, self.grid, self.grid, d))
        patches = ops.reshape(resize_grid(patches, gh, gw), (1, gh * gw, d))
        x = ops.concatenate([cls, x], axis=1) + ops.concatenate([table[None, :1], patches], axis=1)
        return self.pre_norm(x), (gh, gw)

    def hidden_states(self, inputs, training=False):
        """([embeddings, the output of each block...], (grid_h, grid_w)), Transformers' ``hidden_states``."""
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        x, grid = self.embed(pixels)
        states = [x]
        for block in self.blocks:
            x = block(x, training=training)
            states.append(x)
        return states, grid

    def call(self, inputs, training=False):
        return self.hidden_states(inputs, training=training)[0][-1]


# --- dual encoder ---------------------------------------------------------------------------------
def _ints(v):
    return tuple(int(i) for i in v)


@dataclass(frozen=True, kw_only=True)
class CLIPSegSpec(CLIPSpec):
    text_config: dict = tower("text_config", "clipseg_text_model")
    vision_config: dict = tower("vision_config", "clipseg_vision_model")
    extract_layers: tuple = hf("extract_layers", (3, 6, 9), read=_ints, write=list,
                               doc="vision hidden states (index i: after block i) read by the decoder")
    reduce_dim: int = dim("reduce_dim", 64)
    decoder_num_attention_heads: int = dim("decoder_num_attention_heads", 4)
    decoder_intermediate_size: int = dim("decoder_intermediate_size", 2048)
    decoder_attention_dropout: float = hf("decoder_attention_dropout", 0.0, doc="not used (as in Transformers)")
    decoder_hidden_act: str = hf("decoder_hidden_act", "quick_gelu",
                                 doc="not used: Transformers' decoder blocks always use ReLU")
    conditional_layer: int = hf("conditional_layer", 0, doc="decoder step (deepest first) that FiLM conditions")
    use_complex_transposed_convolution: bool = hf("use_complex_transposed_convolution", False)

    def validate(self, source="config.json"):
        if not self.extract_layers:
            raise ConfigError(f"{source}: extract_layers is empty")
        if self.reduce_dim % self.decoder_num_attention_heads:
            raise ConfigError(f"{source}: reduce_dim={self.reduce_dim} is not divisible by "
                              f"decoder_num_attention_heads={self.decoder_num_attention_heads}")


@_ser
@register_backbone("clipseg")
class CLIPSegBackbone(DualEncoderBackbone):
    """The towers and projections, named relative to the base model (``clip.`` in segmentation
    checkpoints, nothing in dual-encoder ones)."""

    spec_cls = CLIPSegSpec
    base_model_prefix = "clip"
    hf_architecture = "CLIPSegModel"
    hf_known_unused = ("*logit_scale",)
    verified_backends = _ALL

    def weight_rules(self):
        return [replace(r, base=True) for r in super().weight_rules()]


# --- tasks ----------------------------------------------------------------------------------------
@_ser
@register_task(CLIPSegBackbone, "ZeroShotImageClassifier", ("CLIPSegModel", "CLIPSegForImageSegmentation"))
class CLIPSegZeroShotImageClassifier(ZeroShotImageClassifier):
    """CLIP's scoring (``CLIPSegModel``); the temperature read at the top level or under ``clip.``."""

    @property
    def export_prefix(self):
        return ""  # written as CLIPSegModel (towers at the top level)

    def head_rules(self):
        return [Rule("logit_scale", self.logit_scale, base=False, aliases=("clip.logit_scale",))]


@_ser
@register_task(CLIPSegBackbone, "ZeroShotImageSegmenter", ("CLIPSegForImageSegmentation",))
class CLIPSegZeroShotImageSegmenter(ZeroShotImageSegmenter):
    hf_head_patterns = ("decoder.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s, vision = backbone.spec, backbone.vision_model
        common = dict(dtype=self.dtype_policy)
        r, p = s.reduce_dim, vision.spec.patch_size
        n = len(s.extract_layers)
        init = keras.initializers.Constant(s.logit_scale_init_value)
        self.logit_scale = self.add_weight(name="logit_scale", shape=(), initializer=init, trainable=False)
        self.film_mul = keras.layers.Dense(r, name="film_mul", **common)
        self.film_add = keras.layers.Dense(r, name="film_add", **common)
        self.reduces = [keras.layers.Dense(r, name=f"reduce_{i}", **common) for i in range(n)]
        self.blocks = [EncoderBlock(r, s.decoder_num_attention_heads, s.decoder_intermediate_size, hidden_act="relu",
                                    layer_norm_eps=vision.spec.layer_norm_eps, norm_first=False,
                                    name=f"decoder_block_{i}", **common) for i in range(n)]
        if s.use_complex_transposed_convolution:
            k = p // 4
            if k < 1:
                raise ConfigError(f"use_complex_transposed_convolution needs a patch_size of at least 4, got {p}")
            self.upsample = [keras.layers.Conv2D(r, 3, padding="same", name="upsample_conv", **common),
                             keras.layers.Conv2DTranspose(r // 2, k, strides=k, name="upsample_1", **common),
                             keras.layers.Conv2DTranspose(1, k, strides=k, name="upsample_2", **common)]
        else:
            self.upsample = [keras.layers.Conv2DTranspose(1, p, strides=p, name="upsample", **common)]

    def build(self, input_shape=None):
        s = self.backbone.spec
        r = s.reduce_dim
        self.film_mul.build((None, self.backbone.spec.projection_dim))
        self.film_add.build((None, self.backbone.spec.projection_dim))
        for layer in self.reduces:
            layer.build((None, None, self.backbone.vision_model.hidden_size))
        for block in self.blocks:
            block.build((None, None, r))
        width = r
        for layer in self.upsample:
            layer.build((None, None, None, width))
            width = layer.filters
        self.built = True

    def decode(self, activations, prompts, grid, training=False):
        """Logits (batch, H, W) from the chosen vision hidden states (deepest first) and the
        prompt embeddings (batch, projection_dim)."""
        x = None
        for i, (h, reduce, block) in enumerate(zip(activations, self.reduces, self.blocks)):
            x = reduce(h) if x is None else reduce(h) + x
            if i == self.backbone.spec.conditional_layer:
                x = self.film_mul(prompts)[:, None, :] * x + self.film_add(prompts)[:, None, :]
            x = block(x, None, training=training)
        gh, gw = grid
        x = ops.reshape(x[:, 1:], (ops.shape(x)[0], gh, gw, self.backbone.spec.reduce_dim))
        for i, layer in enumerate(self.upsample):
            x = layer(x)
            if i < len(self.upsample) - 1:
                x = ops.relu(x)
        return x[..., 0]

    def call(self, inputs, training=False):
        prompts = self.prompt_embeddings(inputs, training=training)
        states, grid = self.backbone.vision_model.hidden_states({"pixel_values": inputs["pixel_values"]},
                                                                training=training)
        chosen = [states[i + 1] for i in self.backbone.spec.extract_layers]
        return self.decode(chosen[::-1], prompts, grid, training=training)

    def head_rules(self):
        r = [Rule("logit_scale", self.logit_scale, base=True)]
        r += dense_rules("decoder.film_mul", self.film_mul, base=False)
        r += dense_rules("decoder.film_add", self.film_add, base=False)
        for i, (reduce, b) in enumerate(zip(self.reduces, self.blocks)):
            r += dense_rules(f"decoder.reduces.{i}", reduce, base=False)
            p, a = f"decoder.layers.{i}.", b.attention
            for name, dense in (("self_attn.q_proj", a.query), ("self_attn.k_proj", a.key),
                                ("self_attn.v_proj", a.value), ("self_attn.out_proj", a.output_dense),
                                ("mlp.fc1", b.intermediate), ("mlp.fc2", b.output_dense)):
                r += dense_rules(p + name, dense, base=False)
            r += norm_rules(p + "layer_norm1", b.attention_norm, base=False)
            r += norm_rules(p + "layer_norm2", b.output_norm, base=False)
        if len(self.upsample) == 1:
            r += conv_transpose_rules("decoder.transposed_convolution", self.upsample[0])
        else:
            r += conv_rules("decoder.transposed_convolution.0", self.upsample[0], base=False)
            r += conv_transpose_rules("decoder.transposed_convolution.2", self.upsample[1])
            r += conv_transpose_rules("decoder.transposed_convolution.4", self.upsample[2])
        return r


__all__ = ["CLIPSegTextSpec", "CLIPSegTextBackbone", "CLIPSegVisionSpec", "CLIPSegVisionBackbone", "CLIPSegSpec",
           "CLIPSegBackbone", "CLIPSegZeroShotImageClassifier", "CLIPSegZeroShotImageSegmenter"]
