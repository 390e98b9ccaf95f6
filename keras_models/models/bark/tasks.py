"""Bark's heads and generation.

* :class:`BarkCausalLM` (``BarkSemanticModel`` / ``BarkCoarseModel`` checkpoints alone): the causal
  model and its bias-free head of ``output_vocab_size``.
* :class:`BarkTextToAudio` (``BarkModel``): text -> semantic tokens -> coarse codes -> fine codes ->
  EnCodec waveform, as Transformers' ``BarkModel.generate``:

  1. semantic: the text ids (offset by ``text_encoding_offset``, padded positions set to
     ``text_pad_token``, padded / cut to ``max_input_semantic_length``) are embedded *added to* the
     speaker's semantic history (or ``semantic_pad_token``), followed by ``semantic_infer_token``;
     tokens outside the semantic vocabulary (except eos) are suppressed, ``min_eos_p`` forces eos
     once its probability passes it, and a finished row continues with the pad token;
  2. coarse: sliding windows of ``sliding_window_len`` tokens, each conditioned on up to
     ``max_coarse_input_length`` semantic tokens, ``coarse_infer_token`` and up to
     ``max_coarse_history`` earlier coarse tokens; the two codebooks alternate (even steps the first,
     odd steps the second, each restricted to its own range of the vocabulary);
  3. fine: windows of ``max_fine_input_length`` frames (advancing by ``max_fine_history_length``)
     where each codebook from ``n_coarse_codebooks`` on is predicted from the ones below it (argmax;
     sampled when the fine ``temperature`` is not 1);
  4. the codec decodes the ``n_fine_codebooks`` codes.

Settings come from generation_config.json's ``semantic_config``, ``coarse_acoustics_config``,
``fine_acoustics_config`` and ``codebook_size``; keyword arguments override them, unprefixed for the
three models or prefixed (``semantic_``, ``coarse_``, ``fine_``) for one, as in Transformers.
"""

import json
import math
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.config import GenerationError
from keras_models.models.bark.backbone import BarkBackbone, BarkCoarseBackbone, BarkSemanticBackbone
from keras_models.models.registry import register_task
from keras_models.tasks.causal_lm import CausalLM
from keras_models.tasks.text_to_audio import TextToAudio

_ser = keras.saving.register_keras_serializable(package="keras_models")

# Transformers' Bark{Semantic,Coarse,Fine}GenerationConfig defaults (and BarkGenerationConfig's)
SEMANTIC_DEFAULTS = dict(eos_token_id=10_000, max_new_tokens=768, temperature=1.0, do_sample=False,
                         text_encoding_offset=10_048, text_pad_token=129_595, semantic_infer_token=129_599,
                         semantic_vocab_size=10_000, max_input_semantic_length=256, semantic_rate_hz=49.9,
                         min_eos_p=None, pad_token_id=None, top_k=None, top_p=None)
COARSE_DEFAULTS = dict(temperature=1.0, do_sample=False, coarse_semantic_pad_token=12_048, coarse_rate_hz=75,
                       n_coarse_codebooks=2, coarse_infer_token=12_050, max_coarse_input_length=256,
                       max_coarse_history=630, sliding_window_len=60, top_k=None, top_p=None)
FINE_DEFAULTS = dict(temperature=1.0, max_fine_history_length=512, max_fine_input_length=1024, n_fine_codebooks=8)
SUB_CONFIGS = {"semantic": ("semantic_config", SEMANTIC_DEFAULTS),
               "coarse": ("coarse_acoustics_config", COARSE_DEFAULTS), "fine": ("fine_acoustics_config", FINE_DEFAULTS)}
TOP_DEFAULTS = dict(codebook_size=1024, sample_rate=24_000)
# per-call settings (unprefixed: every sub-model that reads it; prefixed: that one)
CALL_KEYS = {"semantic": ("do_sample", "temperature", "top_k", "top_p", "max_new_tokens", "min_eos_p"),
             "coarse": ("do_sample", "temperature", "top_k", "top_p"), "fine": ("temperature",)}
PROMPT_KEYS = {"semantic_prompt": 1, "coarse_prompt": 2, "fine_prompt": 2}


