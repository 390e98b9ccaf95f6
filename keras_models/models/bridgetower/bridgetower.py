"""BridgeTower (``bridgetower``): a CLIP-ViT vision tower and a RoBERTa text tower whose upper
layers feed a two-stream cross-modal encoder through "bridge" (link) layers.

* text tower: RoBERTa embeddings (positions counted from ``pad_token_id + 1`` over real tokens;
  token types are always 0: Transformers' BridgeTowerModel does not pass ``token_type_ids``) and
  post-norm BERT blocks (``text_config``);
* vision tower: CLIP embeddings (bias-free patch convolution, class token, learned positions),
  ``ln_pre``, pre-norm blocks with ``torch.nn.MultiheadAttention``'s fused input projection
  (``hidden_size // 64`` heads) and a quick-GELU MLP 4x wide; ``ln_post`` on what leaves the tower;
* cross-modal encoder (``num_hidden_layers`` = L layers per stream, built from ``text_config``'s
  sizes): with T text layers, the first ``T - L + 1`` text and vision layers run alone; their
  outputs are projected (``cross_modal_*_transform``), tagged with a modality embedding (text 0,
  image 1) and LayerNormed into the first cross layers. Each later text / vision layer's output,
  projected and tagged the same way, is merged with the previous cross layer's output by a link
  tower (``link_tower_type``: ``add`` LN(x + y), ``scaled_add`` LN(s x + y), ``interpolate``
  LN((1 - b) x + b y)) before the next cross layers. A cross layer is a BERT block with a
  cross-attention sub-layer after its self-attention: the text stream attends over the image
  tokens, the image stream over the (masked) text tokens.

Calling the backbone on ``{"input_ids", "attention_mask", "pixel_values"}`` (channels_last,
``image_size`` square) returns Transformers' outputs: ``{"text_features", "image_features",
"pooler_output" (the two streams' first tokens through dense + tanh, concatenated),
"text_hidden_states", "image_hidden_states" (embeddings, then after each tower layer; batch-first),
"cross_text_hidden_states", "cross_image_hidden_states"}``. ``pixel_mask`` is accepted and, as in
Transformers, not used.

Heads: ``BridgeTowerForMaskedLM`` -> :class:`BridgeTowerMaskedLM` (km.MaskedLM over the text
features), ``BridgeTowerForImageAndTextRetrieval`` -> :class:`BridgeTowerImageTextMatcher`
(km.ImageTextMatcher: (batch, 2) logits from the pooled output).
Tensors BridgeTowerModel never reads (the text tower's ``pooler``, the vision tower's
``ln_separate`` LayerNorms) are reported on load and not kept, so ``save_to_preset`` omits them
(Transformers re-initialises them on reload; no output changes).
``BridgeTowerForContrastiveLearning`` is not implemented (its outputs, three normalised embeddings
per example, match no task here; its config keys are not BridgeTowerConfig's).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.bridgetower.processing import BridgeTowerImageProcessor
from keras_models.models.clip.vision import _square
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, dim, hf, nested
from keras_models.tasks.image_text_matching import ImageTextMatcher
from keras_models.tasks.text import MaskedLM

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")
LINK_TYPES = ("add", "scaled_add", "interpolate")


@dataclass(frozen=True, kw_only=True)
class BridgeTowerTextSpec(Spec):
    vocab_size: int = dim("vocab_size", 50265)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    max_position_embeddings: int = dim("max_position_embeddings", 514)
    type_vocab_size: int = dim("type_vocab_size", 1)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    dropout: float = hf("hidden_dropout_prob", 0.1)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    pad_token_id: int = hf("pad_token_id", 1)

    unsupported = {"position_embedding_type": ("absolute", None), "is_decoder": (False, None),
                   "add_cross_attention": (False, None)}

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")
        if not 0 <= self.pad_token_id < min(self.vocab_size, self.max_position_embeddings):
            raise ConfigError(f"{source}: pad_token_id={self.pad_token_id} must index the vocabulary and the "
                              "position table")


@dataclass(frozen=True, kw_only=True)
class BridgeTowerVisionSpec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_channels: int = dim("num_channels", 3)
    patch_size: int = hf("patch_size", 16, read=_square, dim=True)
    image_size: int = hf("image_size", 288, read=_square, dim=True)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    share_layernorm: bool = hf("share_layernorm", True, doc="False: per-layer ln_separate (unused by the model)")
    remove_last_layer: bool = hf("remove_last_layer", False)
    stop_gradient: bool = hf("stop_gradient", False, doc="training only")

    @property
    def num_heads(self):
        return self.hidden_size // 64

    @property
    def num_blocks(self):
        return self.num_layers - 1 if self.remove_last_layer else self.num_layers

    def validate(self, source="config.json"):
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: vision_config hidden_size={self.hidden_size}: BridgeTower's vision "
                              "attention has hidden_size // 64 heads, which must be >= 1 and divide hidden_size")
        if self.image_size % self.patch_size:
            raise ConfigError(f"{source}: image_size={self.image_size} is not a multiple of "
                              f"patch_size={self.patch_size}")


@dataclass(frozen=True, kw_only=True)
class BridgeTowerSpec(Spec):
    text_config: BridgeTowerTextSpec = nested("text_config", BridgeTowerTextSpec)
    vision_config: BridgeTowerVisionSpec = nested("vision_config", BridgeTowerVisionSpec)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 6, doc="cross-modal layers per stream")
    num_heads: int = dim("num_attention_heads", 12, doc="written back; the cross layers use text_config's")
    hidden_act: str = hf("hidden_act", "gelu", doc="the MLM head's activation")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    share_cross_modal_transformer_layers: bool = hf("share_cross_modal_transformer_layers", True)
    link_tower_type: str = hf("link_tower_type", "add")
    initializer_factor: float = hf("initializer_factor", 1.0)

    # a shared link tower cannot run in Transformers 5 (it indexes the single module)
    unsupported = {"share_link_tower_layers": (False, None)}

    def validate(self, source="config.json"):
        t, v = self.text_config, self.vision_config
        if self.link_tower_type not in LINK_TYPES:
            raise ConfigError(f"{source}: link_tower_type={self.link_tower_type!r}: expected one of {list(LINK_TYPES)}")
        if t.hidden_size != self.hidden_size:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} must equal text_config hidden_size="
                              f"{t.hidden_size} (the cross-modal layers are built from text_config)")
        if t.num_layers < self.num_layers - 1:
            raise ConfigError(f"{source}: text_config num_hidden_layers={t.num_layers} must be >= "
                              f"num_hidden_layers - 1 = {self.num_layers - 1}")
        if v.num_blocks < t.num_layers:
            raise ConfigError(f"{source}: the vision tower has {v.num_blocks} layers (vision_config "
                              f"num_hidden_layers, remove_last_layer) but the text tower {t.num_layers}: "
                              "each text layer needs a vision layer")

    def dummy_inputs(self):
        v = self.vision_config
        return {"input_ids": np.full((1, 2), self.text_config.pad_token_id + 1, "int32"),
                "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, v.image_size, v.image_size, v.num_channels), "float32")}


@_ser
class FusedAttentionBlock(keras.layers.Layer):
    """CLIP's residual attention block (OpenAI layout): LN -> multi-head attention with one fused
    input projection -> residual; LN -> dense 4x -> quick GELU -> dense -> residual."""

    def __init__(self, hidden_size, num_heads, layer_norm_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.layer_norm_eps = hidden_size, num_heads, layer_norm_eps
        common = dict(dtype=self.dtype_policy)
        self.attention = Attention(hidden_size, num_heads, fused_qkv=True, name="attention", **common)
        self.ln_1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="ln_1", **common)
        self.ln_2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="ln_2", **common)
        self.c_fc = keras.layers.Dense(4 * hidden_size, name="c_fc", **common)
        self.c_proj = keras.layers.Dense(hidden_size, name="c_proj", **common)
        self.act = get_activation("quick_gelu")

    def build(self, input_shape):
        shape = (None, None, self.hidden_size)
        for layer in (self.attention, self.ln_1, self.ln_2, self.c_fc):
            layer.build(shape)
        self.c_proj.build((None, None, 4 * self.hidden_size))
        self.built = True

    def call(self, x, training=False):
        a = self.attention
        q, k, v = a.project_qkv(self.ln_1(x))
        x = x + a.output_dense(a.attend(q, k, v, None, training=training))
        return x + self.c_proj(self.act(self.c_fc(self.ln_2(x))))

    def rules(self, p):
        a = self.attention
        return [Rule(p + "attn.in_proj_weight", a.qkv.kernel, TRANSPOSE), Rule(p + "attn.in_proj_bias", a.qkv.bias),
                *dense_rules(p + "attn.out_proj", a.output_dense), *norm_rules(p + "ln_1", self.ln_1),
                *norm_rules(p + "ln_2", self.ln_2), *dense_rules(p + "mlp.c_fc", self.c_fc),
                *dense_rules(p + "mlp.c_proj", self.c_proj)]

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, layer_norm_eps=self.layer_norm_eps)
        return c


@_ser
class BridgeTowerCrossLayer(keras.layers.Layer):
    """Post-norm BERT block with cross-attention: self-attention (+ residual, LN), attention over
    ``context`` (+ residual, LN), feed-forward (+ residual, LN)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-5,
                 dropout=0.0, attention_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        common = dict(dtype=self.dtype_policy)
        self.block = EncoderBlock(hidden_size, num_heads, intermediate_size, hidden_act=hidden_act,
                                  layer_norm_eps=layer_norm_eps, dropout=dropout, attention_dropout=attention_dropout,
                                  name="block", **common)
        self.cross_attention = Attention(hidden_size, num_heads, dropout=attention_dropout, name="cross_attention",
                                         **common)
        self.cross_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="cross_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        shape = (None, None, self.hidden_size)
        for layer in (self.block, self.cross_attention, self.cross_norm):
            layer.build(shape)
        self.built = True

    def call(self, x, context, self_bias=None, context_bias=None, training=False):
        b = self.block
        h = b.attention_norm(x + b.dropout(b.attend(x, self_bias, training=training), training=training))
        c = self.cross_attention(h, context_bias, context=context, training=training)
        h = self.cross_norm(h + self.dropout(c, training=training))
        f = b.output_dense(b.act(b.intermediate(h)))
        return b.output_norm(h + b.dropout(f, training=training))

    def rules(self, p):
        b, c = self.block, self.cross_attention
        r = []
        for name, dense in (("attention.self.query", b.attention.query), ("attention.self.key", b.attention.key),
                            ("attention.self.value", b.attention.value),
                            ("attention.output.dense", b.attention.output_dense),
                            ("crossattention.self.query", c.query), ("crossattention.self.key", c.key),
                            ("crossattention.self.value", c.value), ("crossattention.output.dense", c.output_dense),
                            ("intermediate.dense", b.intermediate), ("output.dense", b.output_dense)):
            r += dense_rules(p + name, dense)
        return (r + norm_rules(p + "attention.output.LayerNorm", b.attention_norm)
                + norm_rules(p + "crossattention.output.LayerNorm", self.cross_norm)
                + norm_rules(p + "output.LayerNorm", b.output_norm))

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout)
        return c


