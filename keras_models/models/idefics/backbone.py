"""IDEFICS (Transformers' ``IdeficsForVisionText2Text``): a CLIP vision tower, an optional
perceiver resampler and a Llama decoder with gated cross-attention layers.

* images: ``pixel_values`` (batch, images, height, width, channels), channels_last; each image's
  tower states (every token, class token included, before the unused ``post_layernorm``) are
  optionally resampled to ``resampler_n_latents`` latents by the perceiver, then the images of a
  row are laid end to end;
* ``image_attention_mask`` (batch, seq, images), 1 = the token sees that image (default: every
  token sees every image); a token that sees no image gets no cross-attention output;
* every ``cross_layer_interval``-th decoder layer is preceded by a gated cross-attention layer
  (RMSNorm -> attention to the image states -> tanh(alpha) gate, then RMSNorm -> gated MLP ->
  tanh(alpha) gate), alphas a float or a vector (``alpha_type``);
* decoupled embeddings: ids >= ``vocab_size`` read the ``additional_vocab_size`` extra table, and
  the head appends the extra logits (``lm_head.additional_fc``).

The text decoder is the registered Llama tower (its blocks, rotary table, norm and weight map,
mounted under ``model.``); freeze flags and initialiser settings do not change inference.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.decoder_masks import decoder_bias, positions_from_mask
from keras_models.layers.norms import RMSNorm
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clip.vision import CLIPVisionSpec, VisionTower, _square
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule, mount
from keras_models.spec import Spec, build_tower, const, dim, hf, nested

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _check_activation(name, source):
    try:
        get_activation(name)
    except ValueError as e:
        raise ConfigError(f"{source}: hidden_act={name!r}: {e}") from e


@dataclass(frozen=True, kw_only=True)
class IdeficsVisionSpec(CLIPVisionSpec):
    hidden_size: int = dim("embed_dim", 768)
    intermediate_size: int = dim("intermediate_size", 5120)
    num_layers: int = dim("num_hidden_layers", 32)
    num_heads: int = dim("num_attention_heads", 16)
    patch_size: int = hf("patch_size", 14, read=_square, dim=True)
    hidden_act: str = hf("hidden_act", "gelu")
    projection_dim: int | None = const(None)

    def validate(self, source="config.json"):
        super().validate(source)
        _check_activation(self.hidden_act, source)
        if not 0 <= self.attention_dropout <= 1:
            raise ConfigError(f"{source}: attention_dropout={self.attention_dropout!r}: expected a rate in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class IdeficsPerceiverSpec(Spec):
    use_resampler: bool = hf("use_resampler", False, doc="unused: the top-level use_resampler decides")
    resampler_n_latents: int = dim("resampler_n_latents", 64)
    resampler_depth: int = dim("resampler_depth", 6)
    resampler_n_heads: int = dim("resampler_n_heads", 16)
    resampler_head_dim: int = dim("resampler_head_dim", 96)
    qk_layer_norms_perceiver: bool = hf("qk_layer_norms_perceiver", False)


@dataclass(frozen=True, kw_only=True)
class IdeficsSpec(Spec):
    vocab_size: int = dim("vocab_size", 32000)
    additional_vocab_size: int = hf("additional_vocab_size", 0)
    hidden_size: int = dim("hidden_size", 4096)
    intermediate_size: int = dim("intermediate_size", 11008)
    num_layers: int = dim("num_hidden_layers", 32)
    num_heads: int = dim("num_attention_heads", 32)
    hidden_act: str = hf("hidden_act", "silu")
    rms_norm_eps: float = hf("rms_norm_eps", 1e-6)
    max_position_embeddings: int = dim("max_position_embeddings", 2048)
    rope_parameters: dict | None = hf("rope_parameters", None)
    initializer_range: float = hf("initializer_range", 0.02)
    alpha_type: str = hf("alpha_type", "float")
    alpha_initializer: str = hf("alpha_initializer", "zeros", doc="initialisation only")
    cross_layer_interval: int = dim("cross_layer_interval", 1)
    qk_layer_norms: bool = hf("qk_layer_norms", False)
    use_resampler: bool = hf("use_resampler", False)
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", 1)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    vision_config: IdeficsVisionSpec | None = nested("vision_config", IdeficsVisionSpec, required=False)
    perceiver_config: IdeficsPerceiverSpec | None = nested("perceiver_config", IdeficsPerceiverSpec, required=False)

    def validate(self, source="config.json"):
        if isinstance(self.additional_vocab_size, bool) or not 0 <= self.additional_vocab_size < 2**31 - self.vocab_size:
            raise ConfigError(f"{source}: additional_vocab_size={self.additional_vocab_size!r}: expected an int >= 0 "
                              "with vocab_size + additional_vocab_size below 2**31")
        _check_activation(self.hidden_act, source)
        if self.alpha_type not in ("float", "vector"):
            raise ConfigError(f"{source}: alpha_type={self.alpha_type!r}: expected 'float' or 'vector'")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not a multiple of "
                              f"num_attention_heads={self.num_heads}")
        if self.num_layers % self.cross_layer_interval:
            raise ConfigError(f"{source}: num_hidden_layers={self.num_layers} is not a multiple of "
                              f"cross_layer_interval={self.cross_layer_interval} (Transformers' IDEFICS "
                              "then indexes a missing cross-attention layer)")
        if self.rope_parameters is not None and not isinstance(self.rope_parameters, dict):
            raise ConfigError(f"{source}: rope_parameters must be an object")

    @property
    def vision(self):
        return self.vision_config or IdeficsVisionSpec()

    @property
    def perceiver(self):
        return self.perceiver_config or IdeficsPerceiverSpec()

    def text_config(self):
        """The Llama config.json of the text decoder."""
        out = {"model_type": "llama", "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
               "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
               "num_attention_heads": self.num_heads, "hidden_act": self.hidden_act,
               "rms_norm_eps": self.rms_norm_eps, "max_position_embeddings": self.max_position_embeddings,
               "initializer_range": self.initializer_range, "tie_word_embeddings": False,
               "pad_token_id": self.pad_token_id, "bos_token_id": self.bos_token_id,
               "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id}
        if self.rope_parameters is not None:
            out["rope_parameters"] = dict(self.rope_parameters)
        return out

    def dummy_inputs(self):
        v = self.vision
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, 1, v.image_size, v.image_size, v.num_channels), "float32"),
                "image_attention_mask": np.ones((1, 2, 1), "int32")}


class IdeficsVisionTower(VisionTower):
    spec_cls = IdeficsVisionSpec


def _heads(x, n, d):
    b, t = ops.shape(x)[0], ops.shape(x)[1]
    return ops.reshape(x, (b, t, n, d))


def _attend(q, k, v, bias=None):
    """q (b, t, h, d) pre-scaled, k / v (b, s, h, d), bias (b, 1, t, s) -> (b, t, h * d)."""
    scores = ops.einsum("bthd,bshd->bhts", q, k)
    if bias is not None:
        scores = scores + ops.cast(bias, scores.dtype)
    probs = ops.softmax(ops.cast(scores, "float32"), axis=-1)
    out = ops.einsum("bhts,bshd->bthd", ops.cast(probs, v.dtype), v)
    b, t = ops.shape(out)[0], ops.shape(out)[1]
    return ops.reshape(out, (b, t, out.shape[2] * out.shape[3]))


class GatedCrossAttention(keras.layers.Layer):
    """Text states attend to the image states; both residual branches gated by tanh(alpha)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, vision_size, hidden_act, eps, qk_norm,
                 alpha_type, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.vision_size, self.alpha_type = vision_size, alpha_type
        common = dict(dtype=self.dtype_policy)
        self.input_layernorm = RMSNorm(epsilon=eps, name="input_layernorm", **common)
        self.post_attention_layernorm = RMSNorm(epsilon=eps, name="post_attention_layernorm", **common)
        dense = dict(use_bias=False, **common)
        self.q_proj = keras.layers.Dense(hidden_size, name="q_proj", **dense)
        self.k_proj = keras.layers.Dense(hidden_size, name="k_proj", **dense)
        self.v_proj = keras.layers.Dense(hidden_size, name="v_proj", **dense)
        self.o_proj = keras.layers.Dense(hidden_size, name="o_proj", **dense)
        self.q_norm = RMSNorm(epsilon=eps, name="q_layer_norm", **common) if qk_norm else None
        self.k_norm = RMSNorm(epsilon=eps, name="k_layer_norm", **common) if qk_norm else None
        self.gate_proj = keras.layers.Dense(intermediate_size, name="gate_proj", **dense)
        self.up_proj = keras.layers.Dense(intermediate_size, name="up_proj", **dense)
        self.down_proj = keras.layers.Dense(hidden_size, name="down_proj", **dense)
        self.act = get_activation(hidden_act)

    def build(self, input_shape=None):
        h = (None, None, self.hidden_size)
        for layer in (self.input_layernorm, self.post_attention_layernorm, self.q_proj, self.o_proj,
                      self.gate_proj, self.up_proj):
            layer.build(h)
        self.k_proj.build((None, None, self.vision_size))
        self.v_proj.build((None, None, self.vision_size))
        self.down_proj.build((None, None, self.gate_proj.units))
        if self.q_norm is not None:
            self.q_norm.build((None, None, None, self.head_dim))
            self.k_norm.build((None, None, None, self.head_dim))
        shape = (1,) if self.alpha_type == "float" else (1, 1, self.hidden_size)
        self.alpha_cross_attn = self.add_weight(name="alpha_cross_attn", shape=shape, initializer="zeros")
        self.alpha_dense = self.add_weight(name="alpha_dense", shape=shape, initializer="zeros")
        self.built = True

    def call(self, x, image_states, image_bias, gate):
        n, d = self.num_heads, self.head_dim
        h = self.input_layernorm(x)
        q = _heads(self.q_proj(h), n, d)
        k = _heads(self.k_proj(image_states), n, d)
        v = _heads(self.v_proj(image_states), n, d)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        out = self.o_proj(_attend(q * ops.cast(d ** -0.5, q.dtype), k, v, image_bias))
        out = out * ops.cast(gate, out.dtype)[..., None]
        x = x + ops.tanh(ops.cast(self.alpha_cross_attn, x.dtype)) * out
        h = self.post_attention_layernorm(x)
        h = self.down_proj(self.act(self.gate_proj(h)) * self.up_proj(h))
        return x + ops.tanh(ops.cast(self.alpha_dense, x.dtype)) * h

    def rules(self, p):
        r = []
        for name, dense in (("cross_attn.q_proj", self.q_proj), ("cross_attn.k_proj", self.k_proj),
                            ("cross_attn.v_proj", self.v_proj), ("cross_attn.o_proj", self.o_proj),
                            ("mlp.gate_proj", self.gate_proj), ("mlp.up_proj", self.up_proj),
                            ("mlp.down_proj", self.down_proj)):
            r += dense_rules(p + name, dense, base=False)
        norms = [("input_layernorm", self.input_layernorm), ("post_attention_layernorm", self.post_attention_layernorm)]
        if self.q_norm is not None:
            norms += [("cross_attn.q_layer_norm", self.q_norm), ("cross_attn.k_layer_norm", self.k_norm)]
        r += [Rule(f"{p}{name}.weight", norm.gamma, base=False) for name, norm in norms]
        r += [Rule(p + "alpha_cross_attn", self.alpha_cross_attn, base=False),
              Rule(p + "alpha_dense", self.alpha_dense, base=False)]
        return r


