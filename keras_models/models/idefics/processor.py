"""IdeficsProcessor: interleaved text and images -> the model's four inputs, as Transformers'.

A prompt is a list whose items are text or images (PIL images, arrays, paths; a string that is
a URL is an image); each image becomes ``<fake_token_around_image><image><fake_token_around_image>``
(two images in a row share the fake token between them), ``<end_of_utterance>`` goes between two
texts in a row only when asked (``add_end_of_utterance_token=True``; Transformers 5's detection of
it in the tokenizer never fires), the prompt starts with the tokenizer's bos token. Rows
are padded to the longest (the tokenizer's side) and get their images stacked, zero-padded to the
most images of any row: ``pixel_values`` (batch, images, H, W, C), channels_last. A token sees the
latest image before it (``image_attention_mask`` (batch, seq, images)), none before the first or
after an eos token until the next image."""

from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from keras_models.errors import InputError, PresetError

FAKE, IMAGE, EOU = "<fake_token_around_image>", "<image>", "<end_of_utterance>"


def _is_url(s):
    if " " in s:
        return False
    r = urlparse(s)
    return bool(r.scheme and r.netloc)


def image_attention_mask(ids, image_id, eos_id, num_images):
    """(batch, seq, num_images) 0/1: each token's latest image (count of images so far - 1), reset
    to none after an eos token; images past ``num_images`` are seen by no one."""
    ids = np.asarray(ids)
    out = np.zeros(ids.shape + (num_images,), "int64")
    for b, row in enumerate(ids):
        count, after_eos = -1, False
        for t, tok in enumerate(row):
            if tok == image_id:
                count += 1
                after_eos = False
            index = -1 if after_eos else count
            if 0 <= index < num_images:
                out[b, t, index] = 1
            if tok == eos_id:
                after_eos = True
    return out


class IdeficsProcessor:
    def __init__(self, tokenizer=None, image_processor=None, add_end_of_utterance_token=None):
        self.tokenizer, self.image_processor = tokenizer, image_processor
        self.add_end_of_utterance_token = add_end_of_utterance_token

    @classmethod
    def from_preset(cls, folder, hf=None):
        from keras_models.preprocessing.image import CONFIG_NAME, ImageProcessor
        from keras_models.presets.config import read_json, read_processor_part
        from keras_models.tasks.text import TOKENIZER_FILES
        from keras_models.tokenizers import Tokenizer

        folder = Path(folder)
        tokenizer = image_processor = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES):
            tokenizer = Tokenizer.from_preset(folder)
        found = read_processor_part(folder, "image_processor")
        config = found[0] if found is not None else (
            read_json(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else None)
        if config is not None:
            config = dict(config)
            size = config.get("image_size")
            if "size" not in config and isinstance(size, int) and not isinstance(size, bool):
                config["size"] = {"height": size, "width": size}
            image_processor = ImageProcessor.from_config(config)
        if tokenizer is None and image_processor is None:
            return None
        return cls(tokenizer, image_processor)

    def save_pretrained(self, folder):
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)

    def _eou(self):
        # Transformers 5 looks for <end_of_utterance> in the tokenizer's special_tokens_map, which
        # no longer lists additional special tokens: unless asked, it is never added
        return bool(self.add_end_of_utterance_token)

    def __call__(self, text=None, images=None, add_eos_token=False, add_end_of_utterance_token=None, **kwargs):
        """``text``: a prompt (list of text and images) or a list of prompts; or ``images`` and
        ``text`` as parallel lists (each row: its image(s), then its text)."""
        tok = self.tokenizer
        if tok is None:
            raise PresetError("this model has no tokenizer files: IdeficsProcessor needs one")
        if text is None and images is None:
            raise InputError("IdeficsProcessor: give text, or images and text")
        if images is None:
            prompts = text
        else:
            if text is None:
                raise InputError("IdeficsProcessor: images need text prompts")
            images = images if isinstance(images, (list, tuple)) else [images]
            text = [text] if isinstance(text, str) else list(text)
            if len(text) != len(images):
                raise InputError(f"IdeficsProcessor: {len(text)} text prompt(s) but {len(images)} image entries")
            if not all(isinstance(t, str) for t in text):
                raise InputError("IdeficsProcessor: with images=, text must be strings")
            if isinstance(images[0], (list, tuple)):
                prompts = [[t, *imgs] for imgs, t in zip(images, text)]
            else:
                prompts = [[img, t] for img, t in zip(images, text)]
        if isinstance(prompts, str) or not any(isinstance(p, (list, tuple)) for p in prompts):
            prompts = [prompts] if not isinstance(prompts, str) else [[prompts]]
        eou = self._eou() if add_end_of_utterance_token is None else add_end_of_utterance_token
        texts, row_images = [], []
        for sample in prompts:
            full, found, last_image = tok.bos_token or "", [], False
            for i, item in enumerate(sample):
                last_text = i > 0 and not last_image
                if isinstance(item, str) and not _is_url(item.strip(" ")):
                    if eou and last_text:
                        full += EOU
                    full += item.strip(" ")
                    last_image = False
                else:
                    full += IMAGE + FAKE if last_image else FAKE + IMAGE + FAKE
                    found.append(item.strip(" ") if isinstance(item, str) else item)
                    last_image = True
            if add_eos_token:
                full += tok.eos_token
            texts.append(full)
            row_images.append(found)
        enc = tok(texts, add_special_tokens=False, padding="longest", return_tensors="np")
        ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
        most = max(1, max(len(x) for x in row_images))
        image_id = tok.convert_tokens_to_ids(IMAGE)
        if self.image_processor is None:
            raise PresetError("this model has no preprocessor_config.json: IDEFICS needs an image processor")
        h, w = self.image_processor.output_size
        pixels = np.zeros((len(texts), most, h, w, 3), "float32")
        for b, found in enumerate(row_images):
            keep = found[:min(int((ids[b] == image_id).sum()), most)]
            if keep:
                pixels[b, :len(keep)] = self.image_processor(list(keep))["pixel_values"]
        if any(row_images):
            img_mask = image_attention_mask(ids, image_id, tok.eos_token_id, most)
        else:
            img_mask = np.zeros(ids.shape + (1,), "int64")
        return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "image_attention_mask": img_mask}


__all__ = ["IdeficsProcessor", "image_attention_mask"]