@_ser
class LinkTower(keras.layers.Layer):
    """A bridge: LayerNorm of a tower's (projected) output merged with the previous cross layer's."""

    def __init__(self, hidden_size, link_tower_type="add", layer_norm_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.link_tower_type, self.layer_norm_eps = hidden_size, link_tower_type, layer_norm_eps
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.norm.build((None, None, self.hidden_size))
        if self.link_tower_type == "scaled_add":
            self.factor = self.add_weight(name="scaled_factor", shape=(), initializer="ones")
        elif self.link_tower_type == "interpolate":
            self.factor = self.add_weight(name="beta", shape=(), initializer=keras.initializers.Constant(0.5))
        self.built = True

    def call(self, x, cross):
        if self.link_tower_type == "add":
            return self.norm(x + cross)
        f = ops.cast(self.factor, x.dtype)
        if self.link_tower_type == "scaled_add":
            return self.norm(x * f + cross)
        return self.norm(x * (1 - f) + cross * f)

    def rules(self, p):
        r = norm_rules(p + "LayerNorm", self.norm)
        if self.link_tower_type != "add":
            r.append(Rule(p + ("scaled_factor" if self.link_tower_type == "scaled_add" else "beta"), self.factor))
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, link_tower_type=self.link_tower_type, layer_norm_eps=self.layer_norm_eps)
        return c


