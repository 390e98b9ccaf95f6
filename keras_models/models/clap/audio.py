"""CLAP's audio tower (HTSAT): a Swin Transformer over a log-mel spectrogram folded into a square.

Input: ``input_features`` (batch, channels, frames, mel bins), Transformers' layout (what
:class:`~keras_models.models.clap.features.ClapFeatureExtractor` returns); ``is_longer``
(batch, 1) when ``enable_fusion`` (missing: no row is fused). The steps, as Transformers runs them:

1. a BatchNorm over the mel bins;
2. the frames are resized to ``spec_size * r`` (``r = spec_size // num_mel_bins``) with torch's
   bicubic, ``align_corners=True`` resize (a fixed (out, in) matrix, computed once per length);
3. the (frames, mels) map is cut into ``r`` time chunks stacked along the mel axis: a
   ``spec_size`` x ``spec_size`` image;
4. a patch convolution (+ LayerNorm); with ``enable_fusion``, rows flagged ``is_longer`` mix in the
   three local crops (channels 1-3) through a wider convolution and an attentional feature fusion
   (AFF) block;
5. Swin stages (shifted windows, patch merging, :mod:`keras_models.layers.window_attention`) and a
   final LayerNorm.

Output: Transformers' ``last_hidden_state`` channels_last: (batch, c, (h // c) * w, hidden) with
``c = h // r`` (the final (h, w) token grid regrouped as HTSAT does); ``pooled`` is the mean over
every position (Transformers' ``pooler_output``).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.layers.window_attention import PatchMerging, SwinBlock
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.models.swin.backbone import SwinBackbone
from keras_models.models.vision_hier import TorchConv, batch_norm
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


def bicubic_matrix(n_out, n_in, a=-0.75):
    """(n_out, n_in) weights of torch's 1-D bicubic resize with ``align_corners=True``."""
    m = np.zeros((n_out, n_in), np.float64)
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    for i in range(n_out):
        src = i * scale
        base = int(np.floor(src))
        t = src - base
        w = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
             ((a + 2) * t - (a + 3)) * t * t + 1,
             ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
             ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]
        for k in range(4):
            m[i, min(max(base - 1 + k, 0), n_in - 1)] += w[k]
    return m.astype("float32")


