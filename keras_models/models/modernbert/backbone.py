"""ModernBERT: a pre-norm encoder with rotary positions and alternating global / local attention.

What sets it apart from the shared BERT-like encoder (so it has its own block and backbone):

* embeddings are the token table and a LayerNorm only (no position or token-type tables);
* every block is pre-norm; the first block has no attention norm (its input is the embedding
  LayerNorm's output); a ``final_norm`` follows the last block;
* attention is one fused ``Wqkv`` projection ([q heads | k heads | v heads]) with half-split RoPE;
  ``layer_types`` says which layers attend globally ("full_attention", rope base
  ``global_rope_theta``) and which locally ("sliding_attention", rope base ``local_rope_theta``,
  keys within ``local_attention // 2`` positions on either side);
* the feed-forward is a GeGLU whose input and gate come from one fused ``Wi`` (input first);
* ``norm_bias``, ``attention_bias`` and ``mlp_bias`` switch the biases of every LayerNorm, of the
  attention projections and of the feed-forward projections.

Transformers may unpad the batch internally; here padded batches run with additive masks, which
gives the same values at every non-padding position.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.longformer_attention import longformer_bias
from keras_models.layers.masks import padding_bias
from keras_models.layers.rotary import RotaryEmbedding, apply_rotary
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.decoder.hf_config import rope_from_hf
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

LAYER_TYPES = ("full_attention", "sliding_attention")


def default_layer_types(num_layers, global_every=3):
    """Transformers' pattern: layer i attends globally when i is a multiple of ``global_every``."""
    return tuple("sliding_attention" if i % global_every else "full_attention" for i in range(num_layers))


