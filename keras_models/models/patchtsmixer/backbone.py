"""PatchTSMixer (MLP-Mixer over the patches of a time series).

``past_values`` (batch, context_length, channels) are scaled per series (``scaling``: "std" or
true, "mean", none), cut into patches as in PatchTST and each patch projected to ``d_model``
(optionally plus "sincos" / learned positions). Each mixer layer then mixes, each as a residual
block of norm (LayerNorm or BatchNorm over ``d_model``), a two-layer GELU MLP widened by
``expansion_factor`` and an optional gated attention (``x * softmax(Linear(x))``):
the channels of each patch (``mode="mix_channel"`` only; the gate before the MLP), the patches of
each channel (optionally with a self-attention branch added and normed), and the features.

Output: ``last_hidden_state`` (batch, channels, num_patches, d_model), Transformers' layout.
:meth:`PatchTSMixerBackbone.encode` also returns the scaler's ``loc`` and ``scale``
(batch, 1, channels). No input masking (PatchTSMixerForPretraining is not implemented).
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import Backbone
from keras_models.models.patchtst.backbone import (SelfAttention, count_patches, make_norm, observed_mask, patchify,
                                                   scale_series)
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.time_series import dummy_series, series_inputs


def _scaling(v):
    if v is True:
        return "std"
    if v is False:
        return "none"
    return str(v)


@dataclass(frozen=True, kw_only=True)
class PatchTSMixerSpec(Spec):
    num_input_channels: int = dim("num_input_channels", 1)
    context_length: int = dim("context_length", 32)
    patch_length: int = dim("patch_length", 8)
    patch_stride: int = dim("patch_stride", 8)
    d_model: int = dim("d_model", 8)
    expansion_factor: int = dim("expansion_factor", 2)
    num_layers: int = dim("num_layers", 3)
    mode: str = hf("mode", "common_channel", doc="common_channel or mix_channel")
    gated_attn: bool = hf("gated_attn", True)
    norm_mlp: str = hf("norm_mlp", "LayerNorm", doc="BatchNorm (any name containing 'batch') or LayerNorm")
    self_attn: bool = hf("self_attn", False)
    self_attn_heads: int = dim("self_attn_heads", 1)
    use_positional_encoding: bool = hf("use_positional_encoding", False)
    positional_encoding_type: str = hf("positional_encoding_type", "sincos")
    scaling: str | None = hf("scaling", "std", read=_scaling, doc="std (or true), mean, none/null/false")
    norm_eps: float = hf("norm_eps", 1e-5)
    # prediction head
    prediction_length: int = dim("prediction_length", 16)
    prediction_channel_indices: tuple | None = hf("prediction_channel_indices", None,
                                                  read=lambda v: tuple(sorted(int(i) for i in v)),
                                                  write=lambda v: None if v is None else list(v))

    unsupported = {"loss": ("mse",)}  # "nll": a distribution head (not implemented)
    ignored = ("dropout", "head_dropout", "init_std", "mask_type", "random_mask_ratio", "num_forecast_mask_patches",
               "mask_value", "masked_loss", "channel_consistent_masking", "unmasked_channel_indices",
               "distribution_output", "num_parallel_samples", "num_targets", "output_range", "head_aggregation",
               )

    @property
    def batch_norm(self):
        return "batch" in self.norm_mlp.lower()

    def validate(self, source="config.json"):
        if self.context_length <= self.patch_length:
            raise ConfigError(f"{source}: context_length ({self.context_length}) must be greater than "
                              f"patch_length ({self.patch_length})")
        if self.mode not in ("common_channel", "mix_channel"):
            raise ConfigError(f"{source}: mode={self.mode!r} is not supported (common_channel, mix_channel)")
        if self.positional_encoding_type not in ("sincos", "random"):
            raise ConfigError(f"{source}: positional_encoding_type={self.positional_encoding_type!r} is not "
                              "supported (sincos, random)")
        if self.self_attn and self.d_model % self.self_attn_heads:
            raise ConfigError(f"{source}: d_model ({self.d_model}) must be divisible by self_attn_heads "
                              f"({self.self_attn_heads})")
        bad = [i for i in self.prediction_channel_indices or () if not 0 <= i < self.num_input_channels]
        if bad:
            raise ConfigError(f"{source}: prediction_channel_indices {bad} out of range for "
                              f"num_input_channels={self.num_input_channels}")

    def dummy_inputs(self):
        return dummy_series(self.context_length, self.num_input_channels)


class MixerMLP(keras.layers.Layer):
    """fc1 (width x expansion) -> GELU -> fc2 over the last axis, with an optional gated attention
    before (``gate_first``) or after the MLP."""

    def __init__(self, width, expansion, gated, gate_first=False, **kwargs):
        super().__init__(**kwargs)
        self.width, self.gated, self.gate_first = width, gated, gate_first
        dt = self.dtype_policy
        self.fc1 = keras.layers.Dense(width * expansion, name="fc1", dtype=dt)
        self.fc2 = keras.layers.Dense(width, name="fc2", dtype=dt)
        self.gate = keras.layers.Dense(width, name="gate", dtype=dt) if gated else None
        self.act = get_activation("gelu")

    def build(self, shape):
        self.fc1.build((None, self.width))
        self.fc2.build((None, self.fc1.units))
        if self.gate is not None:
            self.gate.build((None, self.width))
        self.built = True

    def _gate(self, x):
        return x * ops.softmax(self.gate(x), axis=-1) if self.gated else x

    def call(self, x):
        if self.gate_first:
            x = self._gate(x)
        x = self.fc2(self.act(self.fc1(x)))
        return x if self.gate_first else self._gate(x)

    def rules(self, prefix):
        r = dense_rules(f"{prefix}.mlp.fc1", self.fc1) + dense_rules(f"{prefix}.mlp.fc2", self.fc2)
        return r + (dense_rules(f"{prefix}.gating_block.attn_layer", self.gate) if self.gated else [])


class MixerLayer(keras.layers.Layer):
    def __init__(self, spec, num_patches, **kwargs):
        super().__init__(**kwargs)
        s, dt = spec, self.dtype_policy
        self.spec = s

        def norm(name):
            return make_norm("batchnorm" if s.batch_norm else "layernorm", s.norm_eps, name, dt)

        self.channel_norm = norm("channel_norm") if s.mode == "mix_channel" else None
        self.channel_mlp = (MixerMLP(s.num_input_channels, s.expansion_factor, s.gated_attn, gate_first=True,
                                     name="channel_mlp", dtype=dt) if s.mode == "mix_channel" else None)
        self.patch_norm = norm("patch_norm")
        self.patch_mlp = MixerMLP(num_patches, s.expansion_factor, s.gated_attn, name="patch_mlp", dtype=dt)
        self.attn = SelfAttention(s.d_model, s.self_attn_heads, name="attn", dtype=dt) if s.self_attn else None
        self.attn_norm = norm("attn_norm") if s.self_attn else None
        self.feature_norm = norm("feature_norm")
        self.feature_mlp = MixerMLP(s.d_model, s.expansion_factor, s.gated_attn, name="feature_mlp", dtype=dt)

    def build(self, shape):
        d = self.spec.d_model
        for n in (self.channel_norm, self.patch_norm, self.attn_norm, self.feature_norm):
            if n is not None:
                n.build((None, None, None, d))
        for m in (self.channel_mlp, self.patch_mlp, self.feature_mlp):
            if m is not None:
                m.build(None)
        if self.attn is not None:
            self.attn.build((None, None, d))
        self.built = True

    def call(self, h, training=False):
        if self.channel_mlp is not None:  # mixing across channels: (b, d, n, c)
            x = ops.transpose(self.channel_norm(h, training=training), (0, 3, 2, 1))
            h = h + ops.transpose(self.channel_mlp(x), (0, 3, 2, 1))
        x = self.patch_norm(h, training=training)
        y = ops.swapaxes(self.patch_mlp(ops.swapaxes(x, 2, 3)), 2, 3)
        if self.attn is not None:
            b, c, n, d = (ops.shape(x)[i] for i in range(4))
            a = ops.reshape(self.attn(ops.reshape(x, (b * c, n, d))), (b, c, n, d))
            y = self.attn_norm(y + a, training=training)
        h = h + y
        return h + self.feature_mlp(self.feature_norm(h, training=training))

    def rules(self, prefix):
        def nr(p, n):
            return norm_rules(f"{p}.norm" + (".batchnorm" if self.spec.batch_norm else ""), n)

        r = []
        if self.channel_mlp is not None:
            r += nr(f"{prefix}.channel_feature_mixer.norm", self.channel_norm)
            r += self.channel_mlp.rules(f"{prefix}.channel_feature_mixer")
        r += nr(f"{prefix}.patch_mixer.norm", self.patch_norm) + self.patch_mlp.rules(f"{prefix}.patch_mixer")
        if self.attn is not None:
            r += self.attn.rules(f"{prefix}.patch_mixer.self_attn_layer")
            r += nr(f"{prefix}.patch_mixer.norm_attn", self.attn_norm)
        return r + nr(f"{prefix}.feature_mixer.norm", self.feature_norm) + self.feature_mlp.rules(
            f"{prefix}.feature_mixer")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("patchtsmixer")
class PatchTSMixerBackbone(Backbone):
    spec_cls = PatchTSMixerSpec
    base_model_prefix = "model"
    hf_architecture = "PatchTSMixerModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        if spec is None:
            spec = PatchTSMixerSpec.pop_from(kwargs)
        elif isinstance(spec, dict):
            spec = PatchTSMixerSpec.from_config(spec)
        super().__init__(**kwargs)
        self.spec = s = spec
        dt = self.dtype_policy
        self.num_patches = count_patches(s.context_length, s.patch_length, s.patch_stride)
        self.patcher = keras.layers.Dense(s.d_model, name="patcher", dtype=dt)
        self.mixers = [MixerLayer(s, self.num_patches, name=f"mixer_{i}", dtype=dt) for i in range(s.num_layers)]

    def build(self, shape=None):
        s = self.spec
        self.patcher.build((None, s.patch_length))
        self.position_enc = (self.add_weight(shape=(self.num_patches, s.d_model), name="position_enc",
                                             initializer="zeros", trainable=s.positional_encoding_type == "random")
                             if s.use_positional_encoding else None)
        for m in self.mixers:
            m.build(None)
        self.built = True

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def encode(self, inputs, training=False):
        """(last_hidden_state, loc, scale) of ``inputs``."""
        s = self.spec
        values, mask = series_inputs(inputs, s.num_input_channels, s.context_length, type(self).__name__)
        values = ops.cast(values, self.compute_dtype)
        scaled, loc, scale = scale_series(values, observed_mask(values, mask), s.scaling)
        h = self.patcher(patchify(scaled, s.context_length, s.patch_length, s.patch_stride))
        if self.position_enc is not None:
            h = h + ops.cast(self.position_enc, h.dtype)
        for m in self.mixers:
            h = m(h, training=training)
        return h, loc, scale

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)[0]

    def weight_rules(self):
        r = dense_rules("encoder.patcher", self.patcher)
        if self.position_enc is not None:
            r.append(Rule("encoder.positional_encoder.position_enc", self.position_enc))
        for i, m in enumerate(self.mixers):
            r += m.rules(f"encoder.mlp_mixer_encoder.mixers.{i}")
        return r

    def get_config(self):
        config = super().get_config()
        config.update(self.spec.to_config())
        return config


__all__ = ["PatchTSMixerBackbone", "PatchTSMixerSpec"]
