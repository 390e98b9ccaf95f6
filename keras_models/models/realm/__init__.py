"""REALM (``model_type`` realm, removed in Transformers 5): BERT on the shared encoder under
``realm.`` (REALM's defaults: gelu_new, pad id 1) and its retrieval embedder (``RealmEmbedder``):
``projected_score = LayerNorm(dense(pooler(h[:, 0])))``, (batch, retriever_proj_size), the pooler
being BERT's tanh dense. The scorer, knowledge-augmented encoder, reader and open-QA pipeline
(block records, searcher) are not provided.
"""

from dataclasses import dataclass

import keras

from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.spec import dim, hf
from keras_models.tasks.embedder import TextEmbedder


@dataclass(frozen=True, kw_only=True)
class RealmSpec(EncoderSpec):
    """RealmConfig (Transformers 4.x): BERT's keys with REALM's defaults, ``retriever_proj_size``."""

    hidden_act: str = hf("hidden_act", "gelu_new")
    pad_token_id: int = hf("pad_token_id", 1)
    retriever_proj_size: int = dim("retriever_proj_size", 128)


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("realm")
class RealmBackbone(EncoderBackbone):
    spec_cls = RealmSpec
    base_model_prefix = "realm"
    hf_architecture = "RealmEmbedder"
    hf_model_type = "realm"
    hf_known_unused = EncoderBackbone.hf_known_unused + ("cls.predictions.*",)  # the embedder's unused LM head
    verified_backends = ("jax", "torch", "tensorflow")


@family_task(RealmBackbone, "TextEmbedder", "RealmEmbedder")
class RealmTextEmbedder(TextEmbedder):
    """``RealmEmbedder``'s ``projected_score``: (batch, retriever_proj_size)."""

    hf_head_patterns = ("cls.dense.*", "cls.LayerNorm.*")

    def __init__(self, backbone, pooling=("cls",), normalize=False, preprocessor=None, **kwargs):
        pooling = [pooling] if isinstance(pooling, str) else list(pooling)
        if pooling != ["cls"]:
            raise ValueError(f"pooling={pooling}: REALM embeds through its pooler on [CLS] (pooling=('cls',))")
        super().__init__(backbone, pooling=pooling, normalize=normalize, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=backbone.initializer_range)
        common = dict(dtype=backbone.dtype_policy)
        self.pooler = keras.layers.Dense(backbone.hidden_size, activation="tanh", kernel_initializer=init,
                                         name="pooler", **common)
        self.projection = keras.layers.Dense(backbone.retriever_proj_size, kernel_initializer=init,
                                             name="projection", **common)
        self.projection_norm = keras.layers.LayerNormalization(epsilon=backbone.layer_norm_eps,
                                                               name="projection_norm", **common)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs["pooling"] = ("cls",)  # fixed (no sentence-transformers modules)
        return kwargs

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        h = self.backbone(inputs, training=training)
        x = self.projection_norm(self.projection(self.pooler(h[:, 0])))
        if self.normalize:
            x = x / keras.ops.maximum(keras.ops.sqrt(keras.ops.sum(x * x, axis=-1, keepdims=True)), 1e-12)
        return x

    def head_rules(self):
        return (dense_rules("pooler.dense", self.pooler) + dense_rules("cls.dense", self.projection, base=False)
                + norm_rules("cls.LayerNorm", self.projection_norm, base=False))


__all__ = ["RealmBackbone", "RealmTextEmbedder"]
