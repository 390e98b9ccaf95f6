"""Jukebox (removed from Transformers 5): a 3-level VQ-VAE over raw audio and one autoregressive
"prior" per level over its codes.

* VQ-VAE: level ``L`` has its own encoder (``L + 1`` strided conv + dilated-resnet stages, then a
  projection to ``embed_dim``), a nearest-neighbour codebook and the mirrored decoder.
  :meth:`JukeboxBackbone.encode` takes audio (batch, samples, channels) -> codes per VQ-VAE level
  (finest first, as Transformers); :meth:`JukeboxBackbone.decode` decodes codes from ``start_level``.
* Priors (``priors[0]`` is the top, over the coarsest codes): a transformer with Jukebox's
  factorised attention (block, transpose-block, previous-block, dense, and prime: every position over
  the lyrics and the first music positions, as the released checkpoints' ``enc_dec_with_lyrics`` top
  priors use at every 16th layer), artist / genre and timing
  conditioning, and for ``level > 0`` the upper level's codes upsampled by a conv stack
  (JukeboxMusicTokenConditioner). The top prior of a merged model (``is_encoder_decoder``) models
  lyrics and music tokens as one sequence. :meth:`JukeboxBackbone.prior_logits` returns the logits
  and losses of ``forward_tokens``.

* Sampling (:meth:`JukeboxBackbone.ancestral_sample`, ``continue_sample``, ``upsample``,
  ``primed_sample``; Transformers' ``_sample``): each prior fills its windows one position at a time
  over a key/value cache of the whole window, the factorised attention patterns being masks over
  it (prime attention's: the prime's keys only); greedy (``top_k=1``) codes equal Transformers'.

Weights keep Transformers' layouts (torch conv / Conv1D shapes); the ops transpose at call time.
Not built: a separate lyric encoder with cross-attention (jukebox-5b; see ``not_covered``).
"""

import functools
import math

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule

_PATTERNS = {
    "raw_column_previous_row_attention": lambda i: ("block_attn", "transpose_block_attn", "prev_block_attn")[i % 3],
    "enc_dec_with_lyrics": lambda i: ("prime_attn", "prime_attn", "dense_attn")[i % 3] if i % 16 == 15
    else ("block_attn", "transpose_block_attn", "prev_block_attn")[i % 3],
}
_BUILT_ATTN = ("block_attn", "transpose_block_attn", "prev_block_attn", "dense_attn", "prime_attn")


def _act(name):
    acts = {"quick_gelu": lambda x: x * ops.sigmoid(1.702 * x), "relu": ops.relu,
            "gelu": lambda x: ops.gelu(x, approximate=False), "gelu_new": lambda x: ops.gelu(x, approximate=True)}
    if name not in acts:
        raise ConfigError(f"config.json: act_fn={name!r} is not supported (supported: {sorted(acts)})")
    return acts[name]


