"""DETR (model_type ``detr``) and Table Transformer (``table-transformer``): a ResNet
(``backbone_config``, our :class:`~keras_models.models.resnet.ResNetBackbone`, its BatchNorms
always in inference mode as Transformers freezes them), a 1x1 input projection of the last
``out_features`` stage, 2-D position embeddings of the (padded) image's mask, a transformer
encoder over the feature map's tokens and a decoder over ``num_queries`` learned object queries.

* ``position_embedding_type``: ``"sine"`` (normalised running sums of ``pixel_mask``) or
  ``"learned"`` (50 x 50 row / column tables).
* ``auxiliary_loss``: Transformers then LayerNorms every decoder layer's output before the next
  layer reads it (and the last twice), so it changes the outputs at inference too; it is honoured.
* Table Transformer: pre-norm layers and a LayerNorm after the encoder (``pre_norm``,
  ``encoder_final_norm``), position tables under ``backbone.position_embedding``.
* ``use_timm_backbone=true`` checkpoints (a timm ResNet, as facebook/detr-resnet-50's) are built
  as the equal Transformers ResNet under timm's tensor names (timm_resnet.py); ``dilation``
  (a dilated timm last stage) raises ConfigError.

Calling the backbone on ``{"pixel_values", "pixel_mask"?}`` returns ``{"last_hidden_state"
(batch, queries, d_model), "encoder_last_hidden_state" (batch, h * w, d_model)}``.
"""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import conv_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.detr.timm_resnet import (timm_backbone_config, timm_backbone_of, timm_resnet_config,
                                                  timm_tensor_name)
from keras_models.models.detr.layers import (DetrDecoderLayer, DetrEncoderLayer, LearnedPositions, downsample_mask,
                                             sine_positions)
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, build_tower, const, dim, hf, tower
from keras_models.tasks.object_detector import ObjectDetector

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")
CONV_PREFIX = "backbone.conv_encoder.model."


def out_stage(bb, source="backbone_config"):
    """Index (0-based, into the ResNet's stages) of the stage that feeds the transformer: the last
    of ``out_features`` / ``out_indices`` (stage names ``stem``, ``stage1``...), else the last."""
    n = len(bb.get("depths") or (3, 4, 6, 3))
    names = ["stem"] + [f"stage{i + 1}" for i in range(n)]
    if bb.get("out_features"):
        bad = [f for f in bb["out_features"] if f not in names]
        if bad:
            raise ConfigError(f"{source}: out_features {bad} are not among the stages {names}")
        last = max(names.index(f) for f in bb["out_features"])
    elif bb.get("out_indices"):
        last = max(int(i) % (n + 1) for i in bb["out_indices"])
    else:
        last = n
    if last == 0:
        raise ConfigError(f"{source}: the stem cannot feed the transformer (out_features / out_indices name a stage)")
    return last - 1


