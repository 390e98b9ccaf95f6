"""Text towers of CLIP-like dual encoders: token + learned position embeddings, pre-norm
encoder blocks (causal for CLIP, bidirectional for SigLIP), a final LayerNorm, and a pooled
token (CLIP: the first end-of-text token; SigLIP: the last position, then a linear head).

Input: ``{"input_ids", "attention_mask"}``. Output: the last hidden state (batch, seq, hidden);
``pooled(hidden, input_ids)`` gives the pooled text feature that the dual encoder projects.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import causal_bias, padding_bias
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class CLIPTextSpec(Spec):
    vocab_size: int = dim("vocab_size", 49408)
    hidden_size: int = dim("hidden_size", 512)
    intermediate_size: int = dim("intermediate_size", 2048)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 8)
    max_position_embeddings: int = dim("max_position_embeddings", 77)
    hidden_act: str = hf("hidden_act", "quick_gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    attention_dropout: float = hf("attention_dropout", 0.0)
    pad_token_id: int | None = hf("pad_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", 49406)
    eos_token_id: int | None = hf("eos_token_id", 49407)
    projection_dim: int | None = hf("projection_dim", 512, doc="read by CLIPTextModelWithProjection")
    initializer_range: float = hf("initializer_range", 0.02)
    causal: bool = const(True, doc="causal self-attention (CLIP) or bidirectional (SigLIP)")
    pooling: str = const("eos", doc="'eos': first end-of-text token; 'last': the last position")
    head: bool = const(False, doc="a linear head on the pooled token (SigLIP)")

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")


@dataclass(frozen=True, kw_only=True)
class SiglipTextSpec(CLIPTextSpec):
    vocab_size: int = dim("vocab_size", 32000)
    hidden_size: int = dim("hidden_size", 768)
    intermediate_size: int = dim("intermediate_size", 3072)
    num_heads: int = dim("num_attention_heads", 12)
    max_position_embeddings: int = dim("max_position_embeddings", 64)
    hidden_act: str = hf("hidden_act", "gelu_pytorch_tanh")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    projection_dim: int | None = hf("projection_size", None, doc="the head's width (default: hidden)")
    initializer_range: float = const(0.02)
    causal: bool = const(False)
    pooling: str = const("last")
    head: bool = const(True)


class TextTower(SpecBackbone):
    """The shared text tower; families differ only by their spec's constants and defaults."""

    base_model_prefix = "text_model"
    hf_ignore = ("*position_ids",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.hidden_size = s.hidden_size
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=init,
                                                      name="token_embedding", **common)
        self.position_embedding = keras.layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                                         embeddings_initializer=init, name="position_embedding",
                                                         **common)
        self.blocks = [
            EncoderBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                         layer_norm_eps=s.layer_norm_eps, dropout=0.0, attention_dropout=s.attention_dropout,
                         norm_first=True, kernel_initializer=init, name=f"block_{i}", **common)
            for i in range(s.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common)
        width = s.projection_dim or s.hidden_size
        self.head = keras.layers.Dense(width, kernel_initializer=init, name="head", **common) if s.head else None

    def build(self, input_shape=None):
        d = self.spec.hidden_size
        self.token_embedding.build((None, None))
        self.position_embedding.build((None, None))
        for layer in [*self.blocks, self.final_norm]:
            layer.build((None, None, d))
        if self.head is not None:
            self.head.build((None, d))
        self.built = True

    def call(self, inputs, training=False):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        n = ops.shape(ids)[1]
        x = self.token_embedding(ids) + self.position_embedding(ops.arange(n, dtype="int32")[None, :])
        bias = None if mask is None else padding_bias(mask, x.dtype)
        if self.spec.causal:
            c = causal_bias(n, n, x.dtype)
            bias = c if bias is None else bias + c
        for block in self.blocks:
            x = block(x, bias, training=training)
        return self.final_norm(x)

    def pooled(self, hidden, inputs):
        """The pooled text feature (before the dual encoder's projection)."""
        if self.spec.pooling == "last":
            out = hidden[:, -1]
        else:
            ids = ops.cast(inputs["input_ids"], "int32")
            if self.spec.eos_token_id == 2:  # legacy configs: the highest id marks end-of-text
                where = ops.argmax(ids, axis=-1)
            else:  # the first end-of-text token (padding may reuse its id)
                where = ops.argmax(ops.cast(ops.equal(ids, self.spec.eos_token_id), "int32"), axis=-1)
            out = ops.take_along_axis(hidden, ops.cast(where, "int32")[:, None, None], axis=1)[:, 0]
        return self.head(out) if self.head is not None else out

    def weight_rules(self):
        r = [Rule("embeddings.token_embedding.weight", self.token_embedding.embeddings),
             Rule("embeddings.position_embedding.weight", self.position_embedding.embeddings)]
        for i, b in enumerate(self.blocks):
            p = f"encoder.layers.{i}."
            a = b.attention
            for name, dense in (("self_attn.q_proj", a.query), ("self_attn.k_proj", a.key),
                                ("self_attn.v_proj", a.value), ("self_attn.out_proj", a.output_dense),
                                ("mlp.fc1", b.intermediate), ("mlp.fc2", b.output_dense)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "layer_norm1", b.attention_norm) + norm_rules(p + "layer_norm2", b.output_norm)
        r += norm_rules("final_layer_norm", self.final_norm)
        if self.head is not None:
            r += dense_rules("head", self.head)
        return r


@_ser
@register_backbone("clip_text_model")
class CLIPTextBackbone(TextTower):
    spec_cls = CLIPTextSpec
    hf_architecture = "CLIPTextModel"
    verified_backends = _ALL


@_ser
@register_backbone("siglip_text_model")
class SiglipTextBackbone(TextTower):
    spec_cls = SiglipTextSpec
    hf_architecture = "SiglipTextModel"
    verified_backends = _ALL


__all__ = ["CLIPTextSpec", "SiglipTextSpec", "TextTower", "CLIPTextBackbone", "SiglipTextBackbone"]
