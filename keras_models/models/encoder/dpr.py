"""DPR (model_type ``dpr``): a BERT encoder stored under a role's prefix.

One config.json ``model_type`` covers three checkpoints, told apart by ``architectures``:

* ``DPRQuestionEncoder`` / ``DPRContextEncoder``: BERT under ``question_encoder.bert_model.`` /
  ``ctx_encoder.bert_model.``; the embedding (Transformers' ``pooler_output``) is the [CLS] hidden
  state, projected by ``encode_proj`` when ``projection_dim`` > 0 (:class:`DPRTextEmbedder`);
* ``DPRReader``: BERT under ``span_predictor.encoder.bert_model.`` with span logits
  (``qa_outputs``) and a per-passage relevance logit on [CLS] (``qa_classifier``)
  (:class:`DPRQuestionAnswerer`, returning ``relevance_logits`` too).

The role is the spec's ``role`` field, read from ``architectures`` and written back there.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import mount
from keras_models.spec import const, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer

# role -> (Transformers architecture, where its BERT lives, where its encode_proj lives)
ROLES = {
    "question": ("DPRQuestionEncoder", "question_encoder.bert_model.", "question_encoder.encode_proj"),
    "ctx": ("DPRContextEncoder", "ctx_encoder.bert_model.", "ctx_encoder.encode_proj"),
    "reader": ("DPRReader", "span_predictor.encoder.bert_model.", "span_predictor.encoder.encode_proj"),
}
_BY_ARCH = {arch: role for role, (arch, _, _) in ROLES.items()}


@dataclass(frozen=True, kw_only=True)
class DPRSpec(EncoderSpec):
    """DPRConfig: BERT's keys plus ``projection_dim``; ``role`` comes from ``architectures``
    (default: a question encoder, as Transformers' AutoModel)."""

    projection_dim: int = hf("projection_dim", 0)
    role: str = const("question", doc="question, ctx or reader (from config.json architectures)")

    unsupported = {"position_embedding_type": ("absolute", None)}

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        roles = [_BY_ARCH[a] for a in config.get("architectures") or () if a in _BY_ARCH]
        if roles:
            values["role"] = roles[0]
        return values

    def validate(self, source="config.json"):
        super().validate(source)
        from keras_models.errors import ConfigError

        if self.role not in ROLES:
            raise ConfigError(f"{source}: role={self.role!r}: expected one of {sorted(ROLES)}")
        if self.projection_dim < 0:
            raise ConfigError(f"{source}: projection_dim={self.projection_dim} must be >= 0")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("dpr")
class DPRBackbone(EncoderBackbone):
    """BERT as DPR stores it; returns the last hidden state (batch, seq, hidden)."""

    spec_cls = DPRSpec
    base_model_prefix = ""  # the role's prefix is part of every rule (see weight_rules)
    hf_architecture = "DPRQuestionEncoder"
    hf_model_type = "dpr"
    hf_known_unused = ("*encode_proj.*",)
    verified_backends = ("jax", "torch", "tensorflow")

    def weight_rules(self):
        return mount(super().weight_rules(), ROLES[self.role][1])

    def config_to_hf(self):
        out = super().config_to_hf()
        out["architectures"] = [ROLES[self.role][0]]
        return out


class _RoleArchitecture:
    """Task mixin: config.json ``architectures`` is the backbone's role's class."""

    def config_to_hf(self):
        out = super().config_to_hf()
        out["architectures"] = [ROLES[self.backbone.role][0]]
        return out


@family_task(DPRBackbone, "TextEmbedder", "DPRQuestionEncoder", "DPRContextEncoder")
class DPRTextEmbedder(_RoleArchitecture, TextEmbedder):
    """Transformers' ``pooler_output``: the [CLS] hidden state, through ``encode_proj`` when the
    config has ``projection_dim`` > 0 (then optionally L2-normalised with ``normalize=True``)."""

    hf_head_patterns = ("*encode_proj.*",)

    def __init__(self, backbone, pooling=("cls",), normalize=False, preprocessor=None, **kwargs):
        pooling = [pooling] if isinstance(pooling, str) else list(pooling)
        if pooling != ["cls"]:
            raise ValueError(f"pooling={pooling}: DPR embeds with its [CLS] token only (pooling=('cls',))")
        super().__init__(backbone, pooling=pooling, normalize=normalize, preprocessor=preprocessor, **kwargs)
        self.projection = None
        if backbone.projection_dim:
            self.projection = keras.layers.Dense(
                backbone.projection_dim, name="encode_proj", dtype=backbone.dtype_policy,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range))

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs["pooling"] = ("cls",)  # DPR's pooling is fixed (no sentence-transformers modules)
        return kwargs

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.backbone(inputs, training=training)[:, 0]
        if self.projection is not None:
            x = self.projection(x)
        if self.normalize:
            x = x / ops.maximum(ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True)), 1e-12)
        return x

    def head_rules(self):
        if self.projection is None:
            return []
        return dense_rules(ROLES[self.backbone.role][2], self.projection, base=False)

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        if self.projection is not None:  # sentence-transformers' word_embedding_dimension
            from keras_models.presets.config import read_json, write_json

            path = folder / "1_Pooling" / "config.json"
            write_json(path, {**read_json(path), "word_embedding_dimension": self.backbone.projection_dim})


@family_task(DPRBackbone, "QuestionAnswerer", "DPRReader")
class DPRQuestionAnswerer(_RoleArchitecture, QuestionAnswerer):
    """DPRReader: ``{"start_logits", "end_logits"}`` (batch, seq) and ``"relevance_logits"``
    (batch,): one passage per row, scored on its [CLS] token."""

    hf_out = "span_predictor.qa_outputs"
    hf_head_patterns = ("span_predictor.qa_outputs.*", "span_predictor.qa_classifier.*")

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.relevance = keras.layers.Dense(
            1, name="qa_classifier", dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range))

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        h = self.backbone(inputs, training=training)
        logits = self.qa(h)
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1],
                "relevance_logits": self.relevance(h[:, 0])[:, 0]}

    def head_rules(self):
        return super().head_rules() + dense_rules("span_predictor.qa_classifier", self.relevance, base=False)


__all__ = ["DPRBackbone", "DPRTextEmbedder", "DPRQuestionAnswerer"]
