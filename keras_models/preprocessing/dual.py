"""The processor of a dual encoder: its tokenizer and its image processor side by side.

``processor(text=[...], images=[...])`` gives the model's input dict (``input_ids``,
``attention_mask`` and, where the tokenizer makes them, ``token_type_ids``; ``pixel_values`` in
channels_last), as Transformers' ``CLIPProcessor`` / ``SiglipProcessor`` do. Text is padded to the
longest (``"longest"``) or, for SigLIP, to its fixed 64-token window (``"max_length"``)."""

from __future__ import annotations

from keras_models.errors import PresetError


class DualEncoderProcessor:
    def __init__(self, tokenizer=None, image_processor=None, text_padding="longest", max_length=None):
        self.tokenizer, self.image_processor = tokenizer, image_processor
        self.text_padding, self.max_length = text_padding, max_length

    @classmethod
    def from_preset(cls, folder, text_padding="longest"):
        from keras_models.presets.config import read_processor_part
        from keras_models.preprocessing.image import ImageProcessor
        from keras_models.tasks.text import TOKENIZER_FILES

        tokenizer = image_processor = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES) or list(folder.glob("*.model")):
            from keras_models.tokenizers import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        if read_processor_part(folder, "image_processor") is not None:
            image_processor = ImageProcessor.from_preset(folder)
        if tokenizer is None and image_processor is None:
            return None
        return cls(tokenizer, image_processor, text_padding=text_padding,
                   max_length=64 if text_padding == "max_length" else None)

    def text(self, texts):
        if self.tokenizer is None:
            raise PresetError("this model has no tokenizer files (tokenizer.json, vocab.txt, ...): "
                              "texts need one")
        kw = {"padding": self.text_padding}
        if self.text_padding == "max_length":
            kw.update(max_length=self.max_length, truncation=True)
        return self.tokenizer(list(texts), **kw)

    def images(self, images):
        if self.image_processor is None:
            raise PresetError("this model has no preprocessor_config.json: images need an image processor")
        return self.image_processor(images)

    def __call__(self, text=None, images=None):
        out = {}
        if text is not None:
            out.update(self.text([text] if isinstance(text, str) else text))
        if images is not None:
            out.update(self.images(images))
        return out

    def save_pretrained(self, folder):
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)


__all__ = ["DualEncoderProcessor"]
