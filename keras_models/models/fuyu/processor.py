"""Fuyu's processor, equal to Transformers' ``FuyuProcessor`` (numpy + Pillow).

``FuyuImageProcessor`` (``preprocessor_config.json`` or the ``image_processor`` entry of
``processor_config.json``): an image larger than ``size`` (1080 x 1920) is resized to fit it,
keeping its aspect ratio (``int(side * min(H / h, W / w))``, Pillow and the ``resample`` filter);
it is then padded at the bottom and right to ``size`` with ``padding_value`` (in pixel units,
before rescaling), rescaled and normalised. Only the rows and columns of ``patch_size`` patches
that cover the unpadded image are kept (the last ones may hold padding) and cut into patches of
``patch_height * patch_width * channels`` values, each in (row, column, channel) order.

``FuyuProcessor(text=..., images=...)``: one image per prompt. Each prompt becomes
``|SPEAKER|`` x (patches per row) + ``|NEWLINE|`` for each patch row, then ``<s>``, the prompt and
the beginning-of-answer token ``<0x04>``; the image part and the prompt are tokenized apart
(without special tokens; the image part's first id, the piece the tokenizer puts before any
text, dropped, as Transformers does) and the rows are left-padded with id 0. Returns
``input_ids``, ``attention_mask`` (int32, (batch, seq)) and ``image_patches`` (float32,
(all patches, patch values): the images' patches one after another, row-major), or
``pixel_values`` with ``return_legacy_image_output=False`` -- the names Transformers 5 uses.
``km.models.FuyuImageTextToText`` takes either. Text alone is tokenized as the tokenizer does.
``<box>`` / ``<point>`` coordinates in a prompt are left as written: Transformers 5.25 computes
their rescaling to the resized image but does not use it. Its processor returns no
``image_patches_indices`` (Transformers 4 did); the model places the patches at the image tokens.

``post_process_image_text_to_text(ids)`` decodes what follows the ``<0x04>`` token of each row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError, PresetError

PROCESSOR_CONFIG = "processor_config.json"
IMAGE_TOKEN, NEWLINE_TOKEN, BOS, BOA = "|SPEAKER|", "|NEWLINE|", "<s>", "<0x04>"
_PAD_MODES = ("constant", "edge", "reflect", "symmetric")
_DEFAULTS = dict(do_resize=True, size={"height": 1080, "width": 1920}, patch_size={"height": 30, "width": 30},
                 resample=2, do_pad=True, padding_value=1.0, padding_mode="constant", do_rescale=True,
                 rescale_factor=1 / 255, do_normalize=True, image_mean=0.5, image_std=0.5, do_convert_rgb=None)


def _hw(value, key):
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"height": value, "width": value}
    if (not isinstance(value, dict) or set(value) != {"height", "width"}
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value.values())):
        raise ConfigError(f"FuyuImageProcessor: {key} must be {{'height': int > 0, 'width': int > 0}}, got {value!r}")
    return {"height": value["height"], "width": value["width"]}


class FuyuImageProcessor:
    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"FuyuImageProcessor: unknown arguments {sorted(unknown)}")
        c = {**_DEFAULTS, **{k: v for k, v in kwargs.items() if v is not None or k == "do_convert_rgb"}}
        self.size, self.patch_size = _hw(c["size"], "size"), _hw(c["patch_size"], "patch_size")
        if c["padding_mode"] not in _PAD_MODES:
            raise ConfigError(f"FuyuImageProcessor: padding_mode must be one of {_PAD_MODES}, got {c['padding_mode']!r}")
        for key in ("padding_value", "rescale_factor"):
            if isinstance(c[key], bool) or not isinstance(c[key], (int, float)):
                raise ConfigError(f"FuyuImageProcessor: {key} must be a number, got {c[key]!r}")
        for key in ("image_mean", "image_std"):
            v = c[key]
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
                isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v))
            if not ok:
                raise ConfigError(f"FuyuImageProcessor: {key} must be a number or a list of numbers, got {v!r}")
        if not isinstance(c["resample"], int) or not 0 <= c["resample"] <= 5:
            raise ConfigError(f"FuyuImageProcessor: resample must be a PIL filter number (0-5), got {c['resample']!r}")
        self.do_resize, self.resample, self.do_pad = bool(c["do_resize"]), c["resample"], bool(c["do_pad"])
        self.padding_value, self.padding_mode = c["padding_value"], c["padding_mode"]
        self.do_rescale, self.rescale_factor = bool(c["do_rescale"]), c["rescale_factor"]
        self.do_normalize, self.image_mean, self.image_std = bool(c["do_normalize"]), c["image_mean"], c["image_std"]
        self.do_convert_rgb = c["do_convert_rgb"]
        from keras_models.preprocessing.image import ImageProcessor

        self._resizer = ImageProcessor(resample=self.resample, size=dict(self.size))

    @classmethod
    def from_config(cls, config):
        return cls(**{k: config[k] for k in _DEFAULTS if k in config})

    def get_config(self):
        return {"image_processor_type": "FuyuImageProcessor", **{k: getattr(self, k) for k in _DEFAULTS}}

    def save_pretrained(self, folder):
        Path(folder, "preprocessor_config.json").write_text(json.dumps(self.get_config(), indent=2, sort_keys=True)
                                                            + "\n")

    # --- steps --------------------------------------------------------------------------------
    def fitted_size(self, height, width):
        """(height, width) after the resize step: unchanged unless larger than ``size``."""
        th, tw = self.size["height"], self.size["width"]
        if not self.do_resize or (height <= th and width <= tw):
            return height, width
        scale = min(th / height, tw / width)
        return int(height * scale), int(width * scale)

    def process_one(self, image):
        """-> (patches (n, ph * pw * channels) float32, patches per row)."""
        from keras_models.preprocessing.image_io import load_image

        x = load_image(image, convert_rgb=bool(self.do_convert_rgb))
        h, w = x.shape[:2]
        nh, nw = self.fitted_size(h, w)
        if (nh, nw) != (h, w):
            x = self._resizer.resize_to(x, nh, nw)
        th, tw = self.size["height"], self.size["width"]
        if self.do_pad and (nh < th or nw < tw):
            if nh > th or nw > tw:
                raise InputError(f"FuyuImageProcessor: a {nh}x{nw} image cannot be padded to size {th}x{tw} "
                                 "(do_resize=False)")
            pad = ((0, th - nh), (0, tw - nw), (0, 0))
            if self.padding_mode == "constant":
                x = np.pad(x, pad, mode="constant", constant_values=self.padding_value)
            else:
                x = np.pad(x, pad, mode=self.padding_mode)
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
        if self.do_normalize:
            mean = np.broadcast_to(np.asarray(self.image_mean, x.dtype), (x.shape[-1],))
            std = np.broadcast_to(np.asarray(self.image_std, x.dtype), (x.shape[-1],))
            x = (x - mean) / std
        ph, pw = self.patch_size["height"], self.patch_size["width"]
        # the patch rows / columns that cover the unpadded image
        keep_h, keep_w = min(x.shape[0], math.ceil(nh / ph) * ph), min(x.shape[1], math.ceil(nw / pw) * pw)
        if keep_h % ph or keep_w % pw:
            raise InputError(f"FuyuImageProcessor: a {keep_h}x{keep_w} image does not divide into "
                             f"{ph}x{pw} patches (do_pad=False)")
        x = x[:keep_h, :keep_w]
        rows, cols, c = keep_h // ph, keep_w // pw, x.shape[-1]
        patches = x.reshape(rows, ph, cols, pw, c).transpose(0, 2, 1, 3, 4).reshape(rows * cols, ph * pw * c)
        return np.ascontiguousarray(patches, dtype=np.float32), cols

    def __call__(self, images):
        """-> {"image_patches": [(n_i, patch values)], "patches_per_row": [cols_i]}."""
        from keras_models.preprocessing.image_text import _image_list

        out = [self.process_one(im) for im in _image_list(images)]
        return {"image_patches": [p for p, _ in out], "patches_per_row": [c for _, c in out]}


class FuyuProcessor:
    def __init__(self, tokenizer=None, image_processor=None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor or FuyuImageProcessor()
        self.image_token, self.image_newline_token = IMAGE_TOKEN, NEWLINE_TOKEN
        self.pad_token_id = 0  # Transformers' FuyuProcessor sets the tokenizer's pad id to 0
        if tokenizer is not None:
            vocab = tokenizer.get_vocab()
            missing = [t for t in (IMAGE_TOKEN, NEWLINE_TOKEN, BOA) if t not in vocab]
            if missing:
                raise PresetError(f"FuyuProcessor: the tokenizer has no {missing} token(s)")
            self.image_token_id, self.image_newline_id = vocab[IMAGE_TOKEN], vocab[NEWLINE_TOKEN]
            self.boa_token_id = vocab[BOA]

    # --- presets ------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, folder, hf=None):
        from keras_models.presets.config import read_processor_part
        from keras_models.tasks.text import TOKENIZER_FILES

        folder = Path(folder)
        tokenizer = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES):
            from keras_models.tokenizers import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        found = read_processor_part(folder, "image_processor")
        if tokenizer is None and found is None:
            return None
        image_processor = None
        if found is not None:
            try:
                image_processor = FuyuImageProcessor.from_config(found[0])
            except ConfigError as e:
                raise ConfigError(f"{found[1]}: {e}") from e
        return cls(tokenizer, image_processor)

    def save_pretrained(self, folder):
        folder = Path(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        settings = {"processor_class": "FuyuProcessor", "image_processor": self.image_processor.get_config()}
        (folder / PROCESSOR_CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")

    # --- processing ---------------------------------------------------------------------------
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise PresetError("this Fuyu model has no tokenizer files: text needs one")
        return self.tokenizer

    def _ids(self, text):
        return list(self._need_tokenizer()(text, add_special_tokens=False, return_tensors=None,
                                           return_attention_mask=False)["input_ids"])

    def image_text(self, patches_per_row, num_patches):
        """The text an image becomes: a row of image tokens and a newline per patch row, then <s>."""
        return (self.image_token * patches_per_row + self.image_newline_token) * (num_patches // patches_per_row) + BOS

    def __call__(self, text=None, images=None, return_legacy_image_output=True, **tokenizer_kwargs):
        if text is None and images is None:
            raise InputError("FuyuProcessor: give text, images or both")
        if images is None:
            texts = [text] if isinstance(text, str) else list(text)
            if not all(isinstance(t, str) for t in texts):
                raise InputError("FuyuProcessor: text must be a string or a list of strings")
            return dict(self._need_tokenizer()(texts, **{"padding": True, **tokenizer_kwargs}))
        if tokenizer_kwargs:
            raise InputError(f"FuyuProcessor: with images, the text is tokenized as Transformers does "
                             f"(no {sorted(tokenizer_kwargs)})")
        if text is None:
            raise InputError("FuyuProcessor: images need text= (one prompt per image)")
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("FuyuProcessor: text must be a string or a list of strings")
        processed = self.image_processor(images)
        patches, per_row = processed["image_patches"], processed["patches_per_row"]
        if len(patches) != len(texts):
            raise InputError(f"FuyuProcessor: images has {len(patches)} image(s) for {len(texts)} prompt(s); "
                             "give one image per prompt")
        rows = []
        for i, (t, p, cols) in enumerate(zip(texts, patches, per_row)):
            if self.image_token in t:
                raise InputError(f"FuyuProcessor: text[{i}] holds the image token {self.image_token}; the "
                                 "processor puts the image in front of each prompt itself")
            # the image part (ending with <s>) and the prompt + <0x04> are tokenized apart
            rows.append(self._ids(self.image_text(cols, len(p)))[1:] + self._ids(t + BOA))
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_token_id, "int32")
        mask = np.zeros((len(rows), width), "int32")
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = r
            mask[i, width - len(r):] = 1
        key = "image_patches" if return_legacy_image_output else "pixel_values"
        return {"input_ids": ids, "attention_mask": mask, key: np.concatenate(patches, axis=0)}

    # --- decoding -----------------------------------------------------------------------------
    def batch_decode(self, sequences, **kwargs):
        return self._need_tokenizer().batch_decode(sequences, **kwargs)

    def decode(self, ids, **kwargs):
        return self._need_tokenizer().decode(ids, **kwargs)

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens=True, **kwargs):
        """The text after each row's beginning-of-answer token (``<0x04>``), decoded."""
        answers = []
        for i, row in enumerate(np.asarray(generated_outputs)):
            at = np.flatnonzero(row == self.boa_token_id)
            if len(at) == 0:
                raise InputError(f"post_process_image_text_to_text: row {i} has no {BOA} (beginning of answer) token")
            answers.append(row[at[0] + 1:])
        width = max(len(a) for a in answers)
        padded = np.full((len(answers), width), self.pad_token_id, "int64")
        for i, a in enumerate(answers):
            padded[i, :len(a)] = a
        return self.batch_decode(padded, skip_special_tokens=skip_special_tokens, **kwargs)


__all__ = ["FuyuImageProcessor", "FuyuProcessor"]