@dataclass(frozen=True, kw_only=True)
class DetrSpec(Spec):
    ignored = ("encoder_layerdrop", "decoder_layerdrop", "init_xavier_std", "class_cost", "bbox_cost", "giou_cost",
               "mask_loss_coefficient", "dice_loss_coefficient", "bbox_loss_coefficient", "giou_loss_coefficient",
               "eos_coefficient", "use_pretrained_backbone", "backbone_kwargs", "backbone", "is_encoder_decoder")

    backbone_config: dict = tower("backbone_config", "resnet", doc="a Transformers ResNet config (model_type resnet)")
    num_channels: int = dim("num_channels", 3)
    num_queries: int = dim("num_queries", 100)
    d_model: int = dim("d_model", 256)
    encoder_layers: int = hf("encoder_layers", 6)
    decoder_layers: int = dim("decoder_layers", 6)
    encoder_attention_heads: int = dim("encoder_attention_heads", 8)
    decoder_attention_heads: int = dim("decoder_attention_heads", 8)
    encoder_ffn_dim: int = dim("encoder_ffn_dim", 2048)
    decoder_ffn_dim: int = dim("decoder_ffn_dim", 2048)
    activation_function: str = hf("activation_function", "relu")
    position_embedding_type: str = hf("position_embedding_type", "sine", doc="'sine' or 'learned'")
    auxiliary_loss: bool = hf("auxiliary_loss", False, doc="LayerNorm after every decoder layer (changes outputs)")
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.0)
    activation_dropout: float = hf("activation_dropout", 0.0)
    init_std: float = hf("init_std", 0.02)
    dilation: bool = hf("dilation", False, doc="timm backbones only (not implemented); kept for the round trip")
    timm_backbone: dict | None = const(None, doc="the timm ResNet the checkpoint names ({'backbone', "
                                            "'out_indices'}; built as backbone_config, timm/resnet.py)")
    pre_norm: bool = const(False, doc="pre-norm encoder / decoder layers (Table Transformer)")
    encoder_final_norm: bool = const(False, doc="a LayerNorm after the encoder (Table Transformer)")

    timm_backbones: ClassVar[bool] = True  # timm ResNet checkpoints are read (timm_resnet.py)
    backbone_types: ClassVar[tuple] = ("resnet",)  # backbone_config model_types that are built

    @classmethod
    def from_hf(cls, config, source="config.json"):
        timm = timm_backbone_of(config, source) if isinstance(config, dict) and cls.timm_backbones else None
        if timm is not None:
            resnet = timm_resnet_config(timm, source)
            spec = super().from_hf({**config, "backbone_config": resnet}, source)
            return dataclasses.replace(spec, timm_backbone={"backbone": timm["backbone"],
                                                            "out_indices": list(timm["out_indices"])})
        if isinstance(config, dict):
            bb = config.get("backbone_config")
            if bb is None:
                if config.get("use_timm_backbone", True):
                    raise ConfigError(
                        f"{source}: use_timm_backbone=true (timm backbone {config.get('backbone') or 'resnet50'!r}) is "
                        f"not supported by {cls.__name__}: only a Transformers ResNet backbone_config "
                        "(use_timm_backbone=false) is implemented")
                # Transformers' default backbone: a ResNet-50 read at its 4th stage
                config = {**config, "backbone_config": {"model_type": "resnet", "out_features": ["stage4"]}}
            elif isinstance(bb, dict) and bb.get("model_type", "resnet") not in cls.backbone_types:
                raise ConfigError(f"{source}: backbone_config model_type={bb.get('model_type')!r} is not supported by "
                                  f"{cls.__name__} (only {', '.join(map(repr, cls.backbone_types))}; timm backbones "
                                  "are not implemented)")
        return super().from_hf(config, source)

    def validate(self, source="config.json"):
        if self.position_embedding_type not in ("sine", "learned"):
            raise ConfigError(f"{source}: position_embedding_type={self.position_embedding_type!r} (expected 'sine' "
                              "or 'learned')")
        if self.d_model % 2 or self.d_model % self.encoder_attention_heads or self.d_model % self.decoder_attention_heads:
            raise ConfigError(f"{source}: d_model={self.d_model} must be even and divisible by encoder_attention_heads "
                              "and decoder_attention_heads")
        if isinstance(self.backbone_config, dict):
            out_stage(self.backbone_config, f"{source} [backbone_config]")

    def adjust_to_hf(self, out):
        if self.timm_backbone is not None:  # as Transformers 5 writes a timm backbone
            out["backbone_config"] = timm_backbone_config(self.timm_backbone["backbone"],
                                                          self.timm_backbone["out_indices"], self.num_channels)
            return out
        out["use_timm_backbone"] = False
        return out

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 64, 64, self.num_channels), "float32")}