@dataclass(frozen=True, kw_only=True)
class ClapAudioSpec(Spec):
    """ClapAudioConfig's keys and Transformers' defaults."""

    window_size: int = dim("window_size", 8)
    num_mel_bins: int = dim("num_mel_bins", 64)
    spec_size: int = dim("spec_size", 256)
    hidden_act: str = hf("hidden_act", "gelu")
    patch_size: int | tuple = hf("patch_size", 4)
    patch_stride: int | tuple = hf("patch_stride", (4, 4))
    num_classes: int = hf("num_classes", 527, doc="unused (no classification head in Transformers)")
    hidden_size: int = dim("hidden_size", 768)
    projection_dim: int = dim("projection_dim", 512, doc="read by ClapAudioModelWithProjection")
    depths: tuple = hf("depths", (2, 2, 6, 2))
    num_heads: tuple = hf("num_attention_heads", (4, 8, 16, 32))
    enable_fusion: bool = hf("enable_fusion", False)
    dropout: float = hf("hidden_dropout_prob", 0.1)
    fusion_type: str | None = hf("fusion_type", None)
    patch_embed_input_channels: int = dim("patch_embed_input_channels", 1)
    flatten_patch_embeds: bool = hf("flatten_patch_embeds", True)
    patch_embeds_hidden_size: int = dim("patch_embeds_hidden_size", 96)
    enable_patch_layer_norm: bool = hf("enable_patch_layer_norm", True)
    drop_path_rate: float = hf("drop_path_rate", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    qkv_bias: bool = hf("qkv_bias", True)
    mlp_ratio: float = hf("mlp_ratio", 4.0)
    aff_block_r: int = dim("aff_block_r", 4)
    num_hidden_layers: int = hf("num_hidden_layers", 4, doc="unused by the model (the stages follow depths)")
    projection_hidden_act: str = hf("projection_hidden_act", "relu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    initializer_factor: float = hf("initializer_factor", 1.0)

    # a 2-D (not flattened) patch map would be layer-normed over its width in Transformers
    unsupported = {"flatten_patch_embeds": (True,)}

    def validate(self, source="config.json"):
        def bad(msg):
            raise ConfigError(f"{source}: {msg}")

        if len(self.depths) != len(self.num_heads) or not self.depths:
            bad(f"depths {list(self.depths)} and num_attention_heads {list(self.num_heads)} must have one "
                "entry per stage")
        for key, values in (("depths", self.depths), ("num_attention_heads", self.num_heads)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
                bad(f"{key} must hold positive integers, got {list(values)}")
        for key, v in (("patch_size", self.patch_size), ("patch_stride", self.patch_stride)):
            vals = v if isinstance(v, tuple) else (v,)
            if len(vals) not in (1, 2) or any(isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in vals):
                bad(f"{key} must be a positive integer or a pair of them, got {v!r}")
        stages = len(self.depths)
        width = self.patch_embeds_hidden_size * 2 ** (stages - 1)
        if self.hidden_size != width:
            bad(f"hidden_size={self.hidden_size} must equal patch_embeds_hidden_size * 2**(stages - 1) = {width} "
                "(the width the audio projection reads)")
        for i, heads in enumerate(self.num_heads):
            if (self.patch_embeds_hidden_size * 2**i) % heads:
                bad(f"num_attention_heads[{i}]={heads} does not divide stage {i}'s width "
                    f"{self.patch_embeds_hidden_size * 2**i}")
        if self.spec_size % self.num_mel_bins:
            bad(f"spec_size={self.spec_size} must be a multiple of num_mel_bins={self.num_mel_bins}")
        (p0, p1), (s0, s1) = _pair(self.patch_size), _pair(self.patch_stride)
        if p0 < s0 or p1 < s1:
            bad(f"patch_size {self.patch_size!r} must be at least patch_stride {self.patch_stride!r}")
        grid = (self.spec_size // s0, self.spec_size // s1)
        if grid[0] != grid[1] or self.spec_size % s0 or self.spec_size % s1:
            bad(f"patch_stride {self.patch_stride!r} must divide spec_size={self.spec_size} into a square grid")
        if grid[0] % 2 ** (stages - 1):
            bad(f"the {grid[0]}x{grid[0]} patch grid cannot be halved {stages - 1} times (spec_size / patch_stride)")
        last = grid[0] // 2 ** (stages - 1)
        if last < self.window_size:
            bad(f"window_size={self.window_size} is larger than the last stage's {last}x{last} map")
        ratio = self.spec_size // self.num_mel_bins
        if last // ratio < 1 or last % (last // ratio):
            bad(f"the last stage's {last} rows cannot be regrouped by spec_size // num_mel_bins = {ratio}")
        if self.enable_fusion:
            if self.fusion_type == "channel_map":
                bad("fusion_type='channel_map' is not implemented (Transformers' fused forward fails with it)")
            if self.patch_embed_input_channels != 1:
                bad("enable_fusion needs patch_embed_input_channels=1")
        if self.window_size < 1:
            bad("window_size must be positive")

    def dummy_inputs(self):
        ratio = self.spec_size // self.num_mel_bins
        channels = 4 if self.enable_fusion else self.patch_embed_input_channels
        out = {"input_features": np.zeros((1, channels, self.spec_size * ratio, self.num_mel_bins), "float32")}
        if self.enable_fusion:
            out["is_longer"] = np.zeros((1, 1), "bool")
        return out


@_ser
class AudioFeatureFusion(keras.layers.Layer):
    """HTSAT's attentional feature fusion (AFF, 2-D) on channels_last maps:
    ``w = sigmoid(local(x + r) + global(x + r))``, ``2 x w + 2 r (1 - w)``; local = 1x1 conv,
    BatchNorm, ReLU, 1x1 conv, BatchNorm; global = the same after a global average pool."""

    def __init__(self, channels, ratio=4, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.ratio = channels, ratio
        inner = int(channels // ratio)
        d = self.dtype_policy
        self.branches = []
        for name in ("local", "global"):
            self.branches.append([TorchConv(inner, 1, name=f"{name}_conv1", dtype=d), batch_norm(f"{name}_norm1", d),
                                  TorchConv(channels, 1, name=f"{name}_conv2", dtype=d),
                                  batch_norm(f"{name}_norm2", d)])

    def build(self, input_shape):
        inner = int(self.channels // self.ratio)
        for c1, n1, c2, n2 in self.branches:
            c1.build((None, None, None, self.channels))
            n1.build((None, None, None, inner))
            c2.build((None, None, None, inner))
            n2.build((None, None, None, self.channels))
        self.built = True

    def call(self, x, residual):
        y = x + residual
        total = 0
        for i, (c1, n1, c2, n2) in enumerate(self.branches):
            z = y if i == 0 else ops.mean(y, axis=(1, 2), keepdims=True)
            total = total + n2(c2(ops.relu(n1(c1(z)))))
        w = ops.sigmoid(total)
        return 2.0 * x * w + 2.0 * residual * (1.0 - w)

    def rules(self, prefix):
        r = []
        for (c1, n1, c2, n2), (name, first) in zip(self.branches, (("local_att", 0), ("global_att", 1))):
            r += c1.rules(f"{prefix}.{name}.{first}") + norm_rules(f"{prefix}.{name}.{first + 1}", n1)
            r += c2.rules(f"{prefix}.{name}.{first + 3}") + norm_rules(f"{prefix}.{name}.{first + 4}", n2)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(channels=self.channels, ratio=self.ratio)
        return c


@_ser
@register_backbone("clap_audio_model")
class ClapAudioBackbone(SpecBackbone):
    spec_cls = ClapAudioSpec
    base_model_prefix = "audio_model"
    hf_architecture = "ClapAudioModel"
    hf_model_type = "clap_audio_model"
    hf_ignore = ("*relative_position_index", "*num_batches_tracked")
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        d = dict(dtype=self.dtype_policy)
        self.ratio = s.spec_size // s.num_mel_bins
        (p0, p1), (s0, s1) = _pair(s.patch_size), _pair(s.patch_stride)
        pad = ((p0 - s0) // 2, (p1 - s1) // 2)
        width = s.patch_embeds_hidden_size
        self.mel_norm = batch_norm("mel_norm", **d)
        self.patch_conv = TorchConv(width, (p0, p1), strides=(s0, s1), padding=pad, name="patch_conv", **d)
        self.patch_norm = (keras.layers.LayerNormalization(epsilon=1e-5, name="patch_norm", **d)
                           if s.enable_patch_layer_norm else None)
        if s.enable_fusion:
            self.local_conv = TorchConv(width, (p0, 3 * p1), strides=(s0, 3 * s1), padding=pad, name="local_conv", **d)
            self.fusion = AudioFeatureFusion(width, s.aff_block_r, name="fusion", **d)
        self.stages, self.merges = [], []
        for i, (depth, heads) in enumerate(zip(s.depths, s.num_heads)):
            dim_i = width * 2**i
            ws = s.window_size
            self.stages.append([
                SwinBlock(dim_i, heads, ws, 0 if j % 2 == 0 else ws // 2, mlp_ratio=s.mlp_ratio,
                          hidden_act=s.hidden_act, layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias,
                          dropout=s.dropout, attention_dropout=s.attention_dropout,
                          name=f"stage_{i}_block_{j}", **d)
                for j in range(depth)])
            self.merges.append(PatchMerging(dim_i, name=f"merge_{i}", **d) if i < len(s.depths) - 1 else None)
        self.hidden_size = s.hidden_size
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", **d)

    def build(self, input_shape=None):
        s = self.spec
        width = s.patch_embeds_hidden_size
        self.mel_norm.build((None, None, None, s.num_mel_bins))
        self.patch_conv.build((None, s.spec_size, s.spec_size, s.patch_embed_input_channels))
        if self.patch_norm is not None:
            self.patch_norm.build((None, None, width))
        if s.enable_fusion:
            self.local_conv.build((None, s.spec_size, s.spec_size, 1))
            self.fusion.build((None, None, None, width))
        for i, (blocks, merge) in enumerate(zip(self.stages, self.merges)):
            for b in blocks:
                b.build((None, None, None, width * 2**i))
            if merge is not None:
                merge.build((None, None, None, width * 2**i))
        self.final_norm.build((None, None, s.hidden_size))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def image(self, features):
        """(batch, channels, frames, mels) -> the normalised, resized and folded
        (batch, spec_size, spec_size, channels) image."""
        s = self.spec
        frames, mels = features.shape[2], features.shape[3]
        width = s.spec_size * self.ratio
        if mels != s.num_mel_bins:
            raise InputError(f"input_features: {mels} mel bins (last axis) but the model expects {s.num_mel_bins}")
        if frames is None or frames > width:
            raise InputError(f"input_features: {frames} frames (axis 2); the model takes at most {width}")
        x = self.mel_norm(features)
        if frames < width:
            m = ops.convert_to_tensor(bicubic_matrix(width, frames), dtype=x.dtype)
            x = ops.einsum("st,bctf->bcsf", m, x)
        c = x.shape[1]
        x = ops.reshape(x, (-1, c, self.ratio, width // self.ratio, mels))
        x = ops.reshape(ops.transpose(x, (0, 1, 2, 4, 3)), (-1, c, self.ratio * mels, width // self.ratio))
        return ops.transpose(x, (0, 2, 3, 1))

    def embed(self, inputs):
        s = self.spec
        x = self.image(inputs["input_features"])
        if not s.enable_fusion:
            return self.patch_conv(x)
        if x.shape[-1] != 4:
            raise InputError(f"input_features: {x.shape[-1]} channels (axis 1); a fused CLAP model takes 4 "
                             "(the whole clip and three crops, as ClapFeatureExtractor's 'fusion' truncation gives)")
        glob = self.patch_conv(x[..., :1])
        longer = inputs.get("is_longer")
        if longer is None:
            return glob
        h, w = x.shape[1], x.shape[2]
        local = ops.reshape(ops.transpose(x[..., 1:], (0, 3, 1, 2)), (-1, h, w, 1))
        local = self.local_conv(local)
        lh, lw, ch = local.shape[1], local.shape[2], local.shape[3]
        local = ops.reshape(ops.transpose(ops.reshape(local, (-1, 3, lh, lw, ch)), (0, 2, 1, 3, 4)),
                            (-1, lh, 3 * lw, ch))
        gw = glob.shape[2]
        local = local[:, :, :gw] if 3 * lw >= gw else ops.pad(local, ((0, 0), (0, 0), (0, gw - 3 * lw), (0, 0)))
        fused = self.fusion(glob, local)
        flag = ops.reshape(ops.not_equal(ops.cast(longer, "int32"), 0), (-1, 1, 1, 1))
        return ops.where(flag, fused, glob)

    def tokens(self, inputs, training=False):
        """The final (batch, h, w, hidden) token grid after the last LayerNorm."""
        x = self.embed(inputs)
        if self.patch_norm is not None:
            x = self.patch_norm(x)
        for blocks, merge in zip(self.stages, self.merges):
            for b in blocks:
                x = b(x, training=training)
            if merge is not None:
                x = merge(x)
        return self.final_norm(x)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_features": inputs}
        x = self.tokens(inputs, training=training)
        h, w, ch = x.shape[1], x.shape[2], x.shape[3]
        c = h // self.ratio
        x = ops.transpose(ops.reshape(x, (-1, h // c, c, w, ch)), (0, 2, 1, 3, 4))
        return ops.reshape(x, (-1, c, (h // c) * w, ch))

    def pooled(self, hidden, inputs=None):
        return ops.mean(hidden, axis=(1, 2))

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        p = "audio_encoder."
        r = norm_rules(p + "batch_norm", self.mel_norm) + self.patch_conv.rules(p + "patch_embed.proj")
        if self.patch_norm is not None:
            r += norm_rules(p + "patch_embed.norm", self.patch_norm)
        if self.spec.enable_fusion:
            r += self.local_conv.rules(p + "patch_embed.mel_conv2d") + self.fusion.rules(p + "patch_embed.fusion_model")
        for i, (blocks, merge) in enumerate(zip(self.stages, self.merges)):
            for j, b in enumerate(blocks):
                r += SwinBackbone.block_rules(self, f"{p}layers.{i}.blocks.{j}.", b)
            if merge is not None:
                q = f"{p}layers.{i}.downsample."
                r += norm_rules(q + "norm", merge.norm) + dense_rules(q + "reduction", merge.reduction)
        return r + norm_rules(p + "norm", self.final_norm)


@_ser
class ClapProjection(keras.layers.Layer):
    """linear1 -> activation -> linear2 (``ClapProjectionLayer``)."""

    def __init__(self, units, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.units, self.activation_name = units, activation
        self.act = get_activation(activation)
        self.linear1 = keras.layers.Dense(units, name="linear1", dtype=self.dtype_policy)
        self.linear2 = keras.layers.Dense(units, name="linear2", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.linear1.build(input_shape)
        self.linear2.build((None, self.units))
        self.built = True

    def call(self, x):
        return self.linear2(self.act(self.linear1(x)))

    def rules(self, prefix, base=False):
        return dense_rules(prefix + ".linear1", self.linear1, base=base) + dense_rules(prefix + ".linear2",
                                                                                        self.linear2, base=base)

    def get_config(self):
        c = super().get_config()
        c.update(units=self.units, activation=self.activation_name)
        return c


__all__ = ["ClapAudioSpec", "ClapAudioBackbone", "ClapProjection", "AudioFeatureFusion", "bicubic_matrix"]
