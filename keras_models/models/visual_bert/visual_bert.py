"""VisualBERT (``visual_bert``): the shared BERT encoder over the text tokens followed by visual
tokens: ``visual_embeds`` (batch, regions, visual_embedding_dim), region features from a detector
given as input, projected to the hidden size and summed with a visual token-type embedding
(``visual_token_type_ids``, default 1) and the visual position embedding of position 0, then
LayerNormed together with the text embeddings. ``visual_attention_mask`` (default all ones) joins
the text ``attention_mask``.

Calling the backbone on ``{"input_ids", "attention_mask", "token_type_ids", "visual_embeds",
"visual_attention_mask", "visual_token_type_ids"}`` returns the last hidden state
(batch, text + regions, hidden). Not implemented (ConfigError / InputError naming them):
``bypass_transformer: true`` and the ``image_text_alignment`` input.

Heads: ``VisualBertForQuestionAnswering`` -> :class:`VisualBertQuestionAnswerer`
(km.VisualQuestionAnswerer: ``cls`` on the hidden state at ``sum(attention_mask) - 2``, the last
text token before [SEP], as Transformers), ``VisualBertForVisualReasoning`` ->
:class:`VisualBertVisualReasoner` (``cls`` on the pooled first token).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import dim, hf
from keras_models.tasks.task import Task, labelled_task_kwargs, labels_to_hf
from keras_models.tasks.visual_question_answering import VisualQuestionAnswerer

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class VisualBertSpec(EncoderSpec):
    visual_embedding_dim: int = dim("visual_embedding_dim", 512)
    pad_token_id: int = hf("pad_token_id", 1)

    unsupported = {"position_embedding_type": ("absolute", None), "bypass_transformer": (False, None)}

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["visual_embeds"] = np.zeros((1, 2, self.visual_embedding_dim), "float32")
        return inputs


@_ser
@register_backbone("visual_bert")
class VisualBertBackbone(EncoderBackbone):
    spec_cls = VisualBertSpec
    base_model_prefix = "visual_bert"
    hf_architecture = "VisualBertModel"
    hf_model_type = "visual_bert"
    verified_backends = _ALL

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.visual_token_type_embedding = keras.layers.Embedding(
            self.type_vocab_size, self.hidden_size, embeddings_initializer=init, name="visual_token_type_embedding",
            **common)
        self.visual_position_embedding = keras.layers.Embedding(
            self.max_position_embeddings, self.hidden_size, embeddings_initializer=init,
            name="visual_position_embedding", **common)
        self.visual_projection = keras.layers.Dense(self.hidden_size, kernel_initializer=init,
                                                    name="visual_projection", **common)

    def embed(self, inputs, training=False):
        if inputs.get("image_text_alignment") is not None:
            raise InputError("image_text_alignment: not supported by VisualBertBackbone")
        ids = inputs["input_ids"]
        positions = inputs.get("position_ids")
        if positions is None:
            positions = self.position_ids(ids)
        types = inputs.get("token_type_ids")
        x = (self.token_embedding(ids) + self.position_embedding(positions)
             + self.token_type_embedding(ops.zeros_like(ids) if types is None else types))
        visual = inputs.get("visual_embeds")
        if visual is not None:
            shape = ops.shape(visual)[:-1]
            vtypes = inputs.get("visual_token_type_ids")
            vtypes = ops.ones(shape, "int32") if vtypes is None else vtypes
            v = (self.visual_projection(ops.cast(visual, self.compute_dtype))
                 + self.visual_position_embedding(ops.zeros(shape, "int32"))
                 + self.visual_token_type_embedding(vtypes))
            x = ops.concatenate([x, ops.cast(v, x.dtype)], axis=1)
        return self.embeddings_dropout(self.embeddings_norm_layer(x), training=training)

    def attention_bias(self, inputs, x):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = ops.ones(ops.shape(ids), "int32") if mask is None else ops.cast(mask, "int32")
        visual = inputs.get("visual_embeds")
        if visual is not None:
            vmask = inputs.get("visual_attention_mask")
            vmask = ops.ones(ops.shape(visual)[:-1], "int32") if vmask is None else ops.cast(vmask, "int32")
            mask = ops.concatenate([mask, vmask], axis=1)
        return padding_bias(mask, x.dtype)

    def weight_rules(self):
        return super().weight_rules() + [
            Rule("embeddings.visual_token_type_embeddings.weight", self.visual_token_type_embedding.embeddings),
            Rule("embeddings.visual_position_embeddings.weight", self.visual_position_embedding.embeddings),
            *dense_rules("embeddings.visual_projection", self.visual_projection)]


class _Labelled:
    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, num_classes=None, **kwargs):
        return labelled_task_kwargs(hf, num_classes, head_from_checkpoint, kwargs)

    def task_config_to_hf(self):
        return labels_to_hf(self.id2label, self.num_classes)

    def setup_head(self, backbone, num_classes, id2label):
        self.num_classes = int(num_classes)
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.classifier = keras.layers.Dense(self.num_classes, name="classifier", dtype=backbone.dtype_policy)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        d = self.backbone.hidden_size
        self.classifier.build((None, d))
        if getattr(self, "pooler", None) is not None:
            self.pooler.build((None, d))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def get_config(self):
        c = super().get_config()
        c.update(num_classes=self.num_classes, id2label=self.id2label)
        return c


@_ser
@register_task(VisualBertBackbone, "VisualQuestionAnswerer", ("VisualBertForQuestionAnswering",))
class VisualBertQuestionAnswerer(_Labelled, VisualQuestionAnswerer):
    """Logits (batch, num_classes) from the hidden state at ``sum(attention_mask) - 2``."""

    hf_head_patterns = ("cls.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.setup_head(backbone, num_classes, id2label)

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)
        mask = inputs.get("attention_mask")
        if mask is None:
            index = ops.full((ops.shape(h)[0],), ops.shape(inputs["input_ids"])[1] - 2, "int32")
        else:
            index = ops.sum(ops.cast(mask, "int32"), axis=1) - 2
        token = ops.take_along_axis(h, index[:, None, None], axis=1)[:, 0]
        return self.classifier(token)

    def head_rules(self):
        return dense_rules("cls", self.classifier, base=False)


@_ser
@register_task(VisualBertBackbone, "VisualReasoner", ("VisualBertForVisualReasoning",))
class VisualBertVisualReasoner(_Labelled, Task):
    """Logits (batch, num_classes) from the pooled first token (dense + tanh)."""

    hf_head_patterns = ("cls.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.setup_head(backbone, num_classes, id2label)
        self.pooler = keras.layers.Dense(backbone.hidden_size, activation="tanh", name="pooler",
                                         dtype=backbone.dtype_policy)

    def call(self, inputs, training=False):
        return self.classifier(self.pooler(self.backbone(inputs, training=training)[:, 0]))

    def head_rules(self):
        return dense_rules("pooler.dense", self.pooler) + dense_rules("cls", self.classifier, base=False)


__all__ = ["VisualBertSpec", "VisualBertBackbone", "VisualBertQuestionAnswerer", "VisualBertVisualReasoner"]
