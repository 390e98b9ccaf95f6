"""Bark: three GPT-like token models and the EnCodec codec.

* :class:`BarkSemanticBackbone` (``semantic``) and :class:`BarkCoarseBackbone`
  (``coarse_acoustics``): the shared decoder (keras_models.models.decoder) configured as Bark's
  causal model: learned positions (``block_size`` of them), pre-LayerNorm blocks with a fused
  ``att_proj`` and a 4x GELU MLP; ``bias=False`` drops the Linear biases *and* the LayerNorm biases.
  Positions are the buffer slots (Transformers' ``arange(past_length, ...)``, also under a padding
  mask). The LM head (``output_vocab_size``, no bias, never tied) is :class:`BarkCausalLM`'s.
* :class:`BarkFineBackbone` (``fine_acoustics``): non-causal; the input (batch, time,
  ``n_codes_total``) is embedded by one table per codebook and, to predict codebook ``i``, the tables
  ``0..i`` are summed. Its blocks are the decoder block without a causal mask; LayerNorms always have
  a bias. It holds ``n_codes_total - n_codes_given`` heads (head ``j`` predicts codebook
  ``n_codes_given + j``), tied to the tables ``j + 1`` when ``tie_word_embeddings``.
* :class:`BarkBackbone` (``bark``): the three sub-models (mounted under ``semantic.``,
  ``coarse_acoustics.``, ``fine_acoustics.``), the semantic and coarse LM heads, and the codec
  (``codec_config``, an EnCodec config, under ``codec_model.``).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.decoder_block import DecoderBlock
from keras_models.layers.masks import padding_bias
from keras_models.models.backbone import SpecBackbone
from keras_models.models.decoder.gpt import LayerNormDecoderSpec
from keras_models.models.decoder.hf_config import value
from keras_models.models.decoder.llama import NAMES, TableBackbone
from keras_models.models.decoder.weights import attention, embedding, linear, mlp, norm
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import TRANSPOSE, Rule, mount
from keras_models.spec import Spec, build_tower, const, dim, hf, tower

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")
_LAYERS = ("num_layers", "num_hidden_layers")
_HEADS = ("num_heads", "num_attention_heads")
_VOCAB = ("input_vocab_size", "vocab_size")
_BLOCK = ("block_size", "window_size")

BARK_NAMES = {**NAMES, "layer": "layers.{i}.", "attn": "attn.", "qkv": "att_proj", "o": "out_proj",
              "attn_norm": "layernorm_1", "mlp_norm": "layernorm_2", "mlp": "mlp.", "up": "in_proj",
              "down": "out_proj", "final_norm": "layernorm_final", "embed": "input_embeds_layer",
              "pos_embed": "position_embeds_layer"}


def _check_heads(hidden, heads, source):
    if hidden % heads:
        raise ConfigError(f"{source}: hidden_size {hidden} is not a multiple of num_heads {heads}")


@dataclass(frozen=True, kw_only=True)
class BarkCausalSpec(LayerNormDecoderSpec):
    """Transformers' BarkSemanticConfig / BarkCoarseConfig."""

    vocab_size: int = dim(_VOCAB, 10048)
    output_vocab_size: int = dim("output_vocab_size", 10048)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim(_LAYERS, 12)
    num_heads: int = dim(_HEADS, 12)
    intermediate_size: int | None = const(None, doc="4 * hidden_size")
    max_position_embeddings: int = dim(_BLOCK, 1024)
    activation: str = const("gelu", doc="torch nn.GELU (exact)")
    norm_eps: float = const(1e-5, doc="torch nn.LayerNorm's default")
    qkv_bias: bool = hf("bias", True)
    out_bias: bool = hf("bias", True)
    mlp_bias: bool = hf("bias", True)
    norm_bias: bool = hf("bias", True, doc="the causal models' LayerNorms follow `bias` too")
    position_type: str = const("learned")
    fused_qkv: bool = const(True)
    tie_word_embeddings: bool = const(False, doc="Bark's causal LM head is never tied")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        values["intermediate_size"] = 4 * value(cls, values, "hidden_size")
        return values

    def validate(self, source="config.json"):
        _check_heads(self.hidden_size, self.num_heads, source)


