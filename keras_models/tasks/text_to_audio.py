"""TextToAudio: text in, audio out (Transformers' ``text-to-audio`` task: MusicGen, Bark).

A TextToAudio model is called like a seq2seq model and returns logits; ``generate`` turns text (or
a token-id dict) into a waveform:

    model = km.TextToAudio.from_preset("facebook/musicgen-small")
    logits = model({"input_ids", "attention_mask", "decoder_input_ids"})   # family-specific layout
    audio = model.generate(["80s pop track"], max_new_tokens=256)         # (batch, channels, samples)

Families implement ``generate_codes`` (the generated codec codes) and ``decode_audio`` (codes to
waveform); this class handles the inputs, the preprocessor and ``generation_config.json``.
"""

import json

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.tasks.task import Task

TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
# generation_config.json keys TextToAudio reads (others are Transformers' defaults or unused here)
GENERATION_KEYS = ("max_length", "max_new_tokens", "do_sample", "guidance_scale", "temperature", "top_k", "top_p",
                   "decoder_start_token_id", "pad_token_id", "eos_token_id")


def text_inputs(inputs, tokenizer, attention_mask=None):
    """``(input_ids, attention_mask)``, numpy int32 (batch, length), for a generate call's text
    input: strings (through ``tokenizer``, padded), a dict with ``input_ids`` (and optionally
    ``attention_mask``), or an id array; ``attention_mask`` is the mask passed beside them."""
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                   and all(isinstance(t, str) for t in inputs)):
        if tokenizer is None:
            raise InputError("generate: text inputs need a tokenizer (pass tokenizer=)")
        enc = tokenizer([inputs] if isinstance(inputs, str) else list(inputs), padding=True, return_tensors=None)
        ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
    else:
        if isinstance(inputs, dict):
            if "input_ids" not in inputs:
                raise InputError(f"generate: an input dict needs 'input_ids', got {sorted(inputs)}")
            inputs, attention_mask = inputs["input_ids"], inputs.get("attention_mask", attention_mask)
        elif inputs is None:
            raise InputError("generate: give text, a dict with 'input_ids', or an id array")
        ids = np.asarray(ops.convert_to_numpy(inputs))
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(ops.convert_to_numpy(attention_mask))
    ids, mask = (ids[None] if ids.ndim == 1 else ids), (mask[None] if mask.ndim == 1 else mask)
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise InputError(f"generate: input_ids must be (batch, length) with a mask of the same shape, got "
                         f"{ids.shape} and {mask.shape}")
    return ids.astype("int32"), mask.astype("int32")


@keras.saving.register_keras_serializable(package="keras_models")
class TextToAudio(Task):
    task_name = "TextToAudio"

    def __init__(self, backbone, preprocessor=None, generation_config=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.generation_config = dict(generation_config or {})

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            return None
        from keras_models.tokenizers import Tokenizer

        return Tokenizer.from_preset(folder)

    @classmethod
    def from_preset(cls, preset, *args, **kwargs):
        model = super().from_preset(preset, *args, **kwargs)
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        folder = resolve_preset(preset)
        model.read_generation_config(read_json(folder / "generation_config.json", required=False), folder)
        return model

    def read_generation_config(self, gen, folder):
        """Keep what generate reads of generation_config.json (``gen``: its dict, None when the preset
        has none; families with nested settings or extra preset files override this)."""
        if gen is not None:
            self.generation_config = {k: gen[k] for k in GENERATION_KEYS if k in gen}

    def save_extra_files(self, folder):
        super().save_extra_files(folder)  # the tokenizer
        if self.generation_config:
            (folder / "generation_config.json").write_text(json.dumps(self.generation_config, indent=2))

    def _text_inputs(self, inputs, tokenizer=None):
        """(input_ids, attention_mask) numpy int32 from strings, a dict or an id array."""
        return text_inputs(inputs, tokenizer if tokenizer is not None else self.preprocessor)

    def generate(self, inputs=None, *, tokenizer=None, return_codes=False, **kwargs):
        """The waveform (batch, channels, samples) for text(s), a dict with ``input_ids`` /
        ``attention_mask``, or an id array; ``return_codes=True`` returns ``{"audio_codes",
        "audio_values"}``. Keyword arguments use Transformers' names (``max_new_tokens``,
        ``do_sample``, ``guidance_scale``, ...) and override generation_config.json."""
        ids, mask = self._text_inputs(inputs, tokenizer)
        settings = {**self.generation_config, **kwargs}
        codes, scales = self.generate_codes(ids, mask, settings)
        audio = self.decode_audio(codes, scales)
        if return_codes:
            return {"audio_codes": codes, "audio_values": audio}
        return audio

    def generate_codes(self, input_ids, attention_mask, settings):
        """``(codes, audio_scales)``: the generated codec codes and the codec's scales (None: none)."""
        raise NotImplementedError

    def decode_audio(self, codes, audio_scales=None):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config["generation_config"] = self.generation_config
        return config


__all__ = ["TextToAudio"]
