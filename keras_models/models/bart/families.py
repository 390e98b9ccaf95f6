"""Typed specs of the BART-like families: one spec per HF ``model_type``.

Every difference between the families is one of BartBackbone's named fields; a family's spec
subclasses :class:`BartSpec` and overrides the Transformers defaults of its config class and its
constants (position scheme, pre-norm...), which are not stored in config.json. ``FAMILIES`` maps
each ``model_type`` that BartBackbone reads to its spec; ``BartSpec.from_hf`` picks the family's
spec from the config's ``model_type``.
"""

from dataclasses import dataclass
from typing import ClassVar

from keras_models.errors import ConfigError
from keras_models.models.encoder_decoder.spec import keep_explicit_nulls
from keras_models.spec import Spec, const, dim, hf


@dataclass(frozen=True, kw_only=True)
class BartSpec(Spec):
    architecture: ClassVar[str] = "BartModel"

    vocab_size: int = dim("vocab_size")
    hidden_size: int = dim("d_model")
    num_encoder_layers: int = dim("encoder_layers")
    num_decoder_layers: int = dim("decoder_layers")
    encoder_heads: int = dim("encoder_attention_heads")
    decoder_heads: int = dim("decoder_attention_heads")
    encoder_intermediate_size: int = dim("encoder_ffn_dim")
    decoder_intermediate_size: int = dim("decoder_ffn_dim")
    max_position_embeddings: int = dim("max_position_embeddings")
    hidden_act: str = hf("activation_function", "gelu")
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.0)
    activation_dropout: float = hf("activation_dropout", 0.0)
    scale_embedding: bool = hf("scale_embedding", False, doc="multiply token embeddings by sqrt(d_model)")
    pad_token_id: int | None = hf("pad_token_id", 1)
    bos_token_id: int | None = hf("bos_token_id", 0)
    eos_token_id: int | None = hf("eos_token_id", 2)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 2)
    forced_bos_token_id: int | None = hf("forced_bos_token_id", None)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", 2)
    initializer_range: float = hf("init_std", 0.02)
    hf_model_type: str = const("bart", doc="the config.json model_type written back")
    position_embedding: str = const("learned", doc="'learned', 'sinusoidal' (Marian) or 'sinusoidal_fairseq'")
    position_offset: int = const(2, doc="rows before position 0 (BART's 2)")
    padding_aware_positions: bool = const(False, doc="positions count non-pad tokens (M2M100)")
    embedding_norm: bool = const(True, doc="layernorm_embedding")
    decoder_norm_before_positions: bool = const(False, doc="BlenderbotSmall's decoder embedding norm")
    scale_decoder_embedding: bool | None = const(None, doc="None: as scale_embedding")
    decoder_max_position_embeddings: int | None = const(None, doc="None: max_position_embeddings")
    norm_first: bool = const(False, doc="pre-norm blocks")
    final_norm: bool = const(False, doc="encoder.layer_norm / decoder.layer_norm")

    @classmethod
    def from_hf(cls, config, source="config.json"):
        if cls is BartSpec and isinstance(config, dict):  # the family's spec, by model_type
            model_type = config.get("model_type", "bart")
            if model_type not in FAMILIES:
                raise ConfigError(f"{source}: model_type {model_type!r} is not a BART-like family")
            cls = FAMILIES[model_type]
        return super(BartSpec, cls).from_hf(config, source)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        dec_vocab = config.get("decoder_vocab_size")
        if dec_vocab not in (None, config.get("vocab_size")) or config.get("share_encoder_decoder_embeddings") is False:
            raise ConfigError(f"{source}: separate decoder embeddings (decoder_vocab_size / "
                              "share_encoder_decoder_embeddings=false) are not supported yet")
        return keep_explicit_nulls(cls, config, values)

    def adjust_to_hf(self, out):
        out["is_encoder_decoder"] = True
        return out