class _BarkCausalBackbone(TableBackbone):
    """Bark's causal model (see the module docstring); ``output_vocab_size`` is its head's width."""

    spec_cls = BarkCausalSpec
    names = BARK_NAMES
    base_model_prefix = ""
    hf_ignore = ("*attn.bias",)  # the causal mask buffer
    verified_backends = _ALL

    def __init__(self, output_vocab_size=10048, **kwargs):
        super().__init__(**kwargs)
        self.output_vocab_size = output_vocab_size

    @property
    def slot_dependent(self):
        return True  # positions are the buffer slots, whatever the mask says

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError(f"{type(self).__name__} takes 'input_ids', got {sorted(inputs)}")
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = ops.ones_like(ids) if mask is None else mask
        positions = inputs.get("position_ids")
        if positions is None:
            positions = ops.broadcast_to(ops.arange(ops.shape(ids)[1], dtype="int32")[None], ops.shape(ids))
        return self._forward(ids, mask, ops.cast(positions, "int32"), training=training)[0]

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, embed=None):
        t = ops.shape(input_ids)[1]
        slots = ops.arange(t, dtype="int32") + ops.cast(cache_index, "int32")
        positions = ops.broadcast_to(slots[None], ops.shape(input_ids))
        return self._forward(input_ids, attention_mask, positions, cache, cache_index, embed=embed)

    def get_config(self):
        config = super().get_config()
        config["output_vocab_size"] = self.output_vocab_size
        return config


@_ser
@register_backbone("semantic")
class BarkSemanticBackbone(_BarkCausalBackbone):
    hf_architecture = "BarkSemanticModel"


@_ser
@register_backbone("coarse_acoustics")
class BarkCoarseBackbone(_BarkCausalBackbone):
    hf_architecture = "BarkCoarseModel"


# --- fine acoustics ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class BarkFineSpec(Spec):
    """Transformers' BarkFineConfig."""

    vocab_size: int = dim(_VOCAB, 10048)
    output_vocab_size: int = dim("output_vocab_size", 10048)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim(_LAYERS, 12)
    num_heads: int = dim(_HEADS, 12)
    block_size: int = dim(_BLOCK, 1024)
    bias: bool = hf("bias", True, doc="the Linear layers' biases (the LayerNorms always have one)")
    n_codes_total: int = dim("n_codes_total", 8)
    n_codes_given: int = dim("n_codes_given", 1)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True, doc="head j shares table j + 1")
    initializer_range: float = hf("initializer_range", 0.02)
    norm_eps: float = const(1e-5, doc="torch nn.LayerNorm's default")

    def validate(self, source="config.json"):
        _check_heads(self.hidden_size, self.num_heads, source)
        if self.n_codes_given >= self.n_codes_total:
            raise ConfigError(f"{source}: n_codes_given={self.n_codes_given} leaves no codebook to predict "
                              f"(n_codes_total={self.n_codes_total})")

    def dummy_inputs(self):
        return {"input_ids": np.zeros((1, 2, self.n_codes_total), "int32")}


