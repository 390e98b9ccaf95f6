"""Splinter: a BERT encoder (no pooler) with a question-aware span-selection (QASS) head.

The QASS head scores every token as an answer start/end *for a question token*: the hidden state at
the question position (by default the first ``question_token_id`` in each row, [QUESTION]; else
position 0) goes through its own dense -> gelu -> LayerNorm transforms and a bias-free bilinear
product with the transformed token states. Its outputs are our QuestionAnswerer's
``{"start_logits", "end_logits"}`` (batch, seq), padding set to the dtype's minimum as in
Transformers. Inputs may carry ``question_positions`` (batch, num_questions): the logits are then
(batch, num_questions, seq), Transformers' SplinterForPreTraining outputs.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.task import Task
from keras_models.tasks.text import QuestionAnswerer

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class SplinterSpec(EncoderSpec):
    question_token_id: int = hf("question_token_id", 104)


@_ser
@register_backbone("splinter")
class SplinterBackbone(EncoderBackbone):
    spec_cls = SplinterSpec
    base_model_prefix = "splinter"
    hf_architecture = "SplinterModel"
    hf_model_type = "splinter"
    verified_backends = ("jax", "torch", "tensorflow")


def dtype_min(dtype):
    name = keras.backend.standardize_dtype(dtype)
    return -3.3895313892515355e38 if name == "bfloat16" else float(np.finfo(name).min)


@_ser
class SpanSelectionHead(keras.layers.Layer):
    """Splinter's QASS head: ``call(hidden, question_positions)`` -> (start, end), each
    (batch, num_questions, seq)."""

    NAMES = ("query_start_transform", "query_end_transform", "start_transform", "end_transform")

    def __init__(self, hidden_size, activation="gelu", layer_norm_eps=1e-5, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.activation, self.layer_norm_eps = hidden_size, activation, layer_norm_eps
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(activation)
        dense = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        # one dense -> activation -> LayerNorm transform per name in NAMES
        self.transform_dense = [keras.layers.Dense(hidden_size, name=f"{n}_dense", **dense) for n in self.NAMES]
        self.transform_norm = [keras.layers.LayerNormalization(epsilon=layer_norm_eps, name=f"{n}_norm",
                                                               dtype=self.dtype_policy) for n in self.NAMES]
        self.start_classifier = keras.layers.Dense(hidden_size, use_bias=False, name="start_classifier", **dense)
        self.end_classifier = keras.layers.Dense(hidden_size, use_bias=False, name="end_classifier", **dense)

    def build(self, input_shape):
        for dense, norm in zip(self.transform_dense, self.transform_norm):
            dense.build(input_shape)
            norm.build(input_shape)
        self.start_classifier.build(input_shape)
        self.end_classifier.build(input_shape)
        self.built = True

    def transform(self, name, x):
        i = self.NAMES.index(name)
        dense, norm = self.transform_dense[i], self.transform_norm[i]
        return norm(self.act(dense(x)))

    def call(self, hidden, question_positions):
        index = ops.broadcast_to(ops.cast(question_positions, "int32")[..., None],
                                 tuple(ops.shape(question_positions)) + (self.hidden_size,))
        questions = ops.take_along_axis(hidden, index, axis=1)  # (b, q, d)
        start_q = self.start_classifier(self.transform("query_start_transform", questions))
        end_q = self.end_classifier(self.transform("query_end_transform", questions))
        start = ops.einsum("bqd,btd->bqt", start_q, self.transform("start_transform", hidden))
        end = ops.einsum("bqd,btd->bqt", end_q, self.transform("end_transform", hidden))
        return start, end

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, activation=self.activation, layer_norm_eps=self.layer_norm_eps,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


class SplinterQuestionAnswererBase(QuestionAnswerer):
    hf_head_patterns = ("splinter_qass.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.qass = SpanSelectionHead(
            backbone.hidden_size, name="splinter_qass", dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range),
        )

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        h = self.backbone(inputs, training=training)
        positions = inputs.get("question_positions")
        squeeze = positions is None
        if squeeze:  # the first question token of each row (none: position 0)
            is_question = ops.cast(ops.equal(inputs["input_ids"], self.backbone.question_token_id), "int32")
            positions = ops.argmax(is_question, axis=-1)[:, None]
        start, end = self.qass(h, positions)
        if squeeze:
            start, end = start[:, 0], end[:, 0]
        mask = inputs.get("attention_mask")
        if mask is not None:
            keep = ops.cast(mask, "bool")
            if not squeeze:
                keep = keep[:, None, :]
            start = ops.where(keep, start, dtype_min(start.dtype))
            end = ops.where(keep, end, dtype_min(end.dtype))
        return {"start_logits": start, "end_logits": end}

    def head_rules(self):
        q, r = self.qass, []
        for name, dense, norm in zip(q.NAMES, q.transform_dense, q.transform_norm):
            r += dense_rules(f"splinter_qass.{name}.dense", dense, base=False)
            r += norm_rules(f"splinter_qass.{name}.LayerNorm", norm, base=False)
        r += dense_rules("splinter_qass.start_classifier", q.start_classifier, base=False)
        r += dense_rules("splinter_qass.end_classifier", q.end_classifier, base=False)
        return r


@family_task(SplinterBackbone, "QuestionAnswerer", "SplinterForQuestionAnswering", "SplinterForPreTraining")
class SplinterQuestionAnswerer(SplinterQuestionAnswererBase):
    pass


@family_task(SplinterBackbone, "TextEmbedder", "SplinterModel")
class SplinterTextEmbedder(TextEmbedder):
    pass


__all__ = ["SplinterBackbone", "SpanSelectionHead", "SplinterQuestionAnswerer", "SplinterTextEmbedder"]
