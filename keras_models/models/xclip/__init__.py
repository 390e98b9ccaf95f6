"""X-CLIP: CLIP for video (zero-shot video classification,
:class:`~keras_models.tasks.zero_shot_video_classifier.ZeroShotVideoClassifier`).

* Vision tower: CLIP's, each frame on its own, but every block first builds a message token per
  frame (``message_fc`` of the frame's class token), lets the frames' messages attend to each other
  (``message_ln`` + attention, residual), appends each frame's message to its tokens for the
  block's self-attention, and drops it again before the MLP (cross-frame communication).
* Video embedding: the frames' projected pooled features + learned frame positions through a
  multi-frame integration transformer (CLIP encoder blocks, ``mit_*`` sizes; width =
  ``projection_dim``), plus a residual, averaged over frames.
* Text: CLIP's text tower, projected, then per video a prompt generator adds
  ``alpha * decoder(text, visual)`` where the visual context is the frames' mean of the normed,
  projected patch tokens and each decoder layer is pre-norm cross-attention (no q/k/v bias) + MLP.

Input: ``pixel_values`` (batch, frames, height, width, channels), ``input_ids`` / ``attention_mask``
(texts, seq). The number of frames is the config's ``num_frames``.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clip.text import CLIPTextSpec, TextTower
from keras_models.models.clip.vision import CLIPVisionSpec
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, build_tower, dim, hf, tower
from keras_models.tasks.zero_shot_video_classifier import ZeroShotVideoClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class XCLIPTextSpec(CLIPTextSpec):
    """XCLIPTextConfig: CLIPTextConfig's keys and defaults."""


@_ser
@register_backbone("xclip_text_model")
class XCLIPTextBackbone(TextTower):
    spec_cls = XCLIPTextSpec
    hf_architecture = "XCLIPTextModel"
    verified_backends = _ALL


@dataclass(frozen=True, kw_only=True)
class XCLIPVisionSpec(CLIPVisionSpec):
    mit_hidden_size: int = dim("mit_hidden_size", 512)
    mit_intermediate_size: int = dim("mit_intermediate_size", 2048)
    mit_num_layers: int = dim("mit_num_hidden_layers", 1)
    mit_num_heads: int = dim("mit_num_attention_heads", 8)
    num_frames: int = dim("num_frames", 8)
    drop_path_rate: float = hf("drop_path_rate", 0.0, doc="training only")

    def dummy_inputs(self):
        import numpy as np

        return {"pixel_values": np.zeros((self.num_frames, self.image_size, self.image_size, self.num_channels),
                                         "float32")}


