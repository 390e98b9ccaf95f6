"""SEW-D: SEW (squeeze, strided position conv, upsample; see sew.py) whose transformer on the
squeezed frames is a DeBERTa-v2 encoder: disentangled attention (c2p / p2c over shared,
optionally log-bucketed and LayerNorm-ed relative embeddings, ``share_att_key``), post-norm
BERT-style blocks, no input LayerNorm. The blocks are the library's DeBERTa-v2 ones
(:class:`~keras_models.layers.encoder_block.EncoderBlock` with disentangled attention)."""

from dataclasses import dataclass

import keras

from keras_models.layers.disentangled_attention import relative_positions
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.encoder.deberta import _pos_att_types
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.wav2vec2.sew import SEWBackbone, SEWSpec
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf
from keras_models.tasks.audio import AudioClassifier, SpeechRecognizer


@dataclass(frozen=True, kw_only=True)
class SEWDSpec(SEWSpec):
    hidden_act: str = hf("hidden_act", "gelu_python")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-7, doc="the DeBERTa encoder's LayerNorms")
    feature_layer_norm_eps: float = hf("feature_layer_norm_eps", 1e-5, doc="the LayerNorm after the conv encoder")
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    max_relative_positions: int = hf("max_relative_positions", -1, read=lambda v: v or -1)
    position_buckets: int = hf("position_buckets", 256, read=lambda v: v or -1)
    share_att_key: bool = hf("share_att_key", True, read=bool)
    relative_attention: bool = hf("relative_attention", True, read=bool)
    pos_att_type: tuple = hf("pos_att_type", ("p2c", "c2p"), read=_pos_att_types)
    norm_rel_ebd: bool = hf("norm_rel_ebd", True, read=lambda v: "layer_norm" in str(v).lower(),
                            write=lambda v: "layer_norm" if v else "none")
    model_type: str = const("sew-d")

    unsupported = {**SEWSpec.unsupported, "conv_kernel_size": (0, None)}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("sew-d")
class SEWDBackbone(SEWBackbone):
    spec_cls = SEWDSpec
    verified_backends = ("jax", "torch", "tensorflow")
    base_model_prefix = "sew_d"
    hf_architecture = "SEWDModel"

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        self.projection_norm.epsilon = s.feature_layer_norm_eps
        del self.encoder_norm
        self.encoder_norm = None  # DeBERTa's encoder has no input LayerNorm
        self.relative_span = s.max_relative_positions if s.max_relative_positions > 0 else s.max_position_embeddings
        self.attention_span = s.position_buckets if s.position_buckets > 0 else self.relative_span
        common = dict(dtype=self.dtype_policy)
        self.rel_embeddings = keras.layers.Embedding(2 * self.attention_span, s.hidden_size, name="rel_embeddings",
                                                     **common) if s.relative_attention else None
        self.rel_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="rel_norm", **common) if (
            s.relative_attention and s.norm_rel_ebd) else None

    def make_block(self, i, init):
        s = self.spec
        span = s.position_buckets if s.position_buckets > 0 else (
            s.max_relative_positions if s.max_relative_positions > 0 else s.max_position_embeddings)
        return EncoderBlock(s.hidden_size, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                            layer_norm_eps=s.layer_norm_eps, dropout=s.activation_dropout,
                            attention_dropout=s.attention_dropout, kernel_initializer=init, name=f"block_{i}",
                            dtype=self.dtype_policy, attention_type="disentangled",
                            attention_options=dict(pos_att_type=s.pos_att_type, share_att_key=s.share_att_key,
                                                   attention_span=span))

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.rel_embeddings is not None:
            self.rel_embeddings.build((None,))
        if self.rel_norm is not None:
            self.rel_norm.build((None, self.spec.hidden_size))

    def squeezed_encoder(self, x, bias, training):
        relative = None
        if self.rel_embeddings is not None:
            n = keras.ops.shape(x)[1]
            table = self.rel_embeddings.embeddings
            if self.rel_norm is not None:
                table = self.rel_norm(table)
            relative = (relative_positions(n, n, self.spec.position_buckets, self.relative_span), table)
        for block in self.blocks:
            x = block(x, bias, training=training, relative=relative)
        return x

    def encoder_rules(self):
        r = []
        for i, b in enumerate(self.blocks):
            p = f"encoder.encoder.layer.{i}."
            a = b.attention
            for name, dense in (("attention.self.query_proj", a.query), ("attention.self.key_proj", a.key),
                                ("attention.self.value_proj", a.value), ("attention.output.dense", a.output_dense),
                                ("intermediate.dense", b.intermediate), ("output.dense", b.output_dense),
                                ("attention.self.pos_key_proj", a.pos_key),
                                ("attention.self.pos_query_proj", a.pos_query)):
                if dense is not None:
                    r += dense_rules(p + name, dense)
            r += norm_rules(p + "attention.output.LayerNorm", b.attention_norm)
            r += norm_rules(p + "output.LayerNorm", b.output_norm)
        if self.rel_embeddings is not None:
            r.append(Rule("encoder.encoder.rel_embeddings.weight", self.rel_embeddings.embeddings))
        if self.rel_norm is not None:
            r += norm_rules("encoder.encoder.LayerNorm", self.rel_norm)
        return r


_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(SEWDBackbone, "SpeechRecognizer", ("SEWDForCTC",))
class SEWDSpeechRecognizer(SpeechRecognizer):
    pass


@_ser
@register_task(SEWDBackbone, "AudioClassifier", ("SEWDForSequenceClassification",))
class SEWDAudioClassifier(AudioClassifier):
    pass


__all__ = ["SEWDSpec", "SEWDBackbone", "SEWDSpeechRecognizer", "SEWDAudioClassifier"]