@_ser
@register_backbone("detr")
class DetrBackbone(SpecBackbone):
    spec_cls = DetrSpec
    base_model_prefix = "model"
    hf_architecture = "DetrModel"
    verified_backends = _ALL  # tests/vision/test_detection.py
    hf_ignore = ("*num_batches_tracked",)
    position_names = ("position_embedding", "backbone.position_embedding")  # (written, also read)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, common = self.spec, dict(dtype=self.dtype_policy)
        self.hidden_size = s.d_model
        self.resnet = build_tower(s.backbone_config, "conv_encoder", self.dtype_policy)
        self.out_stage = out_stage(s.backbone_config)
        self.input_projection = keras.layers.Conv2D(s.d_model, 1, name="input_projection", **common)
        self.learned_positions = (LearnedPositions(s.d_model // 2, name="position_embedding", **common)
                                  if s.position_embedding_type == "learned" else None)
        layer = dict(activation=s.activation_function, pre_norm=s.pre_norm, dropout=s.dropout,
                     attention_dropout=s.attention_dropout, activation_dropout=s.activation_dropout, **common)
        self.encoder_layers = [DetrEncoderLayer(s.d_model, s.encoder_attention_heads, s.encoder_ffn_dim,
                                                name=f"encoder_layer_{i}", **layer) for i in range(s.encoder_layers)]
        self.decoder_layers = [self.make_decoder_layer(i, name=f"decoder_layer_{i}", **layer)
                               for i in range(s.decoder_layers)]
        self.encoder_norm = (keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm", **common)
                             if s.encoder_final_norm else None)
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm", **common)

    def make_decoder_layer(self, index, **kwargs):
        s = self.spec
        return DetrDecoderLayer(s.d_model, s.decoder_attention_heads, s.decoder_ffn_dim, **kwargs)

    def build(self, input_shape=None):
        s, d = self.spec, self.spec.d_model
        self.resnet.build_from_dummy()  # every stage, also those after the one read (they are in checkpoints)
        self.input_projection.build((None, None, None, self.resnet.hidden_sizes[self.out_stage]))
        self.query_position_embeddings = self.add_weight(
            name="query_position_embeddings", shape=(s.num_queries, d),
            initializer=keras.initializers.RandomNormal(stddev=1.0))
        if self.learned_positions is not None:
            self.learned_positions.build()
        for layer in self.encoder_layers + self.decoder_layers:
            layer.build((None, None, d))
        for norm in (self.encoder_norm, self.decoder_norm):
            if norm is not None:
                norm.build((None, None, d))
        self.build_extra()
        self.built = True

    def build_extra(self):
        """Family additions built after the shared parts (Conditional DETR's decoder heads)."""

    # --- forward ------------------------------------------------------------------------------
    def conv_features(self, pixels):
        """The ResNet's map at ``out_stage`` (batch, h, w, C); BatchNorm frozen (inference mode)."""
        x = self.resnet.stem_output(pixels, training=False)
        for layers in self.resnet.stages[:self.out_stage + 1]:
            for layer in layers:
                x = layer(x, training=False)
        return x

    def image_tokens(self, inputs):
        """(tokens (b, h*w, d), positions (b, h*w, d), key bias (b, 1, 1, h*w))."""
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        mask = inputs.get("pixel_mask") if isinstance(inputs, dict) else None
        feats = self.conv_features(pixels)
        h, w = feats.shape[1], feats.shape[2]
        h = ops.shape(feats)[1] if h is None else h
        w = ops.shape(feats)[2] if w is None else w
        small = ops.ones_like(feats[..., 0], dtype="float32") if mask is None else downsample_mask(mask, h, w)
        d = self.spec.d_model
        x = self.input_projection(feats)
        if self.learned_positions is not None:
            pos = ops.zeros_like(x) + ops.cast(self.learned_positions.grid(h, w), x.dtype)
        else:
            pos = sine_positions(small, d // 2, x.dtype)
        b = ops.shape(x)[0]
        flat = (b, -1, d)
        return (ops.reshape(x, flat), ops.reshape(pos, flat),
                padding_bias(ops.reshape(small, (b, -1)), x.dtype))

    def encode(self, x, pos, bias, training=False):
        for layer in self.encoder_layers:
            x = layer(x, pos, bias, training=training)
        return self.encoder_norm(x) if self.encoder_norm is not None else x

    def decode(self, memory, pos, bias, training=False):
        """(decoder last hidden state, extra outputs)."""
        query_pos = ops.zeros_like(memory[:, :1, :]) + ops.cast(self.query_position_embeddings, memory.dtype)[None]
        x = ops.zeros_like(query_pos)
        states = []
        for layer in self.decoder_layers:
            x = layer(x, query_pos, memory, pos, bias, training=training)
            if self.spec.auxiliary_loss:
                x = self.decoder_norm(x)
                states.append(x)
        # auxiliary_loss: every layer's (normalised) output, as Transformers' intermediate_hidden_states
        return self.decoder_norm(x), ({"intermediate_hidden_states": ops.stack(states)} if states else {})

    def call(self, inputs, training=False):
        x, pos, bias = self.image_tokens(inputs)
        memory = self.encode(x, pos, bias, training=training)
        hidden, extra = self.decode(memory, pos, bias, training=training)
        return {"last_hidden_state": hidden, "encoder_last_hidden_state": memory, **extra}

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        if self.spec.timm_backbone is not None:  # timm's tensor names (also read under Transformers 5's own)
            r = [dataclasses.replace(rule, hf=CONV_PREFIX + timm_tensor_name(rule.hf),
                                     aliases=("backbone.model." + timm_tensor_name(rule.hf),))
                 for rule in self.resnet.weight_rules()]
        else:
            r = [dataclasses.replace(rule, hf=CONV_PREFIX + rule.hf) for rule in self.resnet.weight_rules()]
        r += conv_rules("input_projection", self.input_projection)
        r.append(Rule("query_position_embeddings.weight", self.query_position_embeddings))
        if self.learned_positions is not None:
            main, alias = self.position_names
            for ours, name in ((self.learned_positions.rows, "row_embeddings"),
                               (self.learned_positions.cols, "column_embeddings")):
                r.append(Rule(f"{main}.{name}.weight", ours, aliases=(f"{alias}.{name}.weight",)))
        for i, layer in enumerate(self.encoder_layers):
            r += layer.rules(f"encoder.layers.{i}")
        if self.encoder_norm is not None:
            r += norm_rules("encoder.layernorm", self.encoder_norm)
        for i, layer in enumerate(self.decoder_layers):
            r += layer.rules(f"decoder.layers.{i}")
        return r + norm_rules("decoder.layernorm", self.decoder_norm) + self.extra_rules()

    def extra_rules(self):
        return []


@_ser
@register_task(DetrBackbone, "ObjectDetector", ("DetrForObjectDetection",))
class DetrObjectDetector(ObjectDetector):
    """Linear class head (classes + "no object") and a 3-layer box MLP on the decoder's states."""

    auxiliary_loss_supported = True


@dataclass(frozen=True, kw_only=True)
class TableTransformerSpec(DetrSpec):
    pre_norm: bool = const(True)
    encoder_final_norm: bool = const(True)


@_ser
@register_backbone("table-transformer")
class TableTransformerBackbone(DetrBackbone):
    spec_cls = TableTransformerSpec
    hf_architecture = "TableTransformerModel"
    position_names = ("backbone.position_embedding", "position_embedding")


@_ser
@register_task(TableTransformerBackbone, "ObjectDetector", ("TableTransformerForObjectDetection",))
class TableTransformerObjectDetector(ObjectDetector):
    """DETR's heads on the Table Transformer's decoder."""

    auxiliary_loss_supported = True


__all__ = ["DetrSpec", "DetrBackbone", "DetrObjectDetector", "TableTransformerSpec", "TableTransformerBackbone",
           "TableTransformerObjectDetector", "out_stage"]