def _text_block_rules(p, block):
    a = block.attention
    r = []
    for name, dense in (("attention.self.query", a.query), ("attention.self.key", a.key),
                        ("attention.self.value", a.value), ("attention.output.dense", a.output_dense),
                        ("intermediate.dense", block.intermediate), ("output.dense", block.output_dense)):
        r += dense_rules(p + name, dense)
    return r + norm_rules(p + "attention.output.LayerNorm", block.attention_norm) + norm_rules(
        p + "output.LayerNorm", block.output_norm)


@_ser
@register_backbone("bridgetower")
class BridgeTowerBackbone(SpecBackbone):
    spec_cls = BridgeTowerSpec
    base_model_prefix = "bridgetower"
    hf_architecture = "BridgeTowerModel"
    hf_model_type = "bridgetower"
    hf_ignore = ("*position_ids", "*token_type_ids")
    # unused by BridgeTowerModel (the text tower's pooler, the vision tower's per-layer LayerNorms)
    hf_known_unused = ("*text_model.pooler.*", "*vision_model.visual.ln_separate.*")
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, t, v = self.spec, self.spec.text_config, self.spec.vision_config
        self.hidden_size, self.vocab_size = s.hidden_size, t.vocab_size
        self.hidden_act, self.layer_norm_eps = s.hidden_act, s.layer_norm_eps
        self.initializer_range, self.dropout_rate = 0.02, t.dropout
        common = dict(dtype=self.dtype_policy)
        # text tower
        self.token_embedding = keras.layers.Embedding(t.vocab_size, t.hidden_size, name="token_embedding", **common)
        self.position_embedding = keras.layers.Embedding(t.max_position_embeddings, t.hidden_size,
                                                         name="position_embedding", **common)
        self.text_type_embedding = keras.layers.Embedding(t.type_vocab_size, t.hidden_size,
                                                          name="text_type_embedding", **common)
        self.text_norm = keras.layers.LayerNormalization(epsilon=t.layer_norm_eps, name="text_norm", **common)
        self.dropout = keras.layers.Dropout(t.dropout, **common)
        self.text_blocks = [
            EncoderBlock(t.hidden_size, t.num_heads, t.intermediate_size, hidden_act=t.hidden_act,
                         layer_norm_eps=t.layer_norm_eps, dropout=t.dropout, attention_dropout=t.attention_dropout,
                         name=f"text_block_{i}", **common) for i in range(t.num_layers)]
        # vision tower
        self.patch_embedding = PatchEmbedding(v.hidden_size, v.patch_size, v.num_channels, use_bias=False,
                                              name="patch_embedding", **common)
        self.grid = v.image_size // v.patch_size
        self.ln_pre = keras.layers.LayerNormalization(epsilon=v.layer_norm_eps, name="ln_pre", **common)
        self.ln_post = keras.layers.LayerNormalization(epsilon=v.layer_norm_eps, name="ln_post", **common)
        self.vision_blocks = [FusedAttentionBlock(v.hidden_size, v.num_heads, v.layer_norm_eps,
                                                  name=f"vision_block_{i}", **common) for i in range(v.num_blocks)]
        # cross-modal encoder
        n = s.num_layers
        transforms = 1 if s.share_cross_modal_transformer_layers else n
        self.text_transforms = [keras.layers.Dense(s.hidden_size, name=f"text_transform_{i}", **common)
                                for i in range(transforms)]
        self.image_transforms = [keras.layers.Dense(s.hidden_size, name=f"image_transform_{i}", **common)
                                 for i in range(transforms)]
        self.modality_embedding = keras.layers.Embedding(2, s.hidden_size, name="modality_embedding", **common)
        cross = dict(hidden_act=t.hidden_act, layer_norm_eps=t.layer_norm_eps, dropout=t.dropout,
                     attention_dropout=t.attention_dropout, **common)
        self.cross_text_layers = [BridgeTowerCrossLayer(t.hidden_size, t.num_heads, t.intermediate_size,
                                                        name=f"cross_text_{i}", **cross) for i in range(n)]
        self.cross_image_layers = [BridgeTowerCrossLayer(t.hidden_size, t.num_heads, t.intermediate_size,
                                                         name=f"cross_image_{i}", **cross) for i in range(n)]
        self.cross_text_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="cross_text_norm",
                                                               **common)
        self.cross_image_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="cross_image_norm",
                                                                **common)
        self.text_links = [LinkTower(s.hidden_size, s.link_tower_type, s.layer_norm_eps, name=f"text_link_{i}",
                                     **common) for i in range(n - 1)]
        self.image_links = [LinkTower(s.hidden_size, s.link_tower_type, s.layer_norm_eps, name=f"image_link_{i}",
                                      **common) for i in range(n - 1)]
        self.text_pooler = keras.layers.Dense(s.hidden_size, activation="tanh", name="text_pooler", **common)
        self.image_pooler = keras.layers.Dense(s.hidden_size, activation="tanh", name="image_pooler", **common)

    def build(self, input_shape=None):
        v = self.spec.vision_config
        self.class_embedding = self.add_weight(name="class_embedding", shape=(v.hidden_size,),
                                               initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.image_position_embedding = self.add_weight(
            name="image_position_embedding", shape=(self.grid * self.grid + 1, v.hidden_size),
            initializer=keras.initializers.RandomNormal(stddev=0.02))
        # every sub-layer built here (not on a first call): a .keras load fills built variables only
        t, d = self.spec.text_config, self.hidden_size
        for layer in (self.token_embedding, self.position_embedding, self.text_type_embedding,
                      self.modality_embedding):
            layer.build((None, None))
        self.patch_embedding.build((None, None, None, v.num_channels))
        for layer in (self.text_norm, *self.text_blocks, *self.text_transforms):
            layer.build((None, None, t.hidden_size))
        for layer in (self.ln_pre, self.ln_post, *self.vision_blocks, *self.image_transforms):
            layer.build((None, None, v.hidden_size))
        for layer in (*self.cross_text_layers, *self.cross_image_layers, self.cross_text_norm, self.cross_image_norm,
                      *self.text_links, *self.image_links, self.text_pooler, self.image_pooler):
            layer.build((None, None, d))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- towers -------------------------------------------------------------------------------
    def embed_text(self, ids, training=False):
        pad = self.spec.text_config.pad_token_id
        real = ops.cast(ops.not_equal(ids, pad), "int32")
        positions = ops.cumsum(real, axis=1) * real + pad
        x = self.token_embedding(ids) + self.text_type_embedding(ops.zeros_like(ids))
        x = x + self.position_embedding(positions)
        return self.dropout(self.text_norm(x), training=training)

    def embed_image(self, pixel_values):
        v = self.spec.vision_config
        shape = pixel_values.shape
        if len(shape) != 4 or shape[1] != v.image_size or shape[2] != v.image_size:
            raise InputError(f"pixel_values must be (batch, {v.image_size}, {v.image_size}, channels) for this "
                             f"BridgeTower (vision_config image_size), got shape {tuple(shape)}")
        x = self.patch_embedding(ops.cast(pixel_values, self.compute_dtype))
        b = ops.shape(x)[0]
        x = ops.reshape(x, (b, self.grid * self.grid, v.hidden_size))
        cls = ops.broadcast_to(ops.cast(self.class_embedding, x.dtype)[None, None, :], (b, 1, v.hidden_size))
        x = ops.concatenate([cls, x], axis=1) + ops.cast(self.image_position_embedding, x.dtype)[None]
        return self.ln_pre(x)

    def _transform(self, layers, x, i):
        return layers[0 if len(layers) == 1 else i](x)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "input_ids" not in inputs or "pixel_values" not in inputs:
            raise InputError("BridgeTower takes input_ids and pixel_values")
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = ops.ones(ops.shape(ids), "int32") if mask is None else mask
        text = self.embed_text(ids, training)
        bias = padding_bias(mask, text.dtype)
        image = self.embed_image(inputs["pixel_values"])
        text_states, image_states = [text], [image]
        n_text, n = len(self.text_blocks), self.spec.num_layers
        split = n_text - n + 1
        for i in range(split):
            text = self.text_blocks[i](text, bias, training=training)
            image = self.vision_blocks[i](image, training=training)
            text_states.append(text)
            image_states.append(image)
        text_type = self.modality_embedding(ops.zeros((1, 1), "int32"))
        image_type = self.modality_embedding(ops.ones((1, 1), "int32"))
        t_in = self.cross_text_norm(self._transform(self.text_transforms, text, 0) + text_type)
        i_in = self.cross_image_norm(self._transform(self.image_transforms, self.ln_post(image), 0) + image_type)
        xt = self.cross_text_layers[0](t_in, i_in, bias, None, training=training)
        xi = self.cross_image_layers[0](i_in, t_in, None, bias, training=training)
        cross_text, cross_image = [xt], [xi]
        for j, i in enumerate(range(split, n_text)):
            text = self.text_blocks[i](text, bias, training=training)
            image = self.vision_blocks[i](image, training=training)
            text_states.append(text)
            image_states.append(image)
            t_in = self.text_links[j](self._transform(self.text_transforms, text, j + 1) + text_type, xt)
            i_in = self.image_links[j](self._transform(self.image_transforms, self.ln_post(image), j + 1)
                                       + image_type, xi)
            xt = self.cross_text_layers[j + 1](t_in, i_in, bias, None, training=training)
            xi = self.cross_image_layers[j + 1](i_in, t_in, None, bias, training=training)
            cross_text.append(xt)
            cross_image.append(xi)
        pooled = ops.concatenate([self.text_pooler(xt[:, 0]), self.image_pooler(xi[:, 0])], axis=-1)
        return {"text_features": xt, "image_features": xi, "pooler_output": pooled,
                "text_hidden_states": tuple(text_states), "image_hidden_states": tuple(image_states),
                "cross_text_hidden_states": tuple(cross_text), "cross_image_hidden_states": tuple(cross_image)}

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        t = "text_model.embeddings."
        r = [Rule(t + "word_embeddings.weight", self.token_embedding.embeddings),
             Rule(t + "position_embeddings.weight", self.position_embedding.embeddings),
             Rule(t + "token_type_embeddings.weight", self.text_type_embedding.embeddings),
             *norm_rules(t + "LayerNorm", self.text_norm)]
        for i, block in enumerate(self.text_blocks):
            r += _text_block_rules(f"text_model.encoder.layer.{i}.", block)
        v = "vision_model.visual."
        r += [Rule(v + "embeddings.class_embedding", self.class_embedding),
              Rule(v + "embeddings.position_embedding.weight", self.image_position_embedding),
              *conv_rules(v + "embeddings.patch_embedding", self.patch_embedding.projection),
              *norm_rules(v + "ln_pre", self.ln_pre), *norm_rules(v + "ln_post", self.ln_post)]
        for i, block in enumerate(self.vision_blocks):
            r += block.rules(f"{v}transformer.resblocks.{i}.")
        for name, layers in (("cross_modal_text_transform", self.text_transforms),
                             ("cross_modal_image_transform", self.image_transforms)):
            for i, layer in enumerate(layers):
                r += dense_rules(name if len(layers) == 1 else f"{name}.{i}", layer)
        r.append(Rule("token_type_embeddings.weight", self.modality_embedding.embeddings))
        for i, (lt, li) in enumerate(zip(self.cross_text_layers, self.cross_image_layers)):
            r += lt.rules(f"cross_modal_text_layers.{i}.") + li.rules(f"cross_modal_image_layers.{i}.")
        for i, (lt, li) in enumerate(zip(self.text_links, self.image_links)):
            r += lt.rules(f"cross_modal_text_link_tower.{i}.") + li.rules(f"cross_modal_image_link_tower.{i}.")
        return (r + norm_rules("cross_modal_text_layernorm", self.cross_text_norm)
                + norm_rules("cross_modal_image_layernorm", self.cross_image_norm)
                + dense_rules("cross_modal_text_pooler.dense", self.text_pooler)
                + dense_rules("cross_modal_image_pooler.dense", self.image_pooler))


# --- heads ----------------------------------------------------------------------------------------
def _with_image_processor(proc, folder):
    """The checkpoint's :class:`BridgeTowerImageProcessor` in place of the generic one."""
    from keras_models.preprocessing.image import CONFIG_NAME

    if proc is not None and (folder / CONFIG_NAME).is_file():
        proc.image_processor = BridgeTowerImageProcessor.from_preset(folder)
    return proc


@_ser
@register_task(BridgeTowerBackbone, "MaskedLM", ("BridgeTowerForMaskedLM",))
class BridgeTowerMaskedLM(MaskedLM):
    """Masked language modelling over the text stream's cross-modal features: dense, the top-level
    ``hidden_act``, LayerNorm (``layer_norm_eps``), then the vocabulary projection (tied to the word
    embeddings when ``tie_word_embeddings``; Transformers' default here is untied) plus a bias."""

    hf_dense = "mlm_score.transform.dense"
    hf_norm = "mlm_score.transform.LayerNorm"
    hf_bias = "mlm_score.bias"
    hf_decoder = "mlm_score.decoder"
    hf_head_patterns = ("mlm_score.*",)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", hf.get("tie_word_embeddings", False))
        return kwargs

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)["text_features"]
        return self.head(h, self.backbone.token_embedding.embeddings)


