"""Task base class: a backbone plus a head plus (optionally) a preprocessor.

``Task.from_preset`` resolves the architecture from config.json. It loads the checkpoint's own head
when the checkpoint's ``architectures`` names one this task reads (e.g.
``BertForSequenceClassification`` for a TextClassifier); otherwise it builds a new head (from
``num_classes`` where one is needed) and says so in a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import keras
import numpy as np

from keras_models.backend_choice import keep_xla_temporaries_in_heap
from keras_models.compat import guarded_jax_run
from keras_models.errors import ConfigError
from keras_models.generation.backend import fast_inference
from keras_models.jax_kernels import bf16_dots
from keras_models.layers.init import (build_symbolically, deferred_variables, discard_deferred, initialise_rest,
                                     placeholder_variables, stand_in_for)
from keras_models.presets.config import building_from, check_layer_counts, check_model_size, load_hf_config
from keras_models.presets.dtypes import resolve_dtype
from keras_models.presets.resolve import resolve_preset
from keras_models.presets.sharing import SharingMixin
from keras_models.tasks.checks import check_inputs, fit_preprocessor_to_model
from keras_models.tasks.training import build_before_tracing, fast_training
from keras_models.tasks.raw_data import (RawDataAdapter, adapt_stream, is_raw, preprocess_batch, split_raw,
                                         table_columns)

logger = logging.getLogger("keras_models")

# from_preset keyword arguments that configure the preprocessor rather than the model.
PREPROCESSOR_KWARGS = ("sequence_length",)
# in a .keras file's assets: marks (and configures) the saved preprocessor
PREPROCESSOR_ASSET = "keras_models_preprocessor.json"


class Task(SharingMixin, keras.Model):
    """Base of every task model. Subclasses implement ``head_rules`` and ``call``."""

    task_name = None
    backbone_cls = None
    hf_architectures = ()
    # fnmatch patterns of this head's tensors, reported (not failed on) when a backbone or another
    # task loads a checkpoint that carries them.
    hf_head_patterns = ()

    def predict_step(self, *args, **kwargs):
        # torch: Dense layers through oneDNN while predicting (generation.backend.fast_inference)
        # jax on CPU, bf16: products accumulate to f32 (jax_kernels.bf16_dots, KM_JAX_BF16_DOTS)
        with fast_inference(self):
            return bf16_dots(super().predict_step, self)(*args, **kwargs)

    def train_step(self, *args, **kwargs):
        # torch: Dense through oneDNN forward and backward, Adam(W) updates in place (tasks.training,
        # KM_FAST_TRAIN)
        with fast_training(self):
            return super().train_step(*args, **kwargs)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessor

    # --- HF conversion -----------------------------------------------------------------------
    @classmethod
    def task_config_from_hf(cls, hf_config: dict, head_from_checkpoint: bool, **kwargs) -> dict:
        """Task constructor kwargs (besides backbone) from config.json and the user's kwargs."""
        return kwargs

    def task_config_to_hf(self) -> dict:
        return {}

    def head_rules(self):
        return []

    def weight_rules(self):
        return list(self.backbone.weight_rules()) + list(self.head_rules())

    @property
    def export_prefix(self):
        return self.backbone.base_model_prefix

    def config_to_hf(self):
        config = self.backbone.config_to_hf()
        config.update(self.task_config_to_hf())
        config["architectures"] = [self.hf_architectures[0]] if self.hf_architectures else []
        return config

    def save_extra_files(self, folder):
        tokenizer = getattr(self.preprocessor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)

    # --- .keras files: the preprocessor travels as assets ---------------------------------------
    # Keras calls save_assets / load_assets on the model when it writes / reads a .keras file: the
    # preprocessor's files (tokenizer, preprocessor_config.json...) are written as a mini preset
    # (config.json + those files + PREPROCESSOR_ASSET) and rebuilt on load, so a reloaded model
    # still takes raw text or images.
    def save_assets(self, dir_path):
        import json
        from pathlib import Path

        if self.preprocessor is None:
            return
        folder = Path(dir_path)
        (folder / "config.json").write_text(json.dumps(self.config_to_hf(), indent=2, default=str))
        self.save_extra_files(folder)
        kwargs = {}
        if getattr(self.preprocessor, "padding", None) == "max_length":
            kwargs["sequence_length"] = int(self.preprocessor.sequence_length)
        (folder / PREPROCESSOR_ASSET).write_text(json.dumps({"kwargs": kwargs}))

    def load_assets(self, dir_path):
        import json
        from pathlib import Path

        folder = Path(dir_path)
        marker = folder / PREPROCESSOR_ASSET
        if not marker.is_file():
            return
        kwargs = json.loads(marker.read_text()).get("kwargs", {})
        self.preprocessor = type(self).preprocessor_from_preset(folder, load_hf_config(folder), **kwargs)
        fit_preprocessor_to_model(self)

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def _resolve_class(cls, hf, source):
        from keras_models.models.registry import backbone_for_config, task_class_for

        if cls.backbone_cls is not None:
            return cls
        backbone_cls = backbone_for_config(hf, source=source)
        return task_class_for(backbone_cls, cls.task_name, source=source)

    @classmethod
    def from_preset(cls, preset, dtype=None, load_weights=True, preprocessor=True, **kwargs):
        folder = resolve_preset(preset)
        hf = load_hf_config(folder)
        source = str(folder / "config.json")
        task_cls = cls._resolve_class(hf, source)
        backbone_cls = task_cls.backbone_cls
        archs = hf.get("architectures") or []
        head_from_checkpoint = any(a in task_cls.hf_architectures for a in archs)
        task_kwargs = task_cls.task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        head_from_checkpoint = task_kwargs.pop("_head_from_checkpoint", head_from_checkpoint)
        pre_kwargs = {k: task_kwargs.pop(k) for k in PREPROCESSOR_KWARGS if k in task_kwargs}
        policy = resolve_dtype(dtype, hf)
        bb_kwargs = backbone_cls.config_kwargs(hf, source=source)
        if policy is not None:
            bb_kwargs["dtype"] = policy
            task_kwargs["dtype"] = policy
        if preprocessor is True:
            preprocessor = task_cls.preprocessor_from_preset(folder, hf, **pre_kwargs)
        elif preprocessor is False:
            preprocessor = None
        # Variables stay unmaterialised until the checkpoint fills them; what it does not fill (a
        # new head) is initialised by its own initialiser at the end.
        if load_weights:
            check_layer_counts(hf, folder, source)
        with deferred_variables() if load_weights else contextlib.nullcontext(), building_from(source, task_cls.__name__):
            backbone = backbone_cls(**bb_kwargs)
            backbone.build_from_dummy()
            model = task_cls(backbone=backbone, preprocessor=preprocessor, **task_kwargs)
            model.build_from_dummy()
        try:
            if load_weights:
                check_model_size(model, folder, source)
                model.load_report = cls._load_weights(folder, model, head_from_checkpoint, archs)
        except BaseException:
            if load_weights:  # drop this load's pending variables; the original error propagates
                discard_deferred(model)
            raise
        if load_weights:
            initialise_rest()
            from keras_models.presets.quantization import apply_saved_quantization

            apply_saved_quantization(model, folder, hf)  # a quantized preset: re-quantize, exact values
        model.head_from_checkpoint = head_from_checkpoint
        fit_preprocessor_to_model(model)
        return model

    @staticmethod
    def _load_weights(folder, model, head_from_checkpoint, archs):
        from keras_models.models.registry import tasks_of
        from keras_models.presets.loader import load_model_weights

        backbone, backbone_cls = model.backbone, model.backbone_cls
        if head_from_checkpoint:
            rules = model.weight_rules()
        else:
            # A new head still takes the parts of it that live in the base model when the
            # checkpoint has them (BERT's pooler), as Transformers does.
            rules = list(backbone.weight_rules()) + [
                dataclasses.replace(r, optional=True) for r in model.head_rules() if r.base
            ]
        known = backbone_cls.hf_known_unused + tuple(
            p for t in tasks_of(backbone_cls).values() for p in t.hf_head_patterns
        )
        report = load_model_weights(
            folder, rules, prefix=backbone_cls.base_model_prefix,
            ignore=backbone_cls.hf_ignore, known_unused=known,
        )
        if not head_from_checkpoint and model.head_rules():
            logger.warning(
                "%s: %s has no %s head for this task (architectures %s); a new, randomly "
                "initialised head was built. Train it with fit() before use.",
                folder, type(model).__name__, model.task_name, archs,
            )
        return report

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **task_kwargs):
        return None

    def build_from_config(self, config):
        # Keras' .keras loading: the file's values replace every variable right after this build,
        # so the variables start as zeros instead of running their initialisers.
        with placeholder_variables(self):
            super().build_from_config(config)

    def build_from_dummy(self):
        if not self.built or not self.weights:
            with stand_in_for(self.backbone):  # the backbone is built already: not traced again
                build_symbolically(self, self.backbone.dummy_inputs())
        return self

    # --- training defaults -----------------------------------------------------------------
    # fit / evaluate / train_on_batch / test_on_batch compile a model the user has not compiled
    # with these (as KerasHub tasks do); an explicit ``compile()`` always wins.
    default_learning_rate = 5e-5  # Transformers' Trainer default, suited to fine-tuning

    def default_loss(self):
        """The task's training loss (a Keras loss, or a dict of them for dict outputs); None: no
        natural default, ``compile()`` must be called."""
        return None

    def default_metrics(self):
        return None

    def default_compile_args(self):
        loss = self.default_loss()
        if loss is None:
            return None
        return dict(optimizer=keras.optimizers.AdamW(self.default_learning_rate, weight_decay=0.01),
                    loss=loss, metrics=self.default_metrics())

    def _compile_by_default(self, method):
        if getattr(self, "compiled", False):
            return
        args = self.default_compile_args()
        if args is None:
            raise ConfigError(
                f"{type(self).__name__}.{method}: this task has no default loss; call "
                "compile(optimizer=..., loss=...) first")
        self.compile(**args)

    def _host_inputs(self, x):
        """A family's host-side additions to an input dict before Keras compiles (LLaVA-NeXT's
        packing index: ``Backbone.host_inputs``)."""
        hook = getattr(self.backbone, "host_inputs", None)
        return hook(x) if hook is not None and isinstance(x, dict) else x

    def train_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        self._compile_by_default("train_on_batch")
        keep_xla_temporaries_in_heap()
        x, y, sample_weight = self._raw_batch(x, y, sample_weight)
        build_before_tracing(self, x, y, sample_weight)
        return super().train_on_batch(x, y, sample_weight=sample_weight, **kwargs)

    def test_on_batch(self, x, y=None, sample_weight=None, **kwargs):
        self._compile_by_default("test_on_batch")
        x, y, sample_weight = self._raw_batch(x, y, sample_weight)
        return super().test_on_batch(x, y, sample_weight=sample_weight, **kwargs)

    def predict_on_batch(self, x):
        if is_raw(x):
            self._need_preprocessor(x)
            x = preprocess_batch(self.preprocessor, [x] if isinstance(x, str) else list(x), inference=True)[0]
        x = self._host_inputs(x)
        with guarded_jax_run(self):
            return super().predict_on_batch(x)

    # --- raw data in fit / predict / evaluate -------------------------------------------------
    def _need_preprocessor(self, x):
        if self.preprocessor is not None:
            return
        from keras_models.errors import InputError

        sample = x[0] if isinstance(x, (list, tuple)) and len(x) else x
        raise InputError(
            f"{type(self).__name__}: raw inputs ({type(sample).__name__}) "
            "need a preprocessor, and this model has none: its preset had no tokenizer files "
            "(tokenizer.json, tokenizer_config.json, vocab.txt, vocab.json + merges.txt, *.model) or "
            "no preprocessor_config.json. Pass preprocessor= or token ids / pixel_values instead."
        )

    def _raw_batch(self, x, y, sample_weight):
        """One batch of raw samples (train_on_batch / test_on_batch) -> (features, y, sample_weight)."""
        if not is_raw(x):
            return self._host_inputs(x), y, sample_weight
        self._need_preprocessor(x)
        out = preprocess_batch(self.preprocessor, [x] if isinstance(x, str) else list(x), y, sample_weight)
        return (tuple(out) + (None, None))[:3]

    def _adapt(self, x, y, batch_size, shuffle, inference=False, sample_weight=None):
        """Raw samples in a list or array -> batches Keras consumes (preprocessed on the host), or
        None when ``x`` holds no raw samples."""
        if not is_raw(x):
            return None
        self._need_preprocessor(x)
        return RawDataAdapter(x, y, self.preprocessor, batch_size=batch_size or 32, shuffle=shuffle,
                              inference=inference, sample_weight=sample_weight).as_dataset()

    def _batches(self, x, y=None, sample_weight=None, batch_size=None, shuffle=False, inference=False):
        """Any raw form of data -> ``(batches, x, y)``: batches Keras consumes, or None when ``x``
        holds no raw samples (then ``x`` and ``y`` go to Keras: ``x`` may be a restored generator,
        or a tokenised table's columns).

        Lists / arrays of samples, a Hugging Face ``datasets.Dataset`` (input and ``label``
        columns), and PyDatasets, generators and tf.data.Datasets yielding raw batches."""
        table = table_columns(x, y)
        if table is not None:
            x, y = table
            if isinstance(x, dict):  # a tokenised table: its numeric columns are the features
                return None, self._host_inputs(x), y
        data = self._adapt(x, y, batch_size, shuffle, inference, sample_weight)
        if data is not None:
            return data, x, y
        data, x = adapt_stream(x, self.preprocessor, inference, need=self._need_preprocessor)
        if data is not None and (y is not None or sample_weight is not None):
            from keras_models.errors import InputError

            raise InputError(f"{type(self).__name__}: y and sample_weight go inside the batches when x is a "
                             f"{type(x).__name__} (yield (x, y) or (x, y, sample_weight)), not as arguments")
        return data, (self._host_inputs(x) if data is None else x), y

    def fit(self, x=None, y=None, batch_size=None, shuffle=True, validation_data=None, sample_weight=None,
            validation_split=0.0, **kwargs):
        check_inputs(self, x, "fit")
        self._compile_by_default("fit")
        keep_xla_temporaries_in_heap()  # jax on the CPU (KM_JAX_HEAP_TEMPS); no-op elsewhere
        table = table_columns(x, y)
        x, y = table if table is not None else (x, y)
        if validation_split and validation_data is None and is_raw(x):
            # Keras' own split needs arrays: split the raw samples (the last ones, as Keras does)
            x, y, sample_weight, validation_data = split_raw(x, y, sample_weight, validation_split)
            validation_split = 0.0
        data, x, y = self._batches(x, y, sample_weight, batch_size, shuffle)
        if data is None:  # tensorflow: one trace of the step, not two
            build_before_tracing(self, x, y, sample_weight, batch_size)
        else:
            build_before_tracing(self)
        if validation_data is not None:
            as_tuple = isinstance(validation_data, tuple)
            vx, vy, vsw = (validation_data + (None, None))[:3] if as_tuple else (validation_data, None, None)
            vdata, vx, vy = self._batches(vx, vy, vsw, batch_size, False)
            validation_data = vdata if vdata is not None else (vx, vy, vsw)[:len(validation_data)] if as_tuple \
                else vx
        if data is not None:  # the adapter shuffles samples itself
            return super().fit(data, shuffle=False, validation_data=validation_data, **kwargs)
        return super().fit(x, y, batch_size=batch_size, shuffle=shuffle, validation_data=validation_data,
                           sample_weight=sample_weight, validation_split=validation_split, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        check_inputs(self, x, "predict")
        data, x, _ = self._batches(x, batch_size=batch_size, inference=True)
        with guarded_jax_run(self):
            if data is not None:
                return super().predict(data, **kwargs)
            return super().predict(x, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        check_inputs(self, x, "evaluate")
        self._compile_by_default("evaluate")
        data, x, y = self._batches(x, y, sample_weight, batch_size, False)
        with guarded_jax_run(self):
            if data is not None:
                return super().evaluate(data, **kwargs)
            return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight, **kwargs)

    def get_config(self):
        from keras_models.presets.quantization import record_policy_map

        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return record_policy_map(self, config)  # quantized layers rebuild quantized from a .keras file

    # --- LoRA ----------------------------------------------------------------------------------
    def enable_lora(self, rank, target_names=None, lora_alpha=None):
        """LoRA on the backbone (see ``Backbone.enable_lora``); the task head stays trainable."""
        return self.backbone.enable_lora(rank, target_names=target_names, lora_alpha=lora_alpha)

    def save_lora_weights(self, path, overwrite=False):
        """The adapters, plus the trainable head (PEFT's ``modules_to_save``), as a PEFT adapter
        folder that ``load_lora_weights`` and ``peft.PeftModel.from_pretrained`` read."""
        from keras_models.presets.lora import save_lora_weights

        return save_lora_weights(self, path, overwrite=overwrite)

    def load_lora_weights(self, path):
        from keras_models.presets.lora import load_lora_weights

        layers = load_lora_weights(self, path)
        self.backbone.freeze_all_but_lora()
        return len(layers)

    def merge_lora_weights(self):
        from keras_models.presets.lora import merge_lora_weights

        return merge_lora_weights(self)

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Keras' ``quantize``, skipping unbuilt layers and a tied embedding used as the output head
        (keras_models/presets/quantization.py); ``save_to_preset`` and ``.keras`` keep the result."""
        from keras_models.presets.quantization import quantize_model

        return quantize_model(self, super().quantize, mode, config=config, filters=filters, **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def labelled_task_kwargs(hf, num_classes, head_from_checkpoint, kwargs):
    """A classification task's constructor kwargs (num_classes, id2label) from config.json."""
    n, labels, from_ckpt = labels_from_hf(hf, num_classes, head_from_checkpoint)
    kwargs.update(num_classes=n, id2label=labels, _head_from_checkpoint=from_ckpt)
    return kwargs


def labels_to_hf(id2label, num_classes):
    """config.json's id2label / label2id / num_labels. num_labels too: some configs declare it as
    their own field (PvtConfig: 1000), which would otherwise win over id2label in Transformers."""
    labels = id2label or {i: f"LABEL_{i}" for i in range(num_classes)}
    return {"id2label": {str(k): v for k, v in labels.items()},
            "label2id": {v: k for k, v in labels.items()}, "num_labels": num_classes}


def labels_from_hf(hf, num_classes, head_from_checkpoint, source="config.json"):
    """Resolve (num_classes, id2label) from config.json and the user's ``num_classes``."""
    id2label = hf.get("id2label")
    ckpt_n = len(id2label) if isinstance(id2label, dict) else hf.get("num_labels")
    if head_from_checkpoint and not ckpt_n:
        ckpt_n = 2  # Transformers' default; config.json may omit default-valued keys
    if head_from_checkpoint and ckpt_n:
        if num_classes is None or num_classes == ckpt_n:
            labels = {int(k): v for k, v in id2label.items()} if id2label else None
            return ckpt_n, labels, True
        logger.warning(
            "%s: num_classes=%d differs from the checkpoint head's %d classes; building a new head.",
            source, num_classes, ckpt_n,
        )
        return num_classes, None, False
    if num_classes is None:
        raise ConfigError(
            f"{source}: the checkpoint has no classification head; pass num_classes= to build one"
        )
    return num_classes, None, False


__all__ = ["Task", "labels_from_hf", "np"]
