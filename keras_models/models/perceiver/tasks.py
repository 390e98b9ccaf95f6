"""Perceiver IO's text tasks: decoders that cross-attend from learned queries to the latents.

* ``PerceiverForMaskedLM``: one query per position (a learned (max_position_embeddings, d_model)
  table), a cross-attention layer (q/k width 256, 8 heads, values d_model wide, no query residual),
  then logits against the byte embedding table plus ``embedding_decoder.bias``. Transformers always
  decodes all ``max_position_embeddings`` positions; the queries do not see each other, so decoding
  only the input's positions gives the same numbers, shaped (batch, seq, vocab) as MaskedLM's contract.
* ``PerceiverForSequenceClassification``: one learned query (d_latents wide), a one-head
  cross-attention layer with the query residual, then ``final_layer`` to the labels.

* Image classifiers (``PerceiverForImageClassificationLearned`` / ``...Fourier`` /
  ``...ConvProcessing``) -> ``km.ImageClassifier``: the backbone's image preprocessor (config.json's
  architecture picks it), then the sequence classifier's decoder (one learned query).
* ``PerceiverForOpticalFlow`` -> ``km.OpticalFlowEstimator``: the decoder queries with the
  preprocessed input itself (322 channels per pixel, one head, no query residual), projects to 2
  channels and divides by 100: flow (batch, height, width, 2) at ``train_size``.

A ``PerceiverTokenizer`` folder (UTF-8 bytes, no vocabulary file) loads as the tasks' preprocessor
(keras_models/tokenizers/perceiver.py).
"""

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.encoder.tasks import family_task
from keras_models.models.perceiver.backbone import PerceiverBackbone, PerceiverLayer
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.models.perceiver.backbone import PREPROCESSOR_BY_ARCHITECTURE
from keras_models.tasks.image_classifier import ImageClassifier
from keras_models.tasks.optical_flow import OpticalFlowEstimator
from keras_models.tasks.task import Task
from keras_models.tasks.text import MaskedLM, TextClassifier

MLM_QK_CHANNELS, MLM_HEADS = 8 * 32, 8  # fixed by Transformers' PerceiverForMaskedLM


