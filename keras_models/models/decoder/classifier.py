"""Sequence classification for decoder-only models: a bias-free ``score`` Linear on the last
non-padding token (the rightmost token different from ``pad_token_id``, so both left and right
padding work; without a pad token, the last position)."""

import keras
from keras import ops

from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.task import Task
from keras_models.tasks.text import TextClassifier


@keras.saving.register_keras_serializable(package="keras_models")
class DecoderTextClassifier(TextClassifier):
    hf_inner = None
    hf_out = "score"
    hf_head_patterns = ("score.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = 0.0 if dropout is None else dropout
        self.score = keras.layers.Dense(
            num_classes, use_bias=False, name="score", dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range))

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        width = self.backbone.options["embed_proj_dim"] or self.backbone.hidden_size
        self.score.build((None, width))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def pool(self, hidden, inputs):
        ids = inputs["input_ids"]
        pad = self.backbone.options["pad_token_id"]
        seq = ops.shape(ids)[1]
        if pad is None:
            index = ops.full((ops.shape(ids)[0],), seq - 1, dtype="int32")
        else:
            real = ops.cast(ops.not_equal(ids, pad), "int32")
            index = ops.argmax(ops.arange(seq, dtype="int32")[None, :] * real, axis=-1)
        index = ops.cast(index, "int32")[:, None, None]
        return ops.take_along_axis(hidden, index, axis=1)[:, 0]

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        return self.score(self.pool(self.backbone(inputs, training=training), inputs))

    def head_rules(self):
        return [Rule(f"{self.hf_out}.weight", self.score.kernel, TRANSPOSE, base=False)]
