"""Backbone base class: a plain keras.Model that knows its Hugging Face config and weight map."""

from __future__ import annotations

import contextlib
import logging

import keras
import numpy as np

from keras_models import compat
from keras_models.backend_choice import (configure_jax_compilation_cache, configure_jax_cpu_dispatch,
                                         keep_xla_temporaries_in_heap)
from keras_models.generation.backend import fast_inference
from keras_models.jax_kernels import bf16_dots
from keras_models.layers.init import (build_symbolically, deferred_variables, discard_deferred, initialise_rest,
                                     placeholder_variables)
from keras_models.presets.config import building_from, check_layer_counts, check_model_size, load_hf_config
from keras_models.presets.dtypes import resolve_dtype
from keras_models.presets.resolve import resolve_preset
from keras_models.presets.sharing import SharingMixin

logger = logging.getLogger("keras_models")

configure_jax_compilation_cache()  # before any model compiles (no-op off jax)
configure_jax_cpu_dispatch()  # before jax's CPU client exists (KM_JAX_HEAP_TEMPS)
compat.fast_torch_kernels()  # torch: conv / batch norm without Keras' redundant copies (no-op elsewhere)


class Backbone(SharingMixin, keras.Model):
    """Base of every architecture's backbone.

    Subclasses define:
      * ``config_from_hf(hf_config) -> dict`` (classmethod): constructor kwargs from config.json;
      * ``config_to_hf() -> dict``: config.json written by ``save_to_preset``;
      * ``weight_rules() -> list[Rule]``: the weight map (names relative to the base model);
      * ``base_model_prefix``, ``hf_architecture`` (e.g. ``"bert"``, ``"BertModel"``);
      * ``hf_ignore`` / ``hf_known_unused``: checkpoint tensors that are buffers / other heads.
    """

    base_model_prefix = ""
    hf_architecture = None
    hf_ignore = ()
    hf_known_unused = ()
    model_types = ()
    tasks = {}

    def predict_step(self, *args, **kwargs):
        # torch: Dense layers through oneDNN while predicting (generation.backend.fast_inference)
        # jax on CPU, bf16: products accumulate to f32 (jax_kernels.bf16_dots, KM_JAX_BF16_DOTS)
        # jax on CPU: XLA's temporaries stay in the heap (KM_JAX_HEAP_TEMPS; once, when traced)
        keep_xla_temporaries_in_heap()
        with fast_inference(self):
            return bf16_dots(super().predict_step, self)(*args, **kwargs)

    def predict(self, x, *args, **kwargs):
        from keras_models.compat import guarded_jax_run
        from keras_models.tasks.checks import check_inputs

        check_inputs(self, x, "predict")
        with guarded_jax_run(self):
            return super().predict(x, *args, **kwargs)

    # --- config -------------------------------------------------------------------------------
    # A keras_models.spec.Spec subclass for backbones declared by a typed spec (SpecBackbone).
    spec_cls = None

    hf_model_type = None  # config.json model_type written back (default: the first registered)

    @classmethod
    def config_from_hf(cls, hf_config: dict) -> dict:
        """Constructor kwargs from config.json: by default the spec's fields."""
        if cls.spec_cls is None:
            raise NotImplementedError(f"{cls.__name__} declares no spec_cls")
        return cls.spec_cls.from_hf(hf_config).kwargs()

    def config_to_hf(self) -> dict:
        """config.json for ``save_to_preset``: by default the spec (read back from ``get_config``)
        plus ``model_type`` and ``architectures``."""
        spec = getattr(self, "spec", None)
        if spec is None:
            if self.spec_cls is None:
                raise NotImplementedError(f"{type(self).__name__} declares no spec_cls")
            config = self.get_config()
            spec = self.spec_cls.from_config({k: config[k] for k in self.spec_cls.field_names() if k in config})
        out = {"model_type": self.hf_model_type or self.model_types[0],
               "architectures": [self.hf_architecture] if self.hf_architecture else []}
        out.update(spec.to_hf())
        return out

    def weight_rules(self):
        raise NotImplementedError

    def dummy_inputs(self):
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32")}

    def build_from_config(self, config):
        # Keras' .keras loading: the file's values replace every variable right after this build,
        # so the variables start as zeros instead of running their initialisers.
        with placeholder_variables(self):
            super().build_from_config(config)

    def build_from_dummy(self):
        """Create every variable by tracing a symbolic call (no computation, no compilation)."""
        if not self.built or not self.weights:
            build_symbolically(self, self.dummy_inputs())
        return self

    # --- fine-tuning helpers ------------------------------------------------------------------
    # Dense layer names that get adapters by default: the attention's query and value projections
    # (fused query/key/value where a family keeps them in one kernel, as PEFT does for GPT-2)
    lora_targets = ("query", "value", "q_proj", "v_proj", "qkv")

    def enable_lora(self, rank, target_names=None, lora_alpha=None):
        """Freeze the backbone and add rank-``rank`` LoRA adapters (scaling ``lora_alpha / rank``,
        alpha defaulting to the rank) to the Dense layers whose name is in ``target_names``
        (default: ``lora_targets``, the attention's query and value projections). Returns how many
        layers got one."""
        from keras_models.layers.moe import MoE

        names = tuple(target_names or self.lora_targets)
        found = 0
        # stacked MoE experts: "gate" / "up" (or "expert_gate_up") adapt the fused [gate | up]
        # tensor, "down" (or "expert_down") the down tensor (keras_models.layers.moe)
        expert_targets = tuple(t for t, keys in (("gate_up", {"gate", "up", "expert_gate_up"}),
                                                 ("down", {"down", "expert_down"})) if keys & set(names))
        for layer in compat.sublayers(self):
            if isinstance(layer, keras.layers.Dense) and layer.name in names:
                layer.enable_lora(rank, lora_alpha=lora_alpha)
                found += 1
            elif isinstance(layer, MoE) and layer.stacked and expert_targets:
                found += len(layer.enable_lora(rank, lora_alpha=lora_alpha, targets=expert_targets))
        if not found:
            dense = sorted({layer.name for layer in compat.sublayers(self) if isinstance(layer, keras.layers.Dense)})
            raise ValueError(f"enable_lora: no Dense layer named any of {names} in {self.name} "
                             f"(its Dense layers: {', '.join(dense)})")
        self.freeze_all_but_lora()
        return found

    def freeze_all_but_lora(self):
        """Only LoRA adapters stay trainable (their layers' kernels and biases are frozen too)."""
        from keras_models.layers.moe import MoE

        for layer in compat.sublayers(self):
            if isinstance(layer, MoE):
                layer.freeze_all_but_lora()  # its own stacked experts (composite: not a leaf)
            if compat.has_sublayers(layer):
                continue
            if getattr(layer, "lora_enabled", False):
                if getattr(layer, "bias", None) is not None:
                    layer.bias.trainable = False  # Keras leaves biases trainable; LoRA freezes them
            else:
                layer.trainable = False

    def save_lora_weights(self, path, overwrite=False):
        """Write the LoRA adapters alone as a PEFT adapter folder (adapter_config.json +
        adapter_model.safetensors) that ``load_lora_weights`` and PEFT read."""
        from keras_models.presets.lora import save_lora_weights

        return save_lora_weights(self, path, overwrite=overwrite)

    def load_lora_weights(self, path):
        """Add the LoRA adapters of a PEFT adapter folder (ours or PEFT's) and freeze the rest."""
        from keras_models.presets.lora import load_lora_weights

        layers = load_lora_weights(self, path)
        self.freeze_all_but_lora()
        return len(layers)

    def merge_lora_weights(self):
        """Fold the adapters into the kernels and drop them (same outputs, plain Dense layers)."""
        from keras_models.presets.lora import merge_lora_weights

        return merge_lora_weights(self)

    # --- presets ------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, dtype=None, load_weights=True, **overrides):
        """Load the backbone of any supported checkpoint (class resolved from config.json)."""
        from keras_models.models.registry import backbone_for_config
        from keras_models.presets.loader import load_model_weights

        folder = resolve_preset(preset)
        hf = load_hf_config(folder)
        target = backbone_for_config(hf, source=str(folder / "config.json"))
        if not issubclass(target, cls):
            raise TypeError(
                f"{folder}/config.json describes a {target.__name__}, not a {cls.__name__}"
            )
        kwargs = target.config_kwargs(hf, source=str(folder / "config.json"))
        kwargs.update(overrides)
        policy = resolve_dtype(dtype, hf)
        if policy is not None:
            kwargs["dtype"] = policy
        # Variables stay unmaterialised until the checkpoint fills them (no placeholder copy).
        source = str(folder / "config.json")
        if load_weights:
            check_layer_counts(hf, folder, source)
        with deferred_variables() if load_weights else contextlib.nullcontext(), building_from(source, target.__name__):
            model = target(**kwargs)
            model.build_from_dummy()
        try:
            if load_weights:
                check_model_size(model, folder, source)
                model.load_report = load_model_weights(
                    folder,
                    model.weight_rules(),
                    prefix=target.base_model_prefix,
                    ignore=target.hf_ignore,
                    known_unused=target.hf_known_unused + _task_head_patterns(target),
                )
        except BaseException:
            if load_weights:  # drop this load's pending variables; the original error propagates
                discard_deferred(model)
            raise
        if load_weights:
            initialise_rest()
            from keras_models.presets.quantization import apply_saved_quantization

            apply_saved_quantization(model, folder, hf)  # a quantized preset: re-quantize, exact values
        return model

    @classmethod
    def config_kwargs(cls, hf_config, source="config.json"):
        """Constructor kwargs from a config.json dict (errors name ``source``)."""
        from keras_models.presets.quantization import check_not_prequantized

        check_not_prequantized(hf_config, source)  # GPTQ / AWQ / bitsandbytes / fp8 checkpoints
        if cls.spec_cls is not None:
            return cls.spec_cls.from_hf(hf_config, source).kwargs()
        return cls.config_from_hf(hf_config)

    # --- quantization (keras_models/presets/quantization.py) ------------------------------------
    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Keras' ``quantize``, skipping layers that were never built (stateless ones)."""
        from keras_models.presets.quantization import quantize_model

        return quantize_model(self, super().quantize, mode, config=config, filters=filters, **kwargs)

    def get_config(self):
        from keras_models.presets.quantization import record_policy_map

        return record_policy_map(self, super().get_config())  # quantized layers survive a .keras file


class SpecBackbone(Backbone):
    """A backbone declared by a typed spec (``spec_cls``, see :mod:`keras_models.spec`).

    The constructor takes the spec's fields as keyword arguments (nested specs as specs or their
    config dicts) and keeps them as ``self.spec``; config.json translation both ways, ``get_config``
    and the dummy inputs all come from the spec, so a family writes none of them by hand."""

    def __init__(self, spec=None, **kwargs):
        if spec is None:
            spec = self.spec_cls.pop_from(kwargs)
        elif isinstance(spec, dict):
            spec = self.spec_cls.from_config(spec)
        super().__init__(**kwargs)
        self.spec = spec

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def get_config(self):
        config = super().get_config()
        config.update(self.spec.to_config())
        return config


def _task_head_patterns(backbone_cls):
    out = []
    from keras_models.models.registry import tasks_of

    for task in tasks_of(backbone_cls).values():
        out.extend(getattr(task, "hf_head_patterns", ()))
    return tuple(out)
