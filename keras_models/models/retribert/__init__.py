"""RetriBERT (``model_type`` retribert, removed in Transformers 5): a dense retriever of two BERT
towers. Questions go through ``bert_query``, documents through ``bert_doc`` (or ``bert_query``
again with ``share_encoders``); each tower's embedding is its BERT pooler output (tanh dense over
[CLS]) projected without bias by ``project_query`` / ``project_doc`` to ``projection_dim``
(Transformers 4.x ``embed_questions`` / ``embed_answers``).

The backbone is one tower, BERT on the shared encoder, chosen by ``tower`` ("query", the default,
or "doc": ``Backbone.from_preset(folder, tower="doc")``, ``TextEmbedder.from_preset(folder,
tower="doc")``); a saved preset records its tower in config.json.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import mount
from keras_models.spec import dim, hf
from keras_models.tasks.embedder import TextEmbedder

TOWERS = ("query", "doc")


@dataclass(frozen=True, kw_only=True)
class RetriBertSpec(EncoderSpec):
    """RetriBertConfig (Transformers 4.x): BERT's keys, ``share_encoders``, ``projection_dim``, and the
    tower this model is (``tower``, written back to config.json)."""

    num_layers: int = dim("num_hidden_layers", 8)
    share_encoders: bool = hf("share_encoders", True)
    projection_dim: int = dim("projection_dim", 128)
    tower: str = hf("tower", "query", doc="query or doc: which of the two towers")

    def validate(self, source="config.json"):
        super().validate(source)
        if self.tower not in TOWERS:
            raise ConfigError(f"{source}: tower={self.tower!r}: expected one of {TOWERS}")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("retribert")
class RetriBertBackbone(EncoderBackbone):
    """One RetriBERT tower's BERT; returns its last hidden state (batch, seq, hidden)."""

    spec_cls = RetriBertSpec
    base_model_prefix = ""  # the tower's prefix is part of every rule (see weight_rules)
    hf_architecture = "RetriBertModel"
    hf_model_type = "retribert"
    hf_ignore = ("*embeddings.position_ids", "*embeddings.token_type_ids")
    # the other tower, the poolers and the projections (the TextEmbedder's head)
    hf_known_unused = ("bert_query.*", "bert_doc.*", "project_query.*", "project_doc.*")
    verified_backends = ("jax", "torch", "tensorflow")

    @property
    def encoder_prefix(self):
        return "bert_doc." if self.tower == "doc" and not self.share_encoders else "bert_query."

    def weight_rules(self):
        return mount(super().weight_rules(), self.encoder_prefix)


@family_task(RetriBertBackbone, "TextEmbedder", "RetriBertModel")
class RetriBertTextEmbedder(TextEmbedder):
    """The tower's embedding: ``project_<tower>(tanh(pooler(h[:, 0])))``, (batch, projection_dim)."""

    hf_head_patterns = ("project_query.*", "project_doc.*")

    def __init__(self, backbone, pooling=("cls",), normalize=False, preprocessor=None, **kwargs):
        pooling = [pooling] if isinstance(pooling, str) else list(pooling)
        if pooling != ["cls"]:
            raise ValueError(f"pooling={pooling}: RetriBERT embeds through its pooler on [CLS] (pooling=('cls',))")
        super().__init__(backbone, pooling=pooling, normalize=normalize, preprocessor=preprocessor, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=backbone.initializer_range)
        common = dict(dtype=backbone.dtype_policy, kernel_initializer=init)
        self.pooler = keras.layers.Dense(backbone.hidden_size, activation="tanh", name="pooler", **common)
        self.projection = keras.layers.Dense(backbone.projection_dim, use_bias=False, name="projection", **common)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, tower=None, **kwargs):
        if tower is not None:  # the backbone's spec reads it (config_kwargs runs after this)
            hf["tower"] = tower
        kwargs["pooling"] = ("cls",)  # fixed (no sentence-transformers modules)
        return kwargs

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.projection(self.pooler(self.backbone(inputs, training=training)[:, 0]))
        if self.normalize:
            x = x / ops.maximum(ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True)), 1e-12)
        return x

    def head_rules(self):
        b = self.backbone
        return (dense_rules(b.encoder_prefix + "pooler.dense", self.pooler, base=False)
                + dense_rules(f"project_{b.tower}", self.projection, base=False))


__all__ = ["RetriBertBackbone", "RetriBertTextEmbedder"]