@_ser
@register_task(BridgeTowerBackbone, "ImageTextMatcher", ("BridgeTowerForImageAndTextRetrieval",))
class BridgeTowerImageTextMatcher(ImageTextMatcher):
    """Image-text matching logits (batch, 2) (index 1 = matches) from the pooled output."""

    hf_head_patterns = ("itm_score.*",)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kwargs):
        """The tokenizer and :class:`BridgeTowerImageProcessor`."""
        return _with_image_processor(ImageTextMatcher.preprocessor_from_preset.__func__(cls, folder, hf, **kwargs),
                                     folder)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.itm = keras.layers.Dense(2, name="itm", dtype=backbone.dtype_policy)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.itm.build((None, 2 * self.backbone.hidden_size))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, training=False):
        return self.itm(self.backbone(inputs, training=training)["pooler_output"])

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def head_rules(self):
        return dense_rules("itm_score.fc", self.itm, base=False)


__all__ = ["BridgeTowerImageProcessor", "BridgeTowerSpec", "BridgeTowerTextSpec", "BridgeTowerVisionSpec",
           "BridgeTowerBackbone",
           "BridgeTowerMaskedLM", "BridgeTowerImageTextMatcher", "FusedAttentionBlock", "BridgeTowerCrossLayer",
           "LinkTower"]
