"""OneFormer's processor: the image processor (``OneFormerImageProcessor`` and its ``...Pil`` /
``...Fast`` names: DETR's resize to shortest / longest edge, rescale, normalise, pad +
``pixel_mask``; keras_models.models.detr.processor) and the task tokens: "the task is {task}" per
image, tokenized by the checkpoint's (CLIP) tokenizer padded / truncated to ``task_seq_length``
(processor_config.json, else the model's ``task_seq_len``), the ids times the attention mask
(padding -> 0), as Transformers' ``OneFormerProcessor``. The class-info file
(``repo_path`` / ``class_info_file``: class names and which are "things") is read when
instance post-processing needs it. Segmentation maps (training labels) and ``text_inputs`` (the
training-only text mapper's) are not implemented.
"""

import json
from pathlib import Path

import numpy as np

from keras_models.errors import ConfigError, InputError
from keras_models.models.detr.processor import CONFIG_NAME, DetrImageProcessor

TYPES = ("OneFormerImageProcessor",)
TASKS = ("semantic", "instance", "panoptic")
PROCESSOR_CONFIG = "processor_config.json"


def _base_type(kind):
    kind = str(kind)
    for suffix in ("Pil", "Fast"):
        if kind.endswith(suffix) and kind[:-len(suffix)] in TYPES:
            return kind[:-len(suffix)]
    return kind


class OneFormerImageProcessor(DetrImageProcessor):
    _KEYS = DetrImageProcessor._KEYS + ("ignore_index", "do_reduce_labels", "repo_path", "class_info_file",
                                        "num_text", "num_labels")

    def __init__(self, ignore_index=None, do_reduce_labels=False, repo_path="shi-labs/oneformer_demo",
                 class_info_file=None, num_text=None, num_labels=None,
                 image_processor_type="OneFormerImageProcessor", **kwargs):
        kind = _base_type(image_processor_type)
        if kind not in TYPES:
            raise ConfigError(f"{CONFIG_NAME}: image_processor_type {image_processor_type!r} is not one of {TYPES}")
        super().__init__(image_processor_type="DetrImageProcessor", **kwargs)
        self.image_processor_type = kind
        self.ignore_index, self.do_reduce_labels, self.num_labels = ignore_index, do_reduce_labels, num_labels
        self.repo_path, self.class_info_file, self.num_text = repo_path, class_info_file, num_text
        self.folder, self._metadata = None, None

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        size, max_size = config.get("size"), config.pop("max_size", None)
        if isinstance(size, int):
            config["size"] = {"shortest_edge": size, "longest_edge": max_size or 1333}
        return cls(**{k: config[k] for k in cls._KEYS if config.get(k) is not None})

    @property
    def metadata(self):
        """``{"thing_ids", "class_names", id: name}`` from the class-info JSON: the preset's copy, a
        local ``repo_path/class_info_file``, else the Hub (dataset repo ``repo_path``)."""
        if self._metadata is None:
            if not isinstance(self.class_info_file, str) or not self.class_info_file:
                raise InputError(f"{CONFIG_NAME}: no class_info_file: OneFormer's class-info metadata (thing "
                                 "classes) is unknown")
            here = [Path(self.folder) / self.class_info_file] if self.folder else []
            here.append(Path(str(self.repo_path or "")) / self.class_info_file)
            path = next((p for p in here if p.is_file()), None)
            if path is None:
                try:
                    from huggingface_hub import hf_hub_download

                    path = hf_hub_download(self.repo_path, self.class_info_file, repo_type="dataset")
                except Exception as e:  # offline, missing repo...
                    raise InputError(f"{CONFIG_NAME}: class_info_file {self.class_info_file!r} not found locally or "
                                     f"in the Hub dataset {self.repo_path!r} ({type(e).__name__}: {e})") from e
            try:
                info = json.loads(Path(path).read_text(encoding="utf-8"))
                meta = {"thing_ids": [int(k) for k, v in info.items() if v["isthing"]],
                        "class_names": [v["name"] for v in info.values()]}
                meta.update({k: v["name"] for k, v in info.items()})
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise InputError(f"{path}: not a OneFormer class-info file ({type(e).__name__}: {e})") from e
            self._metadata = meta
        return self._metadata


