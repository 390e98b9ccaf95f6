"""Pipeline base: raw inputs -> tokenizer -> batched model calls -> Transformers-style outputs.

A pipeline turns each input into one or more *chunks* (``preprocess``: a dict of 1-D numpy
features plus whatever ``postprocess`` needs), runs the chunks through the model ``batch_size`` at
a time (padded to the longest chunk of the batch, outputs sliced back to each chunk's length) and
hands every input's chunk outputs to ``postprocess``. Nothing here is backend specific: the model
is called on numpy arrays and its outputs are converted back with ``keras.ops``.
"""

from __future__ import annotations

import logging

import numpy as np

from keras_models.errors import KerasModelsError

logger = logging.getLogger("keras_models")

# Features padded per batch, and the value they are padded with (None: the tokenizer's pad id).
_PAD_VALUES = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "decoder_input_ids": None}


class PipelineError(KerasModelsError, ValueError):
    """A pipeline got inputs or arguments it cannot use; the message names the argument."""


def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def to_numpy(x):
    import keras

    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    return np.asarray(keras.ops.convert_to_numpy(x))


class Pipeline:
    """Base of every pipeline. Subclasses set ``task`` and implement ``preprocess`` /
    ``postprocess`` (and ``call_params``: the keyword arguments ``__call__`` accepts)."""

    task = None
    call_params = ()

    def __init__(self, model, tokenizer=None, batch_size=1, progress=False, hf_config=None, **defaults):
        self.model = model
        if tokenizer is None:
            tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
        self.tokenizer = tokenizer
        self.hf_config = dict(hf_config or {})
        self.batch_size = _check_batch_size(batch_size)
        self.progress = progress
        self.defaults = self._check_params(defaults)

    # --- parameters -----------------------------------------------------------------------------
    def _check_params(self, params):
        unknown = sorted(set(params) - set(self.call_params))
        if unknown:
            raise PipelineError(
                f"{self.task} pipeline: unknown argument(s) {', '.join(map(repr, unknown))}; "
                f"it accepts {', '.join(map(repr, self.call_params)) or 'none'} "
                "(and batch_size, progress)"
            )
        return dict(params)

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise PipelineError(
                f"{self.task} pipeline: the model has no tokenizer; pass tokenizer= (a km.Tokenizer) "
                "or load a preset folder that ships tokenizer files"
            )
        return self.tokenizer

    def max_length(self):
        """The longest sequence the tokenizer/model accept."""
        limits = [getattr(self.tokenizer, "model_max_length", None)]
        backbone = getattr(self.model, "backbone", self.model)
        mode = getattr(backbone, "position_mode", "absolute")
        positions = getattr(backbone, "max_position_embeddings", None) if mode != "none" else None
        if positions is not None and mode == "padding_offset":
            # RoBERTa-style positions start after the padding index.
            positions -= (getattr(backbone, "pad_token_id", 1) or 0) + 1
        limits.append(positions)
        limits = [int(v) for v in limits if isinstance(v, (int, np.integer)) and 0 < v < int(1e20)]
        return min(limits) if limits else 512

    # --- the loop -------------------------------------------------------------------------------
    def __call__(self, inputs, **kwargs):
        batch_size = _check_batch_size(kwargs.pop("batch_size", self.batch_size))
        progress = kwargs.pop("progress", self.progress)
        params = {**self.defaults, **self._check_params(kwargs)}
        single, items = self.normalize_inputs(inputs, params)
        params = self.prepare_params(params)
        results = []
        bar = _progress_bar(len(items), progress, self.task)
        for start in range(0, len(items), batch_size):
            group = items[start : start + batch_size]
            chunks = [self.preprocess(item, **params) for item in group]
            flat = [c for item_chunks in chunks for c in item_chunks]
            outputs = []
            for b in range(0, len(flat), batch_size):
                outputs.extend(self.forward(flat[b : b + batch_size], **params))
            pos = 0
            for item, item_chunks in zip(group, chunks):
                n = len(item_chunks)
                results.append(self.postprocess(item, item_chunks, outputs[pos : pos + n], **params))
                pos += n
            if bar is not None:
                bar.update(len(group))
        if bar is not None:
            bar.close()
        return results[0] if single else results

    def normalize_inputs(self, inputs, params):
        """Return ``(single, items)``: whether one result (not a list) is returned, and the items."""
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise PipelineError(f"{self.task} pipeline: inputs is an empty list")
            return False, list(inputs)
        return True, [inputs]

    def prepare_params(self, params):
        """Hook: turn call parameters into what preprocess/postprocess use (defaults filled in)."""
        return params

    def preprocess(self, item, **params):
        raise NotImplementedError

    def postprocess(self, item, chunks, outputs, **params):
        raise NotImplementedError

    # --- model calls ----------------------------------------------------------------------------
    def model_inputs(self, chunks):
        """Pad the chunks' features to a common length -> (batch dict, per-chunk lengths)."""
        names = [k for k in chunks[0]["features"]]
        lengths = [len(c["features"]["input_ids"]) for c in chunks]
        longest = max(lengths)
        # Round lengths up to a multiple of 8 (capped at the model's limit): fewer distinct shapes,
        # so compiled backends (JAX, TensorFlow) reuse their compiled graphs across calls.
        longest = max(longest, min(-(-longest // 8) * 8, self.max_length()))
        side = getattr(self.tokenizer, "padding_side", "right") or "right"
        batch = {}
        for name in names:
            pad = _PAD_VALUES.get(name, 0)
            if pad is None:
                pad = getattr(self.tokenizer, "pad_token_id", None) or 0
            rows = []
            for c in chunks:
                row = np.asarray(c["features"][name], dtype=np.int32)
                fill = np.full((longest - len(row),), pad, dtype=np.int32)
                rows.append(np.concatenate([fill, row] if side == "left" else [row, fill]))
            batch[name] = np.stack(rows)
        return batch, lengths, side

    def call_model(self, model, batch):
        """``model`` on a numpy batch, compiled by the backend (``predict_on_batch``)."""
        return to_numpy(model.predict_on_batch(batch))

    def run_model(self, batch):
        return self.call_model(self.model, batch)

    def forward(self, chunks, **params):
        """Model outputs per chunk: numpy arrays (dicts of them) with padding removed."""
        batch, lengths, side = self.model_inputs(chunks)
        out = self.run_model(batch)
        longest = batch["input_ids"].shape[1]
        return [_unpad(out, i, n, longest, side) for i, n in enumerate(lengths)]


def _unpad(out, i, n, longest, side):
    if isinstance(out, dict):
        return {k: _unpad(v, i, n, longest, side) for k, v in out.items()}
    row = out[i]
    if row.ndim >= 1 and row.shape[0] == longest:
        row = row[longest - n :] if side == "left" else row[:n]
    return row


def _check_batch_size(batch_size):
    if batch_size is None:
        return 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise PipelineError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _progress_bar(total, progress, task):
    if not progress or total <= 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=task, unit="input")


class HiddenStateOutputs:
    """Feature-extraction pipelines (text and image): run the backbone, return its last hidden
    state per input (a nested list, or the array with ``return_tensors=True``)."""

    def run_model(self, batch):
        out = self.call_model(getattr(self.model, "backbone", self.model), batch)
        return out["last_hidden_state"] if isinstance(out, dict) else out

    def postprocess(self, item, chunks, outputs, return_tensors=False, **_):
        hidden = outputs[0][None]
        return hidden if return_tensors else hidden.tolist()


def generation_kwargs(task, params, default_max_new_tokens=256):
    """``generate_kwargs`` merged with ``max_new_tokens`` (``default_max_new_tokens``, Transformers'
    pipeline default, when neither bounds the length): the generative pipelines' shared rule."""
    raw = params.get("generate_kwargs")
    if raw is not None and not isinstance(raw, dict):
        raise PipelineError(f"{task}: generate_kwargs must be a dict, got {type(raw).__name__}")
    gen = dict(raw or {})
    if params.get("max_new_tokens") is not None:
        if "max_new_tokens" in gen:
            raise PipelineError(f"{task}: max_new_tokens is given both as an argument and in generate_kwargs; "
                                "use one")
        gen["max_new_tokens"] = params["max_new_tokens"]
    if "max_new_tokens" not in gen and "max_length" not in gen:
        gen["max_new_tokens"] = default_max_new_tokens
    return gen


def model_image_processor(pipe):
    """The image processor of ``pipe.model``'s preprocessor, for a pipeline that also needs a
    tokenizer; an error naming the missing preset files when either is absent."""
    image_processor = getattr(getattr(pipe.model, "preprocessor", None), "image_processor", None)
    if pipe.tokenizer is None or image_processor is None:
        raise PipelineError(f"{pipe.task}: the model needs a tokenizer and an image processor "
                            "(tokenizer files and preprocessor_config.json in its preset)")
    return image_processor
