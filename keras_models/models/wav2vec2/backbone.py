"""Wav2Vec2-like speech encoders: a conv feature encoder on the raw waveform, a feature
projection, a weight-normalised convolutional position embedding and a transformer encoder.

One implementation for Wav2Vec2, HuBERT and UniSpeech / UniSpeech-SAT; their differences are spec
fields (``feat_proj_layer_norm``) and, for checkpoint names, the
``base_model_prefix``:

* feature encoder: ``feat_extract_norm="group"`` (a per-channel GroupNorm after the first conv) or
  ``"layer"`` (a LayerNorm over the channels after every conv), any ``conv_dim`` / ``conv_kernel`` /
  ``conv_stride``;
* encoder: post-norm blocks with a LayerNorm after the position embedding, or
  ``do_stable_layer_norm`` pre-norm blocks with a final LayerNorm.

Input: ``input_values`` (batch, samples) float and optionally ``attention_mask`` (batch, samples)
(1 for real samples). Output: ``last_hidden_state`` (batch, frames, hidden).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models import compat, torch_kernels
from keras_models.errors import ConfigError
from keras_models.layers import attention as attention_lib
from keras_models.layers.activations import activated_projection, get_activation
from keras_models.layers.conv_blocks import grouped_conv
from keras_models.layers.norms import GroupNorm
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Reshape, Rule, Transpose
from keras_models.spec import Spec, const, dim, hf

CONV1D_AXES = (2, 1, 0)  # torch Conv1d (out, in, k) <-> keras (k, in, out)


def _ints(v):
    return tuple(int(x) for x in v)


@dataclass(frozen=True, kw_only=True)
class Wav2Vec2Spec(Spec):
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    feat_extract_norm: str = hf("feat_extract_norm", "group", doc="'group' or 'layer'")
    feat_extract_activation: str = hf("feat_extract_activation", "gelu")
    conv_dim: tuple = hf("conv_dim", (512, 512, 512, 512, 512, 512, 512), read=_ints)
    conv_kernel: tuple = hf("conv_kernel", (10, 3, 3, 3, 3, 2, 2), read=_ints)
    conv_stride: tuple = hf("conv_stride", (5, 2, 2, 2, 2, 2, 2), read=_ints)
    conv_bias: bool = hf("conv_bias", False)
    num_conv_pos_embeddings: int = dim("num_conv_pos_embeddings", 128)
    num_conv_pos_embedding_groups: int = dim("num_conv_pos_embedding_groups", 16)
    do_stable_layer_norm: bool = hf("do_stable_layer_norm", False)
    feat_proj_layer_norm: bool = hf("feat_proj_layer_norm", True, doc="HuBERT: a LayerNorm before the projection")
    hidden_dropout: float = hf("hidden_dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    activation_dropout: float = hf("activation_dropout", 0.1)
    feat_proj_dropout: float = hf("feat_proj_dropout", 0.0)
    adapter_attn_dim: int | None = hf("adapter_attn_dim", None,
                                      doc="MMS: a per-language adapter after each pre-norm block (adapters.py)")
    initializer_range: float = hf("initializer_range", 0.02)
    model_type: str = const("wav2vec2")

    unsupported = {"add_adapter": (False, None), "use_weighted_layer_sum": (False, None),
                   "conv_pos_batch_norm": (False, None)}

    def validate(self, source="config.json"):
        if self.feat_extract_norm not in ("group", "layer"):
            raise ConfigError(f"{source}: feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) or not self.conv_dim:
            raise ConfigError(f"{source}: conv_dim, conv_kernel and conv_stride must have one (equal, non-zero) "
                              f"length, got {len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                              f"num_attention_heads {self.num_heads}")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                              f"num_conv_pos_embedding_groups {self.num_conv_pos_embedding_groups}")

    def adjust_to_hf(self, out):
        out["num_feat_extract_layers"] = len(self.conv_dim)
        return out

    def min_samples(self):
        """The shortest waveform that gives one frame."""
        n = 1
        for k, s in reversed(list(zip(self.conv_kernel, self.conv_stride))):
            n = (n - 1) * s + k
        return n

    def dummy_inputs(self):
        n = self.min_samples() + int(np.prod(self.conv_stride))
        return {"input_values": np.zeros((1, n), "float32"), "attention_mask": np.ones((1, n), "int32")}


def _torch_inference():
    """True under torch with autograd off while ``torch_kernels.FAST_CONV1D`` is on: the speech
    convs may take their torch paths (cached torch-layout kernels, per-tap GEMMs)."""
    if not torch_kernels.FAST_CONV1D or keras.backend.backend() != "torch":
        return False
    import torch

    return not torch.is_grad_enabled()


def feature_conv(conv, x):
    """One feature-encoder ``keras.layers.Conv1D`` ("valid", groups 1) on channels-last ``x``.
    Torch inference: wide inputs (>= 64 channels) as GEMMs on strided views
    (``torch_kernels.torch_conv1d_taps``), narrow ones (the first conv over the raw waveform) as
    one oneDNN conv with the channels-last kernel cached; otherwise the layer's own call."""
    if not (_torch_inference() and conv.groups == 1 and conv.padding == "valid"
            and conv.activation in (None, keras.activations.linear)
            and conv.dilation_rate == (1,) and conv.data_format == "channels_last"
            and isinstance(conv.kernel, keras.Variable) and x.dtype == conv.kernel.value.dtype):
        return conv(x)
    bias = conv.bias.value if conv.use_bias else None
    stride = conv.strides[0]
    if int(x.shape[-1]) >= 64:
        weights = compat.inference_cache(conv, "torch_taps", [conv.kernel],
                                         lambda: torch_kernels.torch_conv1d_taps_weight(conv.kernel.value, stride))
        return torch_kernels.torch_conv1d_taps(x, weights, bias, stride=stride)
    weight = compat.inference_cache(conv, "torch_weight", [conv.kernel],
                                    lambda: torch_kernels.torch_conv1d_weight(conv.kernel.value))
    return torch_kernels.torch_conv1d(x, weight, bias, stride=stride)


