"""CLVP's text and speech encoders (``clvp_encoder``, Transformers' ``ClvpEncoder``).

Pre-norm blocks with RMSNorms; attention whose rotary positions turn the queries, the keys **and
the values** (the first ``rotary_dim`` features of each head, ``rotary_dim = max(projection_dim //
(2 * heads), 32)``, positions 0..t-1 whatever the padding); a gated linear unit MLP (one projection
[up | gate], ``up * act(gate)``, then down); a final LayerNorm, a summary of the sequence
(``summary_type``: "mean" over every position, padding included, as Transformers; "first";
"last" / "cls_index": the last position) and a bias-free projection to ``projection_dim``.

Calling the backbone returns the last hidden state (batch, seq, hidden); :meth:`embed` gives the
projected summary (Transformers' ``embeds``) and :meth:`pooled` the summary before projection.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.decoder_block import FusedGateUpMLP
from keras_models.layers.masks import padding_bias
from keras_models.layers.norms import RMSNorm
from keras_models.layers.rotary import RotaryEmbedding, apply_rotary
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
SUMMARY_TYPES = ("mean", "first", "last", "cls_index")


@dataclass(frozen=True, kw_only=True)
class ClvpEncoderSpec(Spec):
    vocab_size: int = dim("vocab_size", 256)
    hidden_size: int = dim("hidden_size", 768)
    intermediate_size: int = dim("intermediate_size", 1536)
    projection_dim: int = dim("projection_dim", 768)
    num_layers: int = dim("num_hidden_layers", 20)
    num_heads: int = dim("num_attention_heads", 12)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    use_rotary_embedding: bool = hf("use_rotary_embedding", True)
    use_attention_bias: bool = hf("use_attention_bias", False)
    summary_type: str = hf("summary_type", "mean")
    bos_token_id: int | None = hf("bos_token_id", 255, doc="the conditioning encoder's start-of-text id")
    eos_token_id: int | None = hf("eos_token_id", 0, doc="the conditioning encoder's end-of-text id")
    pad_token_id: int | None = hf("pad_token_id", None)

    # Transformers' sequence summary reads these only when present; their non-default values
    # (a learned summary projection or activation) are not part of ClvpEncoder
    unsupported = {"summary_use_proj": (False, None), "summary_activation": (None, "", "linear")}
    ignored = ("attention_dropout", "dropout", "initializer_factor")

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size ({self.hidden_size}) must be divisible by "
                              f"num_attention_heads ({self.num_heads})")
        if self.summary_type not in SUMMARY_TYPES:
            raise ConfigError(f"{source}: summary_type={self.summary_type!r} is not supported "
                              f"(supported: {list(SUMMARY_TYPES)})")
        try:
            get_activation(self.hidden_act)
        except ValueError as e:
            raise ConfigError(f"{source}: hidden_act={self.hidden_act!r} is not a known activation") from e
        if self.use_rotary_embedding and self.rotary_dim > self.hidden_size // self.num_heads:
            raise ConfigError(
                f"{source}: the rotary width max(projection_dim // (2 * num_attention_heads), 32) = "
                f"{self.rotary_dim} exceeds the head width {self.hidden_size // self.num_heads} "
                "(hidden_size / num_attention_heads); Transformers cannot run this config either")

    @property
    def rotary_dim(self):
        return max(self.projection_dim // (self.num_heads * 2), 32)


def attention_rules(prefix, att):
    """Transformers' ClvpSelfAttention (q / k / v / out Linear layers) onto an Attention layer."""
    r = []
    for name, dense in (("q_proj", att.query), ("k_proj", att.key), ("v_proj", att.value),
                        ("out_proj", att.output_dense)):
        r += dense_rules(f"{prefix}.{name}", dense)
    return r


