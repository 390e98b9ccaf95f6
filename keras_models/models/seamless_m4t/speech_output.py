"""SeamlessM4T speech output: the text-to-unit (t2u) model and the unit HiFi-GAN vocoder.

- v1 (``SeamlessT2U``): an encoder-decoder over the text decoder's last hidden states. The
  encoder has no token table and no positions (pre-norm NLLB blocks + final LayerNorm); the
  decoder is an NLLB decoder of ``t2u_vocab_size`` units whose table is also the unit head
  (``t2u_model.lm_head``); units are generated greedily after the prompt
  ``[t2u_eos_token_id, t2u language code]``.
- v2 (``SeamlessT2Uv2``): non-autoregressive. The same encoder; the decoder repeats each text
  state over its characters, adds character embeddings and scaled positions, predicts a duration
  per character, repeats again, runs post-norm blocks (self-attention, two width-7 convs) and
  reads the units by argmax.
- ``SeamlessCodeHifiGan``: unit embedding, a duration predictor (units repeated by their
  rounded predicted durations), language and speaker embeddings, then SpeechT5's HiFi-GAN stack
  (the conv layers of :mod:`keras_models.models.speecht5.hifigan`).

Durations make the lengths data-dependent: these layers run eagerly (numpy between the
networks), like Transformers' generate.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.bucketed_position_bias import sinusoidal_table
from keras_models.layers.masks import padding_bias
from keras_models.layers.seq2seq_block import Seq2SeqBlock, norm_rules
from keras_models.models.encoder_decoder.rules import attention_rules, block_rules, dense_rules
from keras_models.models.speecht5.hifigan import HifiGanConv, hifi_gan
from keras_models.presets.weight_map import Rule

NAMES = {
    "self_attention": ("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention": ("cross_attention", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "cross_attention_norm": "cross_attention_layer_norm",
    "ffn_in": "ffn.fc1",
    "ffn_out": "ffn.fc2",
    "ffn_norm": "ffn_layer_norm",
}

# config.json keys of the speech output (v1; v2 adds V2_FIELDS)
T2U_FIELDS = ("t2u_vocab_size", "t2u_bos_token_id", "t2u_pad_token_id", "t2u_eos_token_id",
              "t2u_decoder_start_token_id", "t2u_max_new_tokens", "t2u_encoder_layers", "t2u_encoder_ffn_dim",
              "t2u_encoder_attention_heads", "t2u_decoder_layers", "t2u_decoder_ffn_dim",
              "t2u_decoder_attention_heads", "t2u_max_position_embeddings", "upsample_initial_channel",
              "upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes", "resblock_dilation_sizes",
              "leaky_relu_slope", "unit_hifi_gan_vocab_size", "unit_embed_dim", "lang_embed_dim", "spkr_embed_dim",
              "vocoder_num_langs", "vocoder_num_spkrs", "variance_predictor_kernel_size", "var_pred_dropout",
              "vocoder_offset")
V2_FIELDS = ("char_vocab_size", "t2u_variance_predictor_embed_dim", "t2u_variance_predictor_hidden_dim",
             "t2u_variance_predictor_kernel_size", "t2u_variance_pred_dropout")


def _ln(name, dt):
    return keras.layers.LayerNormalization(epsilon=1e-5, name=name, dtype=dt)


def _rows_repeat(x, durations):
    """Each row of ``x`` (b, t, c) with its time steps repeated ``durations`` (b, t) times,
    zero-padded to the longest row (Transformers' per-row repeat_interleave + pad_sequence)."""
    x = np.asarray(ops.convert_to_numpy(x))
    durations = np.asarray(durations).astype("int64")
    rows = [np.repeat(row, d, axis=0) for row, d in zip(x, durations)]
    longest = max(len(r) for r in rows)
    out = np.zeros((len(rows), longest) + x.shape[2:], x.dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _durations(log_durations):
    """Transformers' ``clamp(round(expm1(log_dur)), min=1)`` (round half to even, as torch)."""
    d = np.round(np.expm1(np.asarray(ops.convert_to_numpy(log_durations), "float64").astype("float32")))
    return np.maximum(d, 1).astype("int64")


class T2UEncoder(keras.layers.Layer):
    """The t2u encoder: pre-norm NLLB blocks over given embeddings (no table, no positions)."""

    def __init__(self, hidden_size, layers, heads, ffn, hidden_act, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.blocks = [Seq2SeqBlock(hidden_size, heads, ffn, hidden_act=hidden_act, norm_first=True, dropout=0.0,
                                    kernel_initializer=kernel_initializer or "glorot_uniform", name=f"block_{i}",
                                    dtype=self.dtype_policy) for i in range(layers)]
        self.final_norm = _ln("final_norm", self.dtype_policy)

    def build(self, input_shape=None):
        for blk in self.blocks:
            blk.build((None, None, self.hidden_size))
        self.final_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, x, attention_mask=None):
        bias = None if attention_mask is None else padding_bias(attention_mask, x.dtype)
        for blk in self.blocks:
            x = blk(x, bias)
        return self.final_norm(x)

    def rules(self, prefix):
        r = []
        for i, blk in enumerate(self.blocks):
            r += block_rules(f"{prefix}layers.{i}", blk, NAMES)
        return r + norm_rules(f"{prefix}layer_norm", self.final_norm)


class VariancePredictor(keras.layers.Layer):
    """conv (kernel k) - relu - LayerNorm - conv - relu - LayerNorm - Linear(1), padded positions
    zeroed before each conv when a mask is given (v2)."""

    def __init__(self, in_dim, hidden_dim, kernel_size, **kwargs):
        super().__init__(**kwargs)
        dt = self.dtype_policy
        self.in_dim, self.hidden_dim = in_dim, hidden_dim
        self.conv1 = HifiGanConv(in_dim, hidden_dim, kernel_size, name="conv1", dtype=dt)
        self.conv2 = HifiGanConv(hidden_dim, hidden_dim, kernel_size, name="conv2", dtype=dt)
        self.ln1, self.ln2 = _ln("ln1", dt), _ln("ln2", dt)
        self.proj = keras.layers.Dense(1, name="proj", dtype=dt)

    def build(self, input_shape=None):
        self.conv1.build(None)
        self.conv2.build(None)
        self.ln1.build((None, None, self.hidden_dim))
        self.ln2.build((None, None, self.hidden_dim))
        self.proj.build((None, self.hidden_dim))
        self.built = True

    def call(self, x, mask=None):
        keep = None if mask is None else ops.cast(mask, x.dtype)[..., None]
        if keep is not None:
            x = x * keep
        x = self.ln1(ops.relu(self.conv1(x)))
        if keep is not None:
            x = x * keep
        x = self.ln2(ops.relu(self.conv2(x)))
        return self.proj(x)[..., 0]

    def rules(self, prefix):
        return (self.conv1.rules(f"{prefix}conv1") + self.conv2.rules(f"{prefix}conv2")
                + norm_rules(f"{prefix}ln1", self.ln1) + norm_rules(f"{prefix}ln2", self.ln2)
                + dense_rules(f"{prefix}proj", self.proj))


class SeamlessCodeHifiGan(keras.layers.Layer):
    """The unit vocoder (``vocoder.*``): ``(unit_ids, speaker_ids, lang_ids)`` -> ``(waveform
    (batch, samples), lengths (batch,))`` as Transformers' SeamlessM4TCodeHifiGan."""

    def __init__(self, cfg, pad_token_id, **kwargs):
        super().__init__(**kwargs)
        self.cfg, self.pad_token_id = dict(cfg), pad_token_id
        dt = self.dtype_policy
        c = cfg
        if len(c["upsample_rates"]) != len(c["upsample_kernel_sizes"]) or any(
                k < r or (k - r) % 2 for k, r in zip(c["upsample_kernel_sizes"], c["upsample_rates"])):
            raise ConfigError("config.json: upsample_kernel_sizes must match upsample_rates in length, each >= its "
                              "rate and differing from it by an even number")
        if len(c["resblock_kernel_sizes"]) != len(c["resblock_dilation_sizes"]) or any(
                k % 2 == 0 for k in c["resblock_kernel_sizes"]):
            raise ConfigError("config.json: resblock_kernel_sizes must be odd and match resblock_dilation_sizes")
        if c["variance_predictor_kernel_size"] != 3:
            # Transformers pads the vocoder's second duration conv by 1: other kernels change the length
            raise ConfigError("config.json: variance_predictor_kernel_size must be 3 (the vocoder's duration "
                              f"predictor), got {c['variance_predictor_kernel_size']}")
        emb = dict(dtype=dt)
        self.unit_embedding = keras.layers.Embedding(c["unit_hifi_gan_vocab_size"], c["unit_embed_dim"],
                                                     name="unit_embedding", **emb)
        self.speaker_embedding = keras.layers.Embedding(c["vocoder_num_spkrs"], c["spkr_embed_dim"],
                                                        name="speaker_embedding", **emb)
        self.language_embedding = keras.layers.Embedding(c["vocoder_num_langs"], c["lang_embed_dim"],
                                                         name="language_embedding", **emb)
        self.dur_predictor = VariancePredictor(c["unit_embed_dim"], c["unit_embed_dim"], 3, name="dur_predictor",
                                               dtype=dt)
        ch = c["upsample_initial_channel"]
        model_in = c["unit_embed_dim"] + c["lang_embed_dim"] + c["spkr_embed_dim"]
        self.conv_pre = HifiGanConv(model_in, ch, 7, name="conv_pre", dtype=dt)
        self.upsampler, self.resblocks = [], []
        for i, (rate, k) in enumerate(zip(c["upsample_rates"], c["upsample_kernel_sizes"])):
            self.upsampler.append(HifiGanConv(ch // 2**i, ch // 2 ** (i + 1), k, stride=rate, transposed=True,
                                              name=f"upsampler_{i}", dtype=dt))
            width = ch // 2 ** (i + 1)
            for j, (rk, dil) in enumerate(zip(c["resblock_kernel_sizes"], c["resblock_dilation_sizes"])):
                self.resblocks.append((
                    [HifiGanConv(width, width, rk, dilation=d, name=f"res_{i}_{j}_a{n}", dtype=dt)
                     for n, d in enumerate(dil)],
                    [HifiGanConv(width, width, rk, name=f"res_{i}_{j}_b{n}", dtype=dt) for n in range(len(dil))]))
        self.conv_post = HifiGanConv(ch // 2 ** len(c["upsample_rates"]), 1, 7, name="conv_post", dtype=dt)

    def build(self, input_shape=None):
        for e in (self.unit_embedding, self.speaker_embedding, self.language_embedding):
            e.build((None, None))
        self.dur_predictor.build(None)
        for conv in [self.conv_pre, self.conv_post] + self.upsampler + [
                conv for pair in self.resblocks for group in pair for conv in group]:
            conv.build(None)
        self.built = True

    def hifi_gan(self, x):
        return hifi_gan(self, x, len(self.cfg["resblock_kernel_sizes"]), self.cfg["leaky_relu_slope"])

    def synthesize(self, unit_ids, speaker_ids, lang_ids):
        unit_ids = np.asarray(unit_ids).astype("int32")
        units = self.unit_embedding(unit_ids)
        durations = _durations(self.dur_predictor(units))
        hidden = ops.convert_to_tensor(_rows_repeat(units, durations))
        b, t = ops.shape(hidden)[0], ops.shape(hidden)[1]
        spk = self.speaker_embedding(np.asarray(speaker_ids, "int32").reshape(-1, 1))
        lang = self.language_embedding(np.asarray(lang_ids, "int32").reshape(-1, 1))
        spk = ops.broadcast_to(spk, (b, t, self.cfg["spkr_embed_dim"]))
        lang = ops.broadcast_to(lang, (b, t, self.cfg["lang_embed_dim"]))
        wave = self.hifi_gan(ops.concatenate([lang, hidden, spk], axis=-1))
        # Transformers' lengths: the durations summed up to (and including) index n_units (clamped)
        n = np.clip((unit_ids != self.pad_token_id).sum(1), 0, unit_ids.shape[1] - 1)
        frames = np.take_along_axis(np.cumsum(durations, axis=1), n[:, None], axis=1)[:, 0]
        return wave, frames * int(np.prod(self.cfg["upsample_rates"]))

    def rules(self, prefix):
        r = [Rule(f"{prefix}unit_embedding.weight", self.unit_embedding.embeddings),
             Rule(f"{prefix}speaker_embedding.weight", self.speaker_embedding.embeddings),
             Rule(f"{prefix}language_embedding.weight", self.language_embedding.embeddings)]
        r += self.dur_predictor.rules(f"{prefix}dur_predictor.")
        g = f"{prefix}hifi_gan."
        r += self.conv_pre.rules(f"{g}conv_pre") + self.conv_post.rules(f"{g}conv_post")
        for i, up in enumerate(self.upsampler):
            r += up.rules(f"{g}upsampler.{i}")
        for m, (convs1, convs2) in enumerate(self.resblocks):
            for n, (a, b) in enumerate(zip(convs1, convs2)):
                r += a.rules(f"{g}resblocks.{m}.convs1.{n}") + b.rules(f"{g}resblocks.{m}.convs2.{n}")
        return r


class SeamlessT2U(keras.layers.Layer):
    """v1 text-to-unit model (``t2u_model.*``): :meth:`generate_units` greedily."""

    def __init__(self, hidden_size, cfg, text, **kwargs):
        super().__init__(**kwargs)
        from keras_models.models.bart.backbone import BartBackbone
        from keras_models.models.bart.families import M2M100Spec

        self.cfg, self.hidden_size = dict(cfg), hidden_size
        dt = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=text["initializer_range"])
        self.encoder = T2UEncoder(hidden_size, cfg["t2u_encoder_layers"], cfg["t2u_encoder_attention_heads"],
                                  cfg["t2u_encoder_ffn_dim"], text["hidden_act"], kernel_initializer=init,
                                  name="encoder", dtype=dt)
        for heads in ("t2u_encoder_attention_heads", "t2u_decoder_attention_heads"):
            if hidden_size % cfg[heads]:
                raise ConfigError(f"config.json: hidden_size {hidden_size} is not a multiple of {heads} {cfg[heads]}")
        spec = M2M100Spec.from_hf({
            "model_type": "m2m_100", "vocab_size": cfg["t2u_vocab_size"], "d_model": hidden_size,
            "encoder_layers": 1, "decoder_layers": cfg["t2u_decoder_layers"],
            "encoder_attention_heads": cfg["t2u_encoder_attention_heads"],
            "decoder_attention_heads": cfg["t2u_decoder_attention_heads"], "encoder_ffn_dim": 1,
            "decoder_ffn_dim": cfg["t2u_decoder_ffn_dim"], "max_position_embeddings": cfg["t2u_max_position_embeddings"],
            "activation_function": text["hidden_act"], "scale_embedding": text["scale_embedding"],
            "pad_token_id": cfg["t2u_pad_token_id"], "bos_token_id": cfg["t2u_bos_token_id"],
            "eos_token_id": cfg["t2u_eos_token_id"], "decoder_start_token_id": cfg["t2u_decoder_start_token_id"],
            "dropout": 0.0, "attention_dropout": 0.0, "init_std": text["initializer_range"]}, "config.json (t2u_*)")
        kw = spec.kwargs()
        kw["num_encoder_layers"] = 0
        self.decoder = BartBackbone(**kw, name="decoder", dtype=dt)
        self.decoder.encoder_final_norm.build((None, None, hidden_size))  # unused (the encoder is above)

    def build(self, input_shape=None):
        self.encoder.build(None)
        for blk in self.decoder.decoder_blocks:
            blk.build((None, None, self.hidden_size))
        self.decoder.decoder_final_norm.build((None, None, self.hidden_size))
        self.decoder.token_embedding.build((None, None))
        self.built = True

    def unit_logits(self, hidden):
        return ops.matmul(hidden, ops.transpose(self.decoder.token_embedding.embeddings))

    def generate_units(self, embeds, attention_mask, prompt, max_new_tokens):
        """Greedy unit ids: ``prompt`` (b, p) followed by up to ``max_new_tokens`` new ids (rows
        that ended padded with ``t2u_pad_token_id``), as Transformers' greedy generate."""
        dec = self.decoder
        enc = self.encoder(embeds, attention_mask)
        mask = ops.convert_to_tensor(np.asarray(attention_mask, "int32"))
        prompt = np.asarray(prompt, "int32")
        b, p = prompt.shape
        cache = dec.init_cache(b, p + max_new_tokens, enc)
        hidden, cache = dec.decode_with_cache(ops.convert_to_tensor(prompt), enc, mask, cache, 0)
        eos, pad = self.cfg["t2u_eos_token_id"], self.cfg["t2u_pad_token_id"]
        out, done = [prompt], np.zeros((b,), bool)
        for i in range(max_new_tokens):
            nxt = np.asarray(ops.convert_to_numpy(ops.argmax(self.unit_logits(hidden[:, -1]), axis=-1))).astype("int32")
            nxt = np.where(done, pad, nxt)
            out.append(nxt[:, None])
            done |= nxt == eos
            if done.all() or i == max_new_tokens - 1:
                break
            hidden, cache = dec.decode_with_cache(ops.convert_to_tensor(nxt[:, None]), enc, mask, cache, p + i)
        return np.concatenate(out, axis=1)

    def rules(self, prefix):
        dec, table = self.decoder, self.decoder.token_embedding.embeddings
        r = self.encoder.rules(f"{prefix}model.encoder.")
        r.append(Rule(f"{prefix}model.decoder.embed_tokens.weight", table))
        # the unit head is the decoder table (tie_word_embeddings); an untied head must equal it
        r.append(Rule(f"{prefix}lm_head.weight", table, optional=True, export=False))
        for i, blk in enumerate(dec.decoder_blocks):
            r += block_rules(f"{prefix}model.decoder.layers.{i}", blk, NAMES)
        return r + norm_rules(f"{prefix}model.decoder.layer_norm", dec.decoder_final_norm)


class T2Uv2DecoderLayer(keras.layers.Layer):
    """Post-norm: self-attention, then two width-7 convs (padded positions zeroed)."""

    def __init__(self, hidden_size, heads, hidden_act, **kwargs):
        super().__init__(**kwargs)
        dt = self.dtype_policy
        self.hidden_size = hidden_size
        self.self_attention = Attention(hidden_size, heads, head_dim=hidden_size // heads, use_bias=True,
                                        name="self_attention", dtype=dt)
        self.self_attention_norm = _ln("self_attention_norm", dt)
        self.conv1 = HifiGanConv(hidden_size, hidden_size, 7, name="conv1", dtype=dt)
        self.conv2 = HifiGanConv(hidden_size, hidden_size, 7, name="conv2", dtype=dt)
        self.conv_norm = _ln("conv_norm", dt)
        self.act = get_activation(hidden_act)

    def build(self, input_shape=None):
        self.self_attention.build((None, None, self.hidden_size))
        self.self_attention_norm.build((None, None, self.hidden_size))
        self.conv1.build(None)
        self.conv2.build(None)
        self.conv_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, x, bias, keep):
        x = self.self_attention_norm(x + self.self_attention(x, bias))
        h = self.conv1(x * keep) * keep
        return self.conv_norm(x + self.conv2(self.act(h)))

    def rules(self, prefix):
        return (attention_rules(f"{prefix}self_attn", self.self_attention, NAMES["self_attention"][1])
                + norm_rules(f"{prefix}self_attn_layer_norm", self.self_attention_norm)
                + self.conv1.rules(f"{prefix}conv1") + self.conv2.rules(f"{prefix}conv2")
                + norm_rules(f"{prefix}conv_layer_norm", self.conv_norm))


class SeamlessT2Uv2(keras.layers.Layer):
    """v2 non-autoregressive text-to-unit model (``t2u_model.*``): :meth:`units`."""

    def __init__(self, hidden_size, cfg, text, **kwargs):
        super().__init__(**kwargs)
        self.cfg, self.hidden_size = dict(cfg), hidden_size
        dt = self.dtype_policy
        for heads in ("t2u_encoder_attention_heads", "t2u_decoder_attention_heads"):
            if hidden_size % cfg[heads]:
                raise ConfigError(f"config.json: hidden_size {hidden_size} is not a multiple of {heads} {cfg[heads]}")
        if cfg["t2u_variance_predictor_embed_dim"] != hidden_size:
            raise ConfigError(f"config.json: t2u_variance_predictor_embed_dim "
                              f"({cfg['t2u_variance_predictor_embed_dim']}) must equal hidden_size ({hidden_size})")
        if cfg["t2u_variance_predictor_kernel_size"] % 2 == 0:
            raise ConfigError("config.json: t2u_variance_predictor_kernel_size must be odd, got "
                              f"{cfg['t2u_variance_predictor_kernel_size']}")
        init = keras.initializers.TruncatedNormal(stddev=text["initializer_range"])
        self.encoder = T2UEncoder(hidden_size, cfg["t2u_encoder_layers"], cfg["t2u_encoder_attention_heads"],
                                  cfg["t2u_encoder_ffn_dim"], text["hidden_act"], kernel_initializer=init,
                                  name="encoder", dtype=dt)
        self.embed_scale = math.sqrt(hidden_size) if text["scale_embedding"] else 1.0
        self.embed_tokens = keras.layers.Embedding(cfg["t2u_vocab_size"], hidden_size, name="embed_tokens", dtype=dt)
        self.embed_char = keras.layers.Embedding(cfg["char_vocab_size"], hidden_size, name="embed_char", dtype=dt)
        self.duration_predictor = VariancePredictor(hidden_size, cfg["t2u_variance_predictor_hidden_dim"],
                                                    cfg["t2u_variance_predictor_kernel_size"],
                                                    name="duration_predictor", dtype=dt)
        self.layers_ = [T2Uv2DecoderLayer(hidden_size, cfg["t2u_decoder_attention_heads"], text["hidden_act"],
                                          name=f"decoder_layer_{i}", dtype=dt)
                        for i in range(cfg["t2u_decoder_layers"])]
        self.final_norm = _ln("decoder_final_norm", dt)

    def build(self, input_shape=None):
        self.encoder.build(None)
        self.embed_tokens.build((None, None))
        self.embed_char.build((None, None))
        self.duration_predictor.build(None)
        for layer in self.layers_:
            layer.build(None)
        self.final_norm.build((None, None, self.hidden_size))
        self.pos_emb_alpha_char = self.add_weight(name="pos_emb_alpha_char", shape=(1,), initializer="ones")
        self.pos_emb_alpha = self.add_weight(name="pos_emb_alpha", shape=(1,), initializer="ones")
        self.built = True

    def _positions(self, length, dtype):
        """Transformers' sinusoidal rows ``pad + 1 .. pad + length`` (positions of embeddings)."""
        pad = self.cfg["t2u_pad_token_id"]
        return ops.convert_to_tensor(sinusoidal_table(pad + 1 + length, self.hidden_size)[pad + 1:][None], dtype)

    def units(self, embeds, attention_mask, char_ids, char_counts):
        """``(unit logits (b, frames, t2u_vocab_size), frame mask (b, frames))``."""
        enc = self.encoder(embeds, attention_mask)
        char_counts = np.asarray(char_counts, "int64")
        char_ids = np.asarray(char_ids, "int32")
        n_chars = char_ids.shape[1]
        char_mask = (np.arange(n_chars)[None] < char_counts.sum(1)[:, None])
        x = ops.convert_to_tensor(_rows_repeat(enc, char_counts)[:, :n_chars])
        dt = x.dtype
        x = (self.embed_char(char_ids) * ops.cast(self.embed_scale, dt)
             + self.pos_emb_alpha_char * self._positions(n_chars, dt) + x)
        dur = _durations(self.duration_predictor(x, char_mask)) * char_mask
        x = ops.convert_to_tensor(_rows_repeat(x, dur))
        frames = ops.shape(x)[1]
        x = x + self.pos_emb_alpha * self._positions(frames, dt)
        mask = np.arange(frames)[None] < dur.sum(1)[:, None]
        bias = padding_bias(ops.convert_to_tensor(mask.astype("int32")), dt)
        keep = ops.convert_to_tensor(mask.astype("float32")[..., None], dt)
        for layer in self.layers_:
            x = layer(x, bias, keep)
        x = self.final_norm(x)
        return ops.matmul(x, ops.transpose(self.embed_tokens.embeddings)), mask

    def rules(self, prefix):
        d = f"{prefix}model.decoder."
        r = self.encoder.rules(f"{prefix}model.encoder.")
        r += [Rule(f"{d}embed_tokens.weight", self.embed_tokens.embeddings),
              Rule(f"{prefix}lm_head.weight", self.embed_tokens.embeddings, optional=True, export=False),
              Rule(f"{d}embed_char.weight", self.embed_char.embeddings),
              Rule(f"{d}pos_emb_alpha_char", self.pos_emb_alpha_char),
              Rule(f"{d}pos_emb_alpha", self.pos_emb_alpha)]
        r += self.duration_predictor.rules(f"{d}duration_predictor.")
        for i, layer in enumerate(self.layers_):
            r += layer.rules(f"{d}layers.{i}.")
        return r + norm_rules(f"{d}layer_norm", self.final_norm)


# --- v2 character inputs (Transformers' _count_character_length_in_subword / _get_char_input_ids) ----
def char_inputs(ids, id_to_text, char_to_id, pad_token_id, unk_token_id=1, space="\u2581"):
    """``(char_ids, char_counts)`` of text ids (b, t) (no language / eos columns): per row the
    characters of each subword (a space merged with a preceding punctuation mark), with a zero
    count column added before and after (the language and end tokens)."""
    ids = np.asarray(ids)
    b, t = ids.shape
    counts = np.zeros((b, t), "int64")
    subwords = [[str(id_to_text.get(str(int(i)))) for i in row] for row in ids]
    lens = (ids != pad_token_id).sum(1)
    for r in range(b):
        words, idx = subwords[r][:lens[r]], ids[r, :lens[r]]
        nxt_space = [i < len(words) - 1 and len(words[i + 1]) > 1 and words[i + 1][0] == space
                     for i in range(len(words))]
        punc = [len(w) == 1 and not w.isalpha() and not w.isnumeric() and w != space for w in words]
        for i, (k, w) in enumerate(zip(idx, words)):
            if k == unk_token_id:
                n = 1
            else:
                n = len(w)
                if punc[i] and nxt_space[i]:
                    n += 1
                elif i > 0 and punc[i - 1] and nxt_space[i - 1]:
                    n -= 1
            counts[r, i] = n
    counts = np.concatenate([np.zeros((b, 1), "int64"), counts, np.zeros((b, 1), "int64")], axis=1)
    chars = np.full((b, int(counts.sum(1).max())), pad_token_id, "int64")
    for r in range(b):
        pos = 0
        for k, w in zip(ids[r, :lens[r]], subwords[r][:lens[r]]):
            cids = [unk_token_id] if k == unk_token_id else [char_to_id.get(ch, unk_token_id) for ch in w]
            chars[r, pos:pos + len(cids)] = cids
            pos += len(cids)
    return chars, counts


__all__ = ["SeamlessT2U", "SeamlessT2Uv2", "SeamlessCodeHifiGan", "T2U_FIELDS", "V2_FIELDS", "char_inputs"]
