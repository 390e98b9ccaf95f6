"""ImageToText: text generated from images. ``km.ImageToText.from_preset`` resolves the family's
class: an encoder-decoder (:class:`EncoderDecoderImageToText`: VisionEncoderDecoder, i.e. TrOCR,
Donut, Nougat) or a decoder with the image tokens prefixed (GIT, models/git).

EncoderDecoderImageToText: an image encoder and a text decoder with cross-attention,
Transformers' ``VisionEncoderDecoderModel``. Calling the model on ``{"pixel_values" (channels_last), "decoder_input_ids",
"decoder_attention_mask"}`` returns the logits (batch, decoder_seq, vocab). ``generate(pixel_values
or images)`` encodes the images once and runs the shared decode loop (greedy, sampling, beam search)
from the decoder start token, as Transformers' ``generate(pixel_values)``; it returns the start
token followed by the new ids (or texts, with ``decode=True`` and a tokenizer).

The backbone provides Seq2SeqLM's interface (``encode_inputs``, ``init_cache``, ``cross_kv_cache``,
``decode_with_cache``, the decoder's sizes and special tokens), ``hf_lm_head`` (the head's tensor
name) and ``tied_head(config)`` (whether its config ties the head to the token table).
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.config import GenerationError
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.tasks.seq2seq_generation import forced_tokens_and_start
from keras_models.tasks.seq2seq_lm import Seq2SeqLM
from keras_models.tasks.task import Task


class ImageToTextProcessor:
    """An image processor (``preprocessor_config.json``) and a tokenizer, as TrOCRProcessor /
    DonutProcessor: ``processor(images)`` -> ``{"pixel_values"}`` (channels_last), ``batch_decode``."""

    def __init__(self, image_processor=None, tokenizer=None):
        self.image_processor, self.tokenizer = image_processor, tokenizer

    @classmethod
    def from_preset(cls, folder):
        from keras_models.presets.config import read_processor_part
        from keras_models.preprocessing.image import ImageProcessor
        from keras_models.tasks.text import TOKENIZER_FILES

        image = ImageProcessor.from_preset(folder) if read_processor_part(folder, "image_processor") else None
        tokenizer = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES):
            from keras_models.tokenizers import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        return None if image is None and tokenizer is None else cls(image, tokenizer)

    def __call__(self, images):
        if self.image_processor is None:
            raise InputError("this model has no preprocessor_config.json: give pixel_values")
        return self.image_processor(images)

    def batch_decode(self, ids, skip_special_tokens=True):
        if self.tokenizer is None:
            raise InputError("this model has no tokenizer files: cannot decode ids")
        return self.tokenizer.batch_decode(np.asarray(ids).tolist(), skip_special_tokens=skip_special_tokens)

    def save_pretrained(self, folder):
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)


@keras.saving.register_keras_serializable(package="keras_models")
class ImageToText(Task):
    """The task every image-to-text family registers (``from_preset`` picks the family's class)."""

    task_name = "ImageToText"

    @classmethod
    def from_preset(cls, preset, *args, **kwargs):
        if cls.backbone_cls is None:  # km.ImageToText: the family's class, with its own from_preset steps
            from keras_models.presets.config import load_hf_config
            from keras_models.presets.resolve import resolve_preset

            folder = resolve_preset(preset)
            task_cls = cls._resolve_class(load_hf_config(folder), str(folder / "config.json"))
            if task_cls is not cls:
                return task_cls.from_preset(preset, *args, **kwargs)
        return super().from_preset(preset, *args, **kwargs)


def image_pixels(images, preprocessor, where="generate"):
    """(batch, height, width, channels) float32 pixel_values from pixel_values, a dict holding them,
    or raw images (uint8 arrays, PIL images, a list of them) through ``preprocessor``."""
    if isinstance(images, dict):
        if "pixel_values" not in images:
            raise InputError(f"{where}: an input dict needs 'pixel_values', got keys {sorted(images)}")
        images = images["pixel_values"]
    raw = isinstance(images, (list, tuple)) or (isinstance(images, np.ndarray) and images.dtype == np.uint8) \
        or not hasattr(images, "shape")
    if raw:
        if preprocessor is None:
            raise InputError(f"{where}: raw images need the model's image processor; give pixel_values")
        images = preprocessor(images)["pixel_values"]
    pixels = np.asarray(backend_to_numpy(images), "float32")
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4:
        raise InputError(f"{where}: pixel_values must be (batch, height, width, channels), got {pixels.shape}")
    return pixels


@keras.saving.register_keras_serializable(package="keras_models")
class EncoderDecoderImageToText(Seq2SeqLM, ImageToText):
    task_name = "ImageToText"
    hf_final_logits_bias = None

    @property
    def hf_lm_head(self):
        return self.backbone.hf_lm_head

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", cls.backbone_cls.tied_head(hf))
        kwargs.setdefault("final_logits_bias", False)
        return kwargs

    def task_config_to_hf(self):
        return {}  # the head's tying lives in the decoder's own config

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        return ImageToTextProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        GenerationMixin.save_extra_files(self, folder)  # generation_config.json (Task: the tokenizer)
        if self.preprocessor is not None and hasattr(self.preprocessor, "image_processor"):
            if self.preprocessor.image_processor is not None:
                self.preprocessor.image_processor.save_pretrained(folder)

    # --- generation -----------------------------------------------------------------------------
    def generate(self, pixel_values=None, generation_config=None, *, decoder_input_ids=None, tokenizer=None,
                 decode=False, **kwargs):
        """Text ids for images: ``pixel_values`` (batch, height, width, channels), a dict holding
        them, or raw images (through the model's image processor). Transformers' keyword names.
        Returns the decoder start token (or ``decoder_input_ids``) followed by the new ids."""
        if pixel_values is None:
            pixel_values = kwargs.pop("pixel_values", None)
        if pixel_values is None:
            raise GenerationError("generate: give pixel_values (or images)")
        pixels = image_pixels(pixel_values, self.preprocessor)
        start = forced_tokens_and_start(self, generation_config, kwargs)
        batch = pixels.shape[0]
        if decoder_input_ids is None:
            if start is None:
                raise GenerationError("generate: no decoder_start_token_id in the config; pass one")
            decoder_input_ids = np.full((batch, 1), start, "int32")
        prompt = np.asarray(backend_to_numpy(decoder_input_ids)).astype("int32")
        prompt = np.repeat(prompt[None], batch, axis=0) if prompt.ndim == 1 else prompt
        states = self.encode({"pixel_values": pixels})
        mask = np.ones((batch, int(states.shape[1])), "int32")
        self._gen_encoder = (states, ops.convert_to_tensor(mask), np.zeros((batch, 1), "int32"))
        tok = tokenizer or getattr(self.preprocessor, "tokenizer", None)
        try:
            out = GenerationMixin.generate(self, {"input_ids": prompt}, generation_config, tokenizer=tok, **kwargs)
        finally:
            self._gen_encoder = None
        if decode:
            if tok is None:
                raise GenerationError("generate: decode=True needs a tokenizer (pass tokenizer=)")
            return tok.batch_decode(np.asarray(out).tolist(), skip_special_tokens=True)
        return out


__all__ = ["ImageToText", "EncoderDecoderImageToText", "ImageToTextProcessor", "image_pixels"]
