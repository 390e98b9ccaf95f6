"""ELECTRA: factorised embeddings (``embedding_size``, projected by ``embeddings_project`` when it
differs from ``hidden_size``), a generator head (MaskedLM) and a discriminator head."""

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import BERT_KEYS, EncoderBackbone, dense_rules
from keras_models.models.encoder.tasks import define_tasks
from keras_models.models.registry import register_backbone, register_task
from keras_models.tasks.task import Task

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_backbone("electra")
class ElectraBackbone(EncoderBackbone):
    base_model_prefix = "electra"
    hf_architecture = "ElectraModel"
    hf_model_type = "electra"
    hf_keys = {**BERT_KEYS, "embedding_size": ("embedding_size", 128)}
    verified_backends = ("jax", "torch", "tensorflow")


@_ser
@register_task(ElectraBackbone, "Discriminator", ("ElectraForPreTraining",))
class ElectraDiscriminator(Task):
    """Replaced-token detection: one logit per token, (batch, seq)."""

    hf_head_patterns = ("discriminator_predictions.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=backbone.initializer_range)
        common = dict(kernel_initializer=init, dtype=backbone.dtype_policy)
        self.dense = keras.layers.Dense(backbone.hidden_size, name="discriminator_dense", **common)
        self.prediction = keras.layers.Dense(1, name="discriminator_prediction", **common)
        self.act = get_activation(backbone.hidden_act)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        h = self.backbone(inputs, training=training)
        return ops.squeeze(self.prediction(self.act(self.dense(h))), -1)

    def head_rules(self):
        return (dense_rules("discriminator_predictions.dense", self.dense, base=False)
                + dense_rules("discriminator_predictions.dense_prediction", self.prediction, base=False))


ELECTRA_HEADS = {
    "MaskedLM": dict(hf_dense="generator_predictions.dense", hf_norm="generator_predictions.LayerNorm",
                     hf_bias="generator_lm_head.bias", hf_decoder="generator_lm_head",
                     head_activation="gelu", head_width_attr="embedding_dim",
                     hf_head_patterns=("generator_predictions.*", "generator_lm_head.*")),
    "TextClassifier": dict(hf_inner=("classifier.dense", False), hf_out="classifier.out_proj",
                           input_dropout=True, inner_activation="gelu"),
    "TokenClassifier": {},
    "QuestionAnswerer": {},
    "TextEmbedder": {},
}

__all__ = ["ElectraBackbone", "ElectraDiscriminator"]
__all__ += define_tasks(globals(), ElectraBackbone, "Electra", ELECTRA_HEADS)
