"""LXMERT (``lxmert``): three encoders over a sentence and a set of detected objects.

* the **language** encoder: BERT embeddings (word + absolute position + token type, LayerNorm)
  then ``l_layers`` post-norm BERT blocks (the shared :class:`EncoderBlock`);
* the **object-relationship** encoder: ``visual_feats`` (batch, objects, visual_feat_dim), region
  features from a detector given as input, and ``visual_pos`` (batch, objects, visual_pos_dim),
  their boxes, each projected and LayerNormed, averaged, then ``r_layers`` BERT blocks;
* the **cross-modality** encoder: ``x_layers`` layers, each a cross-attention sub-layer shared by
  both directions (language queries the objects, objects query the language, both from the
  layer's inputs), then a BERT block (self-attention + feed-forward) per modality.

Every LayerNorm has epsilon 1e-12 (a constant of the architecture: config.json has no key for it).
``attention_mask`` masks text tokens; ``visual_attention_mask`` (optional) masks objects.

Calling the backbone on ``{"input_ids", "attention_mask", "token_type_ids", "visual_feats",
"visual_pos", "visual_attention_mask"}`` returns Transformers' ``LxmertModel`` outputs:
``{"language_output", "vision_output", "pooled_output" (dense + tanh of the first language
token), "language_hidden_states" (a tuple: after each language layer, then each cross layer),
"vision_hidden_states" (after each relationship layer, then each cross layer)}``.

Heads: ``LxmertForQuestionAnswering`` (and the answer head of ``LxmertForPreTraining``) ->
:class:`LxmertQuestionAnswerer` (km.VisualQuestionAnswerer, ``num_qa_labels`` answers);
``LxmertForPreTraining``'s ``prediction_logits`` -> :class:`LxmertMaskedLM` (km.MaskedLM) and
its ``cross_relationship_score`` -> :class:`LxmertImageTextMatcher` (km.ImageTextMatcher: (batch, 2)
logits, index 1 = the sentence matches the objects). The pre-training object-prediction head
(``obj_predict_head``: only used by Transformers' loss) is not built.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.attention import Attention
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.image_text_matching import ImageTextMatcher
from keras_models.tasks.text import MaskedLM
from keras_models.tasks.visual_question_answering import VisualQuestionAnswerer

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")
_EPS = 1e-12


@dataclass(frozen=True, kw_only=True)
class LxmertSpec(EncoderSpec):
    num_layers: int = dim("l_layers", 9, doc="language layers")
    num_visual_layers: int = hf("r_layers", 5, doc="object-relationship layers")
    num_cross_layers: int = hf("x_layers", 5, doc="cross-modality layers")
    visual_feat_dim: int = dim("visual_feat_dim", 2048)
    visual_pos_dim: int = dim("visual_pos_dim", 4)
    pad_token_id: int | None = hf("pad_token_id", None)
    layer_norm_eps: float = const(_EPS, doc="fixed by the architecture")

    unsupported = {"position_embedding_type": ("absolute", None)}

    def validate(self, source="config.json"):
        super().validate(source)
        for key, value in (("r_layers", self.num_visual_layers), ("x_layers", self.num_cross_layers)):
            if value < 0:
                raise ConfigError(f"{source}: key {key!r} must be >= 0, got {value}")
        if self.num_visual_layers + self.num_cross_layers < 1:
            raise ConfigError(f"{source}: r_layers={self.num_visual_layers}, x_layers={self.num_cross_layers}: the "
                              "objects need at least one layer (r_layers + x_layers >= 1)")
        if self.type_vocab_size < 1:
            raise ConfigError(f"{source}: key 'type_vocab_size' must be >= 1, got {self.type_vocab_size}")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["visual_feats"] = np.zeros((1, 2, self.visual_feat_dim), "float32")
        inputs["visual_pos"] = np.zeros((1, 2, self.visual_pos_dim), "float32")
        return inputs


@_ser
class LxmertCrossLayer(keras.layers.Layer):
    """One cross-modality layer: a cross-attention sub-layer (attention + residual + LayerNorm)
    applied in both directions with the same weights, then a BERT block per modality."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", dropout=0.0,
                 attention_dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.dropout_rate, self.attention_dropout = hidden_act, dropout, attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(dtype=self.dtype_policy)
        self.cross_attention = Attention(hidden_size, num_heads, dropout=attention_dropout, name="cross_attention",
                                         kernel_initializer=self.kernel_initializer, **common)
        self.cross_norm = keras.layers.LayerNormalization(epsilon=_EPS, name="cross_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)
        block = dict(hidden_act=hidden_act, layer_norm_eps=_EPS, dropout=dropout, attention_dropout=attention_dropout,
                     kernel_initializer=self.kernel_initializer, **common)
        self.language_block = EncoderBlock(hidden_size, num_heads, intermediate_size, name="language_block", **block)
        self.vision_block = EncoderBlock(hidden_size, num_heads, intermediate_size, name="vision_block", **block)

    def build(self, input_shape):
        shape = (None, None, self.hidden_size)
        self.cross_attention.build(shape)
        self.cross_norm.build(shape)
        self.language_block.build(shape)
        self.vision_block.build(shape)
        self.built = True

    def cross(self, x, context, context_bias, training=False):
        a = self.cross_attention(x, context_bias, context=context, training=training)
        return self.cross_norm(x + self.dropout(a, training=training))

    def call(self, language, language_bias, vision, vision_bias, training=False):
        lang = self.cross(language, vision, vision_bias, training)
        vis = self.cross(vision, language, language_bias, training)
        return (self.language_block(lang, language_bias, training=training),
                self.vision_block(vis, vision_bias, training=training))

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 hidden_act=self.hidden_act, dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


def _block_rules(prefix, block, names):
    """A BERT block's weights under ``names``: (query, key, value, attention out, attention norm,
    feed-forward in, feed-forward out, output norm)."""
    a = block.attention
    q, k, v, ao, an, fi, fo, on = names
    r = []
    for name, dense in ((q, a.query), (k, a.key), (v, a.value), (ao, a.output_dense), (fi, block.intermediate),
                        (fo, block.output_dense)):
        r += dense_rules(prefix + name, dense)
    return r + norm_rules(prefix + an, block.attention_norm) + norm_rules(prefix + on, block.output_norm)


def _x_names(side, short):
    s = f"{side}_self_att."
    return (s + "self.query", s + "self.key", s + "self.value", s + "output.dense", s + "output.LayerNorm",
            f"{short}_inter.dense", f"{short}_output.dense", f"{short}_output.LayerNorm")


@_ser
@register_backbone("lxmert")
class LxmertBackbone(EncoderBackbone):
    spec_cls = LxmertSpec
    base_model_prefix = "lxmert"
    hf_architecture = "LxmertModel"
    hf_model_type = "lxmert"
    hf_known_unused = ("obj_predict_head.*",)
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.visual_fc = keras.layers.Dense(self.hidden_size, kernel_initializer=init, name="visual_fc", **common)
        self.visual_norm = keras.layers.LayerNormalization(epsilon=_EPS, name="visual_norm", **common)
        self.box_fc = keras.layers.Dense(self.hidden_size, kernel_initializer=init, name="box_fc", **common)
        self.box_norm = keras.layers.LayerNormalization(epsilon=_EPS, name="box_norm", **common)
        self.visual_dropout = keras.layers.Dropout(self.dropout_rate, **common)
        self.visual_blocks = [
            EncoderBlock(self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
                         layer_norm_eps=_EPS, dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                         kernel_initializer=init, name=f"visual_block_{i}", **common)
            for i in range(s.num_visual_layers)]
        self.cross_layers = [
            LxmertCrossLayer(self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
                             dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                             kernel_initializer=init, name=f"cross_layer_{i}", **common)
            for i in range(s.num_cross_layers)]
        self.pooler = keras.layers.Dense(self.hidden_size, activation="tanh", kernel_initializer=init,
                                         name="pooler", **common)

    def encode_objects(self, visual_feats, visual_pos, training=False):
        """Objects' input embeddings: mean of the LayerNormed feature and box projections."""
        x = self.visual_norm(self.visual_fc(ops.cast(visual_feats, self.compute_dtype)))
        y = self.box_norm(self.box_fc(ops.cast(visual_pos, self.compute_dtype)))
        return self.visual_dropout((x + y) / 2, training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "visual_feats" not in inputs or "visual_pos" not in inputs:
            raise InputError("LXMERT takes input_ids, visual_feats and visual_pos")
        s = self.spec
        for key, width in (("visual_feats", s.visual_feat_dim), ("visual_pos", s.visual_pos_dim)):
            shape = inputs[key].shape
            if len(shape) != 3 or (shape[-1] is not None and shape[-1] != width):
                raise InputError(f"{key} must be (batch, objects, {width}), got shape {tuple(shape)}")
        lang = self.embed(inputs, training=training)
        lang_bias = self.attention_bias(inputs, lang)
        vis = self.encode_objects(inputs["visual_feats"], inputs["visual_pos"], training)
        vmask = inputs.get("visual_attention_mask")
        vis_bias = None if vmask is None else padding_bias(vmask, vis.dtype)
        lang_states, vis_states = [], []
        for block in self.blocks:
            lang = block(lang, lang_bias, training=training)
            lang_states.append(lang)
        for block in self.visual_blocks:
            vis = block(vis, vis_bias, training=training)
            vis_states.append(vis)
        for layer in self.cross_layers:
            lang, vis = layer(lang, lang_bias, vis, vis_bias, training=training)
            lang_states.append(lang)
            vis_states.append(vis)
        return {"language_output": lang, "vision_output": vis, "pooled_output": self.pooler(lang[:, 0]),
                "language_hidden_states": tuple(lang_states), "vision_hidden_states": tuple(vis_states)}

    def weight_rules(self):
        r = super().weight_rules()  # embeddings and the language layers (encoder.layer.{i}, BERT's names)
        v = "encoder.visn_fc."
        r += (dense_rules(v + "visn_fc", self.visual_fc) + norm_rules(v + "visn_layer_norm", self.visual_norm)
              + dense_rules(v + "box_fc", self.box_fc) + norm_rules(v + "box_layer_norm", self.box_norm))
        for i, block in enumerate(self.visual_blocks):
            r += self.block_rules(f"encoder.r_layers.{i}.", block)
        for i, layer in enumerate(self.cross_layers):
            p = f"encoder.x_layers.{i}."
            a = layer.cross_attention
            for name, dense in (("att.query", a.query), ("att.key", a.key), ("att.value", a.value),
                                ("output.dense", a.output_dense)):
                r += dense_rules(p + "visual_attention." + name, dense)
            r += norm_rules(p + "visual_attention.output.LayerNorm", layer.cross_norm)
            r += _block_rules(p, layer.language_block, _x_names("lang", "lang"))
            r += _block_rules(p, layer.vision_block, _x_names("visn", "visn"))
        return r + dense_rules("pooler.dense", self.pooler)


# --- heads ----------------------------------------------------------------------------------------
class _LxmertHead:
    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.build_head(self.backbone.hidden_size)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self


@_ser
@register_task(LxmertBackbone, "VisualQuestionAnswerer", ("LxmertForQuestionAnswering", "LxmertForPreTraining"))
class LxmertQuestionAnswerer(_LxmertHead, VisualQuestionAnswerer):
    """Answer scores (batch, num_classes) over ``num_qa_labels`` answers: the pooled output through
    dense (2x wide), exact GELU, LayerNorm (eps 1e-12), dense (``answer_head.logit_fc``); Transformers'
    ``question_answering_score``. Loads ``LxmertForPreTraining``'s answer head too (when its
    config has ``task_qa``)."""

    hf_head_patterns = ("answer_head.*",)

    def __init__(self, backbone, num_classes=9500, id2label=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = int(num_classes)
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        dt, d = backbone.dtype_policy, backbone.hidden_size
        self.dense = keras.layers.Dense(2 * d, name="dense", dtype=dt)
        self.norm = keras.layers.LayerNormalization(epsilon=_EPS, name="norm", dtype=dt)
        self.out = keras.layers.Dense(self.num_classes, name="out", dtype=dt)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, num_classes=None, **kwargs):
        n = hf.get("num_qa_labels", 9500)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"config.json: key 'num_qa_labels' must be a positive integer, got {n!r}")
        if "LxmertForPreTraining" in (hf.get("architectures") or []) and hf.get("task_qa") is False:
            head_from_checkpoint = False  # that checkpoint has no answer head
        labels = hf.get("id2label")
        labels = {int(k): v for k, v in labels.items()} if isinstance(labels, dict) and len(labels) == n else None
        if num_classes is not None and int(num_classes) != n:
            head_from_checkpoint, n, labels = False, int(num_classes), None
        kwargs.update(num_classes=n, id2label=labels, _head_from_checkpoint=head_from_checkpoint)
        return kwargs

    def task_config_to_hf(self):
        out = {"num_qa_labels": self.num_classes, "task_qa": True}
        if self.id2label:
            out["id2label"] = {str(k): v for k, v in self.id2label.items()}
            out["label2id"] = {v: k for k, v in self.id2label.items()}
        return out

    def build_head(self, d):
        self.dense.build((None, d))
        self.norm.build((None, 2 * d))
        self.out.build((None, 2 * d))

    def call(self, inputs, training=False):
        pooled = self.backbone(inputs, training=training)["pooled_output"]
        return self.out(self.norm(ops.gelu(self.dense(pooled), approximate=False)))

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def get_config(self):
        c = super().get_config()
        c.update(num_classes=self.num_classes, id2label=self.id2label)
        return c

    def head_rules(self):
        p = "answer_head.logit_fc."
        return (dense_rules(p + "0", self.dense, base=False) + norm_rules(p + "2", self.norm, base=False)
                + dense_rules(p + "3", self.out, base=False))


@_ser
@register_task(LxmertBackbone, "MaskedLM", ("LxmertForPreTraining",))
class LxmertMaskedLM(MaskedLM):
    """``LxmertForPreTraining``'s ``prediction_logits``: BERT's MLM head over the language output
    (read in the context of the objects) -> (batch, seq, vocab)."""

    hf_head_patterns = ("cls.predictions.*",)

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)["language_output"]
        return self.head(h, self.backbone.token_embedding.embeddings)


@_ser
@register_task(LxmertBackbone, "ImageTextMatcher", ("LxmertForPreTraining",))
class LxmertImageTextMatcher(_LxmertHead, ImageTextMatcher):
    """``LxmertForPreTraining``'s ``cross_relationship_score``: a dense layer on the pooled output
    -> (batch, 2) logits, index 1 = the sentence matches the objects."""

    hf_head_patterns = ("cls.seq_relationship.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.seq_relationship = keras.layers.Dense(2, name="seq_relationship", dtype=backbone.dtype_policy)

    def build_head(self, d):
        self.seq_relationship.build((None, d))

    def call(self, inputs, training=False):
        return self.seq_relationship(self.backbone(inputs, training=training)["pooled_output"])

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def head_rules(self):
        return dense_rules("cls.seq_relationship", self.seq_relationship, base=False)


__all__ = ["LxmertSpec", "LxmertCrossLayer", "LxmertBackbone", "LxmertQuestionAnswerer", "LxmertMaskedLM",
           "LxmertImageTextMatcher"]
