"""The processor of an image-text-to-text model (LLaVA, VipLlava): Transformers' ``LlavaProcessor``.

``processor(text=..., images=...)`` -> ``{"input_ids", "attention_mask", "pixel_values"}``
(numpy; pixel_values channels_last). Each ``<image>`` placeholder in the text becomes as many image
tokens as the vision tower gives features: (height // patch_size) * (width // patch_size) +
``num_additional_image_tokens`` (1 for a class token), minus 1 for the "default" select strategy.
Images go through the checkpoint's image processor (``preprocessor_config.json``, the CLIP one).

Settings come from ``processor_config.json`` (``patch_size``, ``vision_feature_select_strategy``,
``num_additional_image_tokens``, ``image_token``), else from the model's config.json. The chat
template is the processor's (``chat_template.jinja`` / ``chat_template.json``), else the tokenizer's;
messages may hold ``{"type": "image"}`` entries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, PresetError

PROCESSOR_CONFIG = "processor_config.json"


class ImageTextProcessor:
    processor_class = "LlavaProcessor"

    def __init__(self, tokenizer=None, image_processor=None, patch_size=14, vision_feature_select_strategy="default",
                 num_additional_image_tokens=0, image_token="<image>", chat_template=None):
        self.tokenizer, self.image_processor = tokenizer, image_processor
        self.patch_size = int(patch_size)
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.num_additional_image_tokens = int(num_additional_image_tokens or 0)
        self.image_token = image_token
        self.chat_template = chat_template

    # --- presets ------------------------------------------------------------------------------
    @classmethod
    def read_preset_parts(cls, folder):
        """``(tokenizer, image_processor, settings, image_config, chat_template)`` of a processor
        folder (``settings``: processor_config.json; ``image_config``: its ``image_processor`` entry or
        preprocessor_config.json), or None when the folder has neither a tokenizer nor images."""
        from keras_models.preprocessing.image import CONFIG_NAME
        from keras_models.tasks.text import TOKENIZER_FILES

        folder = Path(folder)
        tokenizer = image_processor = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES) or list(folder.glob("*.model")):
            from keras_models.tokenizers import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        settings = _read_json(folder / PROCESSOR_CONFIG) or {}
        image_config = settings.get("image_processor") if isinstance(settings.get("image_processor"), dict) else None
        if image_config is None and (folder / CONFIG_NAME).is_file():
            image_config = _read_json(folder / CONFIG_NAME)
        if image_config is not None:
            image_processor = cls.image_processor_from_config(image_config)
        if tokenizer is None and image_processor is None:
            return None
        template = None
        if (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        elif (folder / "chat_template.json").is_file():
            template = (_read_json(folder / "chat_template.json") or {}).get("chat_template")
        return tokenizer, image_processor, settings, image_config, template

    @classmethod
    def from_preset(cls, folder, hf=None):
        hf = hf or {}
        parts = cls.read_preset_parts(folder)
        if parts is None:
            return None
        tokenizer, image_processor, settings, _, template = parts
        vision = hf.get("vision_config") or {}
        patch = settings.get("patch_size") or vision.get("patch_size") or 14
        strategy = (settings.get("vision_feature_select_strategy") or hf.get("vision_feature_select_strategy")
                    or "default")
        extra = settings.get("num_additional_image_tokens")
        if extra is None:  # a CLIP tower has a class token; SigLIP has none
            extra = 0 if str(vision.get("model_type", "")).startswith("siglip") else 1
        token = settings.get("image_token") or getattr(tokenizer, "image_token", None) or "<image>"
        return cls(tokenizer, image_processor, patch_size=patch[0] if isinstance(patch, list) else patch,
                   vision_feature_select_strategy=strategy, num_additional_image_tokens=extra, image_token=token,
                   chat_template=template)

    @classmethod
    def image_processor_from_config(cls, config):
        from keras_models.preprocessing.image import ImageProcessor

        return ImageProcessor.from_config(config)

    def save_pretrained(self, folder):
        folder = Path(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        settings = {"processor_class": self.processor_class, "patch_size": self.patch_size,
                    "vision_feature_select_strategy": self.vision_feature_select_strategy,
                    "num_additional_image_tokens": self.num_additional_image_tokens, "image_token": self.image_token}
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)
            settings["image_processor"] = json.loads((folder / "preprocessor_config.json").read_text())
        (folder / PROCESSOR_CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        if self.chat_template is not None:
            (folder / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")

    # --- processing ---------------------------------------------------------------------------
    def tokens_per_image(self, height, width):
        n = (height // self.patch_size) * (width // self.patch_size) + self.num_additional_image_tokens
        return n - 1 if self.vision_feature_select_strategy == "default" else n

    def _expand(self, text, images):
        """(texts with each placeholder expanded, {"pixel_values"} or {})."""
        out = {}
        count = None
        if images is not None:
            if self.image_processor is None:
                raise PresetError("this model has no preprocessor_config.json: images need an image processor")
            out.update(self.image_processor(_image_list(images)))
            count = len(out["pixel_values"])
        if text is None:
            return None, out
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("ImageTextProcessor: text must be a string or a list of strings")
        found = sum(t.count(self.image_token) for t in texts)
        if found != (count or 0):
            raise InputError(f"ImageTextProcessor: text holds {found} {self.image_token} placeholder(s) but "
                             f"images has {count or 0} image(s); give one image per placeholder")
        if count:
            texts = self.expand_placeholders(texts, out)
        return texts, out

    def expand_placeholders(self, texts, out):
        """``texts`` with each placeholder replaced by the image's tokens (``out``: the image
        processor's outputs)."""
        h, w = out["pixel_values"].shape[1:3]
        expanded = self.image_token * self.tokens_per_image(h, w)
        return [t.replace(self.image_token, expanded) for t in texts]

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise PresetError("this model has no tokenizer files: text needs one")
        return self.tokenizer

    def __call__(self, text=None, images=None, padding=True, **tokenizer_kwargs):
        if text is None and images is None:
            raise InputError("ImageTextProcessor: give text, images or both")
        texts, out = self._expand(text, images)
        if texts is not None:
            out.update(self._need_tokenizer()(texts, padding=padding, **tokenizer_kwargs))
        return out

    def training_batch(self, images, prompts, responses, add_eos=True):
        """(x, y) for ``fit``: x the model's inputs for prompt + response (right-padded), y the
        next-token labels, -100 wherever the next token is part of the prompt (image tokens
        included) or padding, so only the responses are learned."""
        if isinstance(prompts, str):
            prompts, responses = [prompts], [responses]
        if len(prompts) != len(responses):
            raise InputError(f"training_batch: {len(prompts)} prompts but {len(responses)} responses")
        texts, out = self._expand(prompts, images)
        tok = self._need_tokenizer()
        heads = tok(texts, return_tensors=None, return_attention_mask=False)["input_ids"]
        tails = tok(list(responses), add_special_tokens=False, return_tensors=None,
                    return_attention_mask=False)["input_ids"]
        eos = [int(tok.eos_token_id)] if add_eos and tok.eos_token_id is not None else []
        rows = [list(h) + list(t) + eos for h, t in zip(heads, tails)]
        width = max(len(r) for r in rows)
        pad = int(tok.pad_token_id) if tok.pad_token_id is not None else 0
        ids = np.full((len(rows), width), pad, "int32")
        mask = np.zeros((len(rows), width), "int32")
        labels = np.full((len(rows), width), -100, "int32")
        for i, (row, head) in enumerate(zip(rows, heads)):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
            learn = slice(len(head) - 1, len(row) - 1)  # positions whose next token is a response token
            labels[i, learn] = row[len(head):]
        out.update(input_ids=ids, attention_mask=mask)
        return out, labels

    def apply_chat_template(self, conversation, chat_template=None, add_generation_prompt=False, tokenize=False,
                            images=None, **kwargs):
        """Render ``conversation`` with the processor's chat template (``{"type": "image"}``
        entries become the template's image placeholder); ``tokenize=True`` returns the model's
        inputs for the rendered text and ``images``."""
        if self.tokenizer is None:
            raise PresetError("this model has no tokenizer files: a chat template needs one")
        template = chat_template or self.chat_template
        text = self.tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt, **kwargs)
        if not tokenize:
            return text
        # As Transformers' processors: the tokenizer adds its special tokens unless the rendered
        # prompt already starts with the BOS token.
        first = text[0] if isinstance(text, (list, tuple)) else text
        bos = getattr(self.tokenizer, "bos_token", None)
        return self(text=text, images=images, add_special_tokens=not (bos and first.startswith(bos)))


def _image_list(images):
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        if images.ndim in (2, 3):
            return [images]
        raise InputError(f"ImageTextProcessor: images must be (height, width[, channels]) arrays or a "
                         f"(batch, height, width, channels) array, got shape {images.shape}")
    if not isinstance(images, (list, tuple)):
        return [images]
    out = []
    for i, im in enumerate(images):
        if isinstance(im, (list, tuple)):
            out.extend(_image_list(im))
        elif isinstance(im, np.ndarray) and im.ndim not in (2, 3):
            raise InputError(f"ImageTextProcessor: images[{i}] has shape {im.shape}; an image is "
                             "(height, width[, channels])")
        else:
            out.append(im)
    return out


def _read_json(path):
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PresetError(f"{path}: invalid JSON ({e})") from e


__all__ = ["ImageTextProcessor"]