@_ser
@register_task(BarkSemanticBackbone, "CausalLM", ("BarkSemanticModel",))
class BarkCausalLM(CausalLM):
    """Logits (batch, seq, output_vocab_size) of Bark's semantic or coarse model (CausalLM's untied,
    bias-free head, as wide as the backbone's ``output_vocab_size``)."""


@_ser
@register_task(BarkCoarseBackbone, "CausalLM", ("BarkCoarseModel",))
class BarkCoarseCausalLM(BarkCausalLM):
    pass


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def load_voice_preset(voice, presets=None):
    """A speaker prompt ``{"semantic_prompt" (T,), "coarse_prompt" (2, T), "fine_prompt" (8, T)}`` from
    a dict of arrays, a name in the preset's ``speaker_embeddings_path.json`` (``presets``: name ->
    {key: path}), or an ``.npz`` file (read with ``allow_pickle=False``)."""
    if isinstance(voice, dict):
        out = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in voice.items()}
    elif isinstance(voice, (str, Path)):
        if presets and str(voice) in presets:
            out = {}
            for key, path in presets[str(voice)].items():
                try:
                    out[key] = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise InputError(f"voice preset {voice!r}: cannot read {path} ({e})") from e
        else:
            path = Path(voice)
            if path.suffix != ".npz":
                path = path.with_name(path.name + ".npz")
            if not path.is_file():
                known = sorted(presets or ())
                raise InputError(f"voice preset {str(voice)!r}: neither a voice of this preset ({known}) nor an "
                                 ".npz file")
            try:
                with np.load(path, allow_pickle=False) as data:
                    out = {k: data[k] for k in data.files}
            except (OSError, ValueError) as e:
                raise InputError(f"voice preset {str(path)!r}: not a readable .npz without pickled objects "
                                 f"({e})") from e
    else:
        raise InputError(f"voice preset: expected a name, an .npz path or a dict of arrays, got {type(voice).__name__}")
    for key, ndim in PROMPT_KEYS.items():
        if key not in out:
            raise InputError(f"voice preset: missing {key!r} (it has {sorted(out)})")
        if out[key].ndim != ndim or out[key].dtype.kind not in "iu":
            raise InputError(f"voice preset: {key} must be a {ndim}-D integer array, got {out[key].ndim}-D "
                             f"{out[key].dtype}")
    return {k: out[k].astype("int64") for k in PROMPT_KEYS}


def read_voice_presets(folder):
    """name -> {key: absolute path} from ``speaker_embeddings_path.json`` (paths inside ``folder``)."""
    path = Path(folder) / "speaker_embeddings_path.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    root = Path(folder).resolve()
    out = {}
    for name, entry in data.items():
        if name == "repo_or_path":
            continue
        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            raise InputError(f"{path}: entry {name!r} must map prompt names to file paths")
        files = {}
        for key, rel in entry.items():
            target = (root / rel).resolve()
            if root not in target.parents:
                raise InputError(f"{path}: entry {name!r} points outside the preset folder ({rel!r})")
            files[key] = target
        out[name] = files
    return out


