"""SEW (Squeezed and Efficient Wav2vec): the Wav2Vec2 conv feature encoder, a LayerNorm and (when
``conv_dim[-1] != hidden_size``) a projection; the encoder squeezes time by ``squeeze_factor``
(average pooling plus a strided weight-normalised position conv), runs post-norm Wav2Vec2 blocks
on the short sequence and upsamples back (a Dense to ``hidden_size * squeeze_factor``, the
feature-encoder activation, channels unfolded into frames, zero frames appended up to the input
length). The attention mask is max-pooled to the squeezed frames."""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.wav2vec2.backbone import (Wav2Vec2Backbone, Wav2Vec2Spec, WeightNormConv1D,
                                                   _ints)
from keras_models.spec import const, dim, hf
from keras_models.tasks.audio import AudioClassifier, SpeechRecognizer


@dataclass(frozen=True, kw_only=True)
class SEWSpec(Wav2Vec2Spec):
    squeeze_factor: int = dim("squeeze_factor", 2)
    conv_dim: tuple = hf("conv_dim", (64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512), read=_ints)
    conv_kernel: tuple = hf("conv_kernel", (10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1), read=_ints)
    conv_stride: tuple = hf("conv_stride", (5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1), read=_ints)
    do_stable_layer_norm: bool = const(False)
    feat_proj_layer_norm: bool = const(True)
    model_type: str = const("sew")

    def dummy_inputs(self):
        n = self.min_samples() + int(np.prod(self.conv_stride)) * (2 * self.squeeze_factor - 1)
        return {"input_values": np.zeros((1, n), "float32"), "attention_mask": np.ones((1, n), "int32")}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("sew")
class SEWBackbone(Wav2Vec2Backbone):
    spec_cls = SEWSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "sew"
    hf_architecture = "SEWModel"

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        self.project_features = s.conv_dim[-1] != s.hidden_size
        self.upsample = keras.layers.Dense(s.hidden_size * s.squeeze_factor, name="upsample",
                                           dtype=self.dtype_policy)

    def make_pos_conv(self):
        s = self.spec
        return WeightNormConv1D(s.hidden_size, s.num_conv_pos_embeddings, s.num_conv_pos_embedding_groups,
                                strides=s.squeeze_factor, activation=s.feat_extract_activation,
                                name="pos_conv", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        s = self.spec
        shape = (None, None, 1)
        for conv, norm in zip(self.convs, self.conv_norms):
            conv.build(shape)
            shape = (None, None, conv.filters)
            if norm is not None:
                norm.build(shape)
        self.projection_norm.build(shape)
        if self.project_features:
            self.projection.build(shape)
        h = (None, None, s.hidden_size)
        self.pos_conv.build(h)
        if self.encoder_norm is not None:
            self.encoder_norm.build(h)
        for b in self.blocks:
            b.build(h)
        self.upsample.build(h)
        self.built = True

    def call(self, inputs, training=False):
        s = self.spec
        if isinstance(inputs, dict):
            values, attention_mask = inputs["input_values"], inputs.get("attention_mask")
        else:
            values, attention_mask = inputs, None
        x = self.projection_norm(self.conv_features(values))
        if self.project_features:
            x = self.projection(x)
        x = self.projection_dropout(x, training=training)
        b, frames = ops.shape(x)[0], ops.shape(x)[1]
        f = s.squeeze_factor
        bias = None
        if attention_mask is not None:
            mask = self.frame_mask(attention_mask, frames)
            x = ops.where(mask[..., None], x, ops.zeros_like(x))
            short = frames // f
            pooled_mask = ops.any(ops.reshape(mask[:, :short * f], (b, short, f)), axis=-1)
            bias = ops.where(pooled_mask, 0.0, float(np.finfo("float32").min))[:, None, None, :]
        short = frames // f
        pooled = ops.mean(ops.reshape(x[:, :short * f], (b, short, f, s.hidden_size)), axis=2)
        x = pooled + self.pos_conv(x)[:, :short]
        x = self.squeezed_encoder(x, bias, training)
        x = self.conv_act(self.upsample(x))
        x = ops.reshape(x, (b, short * f, s.hidden_size))
        return ops.pad(x, ((0, 0), (0, frames - short * f), (0, 0)))

    def squeezed_encoder(self, x, bias, training):
        """The transformer on the squeezed frames (SEW: LayerNorm, then post-norm Wav2Vec2 blocks)."""
        x = self.encoder_dropout(self.encoder_norm(x), training=training)
        for block in self.blocks:
            x = block(x, bias=bias, training=training)
        return x

    def encoder_rules(self):
        r = norm_rules("encoder.layer_norm", self.encoder_norm)
        for i, b in enumerate(self.blocks):
            r += self.block_rules(f"encoder.layers.{i}.", b)
        return r

    def weight_rules(self):
        r = self.feature_extractor_rules()
        r += norm_rules("layer_norm", self.projection_norm)
        if self.project_features:
            r += dense_rules("feature_projection", self.projection)
        r += self.pos_conv_rules()
        r += self.encoder_rules()
        return r + dense_rules("encoder.upsample.projection", self.upsample)


_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(SEWBackbone, "SpeechRecognizer", ("SEWForCTC",))
class SEWSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(SEWBackbone, "AudioClassifier", ("SEWForSequenceClassification",))
class SEWAudioClassifier(AudioClassifier):
    pass


__all__ = ["SEWSpec", "SEWBackbone", "SEWSpeechRecognizer", "SEWAudioClassifier"]
