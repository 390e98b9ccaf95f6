"""EncoderDecoder (model_type ``encoder-decoder``): any registered text encoder (BERT, RoBERTa,
XLM-RoBERTa, ...) as the encoder and a BERT-shaped decoder with cross-attention.

config.json holds ``encoder`` (resolved by its ``model_type`` to a registered backbone) and
``decoder``: a ``bert`` (BertLMHeadModel) or RoBERTa-shaped (``roberta``, ``xlm-roberta``,
``camembert``: *ForCausalLM) config with ``is_decoder`` and ``add_cross_attention``. The decoder
is a post-norm stack of (causal self-attention, cross-attention, feed-forward), each with
BERT's residual LayerNorm, over BERT's embeddings (word + token type 0 + absolute positions, or
RoBERTa's positions counted over non-pad tokens from ``pad_token_id + 1``). Encoder states are
projected by ``enc_to_dec_proj`` when the widths differ; the decoder's cross-attention masks the
encoder's padding (``attention_mask``).

Returns ``{"encoder_last_hidden_state", "last_hidden_state"}`` for ``{"input_ids",
"attention_mask", "decoder_input_ids", "decoder_attention_mask"}`` (the encoder state before
``enc_to_dec_proj``). Weight names are Transformers': ``encoder.`` + the encoder's own names,
``decoder.bert.`` / ``decoder.roberta.`` + the decoder stack's; the LM head (``decoder.cls.*`` /
``decoder.lm_head.*``) belongs to the Seq2SeqLM task.

Transformers 5 has no ``tie_encoder_decoder`` (shared encoder / decoder weights), so neither do we;
GPT-2 decoders (``add_cross_attention``) are refused with a ConfigError naming the model_type.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.models.vision_encoder_decoder.backbone import VisionEncoderDecoderBackbone
from keras_models.models.vision_encoder_decoder.decoder import CrossAttentionDecoder
from keras_models.models.backbone import SpecBackbone
from keras_models.presets.weight_map import Rule, mount
from keras_models.spec import Spec, build_tower, hf, tower

_ser = keras.saving.register_keras_serializable(package="keras_models")

# decoder model_type -> (base model attribute, head prefix, head activation: None = hidden_act)
DECODERS = {"bert": ("bert", "cls.predictions", None), "roberta": ("roberta", "lm_head", "gelu"),
            "xlm-roberta": ("roberta", "lm_head", "gelu"), "camembert": ("roberta", "lm_head", "gelu")}

BERT_DECODER_NAMES = {
    "self_attention": ("attention", ("self.query", "self.key", "self.value", "output.dense")),
    "self_attention_norm": "attention.output.LayerNorm",
    "cross_attention": ("crossattention", ("self.query", "self.key", "self.value", "output.dense")),
    "cross_attention_norm": "crossattention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}


def bert_decoder_kwargs(config, source="config.json [decoder]"):
    """BertDecoder kwargs of a decoder sub-config (raises ConfigError naming ``source``)."""
    model_type = config.get("model_type")
    if model_type not in DECODERS:
        raise ConfigError(f"{source}: decoder model_type {model_type!r} is not supported by EncoderDecoder "
                          f"(supported: {', '.join(sorted(DECODERS))})")
    for key in ("is_decoder", "add_cross_attention"):
        if config.get(key) is not True:
            raise ConfigError(f"{source}: {key} must be true for an EncoderDecoder decoder, got {config.get(key)!r}")
    if config.get("position_embedding_type", "absolute") not in ("absolute", None):
        raise ConfigError(f"{source}: position_embedding_type={config['position_embedding_type']!r} is not "
                          "supported (absolute only)")

    def get(key, default, kind=int):
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, kind) or (kind is int and value <= 0):
            raise ConfigError(f"{source}: {key} must be a positive {kind.__name__}, got {value!r}")
        return value

    roberta = DECODERS[model_type][0] == "roberta"
    pad = config.get("pad_token_id", 1 if roberta else 0)
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ConfigError(f"{source}: pad_token_id must be a non-negative int, got {pad!r}")
    positions = get("max_position_embeddings", 512)
    if roberta and positions <= pad + 1:
        raise ConfigError(f"{source}: max_position_embeddings={positions} leaves no positions after "
                          f"pad_token_id + 1 = {pad + 1}")
    hidden, heads = get("hidden_size", 768), get("num_attention_heads", 12)
    if hidden % heads:
        raise ConfigError(f"{source}: hidden_size={hidden} is not divisible by num_attention_heads={heads}")
    eps = config.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise ConfigError(f"{source}: layer_norm_eps must be > 0, got {eps!r}")
    act = config.get("hidden_act", "gelu")
    if not isinstance(act, str):
        raise ConfigError(f"{source}: hidden_act must be a string, got {act!r}")
    return dict(
        vocab_size=get("vocab_size", 30522), hidden_size=hidden, num_encoder_layers=0,
        num_decoder_layers=get("num_hidden_layers", 12), encoder_heads=1, decoder_heads=heads,
        encoder_intermediate_size=1, decoder_intermediate_size=get("intermediate_size", 3072),
        hidden_act=act, layer_norm_eps=float(eps), dropout=float(config.get("hidden_dropout_prob", 0.1) or 0.0),
        attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1) or 0.0),
        pad_token_id=pad, bos_token_id=config.get("bos_token_id"), eos_token_id=config.get("eos_token_id"),
        decoder_start_token_id=None, forced_bos_token_id=None, forced_eos_token_id=None,
        initializer_range=float(config.get("initializer_range", 0.02)),
        # RoBERTa's table holds pad_token_id + 1 rows before position 0 (BartBackbone adds them back)
        max_position_embeddings=positions - (pad + 1) if roberta else positions, position_offset=0,
        padding_aware_positions=roberta, embedding_norm=True, hf_model_type=model_type,
        type_vocab_size=get("type_vocab_size", 1 if roberta else 2),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
    )


@_ser
class BertDecoder(CrossAttentionDecoder):
    """BERT's decoder stack (BertLMHeadModel / RobertaForCausalLM without the head): embeddings
    with token type 0, post-norm (self-attention, cross-attention, feed-forward) blocks."""

    def __init__(self, *args, type_vocab_size=2, **kwargs):
        super().__init__(*args, **kwargs)
        self.type_vocab_size = type_vocab_size
        self.token_type_embedding = keras.layers.Embedding(
            type_vocab_size, self.hidden_size, embeddings_initializer=self.kernel_init,
            name="token_type_embedding", dtype=self.dtype_policy)
        self.token_type_embedding.build((None, None))

    def embed_decoder(self, decoder_input_ids, offset=0, training=False):
        x = self.token_embedding(decoder_input_ids)
        x = x + ops.cast(self.token_type_embedding.embeddings[0], x.dtype)
        x = x + self.decoder_position_embedding(self._positions(decoder_input_ids, offset))
        return self.embedding_dropout(self.decoder_embedding_norm(x), training=training)

    def decoder_rules(self):
        """Rules relative to the base model (``bert.`` / ``roberta.`` in a *ForCausalLM)."""
        r = [Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings),
             Rule("embeddings.position_embeddings.weight", self.decoder_position_embedding.embeddings),
             Rule("embeddings.token_type_embeddings.weight", self.token_type_embedding.embeddings)]
        r += norm_rules("embeddings.LayerNorm", self.decoder_embedding_norm)
        for i, blk in enumerate(self.decoder_blocks):
            r += block_rules(f"encoder.layer.{i}", blk, BERT_DECODER_NAMES)
        return r

    def get_config(self):
        config = super().get_config()
        config["type_vocab_size"] = self.type_vocab_size
        return config


def _decoder_config(value):
    if not isinstance(value, dict):
        raise ValueError("expected an object")
    bert_decoder_kwargs(value)  # a bad decoder config fails at load, naming its key
    return dict(value)


@dataclass(frozen=True, kw_only=True)
class EncoderDecoderSpec(Spec):
    encoder: dict = tower("encoder", "bert", doc="the encoder's config (any registered text encoder)")
    decoder: dict = hf("decoder", read=_decoder_config,
                       doc="the decoder's config (bert / roberta-like, is_decoder + add_cross_attention)")
    decoder_start_token_id: int | None = hf("decoder_start_token_id", None)
    pad_token_id: int | None = hf("pad_token_id", None)
    eos_token_id: int | None = hf("eos_token_id", None)

    def adjust_to_hf(self, out):
        out.update(is_encoder_decoder=True)
        return out

    def dummy_inputs(self):
        ones = np.ones((1, 2), "int32")
        return {"input_ids": ones, "attention_mask": ones, "decoder_input_ids": ones, "decoder_attention_mask": ones}


@_ser
@register_backbone("encoder-decoder")
class EncoderDecoderModelBackbone(VisionEncoderDecoderBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` (EncoderDecoderModel's encoder
    output before ``enc_to_dec_proj`` and the decoder's last hidden state)."""

    spec_cls = EncoderDecoderSpec
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ()
    hf_architecture = "EncoderDecoderModel"
    hf_ignore = ("*position_ids", "*token_type_ids")
    hf_known_unused = ("encoder.pooler.*",)

    def __init__(self, spec=None, **kwargs):
        SpecBackbone.__init__(self, spec, **kwargs)
        s = self.spec
        self.encoder = build_tower(s.encoder, "encoder", self.dtype_policy)
        width = getattr(self.encoder, "hidden_size", None)
        if not isinstance(width, int) or not hasattr(self.encoder, "token_embedding"):
            raise ConfigError(f"config.json [encoder]: model_type {s.encoder.get('model_type')!r} is not a text "
                              "encoder with a (batch, tokens, hidden) output")
        self.encoder_width = width
        decoder_kwargs = bert_decoder_kwargs(s.decoder)
        self.decoder = BertDecoder(name="decoder", dtype=self.dtype_policy, **decoder_kwargs)
        d = self.decoder
        self.decoder_base = DECODERS[s.decoder["model_type"]][0]
        self.enc_to_dec_proj = None
        if width != d.hidden_size:
            self.enc_to_dec_proj = keras.layers.Dense(d.hidden_size, name="enc_to_dec_proj", dtype=self.dtype_policy)
        for name in ("vocab_size", "hidden_size", "initializer_range", "decoder_heads", "decoder_head_dim",
                     "num_decoder_layers", "bos_token_id", "forced_bos_token_id", "forced_eos_token_id",
                     "max_position_embeddings", "hidden_act", "layer_norm_eps"):
            setattr(self, name, getattr(d, name))
        for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
            value = getattr(s, name)
            setattr(self, name, getattr(d, name) if value is None else value)

    # --- encoder --------------------------------------------------------------------------------
    def encode_text(self, inputs, training=False):
        """The encoder's last hidden state (batch, tokens, encoder width)."""
        if inputs.get("input_ids") is None:
            raise InputError("EncoderDecoder needs 'input_ids' (batch, tokens)")
        enc_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids")
                      if inputs.get(k) is not None}
        return self.encoder(enc_inputs, training=training)

    def encode(self, input_ids, attention_mask=None, training=False):
        inputs = {"input_ids": input_ids}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        return self.project(self.encode_text(inputs, training))

    def encode_inputs(self, inputs, training=False):
        """The states the decoder cross-attends to (after ``enc_to_dec_proj``)."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        return self.project(self.encode_text(inputs, training))

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "decoder_input_ids" not in inputs:
            raise InputError("EncoderDecoder takes a dict with 'input_ids' and 'decoder_input_ids'")
        enc = self.encode_text(inputs, training)
        dec = self.decode(inputs["decoder_input_ids"], self.project(enc), inputs.get("attention_mask"),
                          inputs.get("decoder_attention_mask"), training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    @property
    def hf_head_prefix(self):
        return "decoder." + DECODERS[self.spec.decoder["model_type"]][1]

    @property
    def head_activation(self):
        return DECODERS[self.spec.decoder["model_type"]][2] or self.decoder.hidden_act

    @property
    def hf_lm_head(self):
        return f"{self.hf_head_prefix}.decoder.weight"

    @classmethod
    def tied_head(cls, hf_config):
        return bool((hf_config.get("decoder") or {}).get("tie_word_embeddings", True))

    def weight_rules(self):
        r = mount(self.encoder.weight_rules(), "encoder.")
        r += mount(self.decoder.decoder_rules(), f"decoder.{self.decoder_base}.")
        if self.enc_to_dec_proj is not None:
            r += dense_rules("enc_to_dec_proj", self.enc_to_dec_proj, base=False)
        return r


__all__ = ["EncoderDecoderSpec", "EncoderDecoderModelBackbone", "BertDecoder", "bert_decoder_kwargs"]