@_ser
@register_task(BarkBackbone, "TextToAudio", ("BarkModel",))
class BarkTextToAudio(TextToAudio):
    """Logits for the sub-models' inputs (``{"semantic_logits", "coarse_logits", "fine_logits"}`` for
    ``semantic_input_ids`` / ``coarse_input_ids`` / ``fine_input_ids``, and the keyword
    ``fine_codebook_idx``);
    ``generate`` (see the module docstring) returns the waveform (batch, 1, samples)."""

    hf_head_patterns = ()

    def __init__(self, backbone, preprocessor=None, generation_config=None, voice_presets=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, generation_config=generation_config, **kwargs)
        self.voice_presets = {k: {kk: str(p) for kk, p in v.items()} for k, v in (voice_presets or {}).items()}

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, fine_codebook_idx=None, training=False):
        b = self.backbone
        idx = b.fine_acoustics.n_codes_total - 1 if fine_codebook_idx is None else fine_codebook_idx
        out = b(inputs, fine_codebook_idx=idx, training=training)
        logits = {}
        if "semantic_last_hidden_state" in out:
            logits["semantic_logits"] = b.semantic_head(out["semantic_last_hidden_state"])
        if "coarse_last_hidden_state" in out:
            logits["coarse_logits"] = b.coarse_head(out["coarse_last_hidden_state"])
        if "fine_last_hidden_state" in out:
            logits["fine_logits"] = b.fine_acoustics.codebook_logits(out["fine_last_hidden_state"], idx)
        return logits

    def read_generation_config(self, gen, folder):
        """generation_config.json (Transformers' BarkGenerationConfig.to_dict) and the preset's voices."""
        out = {}
        for _, (key, defaults) in SUB_CONFIGS.items():
            sub = (gen or {}).get(key) or {}
            if not isinstance(sub, dict):
                raise InputError(f"{folder / 'generation_config.json'}: {key} must be an object")
            out[key] = {k: sub[k] for k in defaults if k in sub}
        out.update({k: gen[k] for k in TOP_DEFAULTS if k in (gen or {})})
        self.generation_config = out
        self.voice_presets = {k: {kk: str(p) for kk, p in v.items()} for k, v in read_voice_presets(folder).items()}

    def get_config(self):
        config = super().get_config()
        config["voice_presets"] = self.voice_presets
        return config

    def save_extra_files(self, folder):
        """The tokenizer, generation_config.json and the voices (``speaker_embeddings_path.json`` and
        its ``.npy`` files, laid out as BarkProcessor.save_pretrained writes them)."""
        super().save_extra_files(folder)
        if not self.voice_presets:
            return
        index = {"repo_or_path": "."}
        for name, files in self.voice_presets.items():
            entry = {}
            for key in PROMPT_KEYS:
                if key not in files:
                    raise InputError(f"voice preset {name!r}: no {key} file to save")
                rel = Path("speaker_embeddings") / f"{name}_{key}.npy"
                target = (Path(folder) / rel).resolve()
                if Path(folder).resolve() not in target.parents:
                    raise InputError(f"voice preset name {name!r} would be saved outside {folder}")
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, np.load(files[key], allow_pickle=False), allow_pickle=False)
                entry[key] = rel.as_posix()
            index[name] = entry
        (Path(folder) / "speaker_embeddings_path.json").write_text(json.dumps(index, indent=2))

    # --- settings ------------------------------------------------------------------------------
    def _settings(self, settings):
        """(semantic, coarse, fine, top-level) setting dicts: defaults < generation_config.json <
        unprefixed keyword < prefixed keyword."""
        subs = {}
        given = dict(settings)
        for name, (key, defaults) in SUB_CONFIGS.items():
            subs[name] = {**defaults, **(given.pop(key, None) or {})}
        # BarkModel.generate passes min_eos_p to the semantic model from its own arguments only (the
        # semantic generation config's value is never read there): the same here
        subs["semantic"]["min_eos_p"] = None
        top = {**TOP_DEFAULTS, **{k: given.pop(k) for k in TOP_DEFAULTS if k in given}}
        for k in ("seed", "history_prompt", "voice_preset"):
            if k in given:
                top[k] = given.pop(k)
        for flat in [k for k in given if not k.startswith(("semantic_", "coarse_", "fine_"))]:
            v = given.pop(flat)
            readers = [n for n, keys in CALL_KEYS.items() if flat in keys]
            if not readers:
                raise GenerationError(f"generate: unknown or unsupported argument {flat!r} for Bark")
            for n in readers:
                subs[n][flat] = v
        for k, v in given.items():
            name, key = k.split("_", 1)
            if key not in CALL_KEYS[name] and key not in SUB_CONFIGS[name][1]:
                raise GenerationError(f"generate: unknown or unsupported argument {k!r} for Bark")
            subs[name][key] = v
        return subs["semantic"], subs["coarse"], subs["fine"], top

    def _text_inputs(self, inputs, tokenizer=None):
        tok = tokenizer if tokenizer is not None else self.preprocessor
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                       and all(isinstance(t, str) for t in inputs)):
            if tok is None:
                raise InputError("generate: text inputs need a tokenizer (pass tokenizer=)")
            length = self._settings(self.generation_config)[0]["max_input_semantic_length"]
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            enc = tok(texts, add_special_tokens=False, padding="max_length", max_length=length, truncation=True,
                      return_tensors=None)  # as BarkProcessor
            return np.asarray(enc["input_ids"], "int32"), np.asarray(enc["attention_mask"], "int32")
        return super()._text_inputs(inputs, tokenizer)

    # --- compiled pieces ---------------------------------------------------------------------------
    def _compiled(self, key, make):
        cache = self.__dict__.get("_bark_compiled")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_bark_compiled", cache)  # not a tracked Keras attribute
        if key not in cache:
            from keras_models.generation.backend import compile_fn

            cache[key] = compile_fn(self, make())
        return cache[key]

    def _causal_fns(self, which):
        b = self.backbone
        model, head = (b.semantic, b.semantic_head) if which == "semantic" else (b.coarse_acoustics, b.coarse_head)

        def prefill(ids, extra, cache, mask):
            """``extra``: embeddings added to the ids' (the semantic history) or None."""
            def embed(i, table):
                x = table(i)
                return x if extra is None else x + extra

            hidden, cache = model.call_with_cache(ids, cache, 0, mask, embed=embed)
            return ops.cast(head(hidden[:, -1]), "float32"), cache

        def step(ids, cache, index, mask):
            hidden, cache = model.call_with_cache(ids, cache, index, mask)
            return ops.cast(head(hidden[:, -1]), "float32"), cache

        return prefill, step

    def _run_causal(self, which, ids, extra, max_new, process, pick, stop=None):
        """Greedy / sampled decoding of ``max_new`` tokens after ``ids`` (batch, n) numpy: ``process``
        (logits, step) -> logits, ``pick`` logits -> ids, ``stop`` (eos, pad) or None."""
        b = self.backbone
        model = b.semantic if which == "semantic" else b.coarse_acoustics
        batch, n = ids.shape
        length = n + max_new - 1
        limit = model.options["max_position_embeddings"]
        if length > limit:
            raise GenerationError(f"generate: the {which} model would read {length} positions, its block_size is "
                                  f"{limit}")
        prefill = self._compiled((which, "prefill", extra is None), lambda: self._causal_fns(which)[0])
        step = self._compiled((which, "step"), lambda: self._causal_fns(which)[1])
        cache = model.init_cache(batch, max(length, n))
        mask = ops.ones((batch, max(length, n)), "int32")
        logits, cache = prefill(ops.convert_to_tensor(ids.astype("int32")), extra, cache, mask)
        out = np.zeros((batch, 0), "int64")
        finished = np.zeros(batch, bool)
        for i in range(max_new):
            nxt = pick(process(ops.convert_to_numpy(logits).astype("float32"), i)).astype("int64")
            if stop is not None:
                eos, pad = stop
                nxt = np.where(finished, pad, nxt)
                finished |= nxt == eos
            out = np.concatenate([out, nxt[:, None]], axis=1)
            if (stop is not None and finished.all()) or i == max_new - 1:
                break
            logits, cache = step(ops.convert_to_tensor(nxt[:, None].astype("int32")), cache,
                                 ops.convert_to_tensor(np.int32(n + i)), mask)
        return out

    # --- the three stages --------------------------------------------------------------------------
    def _picker(self, sub, seed):
        from keras_models.models.musicgen.tasks import _sampler

        if sub.get("do_sample"):
            return _sampler({**sub, "seed": seed})
        return lambda logits: logits.argmax(-1)

    def semantic_tokens(self, input_ids, attention_mask, sem, history, seed=None):
        b = self.backbone
        n = int(sem["max_input_semantic_length"])
        ids = input_ids.astype("int64")[:, :n] + int(sem["text_encoding_offset"])
        mask = attention_mask[:, :n]
        ids = np.where(mask == 0, int(sem["text_pad_token"]), ids)
        if ids.shape[1] < n:  # as BarkProcessor pads to max_length
            ids = np.pad(ids, ((0, 0), (0, n - ids.shape[1])), constant_values=int(sem["text_pad_token"]))
        pad = int(sem["eos_token_id"])  # Transformers' semantic_pad_token
        hist = np.full(n, pad, "int64")
        if history is not None:
            h = history["semantic_prompt"][-n:] if n else history["semantic_prompt"][:0]
            hist[:len(h)] = h
        hist = np.repeat(hist[None], ids.shape[0], axis=0)
        infer = np.full((ids.shape[0], 1), int(sem["semantic_infer_token"]), "int64")
        table = b.semantic.token_embedding
        extra = ops.concatenate([table(ops.convert_to_tensor(hist.astype("int32"))),
                                 ops.zeros((ids.shape[0], 1, b.semantic.hidden_size), table.compute_dtype)], axis=1)
        vocab = b.semantic.output_vocab_size
        suppress = np.zeros(vocab, bool)
        suppress[int(sem["semantic_vocab_size"]):pad] = True
        suppress[pad + 1:] = True
        eos = int(sem["eos_token_id"])
        min_eos_p = sem.get("min_eos_p")

        def process(logits, _):
            logits = np.where(suppress[None], -np.inf, logits)
            if min_eos_p:
                forced = _softmax(logits)[:, eos] > min_eos_p
                only = np.full_like(logits, -np.inf)
                only[:, eos] = logits[:, eos]
                logits = np.where(forced[:, None], only, logits)
            return logits

        fill = sem.get("pad_token_id")
        return self._run_causal("semantic", np.concatenate([ids, infer], axis=1), extra,
                                int(sem["max_new_tokens"]), process, self._picker(sem, seed),
                                stop=(eos, eos if fill is None else int(fill)))

    def coarse_tokens(self, semantic, sem, coarse, codebook_size, history, seed=None):
        sv = int(sem["semantic_vocab_size"])
        cs = int(codebook_size)
        n_coarse = int(coarse["n_coarse_codebooks"])
        pad = int(coarse["coarse_semantic_pad_token"])
        semantic = np.where(semantic == int(sem["eos_token_id"]), pad, semantic)
        ratio = coarse["coarse_rate_hz"] / sem["semantic_rate_hz"] * n_coarse
        max_hist = int(coarse["max_coarse_history"])
        max_sem_hist = int(np.floor(max_hist / ratio))
        # Transformers computes the lengths in float32 (an int tensor times a Python float)
        count = (semantic != pad).sum(1).astype("float32")
        lengths = np.floor(count * np.float32(ratio) / np.float32(n_coarse))
        lengths = np.round(lengths * np.float32(n_coarse)).astype("int64")
        max_len = int(lengths.max())
        batch = semantic.shape[0]
        if history is not None:
            sem_hist = np.repeat(history["semantic_prompt"][None], batch, axis=0)
            c = history["coarse_prompt"].copy()
            c = c + (cs * np.arange(c.shape[0]))[:, None]
            c = c.T.reshape(-1) + sv
            coarse_hist = np.repeat(c[None], batch, axis=0)
            n_sem = min(max_sem_hist, sem_hist.shape[1] - sem_hist.shape[1] % 2,
                        int(np.floor(coarse_hist.shape[1] / ratio)))
            n_c = int(round(n_sem * ratio))
            sem_hist = sem_hist[:, -n_sem:]
            coarse_hist = coarse_hist[:, -n_c:][:, :-2]
        else:
            sem_hist = np.zeros((batch, 0), "int64")
            coarse_hist = np.zeros((batch, 0), "int64")
        base = sem_hist.shape[1]
        semantic = np.concatenate([sem_hist, semantic], axis=1)
        window = int(coarse["sliding_window_len"])
        max_in = int(coarse["max_coarse_input_length"])
        x = coarse_hist
        n_hist = x.shape[1]
        total = 0
        pick = self._picker(coarse, seed)
        for _ in range(int(math.ceil(max_len / window))):
            idx = base + int(round(total / ratio))
            inp = semantic[:, max(0, idx - max_sem_hist):][:, :max_in]
            inp = np.pad(inp, ((0, 0), (0, max_in - inp.shape[1])), constant_values=pad)
            inp = np.concatenate([inp, np.full((batch, 1), int(coarse["coarse_infer_token"])),
                                  x[:, -max_hist:]], axis=1)

            def process(logits, i):
                out = np.full_like(logits, -np.inf)
                if i % 2 == 0:  # Transformers' AlternatingCodebooksLogitsProcessor: two codebooks
                    out[:, sv:sv + cs] = logits[:, sv:sv + cs]
                else:
                    out[:, sv + cs:] = logits[:, sv + cs:]
                return out

            new = self._run_causal("coarse", inp, None, min(window, max_len - total), process, pick)
            x = np.concatenate([x, new], axis=1)
            total = x.shape[1] - n_hist
        return x[:, n_hist:]

    def _fine_fn(self, idx):
        fine = self.backbone.fine_acoustics

        def run(ids):
            return ops.cast(fine.codebook_logits(fine.codebook_hidden(ids, idx), idx), "float32")

        return run

    def fine_tokens(self, coarse_out, sem, coarse, fine_cfg, codebook_size, history, seed=None):
        cs = int(codebook_size)
        n_coarse = int(coarse["n_coarse_codebooks"])
        n_fine = int(fine_cfg["n_fine_codebooks"])
        fine = self.backbone.fine_acoustics
        if n_fine > fine.n_codes_total:
            raise GenerationError(f"generate: n_fine_codebooks={n_fine} but the fine model reads {fine.n_codes_total}")
        max_hist = int(fine_cfg["max_fine_history_length"])
        max_in = int(fine_cfg["max_fine_input_length"])
        temperature = fine_cfg.get("temperature")
        batch = coarse_out.shape[0]
        codes = np.remainder(coarse_out.reshape(batch, -1, n_coarse) - int(sem["semantic_vocab_size"]), cs)
        frames = codes.shape[1]
        buf = np.pad(codes, ((0, 0), (0, 0), (0, n_fine - n_coarse)), constant_values=cs)
        n_history = 0
        if history is not None:
            h = np.repeat(history["fine_prompt"].T[None], batch, axis=0)[:, -max_hist:, :]
            if h.shape[2] < n_fine:
                raise InputError(f"voice preset: fine_prompt has {h.shape[2]} codebooks, generation needs {n_fine}")
            buf = np.concatenate([h[..., :n_fine], buf], axis=1)
            n_history = h.shape[1]
        n_remove = 0
        if buf.shape[1] < max_in:
            n_remove = max_in - buf.shape[1]
            buf = np.pad(buf, ((0, 0), (0, n_remove), (0, 0)), constant_values=cs)
        n_loops = max(0, int(np.ceil((frames - (max_in - n_history)) / max_hist))) + 1
        rng = np.random.default_rng(seed)
        if fine.n_codes_total > n_fine:
            buf = np.pad(buf, ((0, 0), (0, 0), (0, fine.n_codes_total - n_fine)), constant_values=cs)
        for outer in range(n_loops):
            start = min(outer * max_hist, buf.shape[1] - max_in)
            fill = min(n_history + outer * max_hist, buf.shape[1] - max_hist)
            rel = fill - start
            window = buf[:, start:start + max_in, :]  # a view: written in place, as Transformers does
            for inner in range(n_coarse, n_fine):
                run = self._compiled(("fine", inner), lambda inner=inner: self._fine_fn(inner))
                logits = ops.convert_to_numpy(run(ops.convert_to_tensor(window.astype("int32"))))[..., :cs]
                if temperature is None or temperature == 1.0:
                    preds = logits[:, rel:].argmax(-1)
                else:
                    probs = _softmax(logits / temperature)[:, rel:max_in].reshape(-1, cs)
                    draws = rng.random((probs.shape[0], 1))
                    preds = np.minimum((np.cumsum(probs, -1) < draws).sum(-1), cs - 1).reshape(batch, -1)
                window[:, rel:, inner] = preds
        out = buf[..., :n_fine].transpose(0, 2, 1)[:, :, n_history:]
        if n_remove:
            out = out[:, :, :-n_remove]
        return out

    def generate_codes(self, input_ids, attention_mask, settings):
        sem, coarse, fine_cfg, top = self._settings(settings)
        voice = top.get("history_prompt", top.get("voice_preset"))
        history = None if voice is None else load_voice_preset(voice, self.voice_presets)
        seed = top.get("seed")
        semantic = self.semantic_tokens(input_ids, attention_mask, sem, history, seed)
        coarse_out = self.coarse_tokens(semantic, sem, coarse, top["codebook_size"], history, seed)
        codes = self.fine_tokens(coarse_out, sem, coarse, fine_cfg, top["codebook_size"], history, seed)
        return codes.astype("int32"), None

    def decode_audio(self, codes, audio_scales=None):
        codec = self.backbone.codec_model
        return ops.convert_to_numpy(codec.decode_frame(ops.convert_to_tensor(codes)))


__all__ = ["BarkCausalLM", "BarkCoarseCausalLM", "BarkTextToAudio", "load_voice_preset", "read_voice_presets"]
