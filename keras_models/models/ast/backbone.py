"""Audio Spectrogram Transformer (AST): a ViT over a log-mel filter-bank spectrogram.

Input: ``input_values`` (batch, max_length, num_mel_bins) float, as
:class:`~keras_models.preprocessing.audio.ASTFeatureExtractor` returns them (time-major). The
spectrogram is read as an image of (mel bins, frames): ``patch_size`` x ``patch_size`` patches
taken every ``frequency_stride`` bins and ``time_stride`` frames (they overlap when the strides
are smaller), flattened frequency-major, after a [CLS] and a distillation token, plus learned
position embeddings (fixed: the input must have ``max_length`` frames and ``num_mel_bins`` bins),
pre-norm ViT blocks and a final LayerNorm. Output: (batch, 2 + patches, hidden).

:class:`ASTAudioClassifier` (``km.AudioClassifier``) averages the two prefix tokens, then
LayerNorm and a linear layer (Transformers' ``ASTForAudioClassification``).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, const, dim, hf
from keras_models.tasks.audio import AudioClassifier
from keras_models.tasks.text import _LabelledTask


@dataclass(frozen=True, kw_only=True)
class ASTSpec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    qkv_bias: bool = hf("qkv_bias", True)
    patch_size: int = dim("patch_size", 16)
    frequency_stride: int = dim("frequency_stride", 10)
    time_stride: int = dim("time_stride", 10)
    max_length: int = dim("max_length", 1024)
    num_mel_bins: int = dim("num_mel_bins", 128)
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)
    model_type: str = const("audio-spectrogram-transformer")

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                              f"num_attention_heads {self.num_heads}")
        if self.patch_size > min(self.max_length, self.num_mel_bins):
            raise ConfigError(f"{source}: patch_size {self.patch_size} is larger than max_length "
                              f"{self.max_length} or num_mel_bins {self.num_mel_bins}")

    def grid(self):
        """(frequency patches, time patches)."""
        return ((self.num_mel_bins - self.patch_size) // self.frequency_stride + 1,
                (self.max_length - self.patch_size) // self.time_stride + 1)

    def dummy_inputs(self):
        return {"input_values": np.zeros((1, self.max_length, self.num_mel_bins), "float32")}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("audio-spectrogram-transformer")
class ASTBackbone(SpecBackbone):
    spec_cls = ASTSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "audio_spectrogram_transformer"
    hf_architecture = "ASTModel"

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        self.hidden_size, self.initializer_range = s.hidden_size, s.initializer_range
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.patch_projection = keras.layers.Conv2D(s.hidden_size, s.patch_size,
                                                    strides=(s.frequency_stride, s.time_stride), padding="valid",
                                                    kernel_initializer=init, name="patch_projection", **common)
        self.blocks = [VisionBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                   layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias, dropout=s.dropout,
                                   attention_dropout=s.attention_dropout, kernel_initializer=init,
                                   name=f"block_{i}", **common) for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common)
        self.dropout = keras.layers.Dropout(s.dropout, **common)

    def build(self, input_shape=None):
        s = self.spec
        d = s.hidden_size
        f, t = s.grid()
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, d), initializer=init)
        self.distillation_token = self.add_weight(name="distillation_token", shape=(1, 1, d), initializer=init)
        self.position_embedding = self.add_weight(name="position_embedding", shape=(1, f * t + 2, d),
                                                  initializer=init)
        self.patch_projection.build((None, s.num_mel_bins, s.max_length, 1))
        for b in self.blocks:
            b.build((None, None, d))
        self.final_norm.build((None, None, d))
        self.built = True

    def call(self, inputs, training=False):
        s = self.spec
        x = inputs["input_values"] if isinstance(inputs, dict) else inputs
        x = ops.cast(x, self.compute_dtype)
        if x.shape[1] is not None and (x.shape[1], x.shape[2]) != (s.max_length, s.num_mel_bins):
            raise InputError(f"input_values must be (batch, {s.max_length}, {s.num_mel_bins}) (config.json "
                             f"max_length, num_mel_bins), got {tuple(x.shape)}")
        x = self.patch_projection(ops.transpose(x, (0, 2, 1))[..., None])  # (b, freq, time, hidden)
        b = ops.shape(x)[0]
        x = ops.reshape(x, (b, -1, self.hidden_size))
        prefix = [ops.broadcast_to(ops.cast(t, x.dtype), (b, 1, self.hidden_size))
                  for t in (self.cls_token, self.distillation_token)]
        x = ops.concatenate(prefix + [x], axis=1) + ops.cast(self.position_embedding, x.dtype)
        x = self.dropout(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.final_norm(x)

    def weight_rules(self):
        r = [Rule("embeddings.cls_token", self.cls_token),
             Rule("embeddings.distillation_token", self.distillation_token),
             Rule("embeddings.position_embeddings", self.position_embedding),
             *conv_rules("embeddings.patch_embeddings.projection", self.patch_projection)]
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = b.attention
            for name, dense in (("attention.attention.query", a.query), ("attention.attention.key", a.key),
                                ("attention.attention.value", a.value), ("attention.output.dense", a.output_dense),
                                ("intermediate.dense", b.fc1), ("output.dense", b.fc2)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
        return r + norm_rules("layernorm", self.final_norm)


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(ASTBackbone, "AudioClassifier", ("ASTForAudioClassification",))
class ASTAudioClassifier(AudioClassifier):
    """Mean of the [CLS] and distillation tokens, ``classifier.layernorm``, ``classifier.dense``.
    Input: ``{"input_values": (batch, max_length, num_mel_bins)}`` (ASTFeatureExtractor output)."""

    hf_head_patterns = ("classifier.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, **kwargs):
        kwargs.pop("classifier_proj_size", None)
        _LabelledTask.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        s = backbone.spec
        common = dict(dtype=backbone.dtype_policy)
        self.head_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="head_norm", **common)
        self.classifier = keras.layers.Dense(num_classes, name="classifier", kernel_initializer=keras.initializers.
                                             TruncatedNormal(stddev=s.initializer_range), **common)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs = _LabelledTask.task_config_from_hf.__func__(cls, hf, head_from_checkpoint, **kwargs)
        kwargs.setdefault("dropout", 0.0)
        return kwargs

    def task_config_to_hf(self):
        return _LabelledTask.task_config_to_hf(self)

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)
        return self.classifier(self.head_norm((h[:, 0] + h[:, 1]) / 2))

    def head_rules(self):
        return (norm_rules("classifier.layernorm", self.head_norm, base=False)
                + dense_rules("classifier.dense", self.classifier, base=False))

    def get_config(self):
        return _LabelledTask.get_config(self)


__all__ = ["ASTSpec", "ASTBackbone", "ASTAudioClassifier"]