def frame_lengths(lengths, kernels, strides):
    """Frames the conv stack makes of ``lengths`` samples (Transformers' floor rule)."""
    for k, s in zip(kernels, strides):
        lengths = (lengths - k) // s + 1
    return lengths


class WeightNormConv1D(keras.layers.Layer):
    """The position embedding's grouped Conv1d with weight normalisation over the kernel axis
    (torch ``weight_norm(dim=2)``: ``g`` per tap, ``v`` the direction), "same" length output
    (divided by ``strides``: SEW's strided position conv)."""

    def __init__(self, filters, kernel_size, groups, activation="gelu", strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.groups, self.strides = filters, kernel_size, groups, strides
        self.activation = activation
        self.act = get_activation(activation)

    def build(self, input_shape):
        c = int(input_shape[-1])
        k = self.kernel_size
        self.weight_g = self.add_weight(name="weight_g", shape=(k,), initializer="ones")
        self.weight_v = self.add_weight(name="weight_v", shape=(k, c // self.groups, self.filters),
                                        initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        self.built = True

    def _kernel(self, dtype):
        v = ops.cast(self.weight_v, "float32")
        norm = ops.sqrt(ops.sum(ops.square(v), axis=(1, 2), keepdims=True))
        return ops.cast(v * (ops.reshape(ops.cast(self.weight_g, "float32"), (-1, 1, 1)) / norm), dtype)

    def call(self, x):
        k = self.kernel_size
        if _torch_inference():
            # the normed kernel in torch's channels-last layout once per weight change; padding and
            # bias inside the one oneDNN call
            weight = compat.inference_cache(
                self, f"torch_kernel_{x.dtype}", [self.weight_v, self.weight_g],
                lambda: torch_kernels.torch_conv1d_weight(self._kernel(x.dtype)))
            y = torch_kernels.torch_conv1d(x, weight, self.bias.value, padding=(k // 2, k // 2), stride=self.strides)
            if k % 2 == 0:
                y = y[:, :-1]
            return self.act(y)
        # torch inference: the normed kernel once per weight change, not per call (compat.inference_cache)
        kernel = compat.inference_cache(self, f"kernel_{x.dtype}", [self.weight_v, self.weight_g],
                                        lambda: self._kernel(x.dtype))
        x = ops.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
        y = grouped_conv(x, kernel, self.groups, strides=self.strides)
        y = y + ops.cast(self.bias, y.dtype)
        if k % 2 == 0:
            y = y[:, :-1]
        return self.act(y)

    def get_config(self):
        c = super().get_config()
        c.update(filters=self.filters, kernel_size=self.kernel_size, groups=self.groups, activation=self.activation,
                 strides=self.strides)
        return c


class SpeechAttention(keras.layers.Layer):
    """Multi-head self-attention with biased q/k/v/out projections and a key padding mask."""

    def __init__(self, hidden_size, num_heads, dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        dense = dict(kernel_initializer=kernel_initializer, dtype=self.dtype_policy)
        self.q_proj = keras.layers.Dense(hidden_size, name="q_proj", **dense)
        self.k_proj = keras.layers.Dense(hidden_size, name="k_proj", **dense)
        self.v_proj = keras.layers.Dense(hidden_size, name="v_proj", **dense)
        self.out_proj = keras.layers.Dense(hidden_size, name="out_proj", **dense)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        for d in (self.q_proj, self.k_proj, self.v_proj):
            d.build(input_shape)
        self.out_proj.build(input_shape[:-1] + (self.hidden_size,))
        self.built = True

    def _heads(self, x):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, x, bias=None, training=False):
        if attention_lib.FUSED_ATTENTION and not (training and self.dropout.rate > 0):
            # the fused kernel (torch SDPA) on (b, t, h, d) views: no score tensor, no head copies
            b, t = ops.shape(x)[0], ops.shape(x)[1]
            shape = (b, t, self.num_heads, self.head_dim)
            q, k, v = (ops.reshape(p(x), shape) for p in (self.q_proj, self.k_proj, self.v_proj))
            out = attention_lib.fused_attention(q, k, v, bias, self.head_dim ** -0.5)
            return self.out_proj(ops.reshape(out, (b, t, self.hidden_size)))
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (self.head_dim ** -0.5)
        scores = ops.cast(scores, "float32")
        if bias is not None:
            scores = scores + bias
        probs = ops.cast(ops.softmax(scores, axis=-1), v.dtype)
        probs = self.dropout(probs, training=training)
        out = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        b, t = ops.shape(out)[0], ops.shape(out)[1]
        return self.out_proj(ops.reshape(out, (b, t, self.hidden_size)))


class SpeechEncoderLayer(keras.layers.Layer):
    """A Wav2Vec2 block: post-norm (attention, LayerNorm, FFN, LayerNorm) or, ``pre_norm``
    (do_stable_layer_norm), LayerNorm before the attention and before the FFN."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-5,
                 pre_norm=False, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 kernel_initializer="glorot_uniform", adapter_dim=None, attention=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.pre_norm = hidden_size, pre_norm
        common = dict(dtype=self.dtype_policy)
        # MMS adapter (pre-norm blocks): x + linear_2(relu(linear_1(LayerNorm(x)))), LayerNorm eps 1e-5
        self.adapter = None
        if adapter_dim is not None:
            self.adapter = [keras.layers.LayerNormalization(epsilon=1e-5, name="adapter_norm", **common),
                            keras.layers.Dense(adapter_dim, activation="relu", kernel_initializer=kernel_initializer,
                                               name="adapter_linear_1", **common),
                            keras.layers.Dense(hidden_size, kernel_initializer=kernel_initializer,
                                               name="adapter_linear_2", **common)]
        # ``attention``: a variant's own attention layer (WavLM), named "attention"
        self.attention = attention or SpeechAttention(hidden_size, num_heads, attention_dropout,
                                                      kernel_initializer=kernel_initializer, name="attention",
                                                      **common)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="layer_norm", **common)
        self.final_layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="final_layer_norm",
                                                                **common)
        self.intermediate_dense = keras.layers.Dense(intermediate_size, kernel_initializer=kernel_initializer,
                                                     name="intermediate_dense", **common)
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=kernel_initializer,
                                               name="output_dense", **common)
        self.hidden_act = hidden_act
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)
        self.act_dropout = keras.layers.Dropout(activation_dropout, **common)

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.layer_norm.build(input_shape)
        self.final_layer_norm.build(input_shape)
        self.intermediate_dense.build(input_shape)
        self.output_dense.build(input_shape[:-1] + (self.intermediate_dense.units,))
        if self.adapter is not None:
            self.adapter[0].build(input_shape)
            self.adapter[1].build(input_shape)
            self.adapter[2].build(input_shape[:-1] + (self.adapter[1].units,))
        self.built = True

    def feed_forward(self, x, training):
        h = self.act_dropout(activated_projection(self.intermediate_dense, x, self.hidden_act, self.act), training=training)
        return self.dropout(self.output_dense(h), training=training)

    def call(self, x, bias=None, training=False):
        if self.pre_norm:
            h = self.attention(self.layer_norm(x), bias=bias, training=training)
            x = x + self.dropout(h, training=training)
            x = x + self.feed_forward(self.final_layer_norm(x), training)
            if self.adapter is not None:
                x = x + self.adapter[2](self.adapter[1](self.adapter[0](x)))
            return x
        h = self.attention(x, bias=bias, training=training)
        x = self.layer_norm(x + self.dropout(h, training=training))
        return self.final_layer_norm(x + self.feed_forward(x, training))


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("wav2vec2")
class Wav2Vec2Backbone(SpecBackbone):
    spec_cls = Wav2Vec2Spec
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ("XLS-R", "XLSR-Wav2Vec2", "Wav2Vec2Phoneme", "MMS")  # checkpoint-only rows (docs/models.md)
    base_model_prefix = "wav2vec2"
    hf_architecture = "Wav2Vec2Model"
    hf_known_unused = ("*masked_spec_embed", "*quantizer.*", "project_hid.*", "project_q.*")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        self.hidden_size, self.num_layers = s.hidden_size, s.num_layers
        self.initializer_range = s.initializer_range
        self.dropout_rate = s.hidden_dropout
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.convs, self.conv_norms = [], []
        for i, (c, k, st) in enumerate(zip(s.conv_dim, s.conv_kernel, s.conv_stride)):
            self.convs.append(keras.layers.Conv1D(c, k, strides=st, use_bias=s.conv_bias, padding="valid",
                                                  kernel_initializer="he_normal", name=f"conv_{i}", **common))
            if s.feat_extract_norm == "layer":
                norm = keras.layers.LayerNormalization(epsilon=1e-5, name=f"conv_norm_{i}", **common)
            elif i == 0:
                norm = GroupNorm(groups=c, epsilon=1e-5, name="conv_norm_0", **common)
            else:
                norm = None
            self.conv_norms.append(norm)
        self.conv_act = get_activation(s.feat_extract_activation)
        self.projection_norm = (keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="projection_norm",
                                                                **common) if s.feat_proj_layer_norm else None)
        self.projection = keras.layers.Dense(s.hidden_size, name="projection", **common)
        self.projection_dropout = keras.layers.Dropout(s.feat_proj_dropout, **common)
        self.pos_conv = self.make_pos_conv()
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="encoder_norm", **common)
        self.encoder_dropout = keras.layers.Dropout(s.hidden_dropout, **common)
        self.blocks = [self.make_block(i, init) for i in range(s.num_layers)]

    # hooks for the families built on this backbone (WavLM, Data2VecAudio, Conformer, SEW: see
    # wavlm.py, data2vec_audio.py, conformer.py, sew.py)
    def make_pos_conv(self):
        s = self.spec
        return WeightNormConv1D(s.hidden_size, s.num_conv_pos_embeddings, s.num_conv_pos_embedding_groups,
                                activation=s.feat_extract_activation, name="pos_conv", dtype=self.dtype_policy)

    def make_block(self, i, init):
        s = self.spec
        return SpeechEncoderLayer(s.hidden_size, s.num_heads, s.intermediate_size, s.hidden_act, s.layer_norm_eps,
                                  pre_norm=s.do_stable_layer_norm, dropout=s.hidden_dropout,
                                  attention_dropout=s.attention_dropout, activation_dropout=s.activation_dropout,
                                  kernel_initializer=init, name=f"block_{i}", dtype=self.dtype_policy,
                                  adapter_dim=s.adapter_attn_dim if s.do_stable_layer_norm else None)

    def build(self, input_shape=None):
        s = self.spec
        shape = (None, None, 1)
        for conv, norm in zip(self.convs, self.conv_norms):
            conv.build(shape)
            shape = (None, None, conv.filters)
            if norm is not None:
                norm.build(shape)
        if self.projection_norm is not None:
            self.projection_norm.build(shape)
        self.projection.build(shape)
        h = (None, None, s.hidden_size)
        self.pos_conv.build(h)
        self.encoder_norm.build(h)
        for b in self.blocks:
            b.build(h)
        self.built = True

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    # --- forward ------------------------------------------------------------------------------
    def conv_features(self, input_values):
        """(batch, samples) -> (batch, frames, conv_dim[-1]) before the feature projection."""
        x = ops.expand_dims(ops.cast(input_values, self.compute_dtype), -1)
        for conv, norm in zip(self.convs, self.conv_norms):
            x = feature_conv(conv, x)
            if norm is not None:
                x = norm(x)
            x = self.conv_act(x)
        return x

    def frame_mask(self, attention_mask, frames):
        """(batch, frames) bool: the frames made from real samples (Transformers' output lengths)."""
        lengths = ops.sum(ops.cast(attention_mask, "int32"), axis=-1)
        lengths = frame_lengths(lengths, self.spec.conv_kernel, self.spec.conv_stride)
        return ops.arange(frames, dtype="int32")[None, :] < ops.cast(lengths, "int32")[:, None]

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            values, attention_mask = inputs["input_values"], inputs.get("attention_mask")
        else:
            values, attention_mask = inputs, None
        features = self.conv_features(values)
        if self.projection_norm is not None:
            features = self.projection_norm(features)
        x = self.projection_dropout(self.projection(features), training=training)
        bias = None
        if attention_mask is not None:
            mask = self.frame_mask(attention_mask, ops.shape(x)[1])
            x = ops.where(mask[..., None], x, ops.zeros_like(x))
            bias = ops.where(mask, 0.0, float(np.finfo("float32").min))[:, None, None, :]
        return self.encode(x, bias, training)

    def encode(self, x, bias=None, training=False):
        x = x + self.pos_conv(x)
        if not self.spec.do_stable_layer_norm:
            x = self.encoder_norm(x)
        x = self.encoder_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, bias=bias, training=training)
        if self.spec.do_stable_layer_norm:
            x = self.encoder_norm(x)
        return x

    # --- HF conversion ------------------------------------------------------------------------
    def feature_extractor_rules(self):
        """The convolutional feature encoder (``feature_extractor.conv_layers.{i}``)."""
        r = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.conv_norms)):
            p = f"feature_extractor.conv_layers.{i}."
            r.append(Rule(p + "conv.weight", conv.kernel, Transpose(CONV1D_AXES)))
            if conv.use_bias:
                r.append(Rule(p + "conv.bias", conv.bias))
            if norm is not None:
                r += norm_rules(p + "layer_norm", norm)
        return r

    def weight_rules(self):
        r = self.feature_extractor_rules()
        if self.projection_norm is not None:
            r += norm_rules("feature_projection.layer_norm", self.projection_norm)
        r += dense_rules("feature_projection.projection", self.projection)
        r += self.pos_conv_rules()
        r += norm_rules("encoder.layer_norm", self.encoder_norm)
        for i, b in enumerate(self.blocks):
            r += self.block_rules(f"encoder.layers.{i}.", b)
        return r

    def pos_conv_rules(self, pc="encoder.pos_conv_embed."):
        k = self.pos_conv.kernel_size
        return [
            Rule(pc + "conv.parametrizations.weight.original0", self.pos_conv.weight_g, Reshape((1, 1, k), (k,)),
                 aliases=(pc + "conv.weight_g",)),
            Rule(pc + "conv.parametrizations.weight.original1", self.pos_conv.weight_v, Transpose(CONV1D_AXES),
                 aliases=(pc + "conv.weight_v",)),
            Rule(pc + "conv.bias", self.pos_conv.bias),
        ]

    def block_rules(self, p, b):
        r = []
        a = b.attention
        for name, dense in (("attention.q_proj", a.q_proj), ("attention.k_proj", a.k_proj),
                            ("attention.v_proj", a.v_proj), ("attention.out_proj", a.out_proj),
                            ("feed_forward.intermediate_dense", b.intermediate_dense),
                            ("feed_forward.output_dense", b.output_dense)):
            r += dense_rules(p + name, dense)
        r += self.adapter_block_rules(p, b)
        return r + norm_rules(p + "layer_norm", b.layer_norm) + norm_rules(p + "final_layer_norm", b.final_layer_norm)

    def adapter_block_rules(self, p, b):
        """A block's MMS adapter tensors (none without one)."""
        adapter = getattr(b, "adapter", None)
        if adapter is None:
            return []
        return (norm_rules(p + "adapter_layer.norm", adapter[0]) + dense_rules(p + "adapter_layer.linear_1", adapter[1])
                + dense_rules(p + "adapter_layer.linear_2", adapter[2]))

    def adapter_rules(self):
        """Every block's adapter tensors (what an MMS ``adapter.<lang>.safetensors`` file holds, besides the
        CTC head)."""
        return [r for i, b in enumerate(self.blocks) for r in self.adapter_block_rules(f"encoder.layers.{i}.", b)]


@dataclass(frozen=True, kw_only=True)
class HubertSpec(Wav2Vec2Spec):
    model_type: str = const("hubert")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("hubert")
class HubertBackbone(Wav2Vec2Backbone):
    spec_cls = HubertSpec
    base_model_prefix = "hubert"
    hf_architecture = "HubertModel"


@dataclass(frozen=True, kw_only=True)
class UniSpeechSpec(Wav2Vec2Spec):
    model_type: str = const("unispeech")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("unispeech")
class UniSpeechBackbone(Wav2Vec2Backbone):
    spec_cls = UniSpeechSpec
    base_model_prefix = "unispeech"
    hf_architecture = "UniSpeechModel"
    hf_known_unused = Wav2Vec2Backbone.hf_known_unused + ("ctc_proj.*", "dropout_features.*")


@dataclass(frozen=True, kw_only=True)
class UniSpeechSatSpec(Wav2Vec2Spec):
    model_type: str = const("unispeech-sat")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("unispeech-sat")
class UniSpeechSatBackbone(Wav2Vec2Backbone):
    spec_cls = UniSpeechSatSpec
    base_model_prefix = "unispeech_sat"
    hf_architecture = "UniSpeechSatModel"
    hf_known_unused = Wav2Vec2Backbone.hf_known_unused + ("label_embeddings_concat", "speaker_proj.*")


__all__ = ["Wav2Vec2Spec", "Wav2Vec2Backbone", "HubertSpec", "HubertBackbone", "UniSpeechSpec",
           "UniSpeechBackbone", "UniSpeechSatSpec", "UniSpeechSatBackbone", "WeightNormConv1D", "frame_lengths"]