class PerceiverResampler(keras.layers.Layer):
    """Latents attend to [image tokens; latents] (depth blocks of attention + ReLU MLP), then a
    LayerNorm: (images, tokens, width) -> (images, n_latents, width)."""

    def __init__(self, width, depth, num_heads, head_dim, n_latents, qk_norm, **kwargs):
        super().__init__(**kwargs)
        self.width, self.depth, self.num_heads, self.head_dim = width, depth, num_heads, head_dim
        self.n_latents, self.qk_norm = n_latents, qk_norm
        common = dict(dtype=self.dtype_policy)
        dense = dict(use_bias=False, **common)

        def ln(name):
            return keras.layers.LayerNormalization(epsilon=1e-5, name=name, **common)

        self.blocks = []
        for i in range(depth):
            blk = dict(context_layer_norm=ln(f"b{i}_context_norm"), latents_layer_norm=ln(f"b{i}_latents_norm"),
                       q_proj=keras.layers.Dense(num_heads * head_dim, name=f"b{i}_q", **dense),
                       k_proj=keras.layers.Dense(num_heads * head_dim, name=f"b{i}_k", **dense),
                       v_proj=keras.layers.Dense(num_heads * head_dim, name=f"b{i}_v", **dense),
                       output_proj=keras.layers.Dense(width, name=f"b{i}_out", **dense),
                       ln=ln(f"b{i}_mlp_norm"), fc=keras.layers.Dense(4 * width, name=f"b{i}_fc", **dense),
                       c_proj=keras.layers.Dense(width, name=f"b{i}_c_proj", **dense))
            if qk_norm:
                blk.update(q_layer_norm=ln(f"b{i}_q_norm"), k_layer_norm=ln(f"b{i}_k_norm"))
            self.blocks.append(blk)
        self.layer_norm = ln("layer_norm")

    def build(self, input_shape=None):
        w = (None, None, self.width)
        self.latents = self.add_weight(name="latents", shape=(self.n_latents, self.width),
                                       initializer=keras.initializers.RandomNormal(stddev=1.0))
        for blk in self.blocks:
            for name, layer in blk.items():
                if name == "c_proj":
                    layer.build((None, None, 4 * self.width))
                elif name == "output_proj":
                    layer.build((None, None, self.num_heads * self.head_dim))
                elif name in ("q_layer_norm", "k_layer_norm"):
                    layer.build((None, None, None, self.head_dim))
                else:
                    layer.build(w)
        self.layer_norm.build(w)
        self.built = True

    def call(self, context):
        b = ops.shape(context)[0]
        n, d = self.num_heads, self.head_dim
        lat = ops.broadcast_to(ops.cast(self.latents, context.dtype)[None], (b, self.n_latents, self.width))
        for blk in self.blocks:
            c = blk["context_layer_norm"](context)
            z = blk["latents_layer_norm"](lat)
            both = ops.concatenate([c, z], axis=1)
            q, k, v = _heads(blk["q_proj"](z), n, d), _heads(blk["k_proj"](both), n, d), _heads(blk["v_proj"](both), n, d)
            if self.qk_norm:
                q, k = blk["q_layer_norm"](q), blk["k_layer_norm"](k)
            lat = blk["output_proj"](_attend(q * ops.cast(d ** -0.5, q.dtype), k, v)) + lat
            lat = blk["c_proj"](ops.relu(blk["fc"](blk["ln"](lat)))) + lat
        return self.layer_norm(lat)

    def rules(self, p):
        r = [Rule(p + "latents", self.latents, base=False)]
        for i, blk in enumerate(self.blocks):
            a, m = f"{p}blocks.{i}.0.", f"{p}blocks.{i}.1."
            for name in ("q_proj", "k_proj", "v_proj", "output_proj"):
                r += dense_rules(a + name, blk[name], base=False)
            for name in ("context_layer_norm", "latents_layer_norm", "q_layer_norm", "k_layer_norm"):
                if name in blk:
                    r += norm_rules(a + name, blk[name], base=False)
            r += norm_rules(m + "ln", blk["ln"], base=False)
            r += dense_rules(m + "fc", blk["fc"], base=False) + dense_rules(m + "c_proj", blk["c_proj"], base=False)
        return r + norm_rules(p + "layer_norm", self.layer_norm, base=False)