@dataclass(frozen=True, kw_only=True)
class ModernBertSpec(Spec):
    """ModernBertConfig's keys and Transformers' defaults. ``layer_types`` comes from config.json
    or, in older configs, from ``global_attn_every_n_layers`` (layer i is global when i is a
    multiple of it); the two rope bases come from ``rope_parameters`` (per layer type) or the
    older ``global_rope_theta`` / ``local_rope_theta``. The classifier keys configure the heads."""

    vocab_size: int = dim("vocab_size", 50368)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 22)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 1152)
    hidden_act: str = hf("hidden_activation", "gelu")
    max_position_embeddings: int = dim("max_position_embeddings", 8192)
    layer_norm_eps: float = hf("norm_eps", 1e-5)
    norm_bias: bool = hf("norm_bias", False)
    attention_bias: bool = hf("attention_bias", False)
    mlp_bias: bool = hf("mlp_bias", False)
    local_attention: int = dim("local_attention", 128, doc="local window: local_attention // 2 each side")
    layer_types: tuple | None = hf("layer_types", None, doc="None: from global_attn_every_n_layers (3)")
    global_rope_theta: float = hf("global_rope_theta", 160000.0, doc="rope_parameters['full_attention']")
    local_rope_theta: float = hf("local_rope_theta", 10000.0, doc="rope_parameters['sliding_attention']")
    pad_token_id: int | None = hf("pad_token_id", 50283)
    bos_token_id: int | None = hf("bos_token_id", 50281)
    eos_token_id: int | tuple | None = hf("eos_token_id", 50282)
    cls_token_id: int | None = hf("cls_token_id", 50281)
    sep_token_id: int | None = hf("sep_token_id", 50282)
    initializer_range: float = hf("initializer_range", 0.02)
    dropout: float = hf("embedding_dropout", 0.0)
    attention_dropout: float = hf("attention_dropout", 0.0)
    mlp_dropout: float = hf("mlp_dropout", 0.0)
    # --- the task heads' switches (read by the task classes) ---
    classifier_pooling: str = hf("classifier_pooling", "cls", doc="cls or mean (TextClassifier)")
    classifier_activation: str = hf("classifier_activation", "gelu")
    classifier_bias: bool = hf("classifier_bias", False, doc="bias of the heads' dense layer")
    classifier_dropout: float = hf("classifier_dropout", 0.0)
    decoder_bias: bool = hf("decoder_bias", True, doc="bias of the MLM vocabulary projection")

    unsupported = {"rope_scaling": (None,)}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if values.get("layer_types") is None:
            every = config.get("global_attn_every_n_layers") or 3
            values["layer_types"] = default_layer_types(values.get("num_layers", 22), every)
        params = config.get("rope_parameters") or {}
        for kind, field in (("full_attention", "global_rope_theta"), ("sliding_attention", "local_rope_theta")):
            sub = params.get(kind)
            if not sub:
                continue
            if not isinstance(sub, dict):
                raise ConfigError(f"{source}: rope_parameters[{kind!r}] must be an object")
            theta, scaling, partial = rope_from_hf({"rope_parameters": sub}, source, values.get(field) or 1.0)
            if scaling is not None or partial != 1.0:
                raise ConfigError(f"{source}: rope_parameters[{kind!r}]={sub!r}: only the default rope "
                                  "(no scaling, full rotary width) is implemented for ModernBERT")
            values[field] = theta
        return values

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(f"{source}: ModernBERT needs an even head size (hidden_size / num_attention_heads)")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers:
                raise ConfigError(f"{source}: layer_types has {len(self.layer_types)} entries for "
                                  f"num_hidden_layers={self.num_layers}")
            bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
            if bad:
                raise ConfigError(f"{source}: layer_types: unknown {bad}; expected {list(LAYER_TYPES)}")
        if self.classifier_pooling not in ("cls", "mean"):
            raise ConfigError(f"{source}: classifier_pooling={self.classifier_pooling!r}: expected 'cls' or 'mean'")

    def adjust_to_hf(self, out):
        out["rope_parameters"] = {
            "full_attention": {"rope_type": "default", "rope_theta": self.global_rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": self.local_rope_theta},
        }
        out.pop("global_rope_theta")
        out.pop("local_rope_theta")
        return out


@keras.saving.register_keras_serializable(package="keras_models")
class ModernBertBlock(keras.layers.Layer):
    """Pre-norm block: ``x + attn(norm(x))`` (no norm when ``attention_norm=False``: the first
    layer), then ``x + Wo(act(input) * gate)`` with ``[input | gate] = Wi(norm(x))``."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-5,
                 norm_bias=False, attention_bias=False, mlp_bias=False, attention_norm=True,
                 attention_dropout=0.0, mlp_dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        self.norm_bias, self.attention_bias, self.mlp_bias = norm_bias, attention_bias, mlp_bias
        self.use_attention_norm = attention_norm
        self.attention_dropout, self.mlp_dropout_rate = attention_dropout, mlp_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        common = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=self.kernel_initializer, **common)
        norm = dict(epsilon=layer_norm_eps, center=norm_bias, **common)
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm", **norm) if attention_norm else None
        self.attention = Attention(hidden_size, num_heads, use_bias=attention_bias, dropout=attention_dropout,
                                   fused_qkv=True, name="attention", **dense)
        self.attention_output_dropout = keras.layers.Dropout(attention_dropout, **common)
        self.mlp_norm = keras.layers.LayerNormalization(name="mlp_norm", **norm)
        self.mlp_in = keras.layers.Dense(2 * intermediate_size, use_bias=mlp_bias, name="mlp_in", **dense)
        self.mlp_out = keras.layers.Dense(hidden_size, use_bias=mlp_bias, name="mlp_out", **dense)
        self.mlp_dropout = keras.layers.Dropout(mlp_dropout, **common)

    def build(self, input_shape):
        if self.attention_norm is not None:
            self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.built = True

    def call(self, x, bias=None, rope=None, training=False):
        h = x if self.attention_norm is None else self.attention_norm(x)
        a = self.attention
        q, k, v = a.project_qkv(h)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attended = a.output_dense(a.attend(q, k, v, bias, training=training))
        x = x + self.attention_output_dropout(attended, training=training)
        h = self.mlp_in(self.mlp_norm(x))
        value, gate = h[..., : self.intermediate_size], h[..., self.intermediate_size :]
        return x + self.mlp_out(self.mlp_dropout(self.act(value) * gate, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, norm_bias=self.norm_bias,
            attention_bias=self.attention_bias, mlp_bias=self.mlp_bias, attention_norm=self.use_attention_norm,
            attention_dropout=self.attention_dropout, mlp_dropout=self.mlp_dropout_rate,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("modernbert")
class ModernBertBackbone(SpecBackbone):
    """ModernBERT encoder (``ModernBertModel``): returns the final-normed hidden states. The
    constructor takes :class:`ModernBertSpec`'s fields; each is an attribute (``dropout`` — the
    embedding dropout — as ``dropout_rate``)."""

    spec_cls = ModernBertSpec
    base_model_prefix = "model"
    hf_architecture = "ModernBertModel"
    hf_model_type = "modernbert"
    lora_targets = ("qkv",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        for name, value in self.spec.kwargs().items():
            if name != "layer_types":
                setattr(self, "dropout_rate" if name == "dropout" else name, value)
        self.attention_kinds = list(self.spec.layer_types or default_layer_types(self.num_layers))
        self.head_dim = self.hidden_size // self.num_heads
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        common = dict(dtype=self.dtype_policy)
        norm = dict(epsilon=self.layer_norm_eps, center=self.norm_bias, **common)
        self.token_embedding = keras.layers.Embedding(self.vocab_size, self.hidden_size, embeddings_initializer=init,
                                                      name="token_embedding", **common)
        self.embeddings_norm = keras.layers.LayerNormalization(name="embeddings_norm", **norm)
        self.embeddings_dropout = keras.layers.Dropout(self.dropout_rate, **common)
        self.global_rotary = RotaryEmbedding(self.head_dim, base=self.global_rope_theta, name="global_rotary", **common)
        self.local_rotary = RotaryEmbedding(self.head_dim, base=self.local_rope_theta, name="local_rotary", **common)
        self.blocks = [
            ModernBertBlock(
                self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
                layer_norm_eps=self.layer_norm_eps, norm_bias=self.norm_bias, attention_bias=self.attention_bias,
                mlp_bias=self.mlp_bias, attention_norm=i > 0, attention_dropout=self.attention_dropout,
                mlp_dropout=self.mlp_dropout, kernel_initializer=init, name=f"block_{i}", **common,
            )
            for i in range(self.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(name="final_norm", **norm)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        input_ids = inputs["input_ids"]
        x = self.embeddings_dropout(self.embeddings_norm(self.token_embedding(input_ids)), training=training)
        mask = inputs.get("attention_mask")
        positions = inputs.get("position_ids")
        if positions is None:
            positions = ops.arange(ops.shape(input_ids)[1], dtype="int32")[None, :]
        global_bias = None if mask is None else padding_bias(mask, x.dtype)
        local_mask = ops.ones_like(input_ids) if mask is None else mask
        biases = {"full_attention": global_bias,
                  "sliding_attention": longformer_bias(local_mask, self.local_attention, dtype=x.dtype)}
        ropes = {"full_attention": self.global_rotary(positions),
                 "sliding_attention": self.local_rotary(positions)}
        for kind, block in zip(self.attention_kinds, self.blocks):
            x = block(x, biases[kind], rope=ropes[kind], training=training)
        return self.final_norm(x)

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("embeddings.tok_embeddings.weight", self.token_embedding.embeddings)]
        r += norm_rules("embeddings.norm", self.embeddings_norm)
        for i, block in enumerate(self.blocks):
            p = f"layers.{i}."
            if block.attention_norm is not None:
                r += norm_rules(p + "attn_norm", block.attention_norm)
            r += dense_rules(p + "attn.Wqkv", block.attention.qkv)
            r += dense_rules(p + "attn.Wo", block.attention.output_dense)
            r += norm_rules(p + "mlp_norm", block.mlp_norm)
            r += dense_rules(p + "mlp.Wi", block.mlp_in)
            r += dense_rules(p + "mlp.Wo", block.mlp_out)
        return r + norm_rules("final_norm", self.final_norm)


__all__ = ["ModernBertSpec", "ModernBertBlock", "ModernBertBackbone"]