@_ser
@register_backbone("fine_acoustics")
class BarkFineBackbone(SpecBackbone):
    """``(batch, time, hidden)`` for ``{"input_ids" (batch, time, n_codes_total), "attention_mask"
    (optional)}`` and the keyword ``codebook_idx`` (default: the last codebook): the codebook to
    predict, whose input is the sum of the tables ``0..codebook_idx``. :meth:`codebook_logits` applies
    its head."""

    spec_cls = BarkFineSpec
    verified_backends = _ALL
    hf_architecture = "BarkFineModel"

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        dt = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        self.token_embeddings = [keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=init,
                                                        name=f"input_embeds_layer_{k}", dtype=dt)
                                 for k in range(s.n_codes_total)]
        self.position_embedding = keras.layers.Embedding(s.block_size, s.hidden_size, embeddings_initializer=init,
                                                         name="position_embeds_layer", dtype=dt)
        self.blocks = [DecoderBlock(s.hidden_size, s.num_heads, 4 * s.hidden_size, kernel_initializer=init,
                                    activation="gelu", norm_type="layer", norm_eps=s.norm_eps, qkv_bias=s.bias,
                                    out_bias=s.bias, mlp_bias=s.bias, fused_qkv=True, mlp_gated=False,
                                    name=f"block_{i}", dtype=dt) for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.norm_eps, name="layernorm_final", dtype=dt)
        self.lm_heads = []
        if not s.tie_word_embeddings:
            self.lm_heads = [keras.layers.Dense(s.output_vocab_size, use_bias=False, kernel_initializer=init,
                                                name=f"lm_head_{j}", dtype=dt)
                             for j in range(s.n_codes_total - s.n_codes_given)]
        self.hidden_size = s.hidden_size
        self.n_codes_total, self.n_codes_given = s.n_codes_total, s.n_codes_given

    def build(self, input_shape=None):
        h = (None, None, self.hidden_size)
        for emb in self.token_embeddings + [self.position_embedding]:
            emb.build((None, None))
        for layer in self.blocks + [self.final_norm] + self.lm_heads:
            layer.build(h)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def _codebook(self, codebook_idx):
        try:
            idx = int(codebook_idx)
        except (TypeError, ValueError) as e:
            raise InputError(f"codebook_idx must be an int, got {codebook_idx!r}") from e
        if not self.n_codes_given <= idx < self.n_codes_total:
            raise InputError(f"codebook_idx={idx}: the fine model predicts codebooks {self.n_codes_given}.."
                             f"{self.n_codes_total - 1}")
        return idx

    def codebook_hidden(self, input_ids, codebook_idx, attention_mask=None, training=False):
        """(batch, time, hidden) to predict ``codebook_idx`` (not ``forward``: torch layers own that name)."""
        idx = self._codebook(codebook_idx)
        ids = ops.cast(input_ids, "int32")
        if len(ids.shape) != 3 or ids.shape[-1] != self.n_codes_total:
            raise InputError(f"input_ids: expected (batch, time, n_codes_total={self.n_codes_total}), got shape "
                             f"{tuple(ids.shape)}")
        x = self.token_embeddings[0](ids[..., 0])
        for k in range(1, idx + 1):
            x = x + self.token_embeddings[k](ids[..., k])
        x = x + self.position_embedding(ops.arange(ops.shape(ids)[1], dtype="int32"))[None]
        bias = None if attention_mask is None else padding_bias(attention_mask, x.dtype)
        for blk in self.blocks:
            x, _ = blk(x, bias=bias, training=training)
        return self.final_norm(x)

    def call(self, inputs, codebook_idx=None, training=False):
        if not isinstance(inputs, dict) or "input_ids" not in inputs:
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise InputError(f"BarkFineBackbone takes a dict with 'input_ids' (batch, time, n_codes_total); got {got}")
        if codebook_idx is None:
            codebook_idx = self.n_codes_total - 1
        return self.codebook_hidden(inputs["input_ids"], codebook_idx, inputs.get("attention_mask"),
                                    training=training)

    def codebook_logits(self, hidden, codebook_idx):
        """(batch, time, vocab) of the head predicting ``codebook_idx``."""
        j = self._codebook(codebook_idx) - self.n_codes_given
        if self.lm_heads:
            return self.lm_heads[j](hidden)
        table = ops.cast(self.token_embeddings[j + 1].embeddings, hidden.dtype)
        return ops.matmul(hidden, ops.transpose(table))

    def weight_rules(self):
        r = [Rule(f"input_embeds_layers.{k}.weight", e.embeddings) for k, e in enumerate(self.token_embeddings)]
        r += embedding("position_embeds_layer", self.position_embedding)
        n = BARK_NAMES
        for i, blk in enumerate(self.blocks):
            p = f"layers.{i}."
            r += attention(p + n["attn"], blk.attention, n)
            r += norm(p + n["attn_norm"], blk.attention_norm) + norm(p + n["mlp_norm"], blk.mlp_norm)
            r += mlp(p + n["mlp"], blk.mlp, n)
        r += norm("layernorm_final", self.final_norm)
        s = self.spec
        for j in range(s.n_codes_total - s.n_codes_given):
            if self.lm_heads:
                r.append(Rule(f"lm_heads.{j}.weight", self.lm_heads[j].kernel, TRANSPOSE))
            else:  # tied: a checkpoint may repeat the table under the head's name
                r.append(Rule(f"lm_heads.{j}.weight", self.token_embeddings[j + 1].embeddings, optional=True,
                              export=False))
        return r


# --- the composite -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class BarkSpec(Spec):
    semantic_config: dict = tower("semantic_config", "semantic")
    coarse_acoustics_config: dict = tower("coarse_acoustics_config", "coarse_acoustics")
    fine_acoustics_config: dict = tower("fine_acoustics_config", "fine_acoustics")
    codec_config: dict = tower("codec_config", "encodec", doc="the EnCodec codec's config")
    initializer_range: float = hf("initializer_range", 0.02)

    def dummy_inputs(self):
        k = self.fine_acoustics_config.get("n_codes_total", 8)
        ones = np.ones((1, 2), "int32")
        return {"semantic_input_ids": ones, "coarse_input_ids": ones, "fine_input_ids": np.zeros((1, 2, k), "int32")}


def _causal_head(backbone, name):
    return keras.layers.Dense(backbone.output_vocab_size, use_bias=False, name=name, dtype=backbone.dtype_policy,
                              kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range))


