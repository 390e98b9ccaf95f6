"""TVP (model_type ``tvp``, Transformers' ``TvpModel`` / ``TvpForVideoGrounding``): text-visual
prompting for temporal video grounding.

* visual prompter (``framepad``): learned border pads (``pad_up/down/left/right``, one per frame)
  added to every frame of size ``max_img_size`` (``replace`` and ``add`` both add them, as
  Transformers does; ``remove`` leaves the frames unchanged);
* vision tower: a ResNet (``backbone_config``; the ``out_features`` stage) on every frame, then a
  3x3 conv without bias, 2x2 max pool and ReLU -> grid (batch, frames, h, w, hidden);
* visual tokens: the grid averaged over frames + learned row / column positions + a token type
  row -> LayerNorm; text tokens: BERT embeddings (word + position + token type 0) -> LayerNorm;
* 10 learned prompt tokens + text + visual tokens through a BERT post-norm encoder; the first
  token's tanh pooler feeds the grounding head (Linear -> ReLU -> Linear(2) -> sigmoid):
  (start, end) as fractions of the video.

Inputs: ``input_ids``, ``attention_mask`` and ``pixel_values`` (batch, frames, H, W, C),
channels_last, H = W = ``max_img_size``. ``interpolate_pos_encoding`` is not implemented.
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule, Transpose, mount
from keras_models.spec import Spec, dim, hf, tower, tower_kwargs
from keras_models.tasks.task import Task

_ser = keras.saving.register_keras_serializable(package="keras_models")
NUM_TEXT_PROMPTS = 10
# torch pad (1, frames, 3, h, w) <-> ours (1, frames, h, w, 3)
PAD_AXES = (0, 1, 3, 4, 2)


def _out_stage(config, source):
    n = len(config.get("depths") or ())
    feats, indices = config.get("out_features"), config.get("out_indices")
    for key, value in (("out_features", feats), ("out_indices", indices)):
        if value is not None and not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: backbone_config {key} must be a list, got {value!r}")
    if feats:
        try:
            stage = int(str(feats[0]).replace("stage", ""))
        except ValueError as e:
            raise ConfigError(f"{source}: backbone_config out_features={feats!r} ({e})") from e
    elif indices:
        if isinstance(indices[0], bool) or not isinstance(indices[0], int):
            raise ConfigError(f"{source}: backbone_config out_indices={indices!r} must hold stage numbers")
        stage = indices[0] % (n + 1)
    else:
        stage = n
    if not 1 <= stage <= n:
        raise ConfigError(f"{source}: backbone_config out_features / out_indices must name a stage 1..{n}, "
                          f"got {stage} (the stem map is not implemented)")
    return stage


@dataclass(frozen=True, kw_only=True)
class TvpSpec(Spec):
    backbone_config: dict = tower("backbone_config", "resnet")
    visual_prompter_type: str = hf("visual_prompter_type", "framepad")
    visual_prompter_apply: str = hf("visual_prompter_apply", "replace")
    visual_prompt_size: int = dim("visual_prompt_size", 96)
    max_img_size: int = dim("max_img_size", 448)
    num_frames: int = dim("num_frames", 48)
    vocab_size: int = dim("vocab_size", 30522)
    type_vocab_size: int = dim("type_vocab_size", 2)
    hidden_size: int = dim("hidden_size", 768)
    intermediate_size: int = dim("intermediate_size", 3072)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    max_grid_col_position_embeddings: int = dim("max_grid_col_position_embeddings", 100)
    max_grid_row_position_embeddings: int = dim("max_grid_row_position_embeddings", 100)
    hidden_act: str = hf("hidden_act", "gelu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    dropout: float = hf("hidden_dropout_prob", 0.1)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    initializer_range: float = hf("initializer_range", 0.02)
    distance_loss_weight: float = hf("distance_loss_weight", 1.0)
    duration_loss_weight: float = hf("duration_loss_weight", 0.1)
    pad_token_id: int | None = hf("pad_token_id", None)

    # Transformers' framedownpad prompter reads a config key (frame_num) TvpConfig does not have.
    unsupported = {"visual_prompter_type": ("framepad",),
                   "visual_prompter_apply": ("replace", "add", "remove")}

    def validate(self, source="config.json"):
        b = self.backbone_config
        if b.get("model_type") != "resnet":
            raise ConfigError(f"{source}: backbone_config model_type {b.get('model_type')!r} is not implemented "
                              "for TVP (supported: 'resnet')")
        if b.get("use_timm_backbone") or b.get("backbone"):
            raise ConfigError(f"{source}: a timm backbone (backbone / use_timm_backbone) is not implemented for TVP")
        _out_stage(b, source)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                              f"num_attention_heads {self.num_heads}")
        if 2 * self.visual_prompt_size >= self.max_img_size:
            raise ConfigError(f"{source}: visual_prompt_size {self.visual_prompt_size} leaves no frame inside "
                              f"max_img_size {self.max_img_size}")
        if self.backbone_config.get("num_channels", 3) != 3:
            raise ConfigError(f"{source}: backbone_config num_channels must be 3 (the prompter pads RGB frames)")

    def dummy_inputs(self):
        s = self.max_img_size
        return {"input_ids": np.ones((1, 4), "int32"), "attention_mask": np.ones((1, 4), "int32"),
                "pixel_values": np.zeros((1, self.num_frames, s, s, 3), "float32")}


@_ser
@register_backbone("tvp")
class TvpBackbone(SpecBackbone):
    """Returns the encoder's last hidden state (batch, 10 + text + grid tokens, hidden);
    ``pooled(hidden)`` is the tanh pooler of the first token."""

    spec_cls = TvpSpec
    base_model_prefix = "model"
    hf_architecture = "TvpModel"
    verified_backends = ("jax", "torch", "tensorflow")
    hf_ignore = ("*num_batches_tracked",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        cls, tower_args = tower_kwargs(s.backbone_config, "backbone_config")
        self.tower = cls(name="backbone", **common, **tower_args)
        self.stage = _out_stage(s.backbone_config, "backbone_config")
        self.grid_channels = self.tower.hidden_sizes[self.stage - 1]
        h = s.hidden_size
        self.grid_conv = keras.layers.Conv2D(h, 3, padding="same", use_bias=False, name="grid_encoder_conv",
                                             **common)
        emb = lambda n, name: keras.layers.Embedding(n, h, name=name, **common)  # noqa: E731
        self.word_embeddings = emb(s.vocab_size, "word_embeddings")
        self.position_embeddings = emb(s.max_position_embeddings, "position_embeddings")
        self.token_type_embeddings = emb(s.type_vocab_size, "token_type_embeddings")
        self.text_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="text_norm", **common)
        self.visual_position_embeddings = emb(s.max_position_embeddings, "visual_position_embeddings")
        self.row_embeddings = emb(s.max_grid_row_position_embeddings, "row_position_embeddings")
        self.col_embeddings = emb(s.max_grid_col_position_embeddings, "col_position_embeddings")
        self.visual_token_type = emb(1, "visual_token_type_embeddings")
        self.visual_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="visual_norm", **common)
        self.blocks = [EncoderBlock(h, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                    layer_norm_eps=s.layer_norm_eps, dropout=s.dropout,
                                    attention_dropout=s.attention_dropout, name=f"block_{i}", **common)
                       for i in range(s.num_layers)]
        self.pooler = keras.layers.Dense(h, activation="tanh", name="pooler", **common)

    def build(self, input_shape=None):
        s = self.spec
        h, p, m, f = s.hidden_size, s.visual_prompt_size, s.max_img_size, s.num_frames
        self.tower.build_from_dummy()
        self.grid_conv.build((None, None, None, self.grid_channels))
        for layer in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings,
                      self.visual_position_embeddings, self.row_embeddings, self.col_embeddings,
                      self.visual_token_type):
            layer.build((None,))
        self.text_norm.build((None, None, h))
        self.visual_norm.build((None, None, h))
        for block in self.blocks:
            block.build((None, None, h))
        self.pooler.build((None, h))
        self.text_prompt = self.add_weight(shape=(1, NUM_TEXT_PROMPTS, h), name="text_prompt",
                                           initializer=keras.initializers.RandomNormal(stddev=1.0))
        init = keras.initializers.RandomNormal(stddev=1.0)
        self.pad_up = self.add_weight(shape=(1, f, p, m, 3), name="pad_up", initializer=init)
        self.pad_down = self.add_weight(shape=(1, f, p, m, 3), name="pad_down", initializer=init)
        self.pad_left = self.add_weight(shape=(1, f, m - 2 * p, p, 3), name="pad_left", initializer=init)
        self.pad_right = self.add_weight(shape=(1, f, m - 2 * p, p, 3), name="pad_right", initializer=init)
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def prompt(self, pixels):
        s = self.spec
        if s.visual_prompter_apply == "remove":
            return pixels
        p, m = s.visual_prompt_size, s.max_img_size
        base = ops.zeros((1, s.num_frames, m - 2 * p, m - 2 * p, 3), self.pad_left.dtype)
        mid = ops.concatenate([self.pad_left, base, self.pad_right], axis=3)
        pad = ops.concatenate([self.pad_up, mid, self.pad_down], axis=2)
        return pixels + ops.cast(pad, pixels.dtype)

    def visual_grid(self, pixels, training=False):
        """(batch, frames, H, W, 3) -> (batch, frames, h, w, hidden)."""
        s = self.spec
        b = ops.shape(pixels)[0]
        x = ops.reshape(self.prompt(pixels), (-1, s.max_img_size, s.max_img_size, 3))
        x = self.tower.stage_outputs({"pixel_values": x}, training=training)[self.stage - 1]
        x = self.grid_conv(x)
        x = ops.relu(ops.max_pool(x, 2, strides=2, padding="valid"))
        return ops.reshape(x, (b, s.num_frames) + tuple(x.shape[1:]))

    def visual_tokens(self, grid):
        s = self.spec
        grid = ops.mean(grid, axis=1)
        gh, gw = grid.shape[1], grid.shape[2]
        if gh > s.max_grid_row_position_embeddings or gw > s.max_grid_col_position_embeddings:
            raise InputError(f"TVP: a {gh}x{gw} grid exceeds max_grid_row/col_position_embeddings "
                             f"({s.max_grid_row_position_embeddings}, {s.max_grid_col_position_embeddings})")
        rows = self.row_embeddings(ops.arange(gh))[:, None, :]
        cols = self.col_embeddings(ops.arange(gw))[None, :, :]
        grid = grid + ops.cast(rows + cols, grid.dtype)
        tokens = ops.reshape(grid, (ops.shape(grid)[0], gh * gw, s.hidden_size))
        tokens = tokens + ops.cast(self.visual_token_type.embeddings[0], tokens.dtype)
        return self.visual_norm(tokens)

    def text_tokens(self, ids):
        n = ids.shape[1]
        x = self.word_embeddings(ids) + self.position_embeddings(ops.arange(n))[None]
        x = x + self.token_type_embeddings.embeddings[0]
        return self.text_norm(x)

    def call(self, inputs, training=False):
        s = self.spec
        ids = ops.cast(inputs["input_ids"], "int32")
        pixels = inputs["pixel_values"]
        if tuple(pixels.shape[1:]) != (s.num_frames, s.max_img_size, s.max_img_size, 3):
            raise InputError(f"TVP: pixel_values must be (batch, {s.num_frames}, {s.max_img_size}, "
                             f"{s.max_img_size}, 3) (channels_last), got {tuple(pixels.shape)}")
        text = self.text_tokens(ids)
        visual = self.visual_tokens(self.visual_grid(pixels, training=training))
        b = ops.shape(ids)[0]
        prompt = ops.broadcast_to(ops.cast(self.text_prompt, text.dtype), (b, NUM_TEXT_PROMPTS, s.hidden_size))
        x = ops.concatenate([prompt, text, visual], axis=1)
        mask = inputs.get("attention_mask")
        bias = None
        if mask is not None:
            mask = ops.cast(mask, "int32")
            mask = ops.concatenate([ops.ones((b, NUM_TEXT_PROMPTS), "int32"), mask,
                                    ops.ones((b, visual.shape[1]), "int32")], axis=1)
            bias = padding_bias(mask, x.dtype)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return x

    def pooled(self, hidden):
        return self.pooler(hidden[:, 0])

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        r = mount(self.tower.weight_rules(), "vision_model.backbone.")
        r = [replace(x, base=True) for x in r]
        r += conv_rules("vision_model.grid_encoder_conv", self.grid_conv)
        for name, layer in (("embeddings.word_embeddings", self.word_embeddings),
                            ("embeddings.position_embeddings", self.position_embeddings),
                            ("embeddings.token_type_embeddings", self.token_type_embeddings),
                            ("visual_embeddings.position_embeddings", self.visual_position_embeddings),
                            ("visual_embeddings.row_position_embeddings", self.row_embeddings),
                            ("visual_embeddings.col_position_embeddings", self.col_embeddings),
                            ("visual_embeddings.token_type_embeddings", self.visual_token_type)):
            r.append(Rule(name + ".weight", layer.embeddings))
        r += norm_rules("embeddings.layer_norm", self.text_norm)
        r += norm_rules("visual_embeddings.layer_norm", self.visual_norm)
        for i, block in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            a = block.attention
            for name, dense in (("attention.query", a.query), ("attention.key", a.key), ("attention.value", a.value),
                                ("attention.dense", a.output_dense), ("intermediate.dense", block.intermediate),
                                ("output.dense", block.output_dense)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "attention.layer_norm", block.attention_norm)
            r += norm_rules(p + "output.layer_norm", block.output_norm)
        r += dense_rules("pooler.dense", self.pooler)
        r.append(Rule("text_prompt", self.text_prompt))
        for name in ("pad_up", "pad_down", "pad_left", "pad_right"):
            r.append(Rule("visual_prompter." + name, getattr(self, name), Transpose(PAD_AXES)))
        return r


@_ser
class VideoGrounder(Task):
    """Temporal video grounding: ``{input_ids, attention_mask, pixel_values}`` -> logits
    (batch, 2), the (start, end) of the span the text describes as fractions of the video's
    duration (sigmoid outputs, Transformers' ``TvpForVideoGrounding`` logits)."""

    task_name = "VideoGrounder"
    hf_head_patterns = ("video_grounding_head.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        h = backbone.spec.hidden_size
        common = dict(dtype=backbone.dtype_policy)
        self.layer_0 = keras.layers.Dense(2 * h, activation="relu", name="layer_0", **common)
        self.layer_1 = keras.layers.Dense(2, activation="sigmoid", name="layer_1", **common)

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)
        return self.layer_1(self.layer_0(self.backbone.pooled(hidden)))

    def head_rules(self):
        return (dense_rules("video_grounding_head.layer_0", self.layer_0, base=False)
                + dense_rules("video_grounding_head.layer_1", self.layer_1, base=False))


@_ser
@register_task(TvpBackbone, "VideoGrounder", ("TvpForVideoGrounding",))
class TvpVideoGrounder(VideoGrounder):
    """TVP's grounding head: Linear(2 * hidden) -> ReLU -> Linear(2) -> sigmoid on the pooler."""


__all__ = ["TvpBackbone", "VideoGrounder", "TvpVideoGrounder", "TvpImageProcessor"]
from keras_models.models.tvp.processor import TvpImageProcessor  # noqa: E402