@keras.saving.register_keras_serializable(package="keras_models")
class PerceiverDecoder(keras.layers.Layer):
    """Learned queries (``num_queries`` x ``q_dim``) cross-attending to the latents, optionally
    projected to ``num_outputs`` (``final_layer``)."""

    def __init__(self, num_queries, q_dim, kv_dim, qk_channels=None, v_channels=None, num_heads=1,
                 query_residual=True, num_outputs=None, hidden_act="gelu", attention_dropout=0.0,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_queries, self.q_dim, self.kv_dim = num_queries, q_dim, kv_dim
        self.qk_channels, self.v_channels, self.num_heads = qk_channels, v_channels, num_heads
        self.query_residual, self.num_outputs, self.hidden_act = query_residual, num_outputs, hidden_act
        self.attention_dropout, self.initializer_range = attention_dropout, initializer_range
        self.attention = PerceiverLayer(q_dim, kv_dim=kv_dim, qk_channels=qk_channels, v_channels=v_channels,
                                        num_heads=num_heads, widening=1, query_residual=query_residual,
                                        hidden_act=hidden_act, attention_dropout=attention_dropout,
                                        initializer_range=initializer_range, name="attention",
                                        dtype=self.dtype_policy)
        self.final = None
        if num_outputs is not None:
            self.final = keras.layers.Dense(num_outputs, name="final_layer", dtype=self.dtype_policy,
                                            kernel_initializer=keras.initializers.TruncatedNormal(
                                                stddev=initializer_range))

    def build(self, input_shape=None):
        self.queries = None
        if self.num_queries:  # 0: the caller passes the queries
            self.queries = self.add_weight(
                shape=(self.num_queries, self.q_dim), name="queries",
                initializer=keras.initializers.RandomNormal(stddev=self.initializer_range))
        self.attention.build()
        if self.final is not None:
            self.final.build((None, None, self.q_dim))
        self.built = True

    def call(self, latents, num_queries=None, queries=None, training=False):
        """``queries``: (batch, n, q_dim) queries instead of the learned table (optical flow)."""
        if queries is None:
            n = num_queries or self.num_queries
            b = ops.shape(latents)[0]
            queries = ops.broadcast_to(ops.cast(self.queries[:n], latents.dtype)[None], (b, n, self.q_dim))
        out = self.attention(queries, inputs=latents, training=training)
        return out if self.final is None else self.final(out)

    def rules(self, prefix, table):
        r = self.attention.rules(prefix + "decoding_cross_attention.")
        if self.queries is not None:
            r.append(Rule(prefix + table, self.queries))
        if self.final is not None:
            r += [Rule(prefix + "final_layer.weight", self.final.kernel, TRANSPOSE),
                  Rule(prefix + "final_layer.bias", self.final.bias)]
        return [Rule(x.hf, x.variable, x.op, base=False) for x in r]

    def get_config(self):
        config = super().get_config()
        config.update(num_queries=self.num_queries, q_dim=self.q_dim, kv_dim=self.kv_dim,
                      qk_channels=self.qk_channels, v_channels=self.v_channels, num_heads=self.num_heads,
                      query_residual=self.query_residual, num_outputs=self.num_outputs, hidden_act=self.hidden_act,
                      attention_dropout=self.attention_dropout, initializer_range=self.initializer_range)
        return config


def _require(backbone, kinds, task):
    if backbone.input_preprocessor not in kinds:
        raise ConfigError(f"config.json: a Perceiver with the {backbone.input_preprocessor!r} input preprocessor "
                          f"(architectures) has no {task} head")


def _common(backbone):
    return dict(hidden_act=backbone.hidden_act, attention_dropout=backbone.attention_dropout,
                initializer_range=backbone.initializer_range, dtype=backbone.dtype_policy)


@family_task(PerceiverBackbone, "MaskedLM", "PerceiverForMaskedLM")
class PerceiverMaskedLM(MaskedLM):
    hf_head_patterns = ("perceiver.decoder.*", "embedding_decoder.*")

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        _require(backbone, ("text",), "MaskedLM")
        if not tie_word_embeddings:
            raise ConfigError("config.json: tie_word_embeddings=False: Perceiver's MLM decodes with its byte "
                              "embedding table")
        self.tie_word_embeddings = True
        if backbone.d_model % MLM_HEADS:
            raise ConfigError(f"config.json: d_model={backbone.d_model} is not divisible by the masked-LM "
                              f"decoder's {MLM_HEADS} heads")
        self.decoder = PerceiverDecoder(
            backbone.max_position_embeddings, backbone.d_model, backbone.d_latents, qk_channels=MLM_QK_CHANNELS,
            v_channels=backbone.d_model, num_heads=MLM_HEADS, query_residual=False, name="decoder",
            **_common(backbone))
        self.bias = self.add_weight(shape=(backbone.vocab_size,), name="output_bias", initializer="zeros",
                                    dtype=backbone.dtype_policy.variable_dtype)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        z = self.backbone(inputs, training=training)
        out = self.decoder(z, num_queries=inputs["input_ids"].shape[1], training=training)
        table = ops.cast(self.backbone.token_embedding.embeddings, out.dtype)
        return ops.matmul(out, ops.transpose(table)) + ops.cast(self.bias, out.dtype)

    def head_rules(self):
        return self.decoder.rules("perceiver.decoder.", "output_position_encodings.position_embeddings") + [
            Rule("embedding_decoder.bias", self.bias, base=False)]


@family_task(PerceiverBackbone, "TextClassifier", "PerceiverForSequenceClassification")
class PerceiverTextClassifier(TextClassifier):
    hf_head_patterns = ("perceiver.decoder.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        _require(backbone, ("text",), "TextClassifier")
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = 0.0 if dropout is None else dropout
        d = backbone.d_latents
        self.head = PerceiverDecoder(1, d, d, num_heads=1, query_residual=True, num_outputs=num_classes,
                                     name="decoder", **_common(backbone))

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        return self.head(self.backbone(inputs, training=training), training=training)[:, 0]

    def head_rules(self):
        return self.head.rules("perceiver.decoder.decoder.", "output_position_encodings.position_embeddings")


IMAGE_CLASSIFIERS = {kind: arch for arch, kind in PREPROCESSOR_BY_ARCHITECTURE.items() if kind != "patches"}


@family_task(PerceiverBackbone, "ImageClassifier", *IMAGE_CLASSIFIERS.values())
class PerceiverImageClassifier(ImageClassifier):
    """The sequence classifier's decoder over an image preprocessor's latents; config.json's
    architecture (saved back as it came) names the preprocessor."""

    hf_head_patterns = ("perceiver.decoder.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, **kwargs):
        for key in ("pooling", "distilled", "augmentation"):
            kwargs.pop(key, None)
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        _require(backbone, tuple(IMAGE_CLASSIFIERS), "ImageClassifier")
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        self.pooling, self.distilled, self.augmentation = "cls", False, None
        d = backbone.d_latents
        self.head = PerceiverDecoder(1, d, d, num_heads=1, query_residual=True, num_outputs=num_classes,
                                     name="decoder", **_common(backbone))

    @property
    def hf_architecture_name(self):
        return IMAGE_CLASSIFIERS[self.backbone.input_preprocessor]

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"pixel_values": inputs}
        return self.head(self.backbone(inputs, training=training), training=training)[:, 0]

    def head_rules(self):
        return self.head.rules("perceiver.decoder.decoder.", "output_position_encodings.position_embeddings")


FLOW_RESCALE = 100.0  # Transformers' PerceiverOpticalFlowDecoder divides its output by this


@family_task(PerceiverBackbone, "OpticalFlowEstimator", "PerceiverForOpticalFlow")
class PerceiverOpticalFlow(OpticalFlowEstimator):
    hf_head_patterns = ("perceiver.decoder.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        _require(backbone, ("patches",), "OpticalFlowEstimator")
        c = backbone.image_preprocessor.num_channels
        # q/k width as Transformers' decoder cross-attention: the latents' or the queries' width
        qk = backbone.d_latents if backbone.cross_attention_shape_for_attention == "kv" else c
        self.head = PerceiverDecoder(0, c, backbone.d_latents, qk_channels=qk, num_heads=1, query_residual=False,
                                     num_outputs=2, name="decoder", **_common(backbone))

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"pixel_values": inputs}
        h, w = self.backbone.train_size
        shape = tuple(inputs["pixel_values"].shape)
        if len(shape) != 5 or shape[2:4] != (h, w):
            raise InputError(f"Perceiver optical flow: pixel_values must be (batch, 2, {h}, {w}, 27) "
                             f"(train_size frames), got {shape}")
        z, x = self.backbone.encode(inputs, training=training, return_inputs=True)
        flow = self.head(z, queries=x, training=training) / FLOW_RESCALE
        return ops.reshape(flow, (-1, h, w, 2))

    def head_rules(self):
        return self.head.rules("perceiver.decoder.decoder.", None)


__all__ = ["PerceiverMaskedLM", "PerceiverTextClassifier", "PerceiverImageClassifier", "PerceiverOpticalFlow",
           "PerceiverDecoder"]