@_ser
@register_backbone("bark")
class BarkBackbone(SpecBackbone):
    """The semantic, coarse and fine models, their heads and the codec. Called on a dict with any of
    ``semantic_input_ids`` / ``coarse_input_ids`` (+ ``..._attention_mask``) and ``fine_input_ids``
    (batch, time, n_codes_total) (+ ``fine_attention_mask``; the keyword ``fine_codebook_idx``, default
    the last codebook), it returns the matching ``{semantic,coarse,fine}_last_hidden_state``."""

    spec_cls = BarkSpec
    verified_backends = _ALL
    hf_architecture = "BarkModel"
    hf_ignore = ("*attn.bias",)
    hf_known_unused = ("codec_model.quantizer.layers.*.codebook.inited",
                       "codec_model.quantizer.layers.*.codebook.cluster_size",
                       "codec_model.quantizer.layers.*.codebook.embed_avg")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        dt = self.dtype_policy
        self.semantic = build_tower(s.semantic_config, "semantic", dt)
        self.coarse_acoustics = build_tower(s.coarse_acoustics_config, "coarse_acoustics", dt)
        self.fine_acoustics = build_tower(s.fine_acoustics_config, "fine_acoustics", dt)
        self.codec_model = build_tower(s.codec_config, "codec_model", dt)
        for key, tower_, cls in (("semantic_config", self.semantic, _BarkCausalBackbone),
                                 ("coarse_acoustics_config", self.coarse_acoustics, _BarkCausalBackbone),
                                 ("fine_acoustics_config", self.fine_acoustics, BarkFineBackbone)):
            if not isinstance(tower_, cls):
                raise ConfigError(f"config.json [{key}]: model_type {getattr(s, key).get('model_type')!r} is not a "
                                  "Bark sub-model")
        from keras_models.models.encodec.backbone import EncodecBackbone

        if not isinstance(self.codec_model, EncodecBackbone):
            raise ConfigError(f"config.json [codec_config]: model_type {s.codec_config.get('model_type')!r} is not "
                              "'encodec'")
        self.semantic_head = _causal_head(self.semantic, "semantic_lm_head")
        self.coarse_head = _causal_head(self.coarse_acoustics, "coarse_lm_head")

    def build(self, input_shape=None):
        for t in (self.semantic, self.coarse_acoustics, self.fine_acoustics, self.codec_model):
            t.build_from_dummy()
        self.semantic_head.build((None, None, self.semantic.hidden_size))
        self.coarse_head.build((None, None, self.coarse_acoustics.hidden_size))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, fine_codebook_idx=None, training=False):
        if not isinstance(inputs, dict):
            raise InputError(f"Bark takes a dict (semantic_input_ids, coarse_input_ids, fine_input_ids + "
                             f"fine_codebook_idx); got {type(inputs).__name__}")
        out = {}
        for key, sub in (("semantic", self.semantic), ("coarse", self.coarse_acoustics)):
            if f"{key}_input_ids" in inputs:
                x = {"input_ids": inputs[f"{key}_input_ids"]}
                if inputs.get(f"{key}_attention_mask") is not None:
                    x["attention_mask"] = inputs[f"{key}_attention_mask"]
                out[f"{key}_last_hidden_state"] = sub(x, training=training)
        if "fine_input_ids" in inputs:
            idx = self.fine_acoustics.n_codes_total - 1 if fine_codebook_idx is None else fine_codebook_idx
            out["fine_last_hidden_state"] = self.fine_acoustics.codebook_hidden(
                inputs["fine_input_ids"], idx, inputs.get("fine_attention_mask"), training=training)
        if not out:
            raise InputError(f"Bark: no semantic_input_ids, coarse_input_ids or fine_input_ids in {sorted(inputs)}")
        return out

    def weight_rules(self):
        r = mount(self.semantic.weight_rules(), "semantic.")
        r += mount(self.coarse_acoustics.weight_rules(), "coarse_acoustics.")
        r += mount(self.fine_acoustics.weight_rules(), "fine_acoustics.")
        r += mount(self.codec_model.weight_rules(), "codec_model.")
        r += linear("semantic.lm_head", self.semantic_head, base=False)
        r += linear("coarse_acoustics.lm_head", self.coarse_head, base=False)
        return r


__all__ = ["BarkCausalSpec", "BarkFineSpec", "BarkSpec", "BarkSemanticBackbone", "BarkCoarseBackbone",
           "BarkFineBackbone", "BarkBackbone", "BARK_NAMES"]
