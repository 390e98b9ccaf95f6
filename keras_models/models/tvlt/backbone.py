"""TVLT (model_type ``tvlt``; removed from Transformers 5): a ViT-style encoder over video frames
and an audio spectrogram together.

Inputs (channels_last, as every vision input here):
  * ``pixel_values`` (batch, frames, height, width, channels): up to ``num_frames`` frames of the
    configured ``image_size``; each frame is cut into ``image_patch_size`` patches (a Conv2D), then
    a per-patch position table (``pos_embed_v``), a per-frame table (``temporal_embed``) and a
    video type vector are added;
  * ``audio_values`` (batch, time, frequency, channels): a log-mel spectrogram of up to
    ``spectrogram_length`` time steps and exactly ``frequency_length`` bins (Transformers' layout
    is (batch, channels, time, frequency)); ``audio_patch_size`` patches (time, frequency), plus a
    frequency table, a time table (``pos_embed_a``) and an audio type vector;
  * ``pixel_mask`` (batch, frame patches) / ``audio_mask`` (batch, audio patches), optional 1/0
    padding masks as TvltProcessor returns them. Transformers applies them only when both are
    given; here a missing one means "no padding" in that modality, which is the same thing when
    both are given.

Sequence = [CLS] + video patches + audio patches -> pre-norm ViT blocks -> final LayerNorm
(absent when ``use_mean_pooling``). Output: the last hidden state (batch, 1 + P + A, hidden).
The MAE pre-training decoder and the matching head (TvltForPreTraining) are not built.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_block import VisionBlock, vit_block_rules
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_classifier import ImageTask

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _one_or_pair(v):
    h, w = _pair(v)
    return h if h == w else [h, w]


@dataclass(frozen=True, kw_only=True)
class TvltSpec(Spec):
    image_size: tuple = hf("image_size", (224, 224), read=_pair, write=_one_or_pair)
    image_patch_size: tuple = hf("image_patch_size", (16, 16), read=_pair, write=list)
    num_image_channels: int = dim("num_image_channels", 3)
    num_frames: int = dim("num_frames", 8)
    spectrogram_length: int = dim("spectrogram_length", 2048)
    frequency_length: int = dim("frequency_length", 128)
    audio_patch_size: tuple = hf("audio_patch_size", (16, 16), read=_pair, write=list)
    num_audio_channels: int = dim("num_audio_channels", 1)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    qkv_bias: bool = hf("qkv_bias", True)
    use_mean_pooling: bool = hf("use_mean_pooling", False, doc="True: no final LayerNorm (the [CLS] is still read)")
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size ({self.hidden_size}) must be a multiple of "
                              f"num_attention_heads ({self.num_heads})")
        for key, size, patch in (("image_patch_size", self.image_size, self.image_patch_size),
                                 ("audio_patch_size", (self.spectrogram_length, self.frequency_length),
                                  self.audio_patch_size)):
            if len(patch) != 2 or any(not isinstance(p, int) or p <= 0 for p in patch):
                raise ConfigError(f"{source}: {key} must be two positive integers, got {list(patch)}")
            if size[0] < patch[0] or size[1] < patch[1]:
                raise ConfigError(f"{source}: {key} {list(patch)} is larger than the input size {list(size)}")

    def dummy_inputs(self):
        return {
            "pixel_values": np.zeros((1, self.num_frames) + tuple(self.image_size) + (self.num_image_channels,),
                                     "float32"),
            "audio_values": np.zeros((1, self.audio_patch_size[0], self.frequency_length, self.num_audio_channels),
                                     "float32"),
        }


@_ser
@register_backbone("tvlt")
class TvltBackbone(SpecBackbone):
    spec_cls = TvltSpec
    base_model_prefix = "tvlt"
    hf_architecture = "TvltModel"
    # TvltForPreTraining's matching head and MAE decoder side (not built)
    hf_known_unused = ("matching_head.*", "encoder_to_decoder.*", "pixel_mask_token", "audio_mask_token",
                       "decoder.*", "decoder_*", "pixel_mae_head.*", "audio_mae_head.*")
    verified_backends = ("jax", "torch", "tensorflow")  # tests/multimodal/test_tvlt.py (4.57.1 golden)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        for name, value in s.kwargs().items():
            setattr(self, "dropout_rate" if name == "dropout" else name, value)
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.image_grid = (s.image_size[0] // s.image_patch_size[0], s.image_size[1] // s.image_patch_size[1])
        self.patches_per_frame = self.image_grid[0] * self.image_grid[1]
        self.freq_patches = s.frequency_length // s.audio_patch_size[1]
        self.time_patches = s.spectrogram_length // s.audio_patch_size[0]
        self.pixel_patches = PatchEmbedding(s.hidden_size, s.image_patch_size, s.num_image_channels,
                                            kernel_initializer=init, name="pixel_patches", **common)
        self.audio_patches = PatchEmbedding(s.hidden_size, s.audio_patch_size, s.num_audio_channels,
                                            kernel_initializer=init, name="audio_patches", **common)
        self.blocks = [
            VisionBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                        layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias, dropout=s.dropout,
                        attention_dropout=s.attention_dropout, kernel_initializer=init, name=f"block_{i}", **common)
            for i in range(s.num_layers)
        ]
        self.final_norm = (None if s.use_mean_pooling else
                           keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common))

    def build(self, input_shape=None):
        s, d = self.spec, self.spec.hidden_size
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)

        def table(name, rows):
            return self.add_weight(name=name, shape=(1, rows, d), initializer=init)

        self.cls_embedding = table("cls_embedding", 1)
        self.type_embed_v = table("type_embed_v", 1)
        self.temporal_embed = table("temporal_embed", s.num_frames)
        self.pos_embed_v = table("pos_embed_v", self.patches_per_frame)
        self.type_embed_a = table("type_embed_a", 1)
        self.pos_embed_a = table("pos_embed_a", self.time_patches)
        self.freq_embed = table("freq_embed", self.freq_patches)
        self.pixel_patches.build((None, None, None, s.num_image_channels))
        self.audio_patches.build((None, None, None, s.num_audio_channels))
        for b in self.blocks:
            b.build((None, None, d))
        if self.final_norm is not None:
            self.final_norm.build((None, None, d))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def _check(self, name, shape, want_rank, fixed, limit):
        """fixed: {axis: (what, size)} exact sizes; limit: (axis, what, max) an upper bound."""
        shape = tuple(shape)
        if len(shape) != want_rank:
            raise InputError(f"{name}: expected rank {want_rank}, got shape {shape}")
        for axis, (what, size) in fixed.items():
            if shape[axis] is not None and int(shape[axis]) != size:
                raise InputError(f"{name}: shape {shape} has {what} {shape[axis]} but the model takes {size}")
        axis, what, top = limit
        if shape[axis] is not None and not 0 < int(shape[axis]) <= top:
            raise InputError(f"{name}: shape {shape} has {shape[axis]} {what}; the model takes 1 to {top}")

    def embed_video(self, pixel_values):
        s, d = self.spec, self.spec.hidden_size
        self._check("pixel_values", pixel_values.shape, 5,
                    {2: ("height", s.image_size[0]), 3: ("width", s.image_size[1]),
                     4: ("channels", s.num_image_channels)}, (1, "frames", s.num_frames))
        frames = pixel_values.shape[1]
        x = ops.reshape(pixel_values, (-1,) + tuple(pixel_values.shape[2:]))
        x = ops.reshape(self.pixel_patches(x), (-1, frames, self.patches_per_frame, d))
        dt = x.dtype
        x = (x + ops.cast(self.pos_embed_v, dt)[:, None]
             + ops.cast(self.temporal_embed[:, :frames], dt)[:, :, None] + ops.cast(self.type_embed_v, dt)[:, None])
        return ops.reshape(x, (-1, frames * self.patches_per_frame, d))

    def embed_audio(self, audio_values):
        s, d = self.spec, self.spec.hidden_size
        self._check("audio_values", audio_values.shape, 4,
                    {2: ("frequency bins", s.frequency_length), 3: ("channels", s.num_audio_channels)},
                    (1, "time steps", s.spectrogram_length))
        if audio_values.shape[1] is not None and audio_values.shape[1] < s.audio_patch_size[0]:
            raise InputError(f"audio_values: {audio_values.shape[1]} time steps is shorter than one audio patch "
                             f"({s.audio_patch_size[0]})")
        x = self.audio_patches(audio_values)  # (batch, time patches, freq patches, hidden)
        times = x.shape[1]
        dt = x.dtype
        x = (x + ops.cast(self.freq_embed, dt)[:, None] + ops.cast(self.pos_embed_a[:, :times], dt)[:, :, None]
             + ops.cast(self.type_embed_a, dt)[:, None])
        return ops.reshape(x, (-1, times * self.freq_patches, d))

    @staticmethod
    def _mask(inputs, name, tokens, batch):
        m = inputs.get(name)
        if m is None:
            return ops.ones((batch, tokens), "float32")
        if len(m.shape) != 2 or (m.shape[1] is not None and int(m.shape[1]) != tokens):
            raise InputError(f"{name}: expected (batch, {tokens}) (one value per patch), got shape {tuple(m.shape)}")
        return ops.cast(m, "float32")

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "pixel_values" not in inputs or "audio_values" not in inputs:
            raise InputError("TVLT takes a dict with 'pixel_values' (batch, frames, H, W, C) and 'audio_values' "
                             "(batch, time, frequency, channels)")
        video = self.embed_video(inputs["pixel_values"])
        audio = self.embed_audio(inputs["audio_values"])
        b = ops.shape(video)[0]
        cls = ops.broadcast_to(ops.cast(self.cls_embedding, video.dtype), (b, 1, self.hidden_size))
        x = ops.concatenate([cls, video, audio], axis=1)
        bias = None
        if inputs.get("pixel_mask") is not None or inputs.get("audio_mask") is not None:
            pm = self._mask(inputs, "pixel_mask", video.shape[1], b)
            am = self._mask(inputs, "audio_mask", audio.shape[1], b)
            bias = padding_bias(ops.concatenate([pm[:, :1], pm, am], axis=1), x.dtype)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return x if self.final_norm is None else self.final_norm(x)

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("cls_embedding", self.cls_embedding)]
        r += conv_rules("pixel_embeddings.patch_embeddings.projection", self.pixel_patches.projection)
        r += [Rule(f"pixel_embeddings.{n}", getattr(self, n)) for n in ("type_embed_v", "temporal_embed", "pos_embed_v")]
        r += conv_rules("audio_embeddings.patch_embeddings.projection", self.audio_patches.projection)
        r += [Rule(f"audio_embeddings.{n}", getattr(self, n)) for n in ("type_embed_a", "pos_embed_a", "freq_embed")]
        for i, b in enumerate(self.blocks):
            r += vit_block_rules(f"encoder.layer.{i}.", b)
        if self.final_norm is not None:
            r += norm_rules("layernorm", self.final_norm)
        return r


@_ser
@register_task(TvltBackbone, "AudioVisualClassifier", ("TvltForAudioVisualClassification",))
class TvltAudioVisualClassifier(ImageTask):
    """TvltForAudioVisualClassification: the [CLS] state -> Dense(2 * hidden) -> LayerNorm ->
    GELU (exact, whatever ``hidden_act``) -> Dense(classes). Call on the backbone's input dict;
    returns logits (batch, classes) (scores, for a ``loss_type`` "regression" checkpoint)."""

    task_name = "AudioVisualClassifier"
    hf_head_patterns = ("classifier.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        init = keras.initializers.TruncatedNormal(stddev=backbone.initializer_range)
        common = dict(dtype=backbone.dtype_policy)
        d = backbone.hidden_size
        self.fc1 = keras.layers.Dense(2 * d, kernel_initializer=init, name="classifier_fc1", **common)
        self.norm = keras.layers.LayerNormalization(epsilon=backbone.layer_norm_eps, name="classifier_norm", **common)
        self.out = keras.layers.Dense(num_classes, kernel_initializer=init, name="classifier", **common)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.tvlt.processing import TvltProcessor

        try:
            return TvltProcessor.from_preset(folder)
        except ConfigError:
            return None

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)[:, 0]
        h = keras.activations.gelu(self.norm(self.fc1(h)), approximate=False)
        return self.out(h)

    def head_rules(self):
        return (dense_rules("classifier.0", self.fc1, base=False) + norm_rules("classifier.1", self.norm, base=False)
                + dense_rules("classifier.3", self.out, base=False))


__all__ = ["TvltSpec", "TvltBackbone", "TvltAudioVisualClassifier"]
