"""Jukebox prior: the factorised-attention transformer over one VQ-VAE level's codes, its
conditioning, and the one-position sampling step over a whole-window key/value cache."""

import math

import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.jukebox.ops import _act, _Net, _Params, layer_norm
from keras_models.models.jukebox.sampling import _jit_under_jax
from keras_models.presets.weight_map import Rule


_PATTERNS = {
    "raw_column_previous_row_attention": lambda i: ("block_attn", "transpose_block_attn", "prev_block_attn")[i % 3],
    "enc_dec_with_lyrics": lambda i: ("prime_attn", "prime_attn", "dense_attn")[i % 3] if i % 16 == 15
    else ("block_attn", "transpose_block_attn", "prev_block_attn")[i % 3],
}
_BUILT_ATTN = ("block_attn", "transpose_block_attn", "prev_block_attn", "dense_attn", "prime_attn")


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
