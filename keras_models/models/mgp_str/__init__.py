"""MGP-STR (model_type ``mgp-str``): a ViT (timm layout: [CLS] + patches + a fixed position table,
pre-norm blocks with fused qkv and exact GELU, no final norm) and three A^3 heads for scene text.

Each A^3 module: LayerNorm -> token learner (a grouped 1x1 conv, 8 groups, then a 1x1 conv to
``max_token_length`` maps, no biases) -> softmax over the tokens -> weighted sum of the tokens
after another grouped 1x1 conv -> LayerNorm; a Linear head per module (characters, GPT-2 BPE,
BERT WordPiece). Inputs must have the checkpoint's ``image_size`` (the position table is fixed, as
in Transformers). The backbone returns the encoder's last hidden state (batch, 1 + patches, C).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vit.backbone import _pair, one_or_pair, pixel_values_of
from keras_models.models.vitdet import VitDetBlock
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.scene_text_recognizer import SceneTextRecognizer

_ser = keras.saving.register_keras_serializable(package="keras_models")
GROUPS = 8


@dataclass(frozen=True, kw_only=True)
class MgpstrSpec(Spec):
    # Transformers' distilled embeddings concatenate one token but size the table for two
    unsupported = {"distilled": (False,)}

    image_size: tuple = hf("image_size", (32, 128), read=_pair, write=one_or_pair)
    patch_size: tuple = hf("patch_size", (4, 4), read=_pair, write=one_or_pair)
    num_channels: int = dim("num_channels", 3)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    mlp_ratio: float = hf("mlp_ratio", 4.0)
    qkv_bias: bool = hf("qkv_bias", True)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    max_token_length: int = dim("max_token_length", 27)
    num_character_labels: int = dim("num_character_labels", 38)
    num_bpe_labels: int = dim("num_bpe_labels", 50257)
    num_wordpiece_labels: int = dim("num_wordpiece_labels", 30522)
    dropout: float = hf("drop_rate", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if self.hidden_size % GROUPS:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} must be divisible by the A^3 modules' "
                              f"{GROUPS} conv groups")

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1,) + tuple(self.image_size) + (self.num_channels,), "float32")}


@_ser
@register_backbone("mgp-str")
class MgpstrBackbone(SpecBackbone):
    spec_cls = MgpstrSpec
    base_model_prefix = "mgp_str"
    hf_architecture = "MgpstrModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.patch_embedding = PatchEmbedding(s.hidden_size, s.patch_size, s.num_channels, name="patch_embedding",
                                              dtype=d)
        self.blocks = [VitDetBlock(s.hidden_size, s.num_heads, s.mlp_ratio, "gelu", s.layer_norm_eps, s.qkv_bias,
                                   dropout=s.dropout, name=f"block_{i}", dtype=d) for i in range(s.num_layers)]
        self.grid = (s.image_size[0] // s.patch_size[0], s.image_size[1] // s.patch_size[1])

    def build(self, input_shape=None):
        s = self.spec
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, s.hidden_size), initializer="zeros")
        self.position_embedding = self.add_weight(name="position_embedding", initializer="zeros",
                                                  shape=(1, self.grid[0] * self.grid[1] + 1, s.hidden_size))
        self.patch_embedding.build((None, None, None, s.num_channels))
        for b in self.blocks:
            b.build((None, None, None, s.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        s = self.spec
        pixels = pixel_values_of(inputs)
        if tuple(pixels.shape[1:3]) != tuple(s.image_size):
            raise InputError(f"MGP-STR: pixel_values must be {tuple(s.image_size)} (image_size; the position table "
                             f"is fixed), got {tuple(pixels.shape[1:3])}")
        x = self.patch_embedding(pixels)
        x = ops.reshape(x, (-1, 1, self.grid[0] * self.grid[1], s.hidden_size))  # a 1 x tokens "map"
        cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (ops.shape(x)[0], 1, 1, s.hidden_size))
        x = ops.concatenate([cls, x], axis=2) + ops.cast(self.position_embedding[:, None], x.dtype)
        for b in self.blocks:  # ViTDet blocks without windows or relative positions: plain ViT blocks
            x = b(x, training=training)
        return x[:, 0]

    def weight_rules(self):
        r = conv_rules("embeddings.proj", self.patch_embedding.projection)
        r += [Rule("embeddings.cls_token", self.cls_token), Rule("embeddings.pos_embed", self.position_embedding)]
        for i, b in enumerate(self.blocks):
            p = f"encoder.blocks.{i}."
            r += norm_rules(p + "norm1", b.norm1) + norm_rules(p + "norm2", b.norm2)
            r += dense_rules(p + "attn.qkv", b.attention.qkv) + dense_rules(p + "attn.proj", b.attention.output_dense)
            r += dense_rules(p + "mlp.fc1", b.fc1) + dense_rules(p + "mlp.fc2", b.fc2)
        return r


@_ser
class A3Module(keras.layers.Layer):
    """(batch, tokens, C) -> (batch, max_token_length, C): attention-pooled, normalised tokens."""

    def __init__(self, hidden_size, max_token_length, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.max_token_length, self.eps = hidden_size, max_token_length, eps
        self.token_norm = keras.layers.LayerNormalization(epsilon=eps, name="token_norm", dtype=self.dtype_policy)
        self.norm = keras.layers.LayerNormalization(epsilon=eps, name="norm", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        c, g = self.hidden_size, GROUPS
        self.learner_grouped = self.add_weight(name="learner_grouped", shape=(g, c // g, c // g))
        self.learner_out = self.add_weight(name="learner_out", shape=(self.max_token_length, c))
        self.feat_grouped = self.add_weight(name="feat_grouped", shape=(g, c // g, c // g))
        self.token_norm.build((None, None, c))
        self.norm.build((None, None, c))
        self.built = True

    @staticmethod
    def grouped(x, w):
        """A grouped 1x1 conv on (batch, tokens, C): w (groups, out/groups, in/groups)."""
        g, o, i = w.shape
        y = ops.einsum("bngi,goi->bngo", ops.reshape(x, (-1, x.shape[1], g, i)), ops.cast(w, x.dtype))
        return ops.reshape(y, (-1, x.shape[1], g * o))

    def call(self, x):
        x = self.token_norm(x)
        selected = ops.einsum("bnc,lc->bln", self.grouped(x, self.learner_grouped), ops.cast(self.learner_out, x.dtype))
        attention = ops.softmax(selected, axis=-1)
        return self.norm(ops.einsum("bln,bnc->blc", attention, self.grouped(x, self.feat_grouped)))

    def rules(self, p):
        c, g, n = self.hidden_size, GROUPS, self.max_token_length
        grouped = Reshape((c, c // g, 1, 1), (g, c // g, c // g))
        return [Rule(p + "tokenLearner.0.weight", self.learner_grouped, grouped, base=False),
                Rule(p + "tokenLearner.1.weight", self.learner_out, Reshape((n, c, 1, 1), (n, c)), base=False),
                Rule(p + "feat.weight", self.feat_grouped, grouped, base=False),
                *norm_rules(p + "token_norm", self.token_norm, base=False), *norm_rules(p + "norm", self.norm, base=False)]

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, max_token_length=self.max_token_length, eps=self.eps)
        return c


HEADS = (("char", "num_character_labels"), ("bpe", "num_bpe_labels"), ("wp", "num_wordpiece_labels"))


@_ser
@register_task(MgpstrBackbone, "SceneTextRecognizer", ("MgpstrForSceneTextRecognition",))
class MgpstrSceneTextRecognizer(SceneTextRecognizer):
    """``{"char_logits", "bpe_logits", "wp_logits"}``, each (batch, max_token_length, labels)."""

    hf_head_patterns = ("char_a3_module.*", "bpe_a3_module.*", "wp_a3_module.*", "char_head.*", "bpe_head.*",
                        "wp_head.*")

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        s, d = backbone.spec, backbone.dtype_policy
        self.a3 = [A3Module(s.hidden_size, s.max_token_length, s.layer_norm_eps, name=f"{k}_a3_module", dtype=d)
                   for k, _ in HEADS]
        self.heads = [keras.layers.Dense(getattr(s, n), name=f"{k}_head", dtype=d) for k, n in HEADS]

    def build(self, input_shape=None):
        for a3, head in zip(self.a3, self.heads):
            a3.build()
            head.build((None, None, self.backbone.spec.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)
        return {f"{k}_logits": head(a3(hidden)) for (k, _), a3, head in zip(HEADS, self.a3, self.heads)}

    def head_rules(self):
        r = []
        for (k, _), a3, head in zip(HEADS, self.a3, self.heads):
            r += a3.rules(f"{k}_a3_module.") + dense_rules(f"{k}_head", head, base=False)
        return r


__all__ = ["MgpstrSpec", "MgpstrBackbone", "A3Module", "MgpstrSceneTextRecognizer"]
