"""GenerationConfig: Transformers' generation keyword names, defaults and validation.

Values come, in increasing priority, from Transformers' global defaults, the checkpoint's
config.json special token ids, its generation_config.json, and the keyword arguments given to
``generate``. Unknown keyword arguments are rejected; keys of generation_config.json that we do not
use are kept aside (and ignored) so that real checkpoints load.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

from keras_models.errors import KerasModelsError

logger = logging.getLogger("keras_models")


class GenerationError(KerasModelsError, ValueError):
    """A generation argument or generation_config.json value is invalid; the message names it."""


class UnknownGenerationArgumentError(GenerationError, TypeError):
    """``generate`` was given a keyword argument it does not know."""


# Our fields and Transformers' global defaults (GenerationConfig._get_default_generation_params).
DEFAULTS = {
    "max_length": 20,
    "max_new_tokens": None,
    "min_length": 0,
    "min_new_tokens": None,
    "do_sample": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "min_p": None,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "length_penalty": 1.0,
    "early_stopping": False,
    "num_return_sequences": 1,
    "eos_token_id": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "decoder_start_token_id": None,
    "stop_strings": None,
    # logits processors beyond the basics (generation/processors.py)
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "bad_words_ids": None,
    "sequence_bias": None,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "exponential_decay_length_penalty": None,
    "remove_invalid_values": False,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "guidance_scale": None,
    "renormalize_logits": False,
}
# numeric fields whose explicit null (in a file) means the default
_NULL_IS_DEFAULT = ("encoder_repetition_penalty", "encoder_no_repeat_ngram_size", "typical_p", "epsilon_cutoff",
                    "eta_cutoff", "remove_invalid_values", "renormalize_logits")

# Keys that Transformers knows and that change nothing in what we compute (output formatting,
# caching choices), accepted from files and from keyword arguments.
HARMLESS = {
    "use_cache", "output_scores", "output_logits", "output_attentions", "output_hidden_states",
    "return_dict_in_generate", "transformers_version", "_from_model_config", "cache_implementation",
    "diversity_penalty", "num_beam_groups", "is_assistant",
    "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "low_memory", "compile_config", "max_time",
    "watermarking_config", "top_h", "penalty_alpha", "dola_layers", "prefill_chunk_size",
    "token_healing", "trust_remote_code", "disable_compile", "assistant_early_exit",
    "assistant_lookbehind", "target_lookbehind", "force_words_ids", "constraints",
}
# Of those, the ones with no implementation here (diverse beam search, contrastive search, DoLa,
# top-h, watermarking, constrained beam search) and their neutral values: another value is an error
# from ``generate``'s keywords and a warning (then ignored) from a file.
_NEUTRAL = {
    "num_beam_groups": (None, 1), "diversity_penalty": (None, 0.0), "penalty_alpha": (None,), "top_h": (None,),
    "watermarking_config": (None,), "dola_layers": (None,), "force_words_ids": (None,),
    "constraints": (None,), "low_memory": (None, False),
}


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _ids(value, name, source):
    """Normalise an id or list of ids to a tuple of ints (None stays None)."""
    if value is None:
        return None
    if _is_int(value):
        value = [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
        value = [value] if _is_int(value) else value
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v >= 0 for v in value):
        raise GenerationError(f"{source}: {name} must be a non-negative int or a list of them, got {value!r}")
    return tuple(value) or None


def _word_lists(value, name, source):
    """bad_words_ids: a list of non-empty id lists -> tuple of tuples (None / [] -> None)."""
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if (not isinstance(value, (list, tuple))
            or not all(isinstance(w, (list, tuple)) and w and all(_is_int(i) and i >= 0 for i in w) for w in value)):
        raise GenerationError(f"{source}: {name} must be a list of non-empty lists of ids >= 0, got {value!r}")
    return tuple(tuple(w) for w in value) or None


def _sequence_bias(value, source):
    """sequence_bias: [[ids, bias], ...] (Transformers' list form) or {tuple(ids): bias} ->
    tuple of (ids tuple, float)."""
    if value is None:
        return None
    items = list(value.items()) if isinstance(value, dict) else value
    bad = GenerationError(f"{source}: sequence_bias must be a list of [ids, bias] pairs (ids a non-empty list "
                          f"of ids >= 0, bias a float, -inf bans), got {value!r}")
    if not isinstance(items, (list, tuple)):
        raise bad
    out = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise bad
        ids, bias = item
        if (not isinstance(ids, (list, tuple)) or not ids or not all(_is_int(i) and i >= 0 for i in ids)
                or not isinstance(bias, (int, float)) or isinstance(bias, bool)
                or bias != bias or bias == float("inf")):
            raise bad
        out.append((tuple(ids), float(bias)))
    return tuple(out) or None


class GenerationConfig:
    """Generation parameters with Transformers' names (see ``DEFAULTS``)."""

    def __init__(self, **kwargs):
        for k, v in DEFAULTS.items():
            setattr(self, k, copy.deepcopy(v))
        self.ignored = {}
        self.explicit = set()  # fields set by a file or an argument, not by the defaults
        self.update(_source="GenerationConfig", **kwargs)

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder, hf_config: dict | None = None):
        """Defaults from config.json's special token ids, then generation_config.json if present."""
        folder = Path(folder)
        cfg = cls()
        if hf_config is None and (folder / "config.json").exists():
            hf_config = json.loads((folder / "config.json").read_text())
        hf_config = hf_config or {}
        text = hf_config.get("text_config") or {}
        for key in ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id"):
            value = hf_config.get(key, text.get(key))
            if value is not None:
                cfg.update(_source=str(folder / "config.json"), _lenient=True, **{key: value})
        path = folder / "generation_config.json"
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise GenerationError(f"{path}: not valid JSON ({e})") from e
            if not isinstance(data, dict):
                raise GenerationError(f"{path}: expected a JSON object")
            cfg.update(_source=str(path), _lenient=True, **data)
        return cfg

    def copy(self):
        return copy.deepcopy(self)

    def update(self, _source="generate", _lenient=False, **kwargs):
        """Set fields. Unknown names raise (or, from a file, are kept in ``ignored``)."""
        for key, value in kwargs.items():
            if key in DEFAULTS:
                if key in ("eos_token_id",):
                    value = _ids(value, key, _source)
                elif key in ("pad_token_id", "bos_token_id", "decoder_start_token_id") and value is not None:
                    if isinstance(value, (list, tuple)) and len(value) >= 1:
                        value = value[0]
                    if not _is_int(value):
                        raise GenerationError(f"{_source}: {key} must be an int, got {value!r}")
                elif key in ("forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens"):
                    value = _ids(value, key, _source)
                elif key == "forced_bos_token_id" and value is not None and not (_is_int(value) and value >= 0):
                    raise GenerationError(f"{_source}: {key} must be an int >= 0, got {value!r}")
                elif key == "bad_words_ids":
                    value = _word_lists(value, key, _source)
                elif key == "sequence_bias":
                    value = _sequence_bias(value, _source)
                elif key == "exponential_decay_length_penalty" and value is not None:
                    if (not isinstance(value, (list, tuple)) or len(value) != 2 or not _is_int(value[0])
                            or value[0] < 0 or not isinstance(value[1], (int, float)) or isinstance(value[1], bool)):
                        raise GenerationError(f"{_source}: {key} must be (start_index >= 0, decay_factor), "
                                              f"got {value!r}")
                    value = (int(value[0]), float(value[1]))
                elif key in _NULL_IS_DEFAULT and value is None:
                    value = DEFAULTS[key]
                elif key == "stop_strings" and value is not None:
                    value = [value] if isinstance(value, str) else list(value)
                    if not value or not all(isinstance(s, str) and s for s in value):
                        raise GenerationError(f"{_source}: stop_strings must be a non-empty str or list of them")
                setattr(self, key, value)
                self.explicit.add(key)
            elif key in HARMLESS:
                if value not in _NEUTRAL.get(key, (value,)):
                    if not _lenient:
                        raise GenerationError(f"{_source}: {key}={value!r} is not supported by keras_models")
                    logger.warning("%s: %s=%r is not supported and is ignored", _source, key, value)
                self.ignored[key] = value
            elif _lenient:
                self.ignored[key] = value
            else:
                raise UnknownGenerationArgumentError(
                    f"{_source}: unknown generation argument {key!r}; known: {sorted(DEFAULTS)}"
                )
        return self

    # --- resolution -------------------------------------------------------------------------------
    def validate(self, source="generate"):
        """Raise a GenerationError naming the first bad value."""
        def bad(name, why):
            raise GenerationError(f"{source}: {name}={getattr(self, name)!r} {why}")

        for name in ("max_new_tokens", "min_new_tokens"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 0):
                bad(name, "must be an int >= 0")
        for name in ("max_length", "min_length", "no_repeat_ngram_size"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                bad(name, "must be an int >= 0")
        for name in ("num_beams", "num_return_sequences"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                bad(name, "must be an int >= 1")
        if not isinstance(self.do_sample, bool):
            bad("do_sample", "must be True or False")
        t = self.temperature
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
            bad("temperature", "must be a float > 0 (use do_sample=False for greedy decoding)")
        if not _is_int(self.top_k) or self.top_k < 0:
            bad("top_k", "must be an int >= 0 (0 disables it)")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            bad("top_p", "must lie in (0, 1]")
        if self.min_p is not None and (not isinstance(self.min_p, (int, float)) or not 0.0 <= self.min_p <= 1.0):
            bad("min_p", "must lie in [0, 1]")
        if not isinstance(self.repetition_penalty, (int, float)) or not self.repetition_penalty > 0:
            bad("repetition_penalty", "must be a float > 0")
        if not isinstance(self.length_penalty, (int, float)) or isinstance(self.length_penalty, bool):
            bad("length_penalty", "must be a float")
        for name in ("typical_p",):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 < v <= 1.0:
                bad(name, "must lie in (0, 1]")
        for name in ("epsilon_cutoff", "eta_cutoff"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
                bad(name, "must lie in [0, 1) (0 disables it)")
        if not isinstance(self.encoder_repetition_penalty, (int, float)) or not self.encoder_repetition_penalty > 0:
            bad("encoder_repetition_penalty", "must be a float > 0")
        if not _is_int(self.encoder_no_repeat_ngram_size) or self.encoder_no_repeat_ngram_size < 0:
            bad("encoder_no_repeat_ngram_size", "must be an int >= 0")
        g = self.guidance_scale
        if g is not None and (not isinstance(g, (int, float)) or isinstance(g, bool)):
            bad("guidance_scale", "must be a float (1 or None disables it)")
        for name in ("renormalize_logits", "remove_invalid_values"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be True or False")
        if self.early_stopping not in (True, False, "never"):
            bad("early_stopping", "must be True, False or 'never'")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            bad("num_return_sequences", "> 1 needs do_sample=True or num_beams > 1 (greedy gives one answer)")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            bad("num_return_sequences", f"must be <= num_beams={self.num_beams}")
        return self

    # sampling-only arguments and the values that leave sampling unchanged
    _SAMPLING_ONLY = {"temperature": 1.0, "top_p": 1.0, "min_p": None, "typical_p": 1.0,
                      "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}

    def warn_unused_sampling(self, arguments, source="generate"):
        """Warn, as Transformers does, when the call sets a sampling-only argument (``temperature``,
        ``top_p``, ...) that greedy or beam search will ignore (``do_sample`` is False)."""
        if self.do_sample:
            return []
        unused = [f"{k}={arguments[k]!r}" for k, neutral in self._SAMPLING_ONLY.items()
                  if k in arguments and arguments[k] != neutral]
        if unused:
            warnings.warn(f"{source}: {', '.join(unused)} only applies when sampling; do_sample is False, "
                          "so it is ignored (pass do_sample=True to sample)", UserWarning, stacklevel=3)
        return unused

    def resolved_lengths(self, prompt_length, context_length=None):
        """(max_length, min_length) counted from the start of the (padded) prompt, as Transformers:
        without max_new_tokens or an explicit max_length, 20 new tokens (within the context)."""
        if self.max_new_tokens is not None:
            max_length = prompt_length + self.max_new_tokens
        elif "max_length" in self.explicit:
            max_length = self.max_length
        else:
            max_length = prompt_length + self.max_length
            if context_length:
                max_length = min(max_length, context_length)
        min_length = self.min_length  # Transformers applies both: EOS waits for the later one
        if self.min_new_tokens is not None:
            min_length = max(min_length, prompt_length + self.min_new_tokens)
        return max_length, min_length

    def to_dict(self):
        return {k: getattr(self, k) for k in DEFAULTS}

    def to_json_file(self, path):
        data = {k: v for k, v in self.to_dict().items() if v != DEFAULTS[k]}
        for key in ("eos_token_id", "forced_eos_token_id"):
            if data.get(key) is not None:
                eos = list(data[key])
                data[key] = eos[0] if len(eos) == 1 else eos
        if data.get("sequence_bias") is not None:
            data["sequence_bias"] = [[list(ids), bias] for ids, bias in data["sequence_bias"]]
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    def __repr__(self):
        changed = {k: v for k, v in self.to_dict().items() if v != DEFAULTS[k]}
        return f"GenerationConfig({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
