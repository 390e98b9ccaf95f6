"""Kosmos2Processor: image processing, the image-token placement and the grounding tokens of
KOSMOS-2, equal to Transformers' ``Kosmos2Processor`` (numpy; the tokenizer is the checkpoint's
XLM-R sentencepiece ``tokenizer.json`` with the tag and ``<patch_index_NNNN>`` tokens added).

``processor(text=..., images=..., bboxes=None)`` -> ``input_ids``, ``attention_mask``,
``image_embeds_position_mask`` (int32, padded to the longest row on the tokenizer's padding
side) and ``pixel_values`` (channels_last). Each text is stripped, prefixed with
``<image>`` + ``num_image_tokens`` placeholders + ``</image>`` when it has an image, given its
boxes' ``<object><patch_index_..><patch_index_..></object>`` after each ``<phrase>..</phrase>``,
and prefixed with the bos token; the placeholders' ids become
``first_image_token_id .. + num_image_tokens`` (default: the unk id + 1) and are marked in
``image_embeds_position_mask``. ``num_image_tokens`` defaults to the model's ``latent_query_num``.

``post_process_generation(text)`` -> (caption, [(phrase, (start, end), [(x1, y1, x2, y2), ...])]):
the text after ``</image>`` with its tags removed and its grounded phrases with their boxes
(normalised coordinates on a 32 x 32 patch grid, as Transformers decodes them).
"""

import json
import math
import re
from pathlib import Path

import numpy as np

from keras_models.errors import InputError, PresetError

PROCESSOR_CONFIG = "processor_config.json"
TAG_TOKENS = ("</doc>", "<image>", "</image>", "</chunk>", "</line>", "<phrase>", "</phrase>", "<object>",
              "</object>", "</delimiter_of_multi_objects/>", "<grounding>")
BOI, EOI = "<image>", "</image>"
GRID = 32  # the patch grid Transformers' post-processing decodes boxes on


def _patch_token(i):
    return f"<patch_index_{str(i).zfill(4)}>"


def box_to_patch_indices(box, per_side):
    """(x1, y1, x2, y2) in [0, 1] -> (upper-left, lower-right) patch indices on a per_side grid."""
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise InputError(f"Kosmos2Processor: box {box} must be (x1, y1, x2, y2) with x2 > x1 and y2 > y1")
    ul = math.floor(y1 * per_side) * per_side + math.floor(x1 * per_side)
    lr = math.ceil(y2 * per_side - 1) * per_side + math.ceil(x2 * per_side - 1)
    return ul, lr


def patch_indices_to_box(ul, lr, per_side):
    """The inverse: the box's normalised corners (cell centres, or whole cells for a line / one cell)."""
    cell = 1.0 / per_side
    ux, uy, lx, ly = ul % per_side, ul // per_side, lr % per_side, lr // per_side
    if ul == lr or ux == lx or uy == ly:
        return ux * cell, uy * cell, lx * cell + cell, ly * cell + cell
    half = cell / 2
    return ux * cell + half, uy * cell + half, lx * cell + half, ly * cell + half


_ENTITY = re.compile(r"(?:(<phrase>([^<]+)</phrase>))?<object>((?:<patch_index_\d+><patch_index_\d+>"
                     r"</delimiter_of_multi_objects/>)*<patch_index_\d+><patch_index_\d+>)</object>")
_INDEX = re.compile(r"<patch_index_(\d+)>")
_TAG = re.compile("<.*?>")


