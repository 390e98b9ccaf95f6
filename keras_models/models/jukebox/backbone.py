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

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.backbone import Backbone
from keras_models.models.jukebox.prior import JukeboxPriorLayer
from keras_models.models.jukebox.sampling import _decode_one, _jit_under_jax, _select, _starts
from keras_models.models.jukebox.vqvae import JukeboxVQVAELayer
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule


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