class _Params(keras.layers.Layer):
    """A holder of variables in Transformers' shapes, named by their checkpoint names."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.params = {}

    def param(self, hf_name, shape, init="zeros"):
        v = self.add_weight(name=hf_name.replace(".", "__"), shape=tuple(int(s) for s in shape), initializer=init)
        self.params[hf_name] = v
        return v

    def rules(self):
        return [Rule(name, v) for name, v in self.params.items()]


def conv1d(x, w, b, stride=1, pad=0, dilation=1):
    """torch Conv1d on (batch, time, channels); ``w`` is (out, in, k)."""
    if pad:
        x = ops.pad(x, ((0, 0), (pad, pad), (0, 0)))
    y = ops.conv(x, ops.transpose(w, (2, 1, 0)), strides=stride, padding="valid", dilation_rate=dilation)
    return y + b


def conv_transpose1d(x, w, b, stride, pad):
    """torch ConvTranspose1d on (batch, time, channels); ``w`` is (in, out, k)."""
    y = ops.conv_transpose(x, ops.transpose(w, (2, 1, 0)), strides=stride, padding="valid")
    if pad:
        y = y[:, pad:y.shape[1] - pad]
    return y + b


def layer_norm(x, w, b, eps=1e-5):
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / ops.sqrt(var + eps) * w + b


class _Net:
    """Builds Jukebox's conv stacks into a _Params holder and runs them."""

    def __init__(self, holder, cfg):
        self.h, self.cfg = holder, cfg

    def conv(self, name, cin, cout, k, transpose=False):
        shape = (cin, cout, k) if transpose else (cout, cin, k)
        w = self.h.param(name + ".weight", shape, "glorot_uniform")
        return (w, self.h.param(name + ".bias", (cout,)))

    def resnet(self, name, width, depth, reverse):
        c = self.cfg
        scale = 1.0 / math.sqrt(depth) if c.get("conv_res_scale") else 1.0
        blocks = []
        for d in range(depth):
            dd = d if c.get("res_dilation_cycle") is None else d % c["res_dilation_cycle"]
            blocks.append((c["res_dilation_growth_rate"] ** dd, scale))
        if reverse:
            blocks = blocks[::-1]
        hidden = c.get("res_convolution_multiplier", 1) * width
        out = []
        for i, (dil, s) in enumerate(blocks):
            p = f"{name}.resnet_block.{i}."
            out.append((dil, s, self.conv(p + "conv1d_1", width, hidden, 3), self.conv(p + "conv1d_2", hidden, width, 1)))
        return out

    @staticmethod
    def run_resnet(x, blocks):
        for dil, s, (w1, b1), (w2, b2) in blocks:
            h = conv1d(ops.relu(x), w1, b1, pad=dil, dilation=dil)
            x = x + s * conv1d(ops.relu(h), w2, b2)
        return x

    def decoder_block(self, name, embed_dim, width, depth, down_t, stride_t, reverse):
        blk = {"proj_in": self.conv(name + ".proj_in", embed_dim, width, 3), "stages": [], "stride": stride_t}
        for i in range(down_t):
            res = self.resnet(f"{name}.upsample_block.{2 * i}", width, depth, reverse)
            up = self.conv(f"{name}.upsample_block.{2 * i + 1}", width, width if i < down_t - 1 else embed_dim,
                           2 * stride_t, transpose=True)
            blk["stages"].append((res, up))
        return blk

    def run_decoder_block(self, x, blk):
        x = conv1d(x, *blk["proj_in"], pad=1)
        s = blk["stride"]
        for res, (w, b) in blk["stages"]:
            x = conv_transpose1d(self.run_resnet(x, res), w, b, s, s // 2)
        return x


class JukeboxPriorLayer(_Params):
    """One level's prior (see the module docstring); variables under ``priors.{level}.``."""

    def __init__(self, cfg, level, nb_priors, **kwargs):
        super().__init__(**kwargs)
        self.cfg, self.level, self.nb_priors = cfg, level, nb_priors
        c = cfg
        pattern = c.get("attention_pattern")
        if pattern not in _PATTERNS:
            raise ConfigError(f"config.json [prior {level}]: attention_pattern={pattern!r} is not implemented "
                              f"(supported: {sorted(_PATTERNS)})")
        self.enc_dec = bool(c.get("is_encoder_decoder"))
        self.n_lyric = int(c.get("nb_relevant_lyric_tokens", 0)) if self.enc_dec else 0
        if not self.enc_dec and c.get("nb_relevant_lyric_tokens", 0) > 0:
            raise ConfigError(f"config.json [prior {level}]: a separate lyric encoder with cross-attention "
                              "(is_encoder_decoder false, nb_relevant_lyric_tokens > 0) is not implemented")
        self.n_ctx = int(c["n_ctx"]) + self.n_lyric
        self.vocab = int(c["music_vocab_size"]) + (int(c["lyric_vocab_size"]) if self.enc_dec else 0)
        self.attn_funcs = [_PATTERNS[pattern](i) for i in range(int(c["num_layers"]))]
        bad = sorted({f for f in self.attn_funcs if f not in _BUILT_ATTN})
        if bad:
            raise ConfigError(f"config.json [prior {level}]: num_layers={c['num_layers']} with {pattern!r} uses "
                              f"{bad}, not implemented")
        if c.get("blocks") is None or self.n_ctx % int(c["blocks"]):
            raise ConfigError(f"config.json [prior {level}]: blocks={c.get('blocks')!r} must divide the context "
                              f"{self.n_ctx}")
        self.block_ctx = self.n_ctx // int(c["blocks"])
        # prime attention's keys: the first nb_relevant_lyric_tokens rounded up past a multiple of
        # ``blocks`` (the block count, as Transformers), so the lyrics and the first music positions
        self.prime_len = (int(c.get("nb_relevant_lyric_tokens", 0)) // int(c["blocks"]) + 1) * int(c["blocks"])
        self.hidden = int(c["hidden_size"])
        self.attn_dim = int(c["attention_multiplier"] * self.hidden)
        self.heads = int(c["n_heads"])
        self.act = _act(c.get("act_fn", "quick_gelu"))
        self.merged = bool(c.get("merged_decoder", True))
        self.res_scale = 1.0 / c["num_layers"] if c.get("attn_res_scale") else 1.0
        down = [s ** d for s, d in zip(c["res_strides_t"], c["res_downs_t"])]
        self.raw_to_tokens = int(np.prod(down[: nb_priors - level]))
        self.cond_downsample = down[level] if level else None

    def build(self, input_shape=None):
        c, w, p = self.cfg, self.hidden, "prior."
        self.param(p + "embed_tokens.weight", (self.vocab, w), "random_normal")
        self.param(p + "pos_emb.pos_emb", (self.n_ctx, w), "random_normal")
        if not c.get("metadata_conditioning", True):
            self.param(p + "start_token", (1, w), "random_normal")
        mlp = int(c["mlp_multiplier"] * w)
        for i, f in enumerate(self.attn_funcs):
            q = f"{p}transformer._attn_mods.{i}."
            for name, shape in (("attn.c_attn", (w, 3 * self.attn_dim)), ("attn.c_proj", (self.attn_dim, w)),
                                ("mlp.c_fc", (w, mlp)), ("mlp.c_proj", (mlp, w))):
                self.param(q + name + ".weight", shape, "random_normal")
                self.param(q + name + ".bias", shape[1:])
            for n in ("layer_norm_0", "layer_norm_1"):
                self.param(q + n + ".weight", (w,), "ones")
                self.param(q + n + ".bias", (w,))
        if self.merged:  # tied to embed_tokens otherwise
            self.param(p + "fc_proj_out.weight", (self.vocab, w), "random_normal")
        if c.get("metadata_conditioning", True):
            nb_genres, nb_artists = c["metadata_dims"]
            self.param("metadata_embedding.bow_genre_emb.weight", (nb_genres, w), "random_normal")
            self.param("metadata_embedding.artist_emb.weight", (nb_artists, w), "random_normal")
            if self.level == 0:
                for n in ("total_length_emb", "absolute_pos_emb", "relative_pos_emb"):
                    self.param(f"metadata_embedding.{n}.emb.weight", (c["timing_dims"], w), "random_normal")
        if self.level:
            net = _Net(self, c)
            self.param("conditioner_blocks.embed_tokens.weight", (c["music_vocab_size"], w), "random_normal")
            self.upsampler = net.decoder_block("conditioner_blocks.upsampler", w, c["res_conv_width"],
                                               c["res_conv_depth"], c["res_downs_t"][self.level],
                                               c["res_strides_t"][self.level], reverse=False)
            self.param("conditioner_blocks.layer_norm.weight", (w,), "ones")
            self.param("conditioner_blocks.layer_norm.bias", (w,))
        self.built = True

    def rules(self, prefix):
        return [Rule(f"{prefix}{name}", v) for name, v in self.params.items()]

    def P(self, name):
        return self.params[name]

    # --- conditioning -----------------------------------------------------------------------------
    def _range_emb(self, name, n_time, lo, hi, start, end=None, clamp=False):
        start = ops.cast(start, "float32")
        if n_time != 1:
            end = ops.cast(end, "float32")
            if clamp:
                end = ops.clip(end, lo, hi)
            interp = ops.cast(ops.reshape(ops.arange(n_time), (1, n_time)), "float32") / n_time
            pos = start + (end - start) * interp
        else:
            pos = start
        bins = ops.cast(ops.floor(self.cfg["timing_dims"] * ((pos - lo) / (hi - lo))), "int32")
        return ops.take(self.P(f"metadata_embedding.{name}.emb.weight"), bins, axis=0)

    def labels_embedding(self, metadata):
        c = self.cfg
        artist = metadata[:, 3:4]
        genre = metadata[:, 4:]
        start_emb = ops.take(self.P("metadata_embedding.artist_emb.weight"), artist, axis=0)
        mask = ops.cast(genre >= 0, "float32")[..., None]
        g = ops.take(self.P("metadata_embedding.bow_genre_emb.weight"), ops.maximum(genre, 0), axis=0)
        start_emb = start_emb + ops.sum(g * mask, axis=1, keepdims=True)
        if self.level:
            return start_emb, None
        sr = c["sampling_rate"]
        total, start = ops.cast(metadata[:, 0:1], "float32"), ops.cast(metadata[:, 1:2], "float32")
        end = start + ops.cast(metadata[:, 2:3], "float32")
        n = int(c["n_ctx"])
        pos = (self._range_emb("total_length_emb", 1, c["min_duration"] * sr, c["max_duration"] * sr, total)
               + self._range_emb("absolute_pos_emb", n, 0.0, c["max_duration"] * sr, start, end)
               + self._range_emb("relative_pos_emb", n, 0.0, 1.0, start / total, end / total, clamp=True))
        return start_emb, pos

    def music_conditioning(self, codes):
        x = ops.take(self.P("conditioner_blocks.embed_tokens.weight"), codes, axis=0)
        x = _Net(self, self.cfg).run_decoder_block(x, self.upsampler)
        return layer_norm(x, self.P("conditioner_blocks.layer_norm.weight"), self.P("conditioner_blocks.layer_norm.bias"))

    # --- transformer --------------------------------------------------------------------------------
    def _dense(self, q, k, v, causal):
        b, tq, _ = q.shape
        tk = k.shape[1]
        h, hd = self.heads, self.attn_dim // self.heads

        def split(x, t):
            return ops.transpose(ops.reshape(x, (-1, t, h, hd)), (0, 2, 1, 3))

        q, k, v = split(q, tq), split(k, tk), split(v, tk)
        w = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (hd ** -0.5)
        if causal and self.cfg.get("mask"):
            m = np.tril(np.ones((tq, tk), "float32"), max(tk - tq, 0))
            w = w * ops.convert_to_tensor(m) + ops.convert_to_tensor(-1e9 * (1 - m))
        out = ops.matmul(ops.softmax(w, axis=-1), v)
        return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, tq, self.attn_dim))

    def _attention(self, f, q, k, v):
        b, t, d = q.shape
        bc = self.block_ctx
        nb = t // bc
        if f == "dense_attn":
            return self._dense(q, k, v, True)
        if f == "prime_attn":  # every query over the prime's keys (causal where mask)
            return self._dense(q, k[:, :self.prime_len], v[:, :self.prime_len], True)
        if f == "block_attn":
            r = [ops.reshape(x, (-1, bc, d)) for x in (q, k, v)]
            return ops.reshape(self._dense(*r, True), (-1, t, d))
        if f == "transpose_block_attn":
            r = [ops.reshape(ops.transpose(ops.reshape(x, (-1, nb, bc, d)), (0, 2, 1, 3)), (-1, nb, d))
                 for x in (q, k, v)]
            out = ops.reshape(self._dense(*r, True), (-1, bc, nb, d))
            return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, t, d))
        # prev_block_attn: each block attends to the whole previous one (zeros before the first)
        def prev(x):
            x = ops.reshape(x, (-1, nb, bc, d))[:, :-1]
            return ops.reshape(ops.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0))), (-1, bc, d))

        return ops.reshape(self._dense(ops.reshape(q, (-1, bc, d)), prev(k), prev(v), False), (-1, t, d))

    def decoder(self, x, cond, first):
        """Embedded tokens (batch, ctx, hidden) -> logits, with position 0 replaced by ``first``."""
        x = ops.concatenate([first, x[:, :-1]], axis=1)
        x = x + self.P("prior.pos_emb.pos_emb") + cond
        for i, f in enumerate(self.attn_funcs):
            q = f"prior.transformer._attn_mods.{i}."

            def lin(y, n):
                return ops.matmul(y, self.P(q + n + ".weight")) + self.P(q + n + ".bias")

            h = layer_norm(x, self.P(q + "layer_norm_0.weight"), self.P(q + "layer_norm_0.bias"))
            qkv = lin(h, "attn.c_attn")
            a = self.attn_dim
            h = lin(self._attention(f, qkv[..., :a], qkv[..., a:2 * a], qkv[..., 2 * a:]), "attn.c_proj")
            m = layer_norm(x + h, self.P(q + "layer_norm_1.weight"), self.P(q + "layer_norm_1.bias"))
            m = lin(self.act(lin(m, "mlp.c_fc")), "mlp.c_proj")
            x = x + h + m if self.res_scale == 1.0 else x + self.res_scale * (h + m)
        if not self.merged:
            x = x + cond
        head = self.P("prior.fc_proj_out.weight") if self.merged else self.P("prior.embed_tokens.weight")
        return ops.matmul(x, ops.transpose(head))

    def conditioning(self, music_tokens_conds, metadata):
        """-> (first (b, 1, hidden): the start position's input, cond (b, n_ctx or 1, hidden): added at
        every position (lyric positions zero), lyrics (b, n_lyric) ids)."""
        c = self.cfg
        metadata = ops.cast(ops.convert_to_tensor(metadata), "int32")
        b = metadata.shape[0]
        n_labels = metadata.shape[1] - self.n_lyric
        labels, lyrics = metadata[:, :n_labels], metadata[:, n_labels:]
        if c.get("metadata_conditioning", True):
            first, pos = self.labels_embedding(labels)
        else:
            first, pos = ops.broadcast_to(self.P("prior.start_token")[None], (b, 1, self.hidden)), None
        if self.level:
            if not music_tokens_conds:
                raise InputError(f"prior {self.level}: music_tokens_conds (the upper level's codes) is required")
            cond = self.music_conditioning(ops.cast(ops.convert_to_tensor(music_tokens_conds[0]), "int32"))
        else:
            cond = pos if pos is not None else ops.zeros((b, 1, self.hidden))
        if self.enc_dec:
            cond = ops.concatenate([ops.zeros((b, self.n_lyric, self.hidden)), cond], axis=1)
        return ops.reshape(first, (b, 1, self.hidden)), cond, lyrics

    def forward(self, music_tokens, music_tokens_conds, metadata):
        c = self.cfg
        music_tokens = ops.cast(ops.convert_to_tensor(music_tokens), "int32")
        first, cond, lyrics = self.conditioning(music_tokens_conds, metadata)
        tokens = music_tokens
        if self.enc_dec:
            tokens = ops.concatenate([lyrics, music_tokens + int(c["lyric_vocab_size"])], axis=1)
        if tokens.shape[1] != self.n_ctx:
            raise InputError(f"prior {self.level}: expected {self.n_ctx - self.n_lyric} music tokens "
                             f"(n_ctx), got {music_tokens.shape[1]}")
        x = ops.take(self.P("prior.embed_tokens.weight"), tokens, axis=0)
        logits = self.decoder(x, cond, first)

        def ce(lg, tg):
            lp = ops.log_softmax(lg, axis=-1)
            picked = ops.take_along_axis(lp, tg[..., None], axis=-1)
            return -ops.mean(picked) / math.log(2.0)

        n = self.n_lyric
        music_loss = ce(logits[:, n:], tokens[:, n:])
        enc_loss = ce(logits[:, :n], tokens[:, :n]) if n else ops.zeros(())
        total = n + int(c["n_ctx"])
        loss = c.get("encoder_loss_fraction", 0.4) * enc_loss * n / total + music_loss * int(c["n_ctx"]) / total
        return {"logits": logits, "loss": loss, "encoder_loss": enc_loss, "next_token_prediction_loss": music_loss}

    # --- sampling: one position at a time over a key/value cache of the whole window ---------------
    def _step_mask(self, f, t):
        """Keys (n_ctx,) a query at position ``t`` sees, as the factorised attention ``f`` does."""
        j = ops.arange(self.n_ctx, dtype="int32")
        bc = self.block_ctx
        if f == "dense_attn":
            return j <= t
        if f == "prime_attn":  # the cache holds the prime's keys only
            return ops.logical_and(j <= t, j < self.prime_len)
        if f == "block_attn":
            return ops.logical_and(j <= t, (j // bc) == (t // bc))
        if f == "transpose_block_attn":
            return ops.logical_and(j <= t, (j % bc) == (t % bc))
        return (j // bc) == (t // bc - 1)  # prev_block_attn; the first block sees zeros (output 0)

    def step(self, t, token, caches, cond, first):
        """Logits (b, vocab) at position ``t`` (int32 scalar) whose input is ``token`` (b,), the
        token at ``t - 1`` (``first`` at ``t == 0``); ``caches`` [(keys, values) (b, n_ctx, attn_dim)]
        per layer, updated and returned."""
        from keras_models.generation.backend import write_time_slice

        b = first.shape[0]
        x = ops.take(self.P("prior.embed_tokens.weight"), token, axis=0)[:, None]
        x = ops.where(t == 0, first, x)
        cond_t = cond if cond.shape[1] == 1 else ops.take(cond, t, axis=1)[:, None]
        x = x + ops.take(self.P("prior.pos_emb.pos_emb"), t, axis=0)[None, None] + cond_t
        h, hd, a = self.heads, self.attn_dim // self.heads, self.attn_dim
        out = []
        for i, (f, (kc, vc)) in enumerate(zip(self.attn_funcs, caches)):
            q = f"prior.transformer._attn_mods.{i}."

            def lin(y, n):
                return ops.matmul(y, self.P(q + n + ".weight")) + self.P(q + n + ".bias")

            y = layer_norm(x, self.P(q + "layer_norm_0.weight"), self.P(q + "layer_norm_0.bias"))
            qkv = lin(y, "attn.c_attn")
            kc = write_time_slice(kc, qkv[..., a:2 * a], t)
            vc = write_time_slice(vc, qkv[..., 2 * a:], t)
            out.append((kc, vc))
            qh = ops.reshape(qkv[..., :a], (b, h, 1, hd))
            kh = ops.transpose(ops.reshape(kc, (b, self.n_ctx, h, hd)), (0, 2, 3, 1))
            vh = ops.transpose(ops.reshape(vc, (b, self.n_ctx, h, hd)), (0, 2, 1, 3))
            w = ops.matmul(qh, kh) * (hd ** -0.5)
            w = ops.where(self._step_mask(f, t), w, -1e9)
            y = ops.reshape(ops.matmul(ops.softmax(w, axis=-1), vh), (b, 1, a))
            if f == "prev_block_attn":
                y = y * ops.cast(t >= self.block_ctx, y.dtype)
            y = lin(y, "attn.c_proj")
            m = layer_norm(x + y, self.P(q + "layer_norm_1.weight"), self.P(q + "layer_norm_1.bias"))
            m = lin(self.act(lin(m, "mlp.c_fc")), "mlp.c_proj")
            x = x + y + m if self.res_scale == 1.0 else x + self.res_scale * (y + m)
        if not self.merged:
            x = x + cond_t
        head = self.P("prior.fc_proj_out.weight") if self.merged else self.P("prior.embed_tokens.weight")
        return ops.matmul(x[:, 0], ops.transpose(head)), out

    def sample(self, music_tokens, music_tokens_conds, metadata, sample_tokens, select):
        """Transformers' ``JukeboxPrior.sample`` for one window: ``music_tokens`` (b, p) are the
        window's codes so far (the prime), ``sample_tokens`` music positions are filled, the new ones
        chosen by ``select(logits (b, vocab) numpy, step) -> ids``. Returns (music codes (b,
        sample_tokens) numpy, the raw ids over the whole sequence, lyrics first when merged)."""
        from keras_models.generation.backend import no_grad

        c = self.cfg
        music_tokens = np.asarray(music_tokens, "int32")
        b = music_tokens.shape[0]
        with no_grad():
            if getattr(self, "_step_fn", None) is None:
                self._cond_fn = _jit_under_jax(self, self.conditioning)
                self._step_fn = _jit_under_jax(self, self.step, graph_on_tensorflow=True)
            conds = [ops.convert_to_tensor(np.asarray(x, "int32")) for x in music_tokens_conds]
            first, cond, lyrics = self._cond_fn(conds, ops.convert_to_tensor(np.asarray(metadata, "int32")))
            prime = music_tokens
            if self.enc_dec:
                prime = np.concatenate([np.asarray(ops.convert_to_numpy(lyrics), "int32"),
                                        music_tokens + int(c["lyric_vocab_size"])], axis=1)
                sample_tokens += self.n_lyric
            caches = [(ops.zeros((b, self.n_ctx, self.attn_dim)), ops.zeros((b, self.n_ctx, self.attn_dim)))
                      for _ in self.attn_funcs]
            tokens = np.zeros((b, sample_tokens), "int32")
            prev = np.zeros((b,), "int32")
            for t in range(sample_tokens):
                logits, caches = self._step_fn(ops.convert_to_tensor(np.int32(t)), ops.convert_to_tensor(prev),
                                               caches, cond, first)
                if t < prime.shape[1]:
                    prev = prime[:, t]
                else:
                    prev = np.asarray(select(ops.convert_to_numpy(logits), t), "int32")
                tokens[:, t] = prev
        music = tokens[:, self.n_lyric:]
        if self.enc_dec:  # back to music ids; lyric ids the merged vocabulary may pick become 0
            music = np.maximum(music - int(c["lyric_vocab_size"]), 0)
        return music, tokens


class JukeboxVQVAELayer(_Params):
    def __init__(self, cfg, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.levels = int(cfg["levels"])

    def build(self, input_shape=None):
        c = self.cfg
        net = _Net(self, c)
        mult = c.get("multipliers") or [1] * self.levels
        self.encoders, self.decoders = [], []
        for level in range(self.levels):
            width, depth = c["res_conv_width"] * mult[level], c["res_conv_depth"] * mult[level]
            enc = []
            for i in range(level + 1):
                p = f"encoders.{level}.level_blocks.{i}."
                down, stride = c["res_downs_t"][i], c["res_strides_t"][i]
                stages = []
                for j in range(down):
                    cin = (c["conv_input_shape"] if i == 0 else c["embed_dim"]) if j == 0 else width
                    stages.append((net.conv(f"{p}downsample_block.{2 * j}", cin, width, 2 * stride),
                                   net.resnet(f"{p}downsample_block.{2 * j + 1}", width, depth, False)))
                enc.append((stages, stride, net.conv(p + "proj_out", width, c["embed_dim"], 3)))
            self.encoders.append(enc)
            dec = [net.decoder_block(f"decoders.{level}.level_blocks.{i}", c["embed_dim"], width, depth,
                                     c["res_downs_t"][i], c["res_strides_t"][i], reverse=True)
                   for i in range(level + 1)]
            self.decoders.append((dec, net.conv(f"decoders.{level}.out", c["embed_dim"], c["conv_input_shape"], 3)))
        self.codebooks = [self.param(f"bottleneck.level_blocks.{i}.codebook", (c["nb_discrete_codes"], c["embed_dim"]),
                                     "random_normal") for i in range(self.levels)]
        self.built = True

    def encode(self, audio, start_level=0, end_level=None):
        x = ops.cast(audio, "float32")
        codes = []
        for level in range(self.levels):
            h = x
            for stages, stride, proj in self.encoders[level]:
                for (w, b), res in stages:
                    h = _Net.run_resnet(conv1d(h, w, b, stride=stride, pad=stride // 2), res)
                h = conv1d(h, *proj, pad=1)
            book = self.codebooks[level]
            dist = (ops.sum(ops.square(h), axis=-1, keepdims=True) - 2 * ops.matmul(h, ops.transpose(book))
                    + ops.sum(ops.square(book), axis=-1))
            codes.append(ops.cast(ops.argmin(dist, axis=-1), "int32"))
        return codes[start_level:end_level]

    def decode(self, codes, start_level=0):
        h = ops.take(self.codebooks[start_level], ops.cast(ops.convert_to_tensor(codes[0]), "int32"), axis=0)
        dec, out = self.decoders[start_level]
        net = _Net(self, self.cfg)
        for blk in reversed(dec):
            h = net.run_decoder_block(h, blk)
        return conv1d(h, *out, pad=1)


def _starts(total_length, n_ctx, hop_length):
    """Window starts over ``total_length`` codes: every ``hop_length``, the last one moved back to
    end at ``total_length``."""
    return [min(s, total_length - n_ctx) for s in range(0, total_length - n_ctx + hop_length, hop_length)]


def _jit_under_jax(layer, fn, graph_on_tensorflow=False):
    """``fn`` compiled on jax (its eager mode compiles every op per shape); on tensorflow a graph
    without XLA where asked (XLA compiles these tiny steps slower than they run); eager elsewhere."""
    from keras_models.generation.backend import compile_fn

    if keras.backend.backend() == "jax":
        return compile_fn(layer, fn)
    if graph_on_tensorflow and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=False)
    return fn


def _decode_one(vqvae, start_level, codes):
    return vqvae.decode([codes], start_level)


def _select(logits, step, temp, top_k, top_p, rng):
    """Transformers' Jukebox token choice on numpy logits (b, vocab): / temp, top-k and top-p
    filtering, then a draw; ``top_k=1`` is the argmax."""
    del step
    logits = np.asarray(logits, "float64")
    if top_k == 1:
        return np.argmax(logits, axis=-1)
    logits = logits / temp
    if top_k > 0:
        kth = np.sort(logits, axis=-1)[:, -min(top_k, logits.shape[-1])][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    if top_p > 0.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        srt = np.take_along_axis(logits, order, -1)
        p = np.exp(srt - srt[:, :1])
        cum = np.cumsum(p / p.sum(-1, keepdims=True), -1)
        drop = np.concatenate([np.zeros_like(cum[:, :1], bool), cum[:, :-1] > top_p], -1)
        mask = np.zeros_like(drop)
        np.put_along_axis(mask, order, drop, -1)
        logits = np.where(mask, -np.inf, logits)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p])


_SHARED = ("sampling_rate", "timing_dims", "min_duration", "max_duration", "max_nb_genres", "metadata_conditioning")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("jukebox")
class JukeboxBackbone(Backbone):
    """Jukebox's VQ-VAE and priors (see the module docstring). ``config`` is Transformers'
    config.json (``vqvae_config``, ``prior_config_list``)."""

    hf_architecture = "JukeboxModel"
    base_model_prefix = ""
    verified_backends = ("jax", "torch", "tensorflow")
    not_covered = ("the separate lyric encoder with cross-attention (jukebox-5b-lyrics: attention_pattern "
                   "large_separated_enc_dec_w_lyrics), summary / summary_spread attention (in Transformers' "
                   "attention table, selected by no attention_pattern), sampling with mask=false (Transformers "
                   "then runs a window's prime without causal masks; here it is causal), lyric-to-music alignment "
                   "(compute_alignments), sampling across several windows on the upsamplers (built, conditioned "
                   "on the window's slice of the upper codes; Transformers 4.57.1 conditions on all of them and "
                   "fails), sampling equality beyond greedy (top_k/top_p draws use numpy's generator)")

    def __init__(self, config=None, **kwargs):
        super().__init__(**kwargs)
        self.config = self.check_config(config)
        c = self.config
        self.vqvae = JukeboxVQVAELayer(c["vqvae_config"], name="vqvae", dtype=self.dtype_policy)
        self.priors = [JukeboxPriorLayer(p, level, len(c["prior_config_list"]), name=f"prior_{level}",
                                         dtype=self.dtype_policy)
                       for level, p in enumerate(c["prior_config_list"])]

    @staticmethod
    def check_config(config, source="config.json"):
        if not isinstance(config, dict):
            raise ConfigError(f"{source}: expected a Jukebox config object")
        config = dict(config)
        vq = config.get("vqvae_config")
        if not isinstance(vq, dict):
            raise ConfigError(f"{source}: the nested config 'vqvae_config' is missing")
        for key in ("levels", "embed_dim", "nb_discrete_codes", "res_conv_width", "res_conv_depth", "res_downs_t",
                    "res_strides_t", "conv_input_shape", "res_dilation_growth_rate"):
            if key not in vq:
                raise ConfigError(f"{source}: vqvae_config: required key {key!r} is missing")
        priors = config.get("prior_config_list")
        if priors is None:
            priors = [config.get(f"prior_{i}") for i in range(config.get("nb_priors", 3))]
        if not isinstance(priors, list) or not all(isinstance(p, dict) for p in priors):
            raise ConfigError(f"{source}: 'prior_config_list' must be a list of prior configs")
        shared = {k: config[k] for k in _SHARED if k in config}
        config["prior_config_list"] = [{**p, **shared} for p in priors]
        config["vqvae_config"] = dict(vq)
        return config

    @classmethod
    def config_kwargs(cls, hf_config, source="config.json"):
        return {"config": cls.check_config(hf_config, source)}

    def config_to_hf(self):
        return {**self.config, "model_type": "jukebox", "architectures": ["JukeboxModel"]}

    def get_config(self):
        out = super().get_config()
        out["config"] = self.config
        return out

    def build(self, input_shape=None):
        self.vqvae.build()
        for p in self.priors:
            p.build()
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def weight_rules(self):
        rules = [Rule("vqvae." + r.hf, r.variable) for r in self.vqvae.rules()]
        for i, p in enumerate(self.priors):
            rules += p.rules(f"priors.{i}.")
        return rules

    # --- public API ---------------------------------------------------------------------------------
    def _audio(self, input_values):
        x = ops.convert_to_tensor(input_values)
        ch = self.config["vqvae_config"]["conv_input_shape"]
        if len(x.shape) != 3 or x.shape[-1] != ch:
            raise InputError(f"input_values: expected (batch, samples, {ch}), got shape {tuple(x.shape)}")
        hop = int(np.prod([s ** d for s, d in zip(self.config["vqvae_config"]["res_strides_t"],
                                                   self.config["vqvae_config"]["res_downs_t"])]))
        if x.shape[1] % hop:
            raise InputError(f"input_values: {x.shape[1]} samples is not a multiple of the top hop length {hop}")
        return x

    def encode(self, input_values, start_level=0, end_level=None):
        """Audio (batch, samples, channels) -> list of codes (batch, tokens) per VQ-VAE level, finest first."""
        return self.vqvae.encode(self._audio(input_values), start_level, end_level)

    def decode(self, music_tokens, start_level=0):
        """Codes of levels ``start_level..`` (``music_tokens[0]`` is level ``start_level``) ->
        audio (batch, samples, channels), decoded from the first of them, as Transformers does."""
        if not 0 <= start_level < self.vqvae.levels:
            raise InputError(f"start_level={start_level} must be in [0, {self.vqvae.levels})")
        return self.vqvae.decode(music_tokens, start_level)

    def get_metadata(self, labels, level, start=0, total_length=None, offset=0):
        """Transformers' ``JukeboxPrior.get_metadata``: the tokenizer's labels for prior ``level``
        with total length, offset and window length filled in and the lyric window cut."""
        prior = self.priors[level]
        labels = np.array(labels, dtype="int64").copy()
        labels[:, 0] = total_length
        labels[:, 2] = int(prior.cfg["n_ctx"]) * prior.raw_to_tokens
        labels[:, 1] = int(offset * prior.raw_to_tokens) + int(start * prior.raw_to_tokens)
        n = prior.n_lyric
        if not n:
            return labels
        keep = 4 + int(prior.cfg["max_nb_genres"])
        out = []
        for row in labels:
            full = labels[0, keep:]  # as Transformers: the first row's lyrics
            if len(full) < n:
                tokens = np.concatenate([np.zeros(n - len(full), "int64"), full])
            else:
                total, off, dur = row[0], row[1], row[2]
                mid = int(len(full) * (off + dur / 2.0) / total)
                mid = min(max(mid, n // 2), len(full) - n // 2)
                tokens = full[mid - n // 2: mid + n // 2]
            out.append(np.concatenate([row[:keep], tokens]))
        return np.stack(out)

    def prior_logits(self, level, music_tokens, music_tokens_conds=(), metadata=None):
        """Prior ``level`` (0 = top) on its codes: ``{"logits", "loss", "encoder_loss",
        "next_token_prediction_loss"}`` as Transformers' ``forward_tokens(get_preds=True)``."""
        if not 0 <= level < len(self.priors):
            raise InputError(f"level={level} must be in [0, {len(self.priors)})")
        if metadata is None:
            raise InputError("metadata: required (see get_metadata)")
        return self.priors[level].forward(music_tokens, list(music_tokens_conds), metadata)

    # --- sampling (Transformers' JukeboxModel._sample and its entry points) ------------------------
    def ancestral_sample(self, labels, n_samples=1, **sampling_kwargs):
        """Codes of every level from nothing: the top prior samples, each upsampler follows
        conditioned on the level above. ``labels``: the tokenizer's ``input_ids`` (one array per
        prior, (1 or n_samples, 4 + max_nb_genres + lyric tokens)). Keywords as Transformers'
        ``_sample`` (``sample_length`` in audio samples or ``sample_length_in_seconds``,
        ``sample_levels``, ``offset``, ``sampling_temperature``) plus ``top_k``, ``top_p`` (as the
        priors' ``sample``; ``top_k=1`` is greedy) and ``seed``. Returns ``{"music_tokens": codes per
        prior level (top first, numpy), "audio_values": the finest sampled level decoded,
        (batch, samples, channels), numpy}``."""
        music_tokens = [np.zeros((n_samples, 0), "int64") for _ in self.priors]
        return self._sample(music_tokens, labels, sampling_kwargs.pop("sample_levels", None), **sampling_kwargs)

    def continue_sample(self, music_tokens, labels, **sampling_kwargs):
        """Continue ``music_tokens`` (codes per prior level, top first) at every level; see
        :meth:`ancestral_sample`."""
        return self._sample(music_tokens, labels, sampling_kwargs.pop("sample_levels", None), **sampling_kwargs)

    def upsample(self, music_tokens, labels, **sampling_kwargs):
        """Sample every level below the top, conditioned on the given top codes."""
        levels = sampling_kwargs.pop("sample_levels", list(range(1, len(self.priors))))
        return self._sample(music_tokens, labels, levels, **sampling_kwargs)

    def primed_sample(self, raw_audio, labels, **sampling_kwargs):
        """Encode ``raw_audio`` (batch, samples, channels) and continue its codes at every level
        (Transformers 4.57.1's version hands the codes over finest level first, where the sampler
        expects the top level's first; here they are in prior order)."""
        codes = [np.asarray(ops.convert_to_numpy(c)) for c in _jit_under_jax(self.vqvae, self.encode)(raw_audio)][::-1]
        return self._sample(codes, labels, sampling_kwargs.pop("sample_levels", None), **sampling_kwargs)

    def _sample(self, music_tokens, labels, sample_levels=None, sample_length=None, sample_length_in_seconds=24,
                offset=0, sampling_temperature=0.98, top_k=0, top_p=0.0, seed=None, chunk_size=None,
                sample_tokens=None, max_batch_size=None, lower_batch_size=None):
        del chunk_size, max_batch_size, lower_batch_size  # memory knobs of Transformers: one pass here
        n = len(self.priors)
        if not isinstance(labels, (list, tuple)) or len(labels) != n:
            raise InputError(f"labels: expected a list of {n} arrays (the tokenizer's input_ids), got {type(labels)}")
        music_tokens = [np.asarray(ops.convert_to_numpy(t)).astype("int64") for t in music_tokens]
        if len(music_tokens) != n:
            raise InputError(f"music_tokens: expected {n} arrays (one per prior level, top first)")
        rows = music_tokens[0].shape[0]
        labels = [np.asarray(ops.convert_to_numpy(x)).astype("int64") for x in labels]
        labels = [np.repeat(x, rows, 0) if x.shape[0] == 1 and rows > 1 else x for x in labels]
        if any(x.shape[0] != rows for x in labels):
            raise InputError(f"labels: expected 1 or {rows} rows per level, got {[x.shape[0] for x in labels]}")
        if sample_tokens is not None:
            raise InputError("sample_tokens is not supported: give sample_length")
        top = self.priors[0]
        total_length = sample_length if sample_length is not None else (
            int(sample_length_in_seconds * self.config["sampling_rate"]) // top.raw_to_tokens) * top.raw_to_tokens
        levels = list(range(n)) if sample_levels is None else [int(x) for x in sample_levels]
        for level in levels:
            if not 0 <= level < n:
                raise InputError(f"sample_levels: level {level} must be in [0, {n})")
        rng = np.random.default_rng(seed)
        hops = self.config.get("hop_fraction") or self.config["vqvae_config"].get("hop_fraction", [0.125, 0.5, 0.5])
        for level in levels:
            prior = self.priors[level]
            temp = 0.99 if level == n - 1 else sampling_temperature
            select = functools.partial(_select, temp=temp, top_k=top_k, top_p=top_p, rng=rng)
            to_sample = total_length // prior.raw_to_tokens
            n_ctx = int(prior.cfg["n_ctx"])
            if to_sample >= n_ctx:
                windows = [(s, n_ctx) for s in _starts(to_sample, n_ctx, int(hops[level] * n_ctx))]
            else:  # a partial window
                have = music_tokens[level].shape[1]
                windows = [(0, have + to_sample) if have < n_ctx - to_sample else (have - n_ctx + to_sample, n_ctx)]
            for start, length in windows:
                prev = music_tokens[level][:, start:start + n_ctx]
                new = length - prev.shape[1]
                if new <= 0:
                    continue
                conds = []
                if level:
                    down = prior.cond_downsample
                    upper = music_tokens[level - 1][:, start // down:(start + n_ctx) // down]
                    if upper.shape[1] < n_ctx // down:  # zeros past the upper level's end, as Transformers
                        upper = np.pad(upper, ((0, 0), (0, n_ctx // down - upper.shape[1])))
                    conds = [upper]
                meta = self.get_metadata(labels[level], level, start=start, total_length=total_length, offset=offset)
                codes, _ = prior.sample(prev, conds, meta, length, select)
                music_tokens[level] = np.concatenate([music_tokens[level], codes[:, -new:]], axis=1)
        last = max((lvl for lvl in levels if music_tokens[lvl].shape[1]), default=None)
        audio = None
        if last is not None:
            fns = self.__dict__.setdefault("_decode_fns", {})
            if last not in fns:
                fns[last] = _jit_under_jax(self.vqvae, functools.partial(_decode_one, self.vqvae, n - 1 - last))
            audio = ops.convert_to_numpy(fns[last](ops.convert_to_tensor(music_tokens[last].astype("int32"))))
        return {"music_tokens": music_tokens, "audio_values": audio}

    def call(self, inputs):
        values = inputs["input_values"] if isinstance(inputs, dict) else inputs
        codes = self.encode(values)
        return {"audio_codes": codes, "audio_values": self.decode(codes, 0)}

    def dummy_inputs(self):
        return {"input_values": np.zeros((1, 32, self.config["vqvae_config"]["conv_input_shape"]), "float32")}


__all__ = ["JukeboxBackbone"]