@_ser
class ClvpEncoderBlock(keras.layers.Layer):
    """x + attn(rms(x)) with rotary q / k / v; x + glu_mlp(rms(x))."""

    def __init__(self, hidden_size, num_heads, intermediate_size, activation, eps, qkv_bias, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.activation, self.eps, self.qkv_bias = activation, eps, qkv_bias
        d = dict(dtype=self.dtype_policy)
        self.attention = Attention(hidden_size, num_heads, use_bias=qkv_bias, output_bias=True, name="attention", **d)
        self.mlp = FusedGateUpMLP(hidden_size, intermediate_size, activation, use_bias=True, gate_first=False,
                                  name="mlp", **d)
        self.attention_norm = RMSNorm(eps, name="attention_norm", **d)
        self.mlp_norm = RMSNorm(eps, name="mlp_norm", **d)

    def build(self, input_shape):
        for layer in (self.attention, self.mlp, self.attention_norm, self.mlp_norm):
            layer.build(input_shape)
        self.built = True

    def call(self, x, bias=None, rope=None, training=False):
        att = self.attention
        q, k, v = att.project_qkv(self.attention_norm(x))
        if rope is not None:
            q, k, v = (apply_rotary(t, rope[0], rope[1]) for t in (q, k, v))
        x = x + att.output_dense(att.attend(q, k, v, bias, training=training))
        return x + self.mlp(self.mlp_norm(x))

    def rules(self, prefix):
        r = attention_rules(f"{prefix}.self_attn", self.attention)
        r += dense_rules(f"{prefix}.mlp.fc1.proj", self.mlp.up) + dense_rules(f"{prefix}.mlp.fc2", self.mlp.down)
        return r + [Rule(f"{prefix}.input_rmsnorm.weight", self.attention_norm.gamma),
                    Rule(f"{prefix}.post_attention_rmsnorm.weight", self.mlp_norm.gamma)]

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                      activation=self.activation, eps=self.eps, qkv_bias=self.qkv_bias)
        return config


@_ser
@register_backbone("clvp_encoder")
class ClvpEncoderBackbone(SpecBackbone):
    spec_cls = ClvpEncoderSpec
    base_model_prefix = ""
    hf_architecture = "ClvpEncoder"
    hf_ignore = ("*rotary_pos_emb.inv_freq",)  # a buffer rebuilt from the config
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        d = dict(dtype=self.dtype_policy)
        self.hidden_size = s.hidden_size
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="token_embedding", **d)
        self.rotary = RotaryEmbedding(s.rotary_dim, name="rotary", **d) if s.use_rotary_embedding else None
        self.blocks = [ClvpEncoderBlock(s.hidden_size, s.num_heads, s.intermediate_size, s.hidden_act,
                                        s.layer_norm_eps, s.use_attention_bias, name=f"block_{i}", **d)
                       for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **d)
        self.projection = keras.layers.Dense(s.projection_dim, use_bias=False, name="projection", **d)

    def build(self, input_shape=None):
        h = (None, None, self.spec.hidden_size)
        self.token_embedding.build((None, None))
        for layer in (*self.blocks, self.final_norm):
            layer.build(h)
        self.projection.build((None, self.spec.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        ids = inputs["input_ids"]
        x = self.token_embedding(ids)
        mask = inputs.get("attention_mask")
        bias = None if mask is None else padding_bias(mask, x.dtype)
        rope = None
        if self.rotary is not None:
            positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None]
            rope = self.rotary(positions)
        for block in self.blocks:
            x = block(x, bias=bias, rope=rope, training=training)
        return self.final_norm(x)

    def pooled(self, hidden):
        kind = self.spec.summary_type
        if kind == "mean":
            return ops.mean(hidden, axis=1)
        return hidden[:, 0] if kind == "first" else hidden[:, -1]

    def embed(self, inputs, training=False):
        """The projected summary (Transformers' ``embeds``), not normalised."""
        return self.projection(self.pooled(self(inputs, training=training)))

    def weight_rules(self):
        r = [Rule("token_embedding.weight", self.token_embedding.embeddings)]
        for i, block in enumerate(self.blocks):
            r += block.rules(f"layers.{i}")
        return r + norm_rules("final_layer_norm", self.final_norm) + dense_rules("projection", self.projection)


__all__ = ["ClvpEncoderSpec", "ClvpEncoderBackbone"]