def extract_entities(text, per_side=GRID):
    """(caption without tags, entities) of a generated text, as Transformers'
    ``clean_text_and_extract_entities_with_bboxes``."""
    raw = []
    for m in _ENTITY.finditer(text):
        tagged, phrase, content = m.groups()
        pairs = []
        for part in content.split("</delimiter_of_multi_objects/>"):
            found = [int(i) for i in _INDEX.findall(part)]
            if len(found) >= 2:
                pairs.append((found[0], found[1]))
        if tagged:
            raw.append((phrase, m.span(2), pairs))
        else:  # boxes without a phrase: each named by its patch tokens, at the match's start
            start = m.span(0)[0]
            raw.extend((f"<patch_index_{a}><patch_index_{b}>", (start, start), [(a, b)]) for a, b in pairs)
    caption = _TAG.sub("", text)
    lead = len(caption) - len(caption.lstrip())
    entities = []
    for name, (start, end), pairs in raw:
        start, end = len(_TAG.sub("", text[:start])), len(_TAG.sub("", text[:end]))
        start = start - lead + len(name) - len(name.lstrip())
        end = end - lead - (len(name) - len(name.rstrip()))
        entities.append((name.strip(), (start, end), [patch_indices_to_box(a, b, per_side) for a, b in pairs]))
    return caption.strip(), entities