class OneFormerProcessor:
    """``processor(images, task_inputs)`` -> ``{"pixel_values", "pixel_mask", "task_inputs"}``;
    ``task_inputs`` is a task name or one per image ("semantic", "instance" or "panoptic"; default
    "panoptic", the image processor's)."""

    def __init__(self, image_processor, tokenizer=None, task_seq_length=77, max_seq_length=77):
        self.image_processor, self.tokenizer = image_processor, tokenizer
        for key, value in (("task_seq_length", task_seq_length), ("max_seq_length", max_seq_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{PROCESSOR_CONFIG}: {key} must be a positive integer, got {value!r}")
        self.task_seq_length, self.max_seq_length = task_seq_length, max_seq_length

    @classmethod
    def from_preset(cls, preset, task_seq_len=77):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        folder = Path(resolve_preset(preset))
        extra = read_json(folder / PROCESSOR_CONFIG) if (folder / PROCESSOR_CONFIG).is_file() else {}
        if (folder / CONFIG_NAME).is_file():
            config = read_json(folder / CONFIG_NAME)
        elif isinstance(extra.get("image_processor"), dict):  # Transformers 5 nests it in processor_config.json
            config = extra["image_processor"]
        else:
            return None
        image = OneFormerImageProcessor.from_config(config)
        image.folder = folder
        meta = config.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("thing_ids"), list):
            image._metadata = meta  # Transformers 5 saves the class-info metadata inline
        tokenizer = None
        if any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json")):
            from keras_models.tokenizers.tokenizer import Tokenizer

            tokenizer = Tokenizer.from_preset(folder)
        return cls(image, tokenizer, task_seq_length=extra.get("task_seq_length", task_seq_len),
                   max_seq_length=extra.get("max_seq_length", 77))

    def save_pretrained(self, folder):
        self.image_processor.save_pretrained(folder)
        if self.image_processor.class_info_file and self.image_processor.folder:
            src = Path(self.image_processor.folder) / self.image_processor.class_info_file
            if src.is_file() and not (Path(folder) / self.image_processor.class_info_file).exists():
                (Path(folder) / self.image_processor.class_info_file).write_bytes(src.read_bytes())
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        Path(folder, PROCESSOR_CONFIG).write_text(json.dumps(
            {"processor_class": "OneFormerProcessor", "task_seq_length": self.task_seq_length,
             "max_seq_length": self.max_seq_length}, indent=2) + "\n")

    def task_tokens(self, tasks):
        """(n, task_seq_length) int64: the ids of "the task is {task}" times their attention mask."""
        if self.tokenizer is None:
            raise InputError("OneFormerProcessor: the preset has no tokenizer (tokenizer.json) for the task inputs")
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            raise InputError(f"OneFormerProcessor: task_inputs must be among {TASKS}, got {bad}")
        enc = self.tokenizer([f"the task is {t}" for t in tasks], padding="max_length",
                             max_length=self.task_seq_length, truncation=True, return_tensors="np")
        return (np.asarray(enc["input_ids"], np.int64) * np.asarray(enc["attention_mask"], np.int64))

    def __call__(self, images, task_inputs=None, y=None):
        if y is not None:
            return self(images, task_inputs), y
        out = dict(self.image_processor(images))
        n = len(out["pixel_values"])
        tasks = ["panoptic"] * n if task_inputs is None else (
            [task_inputs] * n if isinstance(task_inputs, str) else list(task_inputs))
        if len(tasks) != n:
            raise InputError(f"OneFormerProcessor: {len(tasks)} task_inputs for {n} images")
        out["task_inputs"] = self.task_tokens(tasks)
        return out


__all__ = ["OneFormerImageProcessor", "OneFormerProcessor", "TASKS"]