@_ser
class CrossFrameBlock(VisionBlock):
    """CLIP's pre-norm block with a per-frame message token (see the module docstring)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, num_frames, **kwargs):
        super().__init__(hidden_size, num_heads, intermediate_size, **kwargs)
        self.num_frames = num_frames
        common = dict(dtype=self.dtype_policy)
        self.message_fc = keras.layers.Dense(hidden_size, name="message_fc", **common)
        self.message_ln = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="message_ln", **common)
        self.message_attn = Attention(hidden_size, num_heads, name="message_attn", **common)

    def build(self, input_shape):
        super().build(input_shape)
        for layer in (self.message_fc, self.message_ln, self.message_attn):
            layer.build((None, None, self.hidden_size))

    def call(self, x, bias=None, training=False):
        d, t = self.hidden_size, self.num_frames
        n = ops.shape(x)[1]
        msg = ops.reshape(self.message_fc(x[:, 0]), (-1, t, d))
        msg = msg + self.message_attn(self.message_ln(msg), training=training)
        h = ops.concatenate([x, ops.reshape(msg, (-1, 1, d))], axis=1)
        h = h + self.attention(self.norm1(h), training=training)
        x = h[:, :n]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames}


@_ser
@register_backbone("xclip_vision_model")
class XCLIPVisionBackbone(SpecBackbone):
    """Frames (batch * frames, H, W, C) -> (batch * frames, tokens, hidden); ``pooled`` is the
    post-normed class token."""

    spec_cls = XCLIPVisionSpec
    base_model_prefix = "vision_model"
    hf_architecture = "XCLIPVisionModel"
    hf_ignore = ("*position_ids",)
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.hidden_size, self.grid = s.hidden_size, s.image_size // s.patch_size
        common = dict(dtype=self.dtype_policy)
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, s.num_channels, use_bias=False,
                                              name="patch_embedding", **common)
        self.pre_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="pre_norm", **common)
        self.blocks = [CrossFrameBlock(s.hidden_size, s.num_heads, s.intermediate_size, s.num_frames,
                                       hidden_act=s.hidden_act, layer_norm_eps=s.layer_norm_eps,
                                       name=f"block_{i}", **common) for i in range(s.num_layers)]
        self.post_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="post_norm", **common)

    def build(self, input_shape=None):
        d = self.hidden_size
        self.class_embedding = self.add_weight(name="class_embedding", shape=(d,), initializer="zeros")
        self.position_embedding = self.add_weight(name="position_embedding", shape=(self.grid ** 2 + 1, d),
                                                  initializer="zeros")
        self.patch_embedding.build((None, None, None, self.spec.num_channels))
        for layer in (self.pre_norm, *self.blocks, self.post_norm):
            layer.build((None, None, d))
        self.built = True

    def call(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        x = self.patch_embedding(pixels)
        if (x.shape[1], x.shape[2]) != (self.grid, self.grid):
            raise InputError(f"pixel_values of {x.shape[1] * self.spec.patch_size}x{x.shape[2] * self.spec.patch_size} "
                             f"pixels: this model takes {self.spec.image_size}x{self.spec.image_size}")
        b, d = ops.shape(x)[0], self.hidden_size
        x = ops.reshape(x, (b, self.grid ** 2, d))
        cls = ops.broadcast_to(ops.cast(self.class_embedding, x.dtype)[None, None, :], (b, 1, d))
        x = ops.concatenate([cls, x], axis=1) + ops.cast(self.position_embedding, x.dtype)[None]
        x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def pooled(self, hidden, inputs=None):
        return self.post_norm(hidden[:, 0])

    def weight_rules(self):
        r = conv_rules("embeddings.patch_embedding", self.patch_embedding.projection)
        r += [Rule("embeddings.position_embedding.weight", self.position_embedding),
              Rule("embeddings.class_embedding", self.class_embedding)]
        r += norm_rules("pre_layernorm", self.pre_norm)
        for i, b in enumerate(self.blocks):
            p = f"encoder.layers.{i}."
            r += _attention_rules(p + "self_attn", b.attention) + _attention_rules(p + "message_attn", b.message_attn)
            r += dense_rules(p + "mlp.fc1", b.fc1) + dense_rules(p + "mlp.fc2", b.fc2)
            r += dense_rules(p + "message_fc", b.message_fc) + norm_rules(p + "message_ln", b.message_ln)
            r += norm_rules(p + "layer_norm1", b.norm1) + norm_rules(p + "layer_norm2", b.norm2)
        return r + norm_rules("post_layernorm", self.post_norm)


def _attention_rules(p, a, base=True):
    r = []
    for name, dense in (("q_proj", a.query), ("k_proj", a.key), ("v_proj", a.value), ("out_proj", a.output_dense)):
        r += dense_rules(f"{p}.{name}", dense, base=base)
    return r


def _encoder_block_rules(p, b, base=True):
    return (_attention_rules(p + "self_attn", b.attention, base)
            + dense_rules(p + "mlp.fc1", b.intermediate, base) + dense_rules(p + "mlp.fc2", b.output_dense, base)
            + norm_rules(p + "layer_norm1", b.attention_norm, base) + norm_rules(p + "layer_norm2", b.output_norm, base))


@_ser
class PromptGeneratorLayer(keras.layers.Layer):
    """text + cross_attn(norm1(text), visual); + mlp(norm3(...)) (4x width)."""

    def __init__(self, width, num_heads, hidden_act, layer_norm_eps, **kwargs):
        super().__init__(**kwargs)
        self.width, self.num_heads, self.hidden_act, self.layer_norm_eps = width, num_heads, hidden_act, layer_norm_eps
        common = dict(dtype=self.dtype_policy)
        self.cross_attn = Attention(width, num_heads, use_bias=False, output_bias=True, name="cross_attn", **common)
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm1", **common)
        self.norm3 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm3", **common)
        self.fc1 = keras.layers.Dense(4 * width, name="fc1", **common)
        self.fc2 = keras.layers.Dense(width, name="fc2", **common)
        self.act = get_activation(hidden_act)

    def build(self, input_shape):
        for layer in (self.cross_attn, self.norm1, self.norm3, self.fc1):
            layer.build((None, None, self.width))
        self.fc2.build((None, None, 4 * self.width))
        self.built = True

    def call(self, text, visual, training=False):
        text = text + self.cross_attn(self.norm1(text), context=visual, training=training)
        return text + self.fc2(self.act(self.fc1(self.norm3(text))))

    def rules(self, p):
        a = self.cross_attn
        return (dense_rules(p + "cross_attn.q_proj", a.query) + dense_rules(p + "cross_attn.k_proj", a.key)
                + dense_rules(p + "cross_attn.v_proj", a.value) + dense_rules(p + "cross_attn.proj", a.output_dense)
                + norm_rules(p + "norm1", self.norm1) + norm_rules(p + "norm3", self.norm3)
                + dense_rules(p + "mlp.0", self.fc1) + dense_rules(p + "mlp.3", self.fc2))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "num_heads": self.num_heads,
                "hidden_act": self.hidden_act, "layer_norm_eps": self.layer_norm_eps}


@dataclass(frozen=True, kw_only=True)
class XCLIPSpec(Spec):
    text_config: dict = tower("text_config", "xclip_text_model")
    vision_config: dict = tower("vision_config", "xclip_vision_model")
    projection_dim: int = dim("projection_dim", 512)
    logit_scale_init_value: float = hf("logit_scale_init_value", 2.6592)
    prompt_layers: int = hf("prompt_layers", 2)
    prompt_alpha: float = hf("prompt_alpha", 0.1)
    prompt_hidden_act: str = hf("prompt_hidden_act", "quick_gelu")
    prompt_num_attention_heads: int = dim("prompt_num_attention_heads", 8)
    prompt_attention_dropout: float = hf("prompt_attention_dropout", 0.0)
    prompt_projection_dropout: float = hf("prompt_projection_dropout", 0.0)


@_ser
@register_backbone("xclip")
class XCLIPBackbone(SpecBackbone):
    """``{"input_ids", "attention_mask", "pixel_values"}`` -> ``{"video_embeds" (batch, dim),
    "text_embeds" (batch, texts, dim)}`` (projected, not normalised)."""

    spec_cls = XCLIPSpec
    base_model_prefix = ""
    hf_architecture = "XCLIPModel"
    hf_ignore = ("*position_ids",)
    hf_known_unused = ("logit_scale",)
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.text_model = build_tower(s.text_config, "text_model", self.dtype_policy)
        self.vision_model = build_tower(s.vision_config, "vision_model", self.dtype_policy)
        v, p = self.vision_model.spec, s.projection_dim
        if v.mit_hidden_size != p:
            raise ConfigError(f"config.json: vision_config.mit_hidden_size={v.mit_hidden_size} must equal "
                              f"projection_dim={p} (the frame features it integrates are projected)")
        common = dict(dtype=self.dtype_policy)
        self.text_projection = keras.layers.Dense(p, use_bias=False, name="text_projection", **common)
        self.visual_projection = keras.layers.Dense(p, use_bias=False, name="visual_projection", **common)
        self.prompts_visual_norm = keras.layers.LayerNormalization(epsilon=v.layer_norm_eps,
                                                                   name="prompts_visual_norm", **common)
        self.mit_blocks = [EncoderBlock(p, v.mit_num_heads, v.mit_intermediate_size, hidden_act=v.hidden_act,
                                        layer_norm_eps=v.layer_norm_eps, norm_first=True, name=f"mit_block_{i}",
                                        **common) for i in range(v.mit_num_layers)]
        self.prompt_norm = keras.layers.LayerNormalization(epsilon=v.layer_norm_eps, name="prompt_norm", **common)
        t_eps = self.text_model.spec.layer_norm_eps
        self.prompt_layers = [PromptGeneratorLayer(p, s.prompt_num_attention_heads, s.prompt_hidden_act, t_eps,
                                                   name=f"prompt_layer_{i}", **common) for i in range(s.prompt_layers)]

    def dummy_inputs(self):
        v = self.vision_model.spec
        import numpy as np

        return {**self.text_model.dummy_inputs(),
                "pixel_values": np.zeros((1, v.num_frames, v.image_size, v.image_size, v.num_channels), "float32")}

    def build(self, input_shape=None):
        s, v = self.spec, self.vision_model.spec
        p = s.projection_dim
        self.text_model.build_from_dummy()
        self.vision_model.build_from_dummy()
        self.text_projection.build((None, self.text_model.hidden_size))
        self.visual_projection.build((None, v.hidden_size))
        self.prompts_visual_norm.build((None, None, v.hidden_size))
        self.prompts_visual_projection = self.add_weight(name="prompts_visual_projection", shape=(v.hidden_size, p),
                                                         initializer="glorot_uniform")
        self.mit_position_embedding = self.add_weight(name="mit_position_embedding", shape=(1, v.num_frames, p),
                                                      initializer="zeros")
        for layer in (*self.mit_blocks, self.prompt_norm, *self.prompt_layers):
            layer.build((None, None, p))
        self.prompt_alpha = self.add_weight(name="prompt_alpha", shape=(p,),
                                            initializer=keras.initializers.Constant(s.prompt_alpha))
        self.built = True

    def encode_text(self, inputs, training=False):
        text = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        hidden = self.text_model(text, training=training)
        return self.text_projection(self.text_model.pooled(hidden, text))

    def encode_video(self, inputs, training=False):
        """(video_embeds (batch, dim), visual prompt context (batch, patches, dim))."""
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        v = self.vision_model.spec
        if len(pixels.shape) != 5 or pixels.shape[1] != v.num_frames:
            raise InputError(f"pixel_values must be (batch, {v.num_frames} frames, height, width, channels) "
                             f"channels_last, got shape {tuple(pixels.shape)}")
        b = ops.shape(pixels)[0]
        frames = ops.reshape(pixels, (-1, *pixels.shape[2:]))
        hidden = self.vision_model(frames, training=training)
        cls = ops.reshape(self.visual_projection(self.vision_model.pooled(hidden)), (b, v.num_frames, -1))
        x = cls + ops.cast(self.mit_position_embedding, cls.dtype)
        for block in self.mit_blocks:
            x = block(x, None, training=training)
        video = ops.mean(x + cls, axis=1)
        patches = ops.matmul(self.prompts_visual_norm(hidden[:, 1:]),
                             ops.cast(self.prompts_visual_projection, hidden.dtype))
        patches = ops.mean(ops.reshape(patches, (b, v.num_frames, -1, self.spec.projection_dim)), axis=1)
        return video, patches

    def call(self, inputs, training=False):
        video, visual = self.encode_video(inputs, training=training)
        text = self.encode_text(inputs, training=training)
        b = ops.shape(video)[0]
        text = ops.broadcast_to(text[None], (b, *ops.shape(text)))
        visual = self.prompt_norm(visual)
        prompt = text
        for layer in self.prompt_layers:
            prompt = layer(prompt, visual, training=training)
        text = text + ops.cast(self.prompt_alpha, text.dtype) * prompt
        return {"video_embeds": video, "text_embeds": text}

    def weight_rules(self):
        from keras_models.presets.weight_map import mount

        r = mount(self.text_model.weight_rules(), "text_model.") + mount(self.vision_model.weight_rules(),
                                                                           "vision_model.")
        r += dense_rules("text_projection", self.text_projection) + dense_rules("visual_projection",
                                                                                self.visual_projection)
        r += norm_rules("prompts_visual_layernorm", self.prompts_visual_norm)
        r += [Rule("prompts_visual_projection", self.prompts_visual_projection),
              Rule("mit.position_embedding", self.mit_position_embedding)]
        for i, b in enumerate(self.mit_blocks):
            r += _encoder_block_rules(f"mit.encoder.layers.{i}.", b)
        r += norm_rules("prompts_generator.layernorm", self.prompt_norm)
        for i, layer in enumerate(self.prompt_layers):
            r += layer.rules(f"prompts_generator.decoder.{i}.")
        return r + [Rule("prompts_generator.alpha", self.prompt_alpha)]


@_ser
@register_task(XCLIPBackbone, "ZeroShotVideoClassifier", ("XCLIPModel",))
class XCLIPZeroShotVideoClassifier(ZeroShotVideoClassifier):
    pass


__all__ = ["XCLIPTextSpec", "XCLIPTextBackbone", "XCLIPVisionSpec", "XCLIPVisionBackbone", "CrossFrameBlock",
           "PromptGeneratorLayer", "XCLIPSpec", "XCLIPBackbone", "XCLIPZeroShotVideoClassifier"]