@_ser
@register_backbone("idefics")
class IdeficsBackbone(SpecBackbone):
    """Returns the text decoder's last hidden state (batch, seq, hidden)."""

    spec_cls = IdeficsSpec
    hf_architecture = "IdeficsModel"
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = ""
    hf_ignore = ("*position_ids", "*rotary_emb.inv_freq", "*rotary_emb.original_inv_freq")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        self.language_model = build_tower(s.text_config(), "language_model", self.dtype_policy)
        self.vision_model = IdeficsVisionTower(spec=s.vision, name="vision_model", **common)
        v = s.vision
        self.vision_size = v.hidden_size
        self.base_vocab_size = s.vocab_size
        self.vocab_size = s.vocab_size + s.additional_vocab_size
        self.hidden_size = s.hidden_size
        self.max_position_embeddings = s.max_position_embeddings
        self.tie_word_embeddings = bool(s.tie_word_embeddings)
        # the tower's final LayerNorm feeds only its pooled output, which IDEFICS does not read
        self.vision_model.post_norm.trainable = False
        self.additional_embedding = None
        if s.additional_vocab_size:
            self.additional_embedding = keras.layers.Embedding(
                s.additional_vocab_size, s.hidden_size, name="additional_embedding",
                embeddings_initializer=keras.initializers.TruncatedNormal(stddev=s.initializer_range), **common)
        self.perceiver = None
        self.image_tokens = v.grid_tokens if hasattr(v, "grid_tokens") else (v.image_size // v.patch_size) ** 2 + 1
        if s.use_resampler:
            p = s.perceiver
            self.perceiver = PerceiverResampler(v.hidden_size, p.resampler_depth, p.resampler_n_heads,
                                                p.resampler_head_dim, p.resampler_n_latents,
                                                p.qk_layer_norms_perceiver, name="perceiver_resampler", **common)
            self.image_tokens = p.resampler_n_latents
        self.interval = s.cross_layer_interval
        self.cross_layers = [
            GatedCrossAttention(s.hidden_size, s.num_heads, s.intermediate_size, v.hidden_size, s.hidden_act,
                                s.rms_norm_eps, s.qk_layer_norms, s.alpha_type, name=f"gated_cross_attn_{i}", **common)
            for i in range(s.num_layers // s.cross_layer_interval)]

    def build(self, input_shape=None):
        self.language_model.build_from_dummy()
        self.vision_model.build_from_dummy()
        if self.additional_embedding is not None:
            self.additional_embedding.build((None, None))
        if self.perceiver is not None:
            self.perceiver.build()
        for layer in self.cross_layers:
            layer.build()
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- pieces --------------------------------------------------------------------------------
    def embed(self, ids):
        table = self.language_model.token_embedding
        if self.additional_embedding is None:
            return table(ids)
        extra = ops.greater_equal(ids, self.base_vocab_size)
        base = table(ops.where(extra, ops.zeros_like(ids), ids))
        more = self.additional_embedding(ops.where(extra, ids - self.base_vocab_size, ops.zeros_like(ids)))
        return ops.where(extra[..., None], more, base)

    def image_states(self, pixel_values):
        """(batch, images * image_tokens, vision width) from (batch, images, H, W, C) pixels."""
        pixels = ops.convert_to_tensor(pixel_values)
        if len(pixels.shape) == 4:
            pixels = pixels[:, None]
        if len(pixels.shape) != 5:
            raise InputError(f"pixel_values must be (batch, images, height, width, channels), got {tuple(pixels.shape)}")
        b, n = ops.shape(pixels)[0], pixels.shape[1]
        v = self.vision_model
        size = v.spec.image_size
        if tuple(pixels.shape[2:4]) != (size, size):
            raise InputError(f"pixel_values of {pixels.shape[2]}x{pixels.shape[3]} pixels: this model's vision "
                             f"tower takes {size}x{size}")
        x = v(ops.reshape(ops.cast(pixels, self.compute_dtype), (-1, *pixels.shape[2:])))
        if self.perceiver is not None:
            x = self.perceiver(x)
        return ops.reshape(x, (b, n * x.shape[1], x.shape[2]))

    def image_bias(self, image_mask, dtype):
        """(batch, seq, images) 0/1 -> additive bias (batch, 1, seq, images * tokens) and the gate
        (batch, seq): 0 where a token sees no image."""
        m = ops.cast(image_mask, "bool")
        gate = ops.cast(ops.any(m, axis=-1), dtype)
        m = ops.repeat(m, self.image_tokens, axis=2)
        low = -1e9 if keras.backend.standardize_dtype(dtype) == "float32" else -3e4  # a finite "masked"
        bias = ops.where(m, ops.zeros((), dtype), ops.full((), low, dtype))
        return bias[:, None], gate

    def _forward(self, ids, mask, positions, image_states, image_mask, cache=None, cache_index=0, training=False):
        lm = self.language_model
        x = self.embed(ids)
        t = ops.shape(ids)[1]
        rope = lm.rotary(positions)
        bias = decoder_bias(mask, t, cache_index, None, x.dtype)
        img_bias, gate = self.image_bias(image_mask, x.dtype)
        image_states = ops.cast(image_states, x.dtype)
        new_cache = []
        for i, block in enumerate(lm.blocks):
            if i % self.interval == 0:
                x = self.cross_layers[i // self.interval](x, image_states, img_bias, gate)
            x, layer_cache = block(x, bias=bias, rope=rope, cache=None if cache is None else cache[i],
                                   cache_index=cache_index, training=training)
            new_cache.append(layer_cache)
        x = lm.final_norm(x)
        return x, (None if cache is None else tuple(new_cache))

    def default_image_mask(self, ids, image_states):
        b, t = ops.shape(ids)[0], ops.shape(ids)[1]
        n = image_states.shape[1] // self.image_tokens
        return ops.ones((b, t, n), "int32")

    def call(self, inputs, training=False):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones_like(ids)
        if inputs.get("pixel_values") is None:
            raise InputError("IDEFICS needs pixel_values (batch, images, height, width, channels)")
        states = self.image_states(inputs["pixel_values"])
        image_mask = inputs.get("image_attention_mask")
        if image_mask is None:
            image_mask = self.default_image_mask(ids, states)
        positions = inputs.get("position_ids")
        positions = positions_from_mask(mask) if positions is None else positions
        return self._forward(ids, mask, ops.cast(positions, "int32"), states, image_mask, training=training)[0]

    def check_image_inputs(self, inputs, where):
        pixels, image_mask = inputs.get("pixel_values"), inputs.get("image_attention_mask")
        if pixels is None or image_mask is None:
            return
        n = pixels.shape[1] if len(pixels.shape) == 5 else 1
        ids = inputs.get("input_ids")
        want = (tuple(ids.shape) if ids is not None else (None, None)) + (n,)
        if len(image_mask.shape) != 3 or any(w is not None and w != g for w, g in zip(want, image_mask.shape)):
            raise InputError(f"{where}: image_attention_mask must be (batch, seq, images) = {want}, got "
                             f"{tuple(image_mask.shape)}")

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        lm = self.language_model
        r = mount(lm.weight_rules(), "model.")
        r += mount(self.vision_model.weight_rules(), "model.vision_model.")
        if self.additional_embedding is not None:
            r.append(Rule("model.embed_tokens.additional_embedding.weight", self.additional_embedding.embeddings,
                          base=False))
        if self.perceiver is not None:
            r += self.perceiver.rules("model.perceiver_resampler.")
        for i, layer in enumerate(self.cross_layers):
            r += layer.rules(f"model.gated_cross_attn_layers.{i}.")
        return r


__all__ = ["IdeficsSpec", "IdeficsVisionSpec", "IdeficsPerceiverSpec", "IdeficsBackbone",
           "GatedCrossAttention", "PerceiverResampler"]
