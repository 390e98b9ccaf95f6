"""PaliGemma's processor: Transformers' ``PaliGemmaProcessor``.

``processor(text=..., images=..., suffix=None)`` -> ``{"input_ids", "attention_mask",
"token_type_ids", "labels", "pixel_values"}`` (numpy; pixel_values channels_last):

* each prompt becomes ``<image>`` * ``image_seq_length`` per image, then BOS, the prompt and
  "\\n" (a prompt that already holds ``<image>`` placeholders gets BOS after its last one); a
  prompt without placeholders takes its image(s) from ``images`` (one per prompt, or a list per
  prompt);
* ``token_type_ids`` are 0 over that prefix (the bidirectional block) and 1 over the ``suffix``
  (a training target, followed by EOS); ``labels`` are the ids with every type-0 token (and
  padding) set to -100;
* the tokenizer adds no special tokens of its own (BOS is written into the text, as Transformers'
  processor turns ``add_bos_token`` off); the ``<loc####>`` / ``<seg###>`` tokens are added when
  the tokenizer lacks them;
* images go through the checkpoint's SigLIP image processor (``preprocessor_config.json``), whose
  ``image_seq_length`` sets the tokens per image (else (image_size / patch_size)**2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, PresetError
from keras_models.preprocessing.image_text import PROCESSOR_CONFIG, ImageTextProcessor, _image_list

IMAGE_TOKEN = "<image>"
EXTRA_TOKENS = [f"<loc{i:0>4}>" for i in range(1024)] + [f"<seg{i:0>3}>" for i in range(128)]


def _is_image(x):
    return not isinstance(x, (list, tuple, str)) and x is not None


class PaliGemmaProcessor(ImageTextProcessor):
    def __init__(self, tokenizer=None, image_processor=None, image_seq_length=256, image_token=IMAGE_TOKEN,
                 chat_template=None):
        super().__init__(tokenizer, image_processor, patch_size=1, vision_feature_select_strategy="full",
                         image_token=image_token, chat_template=chat_template)
        self.image_seq_length = int(image_seq_length)
        if tokenizer is not None:
            vocab = tokenizer.get_vocab()
            if image_token not in vocab:
                tokenizer.add_tokens([image_token], special_tokens=True)
            missing = [t for t in EXTRA_TOKENS if t not in vocab]
            if missing:
                tokenizer.add_tokens(missing)

    @classmethod
    def from_preset(cls, folder, hf=None):
        hf = hf or {}
        parts = cls.read_preset_parts(folder)
        if parts is None:
            return None
        tokenizer, image_processor, _, image_config, template = parts
        vision = hf.get("vision_config") or {}
        length = (image_config or {}).get("image_seq_length") or (hf.get("text_config") or {}).get("num_image_tokens")
        if not length:
            size, patch = vision.get("image_size", 224), vision.get("patch_size", 14)
            length = (size // patch) ** 2
        token = getattr(tokenizer, "image_token", None) or IMAGE_TOKEN
        return cls(tokenizer, image_processor, image_seq_length=length, image_token=token, chat_template=template)

    def save_pretrained(self, folder):
        folder = Path(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        settings = {"processor_class": "PaliGemmaProcessor"}
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)
            config = json.loads((folder / "preprocessor_config.json").read_text())
            config["image_seq_length"] = self.image_seq_length
            (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            settings["image_processor"] = config
        (folder / PROCESSOR_CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        if self.chat_template is not None:
            (folder / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")

    def tokens_per_image(self, height=None, width=None):
        return self.image_seq_length

    # --- processing ---------------------------------------------------------------------------
    def _prompts(self, text, images):
        """(prompts with BOS and "\\n" added, flat image list)."""
        if images is None:
            raise InputError("PaliGemmaProcessor: images are required (one or more per prompt)")
        texts = [""] if text is None else [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("PaliGemmaProcessor: text must be a string or a list of strings")
        bos = self.tokenizer.bos_token or ""
        token = self.image_token
        if not any(token in t for t in texts):
            if _is_image(images) or isinstance(images, np.ndarray) and images.ndim in (2, 3):
                per = [[images]] * len(texts)
            elif isinstance(images, (list, tuple)) and images and all(isinstance(i, (list, tuple)) for i in images):
                per = [list(i) for i in images]
            elif isinstance(images, (list, tuple)) or isinstance(images, np.ndarray) and images.ndim == 4:
                per = [[i] for i in images]
            else:
                raise InputError("PaliGemmaProcessor: images must be an image, a list of images or a list of lists")
            if len(per) != len(texts):
                raise InputError(f"PaliGemmaProcessor: images has {len(per)} entries for {len(texts)} prompts; give "
                                 "one image (or list of images) per prompt")
            texts = [token * len(p) + bos + t + "\n" for t, p in zip(texts, per)]
            flat = [im for p in per for im in p]
        else:
            texts = [t[:t.rfind(token) + len(token)] + bos + t[t.rfind(token) + len(token):] + "\n" for t in texts]
            flat = _image_list(images)
        found = sum(t.count(token) for t in texts)
        if found != len(flat):
            raise InputError(f"PaliGemmaProcessor: text holds {found} {token} placeholder(s) but images has "
                             f"{len(flat)} image(s); give one image per placeholder")
        return [t.replace(token, token * self.image_seq_length) for t in texts], flat

    def __call__(self, text=None, images=None, suffix=None, padding=True, padding_side=None, max_length=None,
                 return_tensors="np"):
        tok = self._need_tokenizer()
        texts, flat = self._prompts(text, images)
        if self.image_processor is None:
            raise PresetError("this model has no preprocessor_config.json: images need an image processor")
        out = dict(self.image_processor(flat))
        heads = tok(texts, add_special_tokens=False, return_tensors=None, return_attention_mask=False)["input_ids"]
        if suffix is not None:
            suffix = [suffix] if isinstance(suffix, str) else list(suffix)
            if len(suffix) != len(texts):
                raise InputError(f"PaliGemmaProcessor: suffix has {len(suffix)} entries for {len(texts)} prompts")
            eos = tok.eos_token or ""
            tails = tok([s + eos for s in suffix], add_special_tokens=False, return_tensors=None,
                        return_attention_mask=False)["input_ids"]
        else:
            tails = [[] for _ in texts]
        rows = {"input_ids": [list(h) + list(t) for h, t in zip(heads, tails)],
                "token_type_ids": [[0] * len(h) + [1] * len(t) for h, t in zip(heads, tails)]}
        rows["attention_mask"] = [[1] * len(r) for r in rows["input_ids"]]
        padded = tok.pad(rows, padding=padding, max_length=max_length, padding_side=padding_side,
                         return_tensors=return_tensors)
        out.update(padded)
        ids, types = np.asarray(padded["input_ids"]), np.asarray(padded["token_type_ids"])
        if ids.dtype != object:
            out["labels"] = np.where(types == 0, -100, ids).astype(ids.dtype)
        return out

    def training_batch(self, images, prompts, responses, add_eos=True):
        """(x, labels) for ``fit``: the processor's outputs for prompts + ``responses`` (the
        suffix) with the next-token labels (-100 over the prefix and padding)."""
        if isinstance(prompts, str):
            prompts, responses = [prompts], [responses]
        out = self(text=prompts, images=images, suffix=responses)
        labels = out.pop("labels")
        shifted = np.full_like(labels, -100)
        shifted[:, :-1] = labels[:, 1:]
        return out, shifted


__all__ = ["PaliGemmaProcessor", "EXTRA_TOKENS"]