@dataclass(frozen=True, kw_only=True)
class MBartSpec(BartSpec):
    architecture: ClassVar[str] = "MBartModel"
    decoder_start_token_id: int | None = hf("decoder_start_token_id", None)
    hf_model_type: str = const("mbart")
    norm_first: bool = const(True)
    final_norm: bool = const(True)


@dataclass(frozen=True, kw_only=True)
class PLBartSpec(BartSpec):
    architecture: ClassVar[str] = "PLBartModel"
    attention_dropout: float = hf("attention_dropout", 0.1)
    scale_embedding: bool = hf("scale_embedding", True)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", None)
    hf_model_type: str = const("plbart")


@dataclass(frozen=True, kw_only=True)
class MvpSpec(BartSpec):
    architecture: ClassVar[str] = "MvpModel"
    unsupported: ClassVar[dict] = {"use_prompt": (False, None)}  # prompt tables
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    hf_model_type: str = const("mvp")


@dataclass(frozen=True, kw_only=True)
class MarianSpec(BartSpec):
    architecture: ClassVar[str] = "MarianModel"
    pad_token_id: int | None = hf("pad_token_id", 58100)
    bos_token_id: int | None = hf("bos_token_id", None)
    eos_token_id: int | None = hf("eos_token_id", 0)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 58100)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", 0)
    hf_model_type: str = const("marian")
    position_embedding: str = const("sinusoidal")
    position_offset: int = const(0)
    embedding_norm: bool = const(False)


@dataclass(frozen=True, kw_only=True)
class PegasusSpec(BartSpec):
    architecture: ClassVar[str] = "PegasusModel"
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", None)
    eos_token_id: int | None = hf("eos_token_id", 1)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 0)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", 1)
    hf_model_type: str = const("pegasus")
    position_embedding: str = const("sinusoidal")
    position_offset: int = const(0)
    embedding_norm: bool = const(False)
    norm_first: bool = const(True)
    final_norm: bool = const(True)


@dataclass(frozen=True, kw_only=True)
class BlenderbotSpec(BartSpec):
    architecture: ClassVar[str] = "BlenderbotModel"
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", 1)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 1)
    hf_model_type: str = const("blenderbot")
    position_offset: int = const(0)
    embedding_norm: bool = const(False)
    norm_first: bool = const(True)
    final_norm: bool = const(True)


@dataclass(frozen=True, kw_only=True)
class BlenderbotSmallSpec(BartSpec):
    architecture: ClassVar[str] = "BlenderbotSmallModel"
    pad_token_id: int | None = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", 1)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 1)
    hf_model_type: str = const("blenderbot-small")
    position_offset: int = const(0)
    decoder_norm_before_positions: bool = const(True)
    scale_decoder_embedding: bool | None = const(False)


@dataclass(frozen=True, kw_only=True)
class M2M100Spec(BartSpec):
    architecture: ClassVar[str] = "M2M100Model"
    hidden_act: str = hf("activation_function", "relu")
    attention_dropout: float = hf("attention_dropout", 0.1)
    scale_embedding: bool = hf("scale_embedding", True)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    hf_model_type: str = const("m2m_100")
    position_embedding: str = const("sinusoidal_fairseq")
    padding_aware_positions: bool = const(True)
    embedding_norm: bool = const(False)
    norm_first: bool = const(True)
    final_norm: bool = const(True)


# model_type -> spec of every family that BartBackbone itself reads
FAMILIES = {spec.__dataclass_fields__["hf_model_type"].default: spec for spec in (
    BartSpec, MBartSpec, PLBartSpec, MvpSpec, MarianSpec, PegasusSpec, BlenderbotSpec,
    BlenderbotSmallSpec, M2M100Spec)}

__all__ = ["BartSpec", "MBartSpec", "PLBartSpec", "MvpSpec", "MarianSpec", "PegasusSpec",
           "BlenderbotSpec", "BlenderbotSmallSpec", "M2M100Spec", "FAMILIES"]