class Kosmos2Processor:
    def __init__(self, tokenizer=None, image_processor=None, num_image_tokens=64, num_patch_index_tokens=1024):
        self.tokenizer, self.image_processor = tokenizer, image_processor
        self.num_image_tokens = int(num_image_tokens)
        self.num_patch_index_tokens = int(num_patch_index_tokens)
        if tokenizer is not None:
            self._add_tokens()

    def _add_tokens(self):
        """The tag and patch-index tokens, added (lstrip, not normalised) where the tokenizer lacks them."""
        from tokenizers import AddedToken

        vocab = self.tokenizer.get_vocab()
        tokens = [*TAG_TOKENS, *(_patch_token(i) for i in range(self.num_patch_index_tokens))]
        missing = [t for t in tokens if t not in vocab]
        if missing:
            self.tokenizer.backend_tokenizer.add_tokens(
                [AddedToken(t, lstrip=True, rstrip=False, normalized=False, special=False) for t in missing])

    # --- presets ------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, folder, hf=None):
        from keras_models.preprocessing.image import CONFIG_NAME, ImageProcessor
        from keras_models.tasks.text import TOKENIZER_FILES

        folder = Path(folder)
        hf = hf or {}
        tokenizer = image_processor = None
        if any((folder / f).is_file() for f in TOKENIZER_FILES) or list(folder.glob("*.model")):
            from keras_models.tokenizers import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        settings = _read_json(folder / PROCESSOR_CONFIG)
        image_config = settings.get("image_processor") if isinstance(settings.get("image_processor"), dict) else None
        if image_config is None and (folder / CONFIG_NAME).is_file():
            image_config = _read_json(folder / CONFIG_NAME)
        if image_config:
            image_processor = ImageProcessor.from_config(image_config)
        if tokenizer is None and image_processor is None:
            return None
        n = settings.get("num_patch_index_tokens", 1024)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise PresetError(f"{folder / PROCESSOR_CONFIG}: num_patch_index_tokens must be a non-negative "
                              f"integer, got {n!r}")
        return cls(tokenizer, image_processor, num_image_tokens=hf.get("latent_query_num", 64),
                   num_patch_index_tokens=n)

    def save_pretrained(self, folder):
        folder = Path(folder)
        settings = {"processor_class": "Kosmos2Processor", "num_patch_index_tokens": self.num_patch_index_tokens}
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)
            settings["image_processor"] = json.loads((folder / "preprocessor_config.json").read_text())
        (folder / PROCESSOR_CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")

    # --- text ---------------------------------------------------------------------------------
    def _with_boxes(self, text, boxes):
        if not boxes:
            return text
        phrases = list(re.finditer(r"<phrase>.+?</phrase>", text))
        if len(phrases) != len(boxes):
            raise InputError(f"Kosmos2Processor: bboxes has {len(boxes)} entries but the text has {len(phrases)} "
                             "<phrase> ... </phrase> pairs")
        per_side = int(math.sqrt(self.num_patch_index_tokens))
        out, pos = [], 0
        for m, entry in zip(phrases, boxes):
            out.append(text[pos:m.end()])
            pos = m.end()
            if entry is None:
                continue
            entry = [entry] if isinstance(entry, tuple) else list(entry)
            pairs = []
            for box in entry:
                if not isinstance(box, tuple) or not ((len(box) == 2 and all(isinstance(v, int) for v in box))
                                                      or (len(box) == 4 and all(isinstance(v, float) for v in box))):
                    raise InputError(f"Kosmos2Processor: a box is a tuple of 2 patch indices (ints) or of 4 "
                                     f"normalised coordinates (floats), got {box!r}")
                a, b = box if len(box) == 2 else box_to_patch_indices(box, per_side)
                pairs.append(f"{_patch_token(a)} {_patch_token(b)}")
            if pairs:
                out.append(f"<object> {' </delimiter_of_multi_objects/> '.join(pairs)} </object>")
        return "".join(out) + text[pos:]

    def __call__(self, text=None, images=None, bboxes=None, num_image_tokens=None, first_image_token_id=None,
                 add_eos_token=False, add_special_tokens=True):
        if text is None and images is None:
            raise InputError("Kosmos2Processor: give text, images or both")
        out = {}
        count = None
        if images is not None:
            if self.image_processor is None:
                raise PresetError("this model has no image processor configuration: images need one")
            from keras_models.preprocessing.image_text import _image_list

            out.update(self.image_processor(_image_list(images)))
            count = int(out["pixel_values"].shape[0])
        if text is None:
            return out
        if self.tokenizer is None:
            raise PresetError("this model has no tokenizer files: text needs one")
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("Kosmos2Processor: text must be a string or a list of strings")
        if count is not None and count != len(texts):
            raise InputError(f"Kosmos2Processor: {len(texts)} text(s) but {count} image(s); give one image per text")
        boxes = [bboxes] if single else (bboxes if bboxes is not None else [None] * len(texts))
        if len(boxes) != len(texts):
            raise InputError(f"Kosmos2Processor: bboxes has {len(boxes)} entries for {len(texts)} texts")
        q = self.num_image_tokens if num_image_tokens is None else int(num_image_tokens)
        tok = self.tokenizer
        prefix = " ".join([BOI] * (q + 1) + [EOI]) + " " if count else ""
        bos = tok.bos_token if add_special_tokens and not add_eos_token else ""
        texts = [bos + prefix + self._with_boxes(t.strip(), b) if count else bos + self._with_boxes(t.strip(), b)
                 for t, b in zip(texts, boxes)]
        enc = tok(texts, add_special_tokens=bool(add_special_tokens and add_eos_token), return_tensors=None)
        rows = [list(r) for r in enc["input_ids"]]
        masks = [[0] * len(r) for r in rows]
        if count:
            first = tok.unk_token_id + 1 if first_image_token_id is None else int(first_image_token_id)
            start = int(bool(add_special_tokens)) + 1
            for i, r in enumerate(rows):
                rows[i] = r[:start] + list(range(first, first + q)) + r[start + q:]
                masks[i] = [0] * start + [1] * q + [0] * (len(rows[i]) - start - q)
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        left = tok.padding_side == "left"

        def padded(row, value):
            fill = [value] * (width - len(row))
            return fill + row if left else row + fill

        out["input_ids"] = np.asarray([padded(r, pad) for r in rows], "int32")
        out["attention_mask"] = np.asarray([padded([1] * len(r), 0) for r in rows], "int32")
        if count:
            out["image_embeds_position_mask"] = np.asarray([padded(m, 0) for m in masks], "int32")
        return out

    # --- decoding -----------------------------------------------------------------------------
    def batch_decode(self, sequences, skip_special_tokens=True, **kwargs):
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)

    def decode(self, ids, skip_special_tokens=True, **kwargs):
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)

    @staticmethod
    def post_process_generation(text, cleanup_and_extract=True):
        caption = text.split(EOI)[-1]
        return extract_entities(caption) if cleanup_and_extract else caption

    def post_process_image_text_to_text(self, generated, skip_special_tokens=True, **kwargs):
        texts = self.batch_decode(generated, skip_special_tokens=skip_special_tokens, **kwargs)
        return [self.post_process_generation(t, cleanup_and_extract=False) for t in texts]


def _read_json(path):
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PresetError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a JSON object")
    return data


__all__ = ["Kosmos2Processor", "extract_entities", "box_to_patch_indices", "patch_indices_to_box"]
