"""Pix2StructForConditionalGeneration as km.ImageToText, and Pix2StructProcessor.

Calling the model on ``{"flattened_patches", "attention_mask", "decoder_input_ids",
"decoder_attention_mask"}`` returns the logits (batch, decoder_seq, vocab). ``generate`` takes the
processor's output (a dict, or ``flattened_patches`` with ``attention_mask=``) or raw images (with
``header_text=`` for VQA checkpoints, rendered with the font given as ``font_path=``), and an
optional decoder prefix ``decoder_input_ids`` (the processor's ``text=`` for captioning
checkpoints): as Transformers, the decoder start token is put in front of a prefix that does not
begin with it. Returns the start token, the prefix and the new ids.
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.config import GenerationError
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.models.pix2struct.backbone import Pix2StructBackbone
from keras_models.models.pix2struct.processor import CONFIG_NAME, Pix2StructImageProcessor
from keras_models.models.registry import register_task
from keras_models.tasks.image_to_text import EncoderDecoderImageToText, ImageToTextProcessor
from keras_models.tasks.seq2seq_generation import forced_tokens_and_start


class Pix2StructProcessor(ImageToTextProcessor):
    """``processor(images, text=None)``: the image processor's ``flattened_patches`` /
    ``attention_mask``; for a VQA checkpoint ``text`` is the question rendered onto the image,
    otherwise its token ids become ``decoder_input_ids`` / ``decoder_attention_mask``, as
    Transformers' Pix2StructProcessor."""

    @classmethod
    def from_preset(cls, folder):
        from keras_models.tasks.text import TOKENIZER_FILES

        image = Pix2StructImageProcessor.from_preset(folder) if (folder / CONFIG_NAME).is_file() else None
        tokenizer = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES):
            from keras_models.tokenizers import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        return None if image is None and tokenizer is None else cls(image, tokenizer)

    def __call__(self, images, text=None, max_patches=2048, add_special_tokens=True, **kwargs):
        """As Transformers' processor: ``max_patches`` 2048 unless given (not the image processor's
        own value) and the text's special tokens (T5's ``</s>``) added."""
        if self.image_processor is None:
            raise InputError("this model has no preprocessor_config.json: give flattened_patches")
        vqa = self.image_processor.is_vqa
        if vqa:
            kwargs.setdefault("header_text", text)
        out = dict(self.image_processor(images, max_patches=max_patches, **kwargs))
        if text is not None and not vqa:
            if self.tokenizer is None:
                raise InputError("this model has no tokenizer files: cannot encode text")
            enc = self.tokenizer([text] if isinstance(text, str) else list(text), add_special_tokens=add_special_tokens,
                                 padding=True, return_tensors=None)
            out["decoder_input_ids"] = np.asarray(enc["input_ids"])
            out["decoder_attention_mask"] = np.asarray(enc["attention_mask"])
        return out


@keras.saving.register_keras_serializable(package="keras_models")
@register_task(Pix2StructBackbone, "ImageToText", ("Pix2StructForConditionalGeneration",))
class Pix2StructImageToText(EncoderDecoderImageToText):
    hf_head_patterns = ("decoder.lm_head.*",)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        return Pix2StructProcessor.from_preset(folder)

    def _patches(self, inputs, attention_mask, kwargs):
        """(flattened_patches, attention_mask or None) from a dict, an array or raw images."""
        if isinstance(inputs, dict):
            if "flattened_patches" not in inputs:
                raise InputError(f"generate: an input dict needs 'flattened_patches', got keys {sorted(inputs)}")
            attention_mask = inputs.get("attention_mask", attention_mask)
            inputs = inputs["flattened_patches"]
        elif isinstance(inputs, (list, tuple)) or not hasattr(inputs, "shape") or (
                isinstance(inputs, np.ndarray) and inputs.dtype == np.uint8):
            if self.preprocessor is None or self.preprocessor.image_processor is None:
                raise InputError("generate: raw images need the model's image processor; give flattened_patches")
            options = {k: kwargs.pop(k) for k in ("header_text", "font_path", "font_bytes", "max_patches")
                       if k in kwargs}
            out = self.preprocessor.image_processor(inputs, **options)
            inputs, attention_mask = out["flattened_patches"], out["attention_mask"]
        patches = np.asarray(backend_to_numpy(inputs), "float32")
        if patches.ndim == 2:
            patches = patches[None]
        if patches.ndim != 3:
            raise InputError(f"generate: flattened_patches must be (batch, patches, features), got {patches.shape}")
        mask = None if attention_mask is None else np.asarray(backend_to_numpy(attention_mask)).reshape(
            patches.shape[:2])
        return patches, mask

    def generate(self, flattened_patches=None, generation_config=None, *, attention_mask=None, decoder_input_ids=None,
                 decoder_attention_mask=None, tokenizer=None, decode=False, **kwargs):
        """Text ids for images (see the module docstring). Transformers' keyword names."""
        if flattened_patches is None:
            flattened_patches = kwargs.pop("images", None)
        if flattened_patches is None:
            raise GenerationError("generate: give flattened_patches (or images)")
        if isinstance(flattened_patches, dict):
            decoder_input_ids = flattened_patches.get("decoder_input_ids", decoder_input_ids)
            decoder_attention_mask = flattened_patches.get("decoder_attention_mask", decoder_attention_mask)
        patches, mask = self._patches(flattened_patches, attention_mask, kwargs)
        start = forced_tokens_and_start(self, generation_config, kwargs)
        batch = patches.shape[0]
        if start is None:
            raise GenerationError("generate: no decoder_start_token_id in the config; pass one")
        head = np.full((batch, 1), start, "int32")
        if decoder_input_ids is None:
            prompt, prompt_mask = head, np.ones_like(head)
        else:
            prompt = np.asarray(backend_to_numpy(decoder_input_ids)).astype("int32")
            prompt = np.repeat(prompt[None], batch, axis=0) if prompt.ndim == 1 else prompt
            prompt_mask = (np.ones_like(prompt) if decoder_attention_mask is None
                           else np.asarray(backend_to_numpy(decoder_attention_mask)).astype("int32").reshape(prompt.shape))
            if (prompt[:, 0] != start).all():  # Transformers prepends the start token
                prompt = np.concatenate([head, prompt], axis=1)
                prompt_mask = np.concatenate([np.ones_like(head), prompt_mask], axis=1)
        inputs = {"flattened_patches": patches}
        if mask is not None:
            inputs["attention_mask"] = mask.astype("int32")
        states = self.encode(inputs)
        # cross-attention masks the padding patches only when a mask is given (Transformers)
        enc_mask = np.ones((batch, int(states.shape[1])), "int32") if mask is None else mask.astype("int32")
        self._gen_encoder = (states, ops.convert_to_tensor(enc_mask), np.zeros((batch, 1), "int32"))
        tok = tokenizer or getattr(self.preprocessor, "tokenizer", None)
        try:
            out = GenerationMixin.generate(self, {"input_ids": prompt, "attention_mask": prompt_mask},
                                           generation_config, tokenizer=tok, **kwargs)
        finally:
            self._gen_encoder = None
        if decode:
            if tok is None:
                raise GenerationError("generate: decode=True needs a tokenizer (pass tokenizer=)")
            return tok.batch_decode(np.asarray(out).tolist(), skip_special_tokens=True)
        return out


__all__ = ["Pix2StructImageToText", "Pix2StructProcessor"]
