"""Config translation of the BART-like families: one table of named fields per HF model_type.

Every difference between the families is one of BartBackbone's named fields; this table says
which values each checkpoint type implies (they are not stored in config.json).
"""

from keras_models.errors import ConfigError
from keras_models.presets.config import require

_LEARNED_BART = dict(position_embedding="learned", position_offset=2, embedding_norm=True)
_PRE_NORM = dict(norm_first=True, final_norm=True)

FAMILIES = {
    "bart": dict(architecture="BartModel", **_LEARNED_BART),
    "mbart": dict(architecture="MBartModel", **_LEARNED_BART, **_PRE_NORM),
    "plbart": dict(architecture="PLBartModel", **_LEARNED_BART),
    "mvp": dict(architecture="MvpModel", **_LEARNED_BART),
    "marian": dict(architecture="MarianModel", position_embedding="sinusoidal", position_offset=0,
                   embedding_norm=False),
    "pegasus": dict(architecture="PegasusModel", position_embedding="sinusoidal", position_offset=0,
                    embedding_norm=False, **_PRE_NORM),
    "blenderbot": dict(architecture="BlenderbotModel", position_embedding="learned",
                       position_offset=0, embedding_norm=False, **_PRE_NORM),
    "blenderbot-small": dict(architecture="BlenderbotSmallModel", position_embedding="learned",
                             position_offset=0, embedding_norm=True,
                             decoder_norm_before_positions=True, scale_decoder_embedding=False),
    "m2m_100": dict(architecture="M2M100Model", position_embedding="sinusoidal_fairseq",
                    position_offset=2, padding_aware_positions=True, embedding_norm=False,
                    **_PRE_NORM),
}


def config_from_hf(hf, source="config.json"):
    model_type = hf.get("model_type", "bart")
    if model_type not in FAMILIES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not a BART-like family")
    if model_type == "mvp" and hf.get("use_prompt"):
        raise ConfigError(f"{source}: MVP with use_prompt=true (prompt tables) is not supported yet")
    dec_vocab = hf.get("decoder_vocab_size")
    if dec_vocab not in (None, hf.get("vocab_size")) or hf.get("share_encoder_decoder_embeddings") is False:
        raise ConfigError(f"{source}: separate decoder embeddings (decoder_vocab_size / "
                          "share_encoder_decoder_embeddings=false) are not supported yet")
    fields = {k: v for k, v in FAMILIES[model_type].items() if k != "architecture"}
    d_model = require(hf, "d_model")
    return dict(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=d_model,
        num_encoder_layers=require(hf, "encoder_layers"),
        num_decoder_layers=require(hf, "decoder_layers"),
        encoder_heads=require(hf, "encoder_attention_heads"),
        decoder_heads=require(hf, "decoder_attention_heads"),
        encoder_intermediate_size=require(hf, "encoder_ffn_dim"),
        decoder_intermediate_size=require(hf, "decoder_ffn_dim"),
        hidden_act=hf.get("activation_function", "gelu"),
        dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0),
        activation_dropout=hf.get("activation_dropout", 0.0),
        max_position_embeddings=require(hf, "max_position_embeddings"),
        scale_embedding=bool(hf.get("scale_embedding", False)),
        pad_token_id=hf.get("pad_token_id", 1),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        decoder_start_token_id=hf.get("decoder_start_token_id"),
        forced_bos_token_id=hf.get("forced_bos_token_id"),
        forced_eos_token_id=hf.get("forced_eos_token_id"),
        initializer_range=hf.get("init_std", 0.02),
        hf_model_type=model_type,
        **fields,
    )


def config_to_hf(b):
    return {
        "model_type": b.hf_model_type,
        "architectures": [b.hf_architecture],
        "vocab_size": b.vocab_size, "d_model": b.hidden_size,
        "encoder_layers": b.num_encoder_layers, "decoder_layers": b.num_decoder_layers,
        "encoder_attention_heads": b.encoder_heads, "decoder_attention_heads": b.decoder_heads,
        "encoder_ffn_dim": b.encoder_intermediate_size, "decoder_ffn_dim": b.decoder_intermediate_size,
        "activation_function": b.hidden_act, "dropout": b.dropout_rate,
        "attention_dropout": b.attention_dropout, "activation_dropout": b.activation_dropout,
        "max_position_embeddings": b.max_position_embeddings,
        "scale_embedding": b.scale_embedding, "pad_token_id": b.pad_token_id,
        "bos_token_id": b.bos_token_id, "eos_token_id": b.eos_token_id,
        "decoder_start_token_id": b.decoder_start_token_id,
        "forced_bos_token_id": b.forced_bos_token_id, "forced_eos_token_id": b.forced_eos_token_id,
        "init_std": b.initializer_range, "is_encoder_decoder": True,
    }
