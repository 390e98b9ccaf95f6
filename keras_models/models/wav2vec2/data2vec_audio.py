"""Data2VecAudio: the Wav2Vec2 encoder (post-norm blocks, LayerNorm conv feature encoder) whose
position embedding is a stack of ``num_conv_pos_embeddings`` plain grouped convolutions
(kernel ``conv_pos_kernel_size``), each followed by a LayerNorm without parameters and the
feature-encoder activation."""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.conv_blocks import grouped_conv
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.wav2vec2.backbone import CONV1D_AXES, Wav2Vec2Backbone, Wav2Vec2Spec
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.tasks.audio import AudioClassifier, SpeechRecognizer
from keras_models.spec import const, dim


@dataclass(frozen=True, kw_only=True)
class Data2VecAudioSpec(Wav2Vec2Spec):
    num_conv_pos_embeddings: int = dim("num_conv_pos_embeddings", 5, doc="number of position conv layers")
    conv_pos_kernel_size: int = dim("conv_pos_kernel_size", 19)
    feat_extract_norm: str = const("layer")
    do_stable_layer_norm: bool = const(False)
    feat_proj_layer_norm: bool = const(True)
    model_type: str = const("data2vec-audio")


def grouped_conv1d(x, kernel, groups):
    """"same"-padded (k // 2 each side) grouped conv of channels_last ``x`` with ``kernel``
    (k, in // groups, out); an even kernel's extra last frame is dropped, as Transformers does."""
    k = kernel.shape[0]
    x = ops.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
    y = grouped_conv(x, kernel, groups)
    return y[:, :-1] if k % 2 == 0 else y


class PositionConvStack(keras.layers.Layer):
    """``num_layers`` x (grouped conv, parameter-free LayerNorm, activation)."""

    def __init__(self, num_layers, kernel_size, groups, activation="gelu", **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.kernel_size, self.groups, self.activation = num_layers, kernel_size, groups, activation
        self.act = get_activation(activation)
        self.norms = [keras.layers.LayerNormalization(epsilon=1e-5, center=False, scale=False, name=f"norm_{i}",
                                                      dtype=self.dtype_policy) for i in range(num_layers)]

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.kernels, self.biases = [], []
        for i in range(self.num_layers):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(self.kernel_size, c // self.groups, c),
                                                initializer="he_normal"))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(c,), initializer="zeros"))
            self.norms[i].build(input_shape)
        self.built = True

    def call(self, x):
        for kernel, bias, norm in zip(self.kernels, self.biases, self.norms):
            x = grouped_conv1d(x, ops.cast(kernel, x.dtype), self.groups) + ops.cast(bias, x.dtype)
            x = self.act(norm(x))
        return x

    def get_config(self):
        c = super().get_config()
        c.update(num_layers=self.num_layers, kernel_size=self.kernel_size, groups=self.groups,
                 activation=self.activation)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("data2vec-audio")
class Data2VecAudioBackbone(Wav2Vec2Backbone):
    spec_cls = Data2VecAudioSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "data2vec_audio"
    hf_architecture = "Data2VecAudioModel"

    def make_pos_conv(self):
        s = self.spec
        return PositionConvStack(s.num_conv_pos_embeddings, s.conv_pos_kernel_size, s.num_conv_pos_embedding_groups,
                                 activation=s.feat_extract_activation, name="pos_conv", dtype=self.dtype_policy)

    def pos_conv_rules(self, pc="encoder.pos_conv_embed."):
        r = []
        for i, (kernel, bias) in enumerate(zip(self.pos_conv.kernels, self.pos_conv.biases)):
            r += [Rule(f"{pc}layers.{i}.conv.weight", kernel, Transpose(CONV1D_AXES)),
                  Rule(f"{pc}layers.{i}.conv.bias", bias)]
        return r


_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(Data2VecAudioBackbone, "SpeechRecognizer", ("Data2VecAudioForCTC",))
class Data2VecAudioSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(Data2VecAudioBackbone, "AudioClassifier", ("Data2VecAudioForSequenceClassification",))
class Data2VecAudioAudioClassifier(AudioClassifier):
    pass


__all__ = ["Data2VecAudioSpec", "Data2VecAudioBackbone", "Data2VecAudioSpeechRecognizer", "Data2VecAudioAudioClassifier"]
