"""LoRA adapters on their own, in PEFT's format (``adapter_config.json`` + ``adapter_model.safetensors``).

Keras' ``Dense.enable_lora`` adds ``lora_kernel_a`` (in, r) and ``lora_kernel_b`` (r, out) and computes
``kernel + (lora_alpha / r) * a @ b``. PEFT's LoRA on a ``nn.Linear`` stores ``lora_A.weight`` (r, in)
and ``lora_B.weight`` (out, r) with the same scaling (``lora_alpha / r``; ``use_rslora``:
``lora_alpha / sqrt(r)``), so an adapter is the transpose of ours, keyed by the Transformers module
that owns the kernel: ``base_model.model.<module>.lora_A.weight``. The module of each of our Dense
layers comes from the model's own weight map (the rule that exports its kernel), which is why only
kernels stored as one Transformers tensor (a plain transpose, or GPT-2's ``Conv1D`` layout, PEFT's
``fan_in_fan_out``) can be written or read; other layouts raise PresetError naming the layer.

A task's trainable head (a classifier that ``fit`` trains next to the adapters) travels as PEFT's
``modules_to_save``: its tensors under ``base_model.model.<name>`` as Transformers names them.

Stacked MoE experts (keras_models.layers.moe, ``MoE.enable_lora``: A (experts, in, r), B (experts, r, out))
are written as PEFT's ``target_parameters`` adapters on Transformers 5's fused expert parameters
(``<layer>.mlp.experts.gate_up_proj`` (experts, 2 * ffn, hidden), ``.down_proj``): ``lora_A.weight``
(experts * r, in), expert-major, and ``lora_B.weight`` (out, r * experts), rank-major, keyed
``<module>.experts.lora_A.weight``. PEFT wraps each targeted parameter of a module in its own
``ParamWrapper``, nested in the module's parameter order (gate_up_proj inside down_proj), so with
both adapted the inner one's keys read ``experts.base_layer.lora_A.weight``. Only experts whose
checkpoint keeps one MLP per expert (Mixtral, Qwen2/3-MoE, DeepSeek-V2/V3: Transformers 5 fuses them
on load into [gate | up]) can be written or read; checkpoints that store the experts stacked
(GPT-OSS, Llama 4) raise PresetError naming the layer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from keras_models import compat
from keras_models.errors import PresetError

logger = logging.getLogger("keras_models")

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."
_TASK_TYPES = {  # our task class -> PEFT's task_type
    "CausalLM": "CAUSAL_LM", "Seq2SeqLM": "SEQ_2_SEQ_LM", "TextClassifier": "SEQ_CLS",
    "TokenClassifier": "TOKEN_CLS", "QuestionAnswerer": "QUESTION_ANS",
}


def _dense_layers(model):
    import keras

    return [layer for layer in compat.sublayers(model)
            if isinstance(layer, keras.layers.Dense) and not compat.has_sublayers(layer)]


def _moe_layers(model):
    from keras_models.layers.moe import MoE

    return [layer for layer in compat.sublayers(model) if isinstance(layer, MoE) and layer.stacked]


def lora_layers(model):
    """The Dense layers of ``model`` with LoRA enabled, then its MoE layers with adapted experts."""
    return ([layer for layer in _dense_layers(model) if getattr(layer, "lora_enabled", False)]
            + [layer for layer in _moe_layers(model) if layer.lora_targets])


# Transformers 5 renames some MoE blocks on load (conversion_mapping: Mixtral's ``block_sparse_moe``
# is the ``mlp`` module); PEFT's target_parameters name the renamed modules
_V5_MODULE_RENAMES = ((".block_sparse_moe.", ".mlp."),)
_EXPERT_PARAMS = (("gate_up", "gate_up_proj"), ("down", "down_proj"))  # in Transformers' parameter order


@contextlib.contextmanager
def _base_kernels(layers):
    """While active, LoRA layers' ``kernel`` (MoE: ``expert_gate_up`` / ``expert_down``) is their
    base variable (the weight map then names it)."""
    states = [(layer, layer.lora_enabled) for layer in layers]
    for layer in layers:
        layer.lora_enabled = False
    try:
        yield
    finally:
        for layer, state in states:
            layer.lora_enabled = state


def _full_name(rule, prefix):
    return (f"{prefix}.{rule.hf}" if prefix else rule.hf) if rule.base else rule.hf


def _layout(op, kernel_rank):
    """PEFT's ``fan_in_fan_out`` for a kernel exported through ``op``, or None if the tensor is not
    one Linear (out, in) / Conv1D (in, out) matrix."""
    from keras_models.presets.weight_map import Op, Transpose

    if kernel_rank != 2:
        return None
    if type(op) is Op:
        return True  # stored as Keras stores it, (in, out): GPT-2's Conv1D
    if isinstance(op, Transpose) and op.axes in (None, (1, 0)):
        return False
    return None


class _Map:
    """How ``model``'s weights are named in Transformers: each Dense kernel's module, each
    exported rule by its full name."""

    def __init__(self, model):
        self.prefix = getattr(model, "export_prefix", "")
        dense = _dense_layers(model)
        moes = _moe_layers(model)
        with _base_kernels([layer for layer in dense if getattr(layer, "lora_enabled", False)] + moes):
            self.rules = [r for r in model.weight_rules() if r.export]
        by_variable = {}
        for rule in self.rules:
            by_variable.setdefault(id(rule.variable), rule)
        self.module_of = {}  # id(layer) -> (module name, fan_in_fan_out)
        self.why_not = {}  # id(layer) -> reason it has no module
        for layer in dense:
            kernel = getattr(layer, "_kernel", None)
            rule = by_variable.get(id(kernel))
            if rule is None:
                self.why_not[id(layer)] = "its kernel is not in the model's weight map"
                continue
            name = _full_name(rule, self.prefix)
            fan = _layout(rule.op, len(kernel.shape))
            if fan is None or not name.endswith(".weight"):
                self.why_not[id(layer)] = (f"its kernel is stored as {name} through {type(rule.op).__name__}, "
                                           "not as one Linear weight")
                continue
            self.module_of[id(layer)] = (name[: -len(".weight")], fan)
        self.layer_of = {self.module_of[id(layer)][0]: layer for layer in dense if id(layer) in self.module_of}
        self.rule_of = {_full_name(r, self.prefix): r for r in self.rules}
        self.experts_of = {}  # id(MoE) -> Transformers 5 module of its experts
        self.experts_why_not = {}
        for moe in moes:
            base = moe.base_kernel("gate_up")
            names = [_full_name(r, self.prefix) for r in self.rules if r.variable is base]
            m = re.fullmatch(r"(.+)\.0\.[^.]+\.weight", names[0]) if names else None
            if m is None or not all(r.part is not None for r in self.rules if r.variable is base):
                self.experts_why_not[id(moe)] = (
                    f"its experts are stored as {names[0] if names else 'no tensor'} (a stacked checkpoint "
                    "tensor), not one Linear per expert that Transformers 5 fuses into gate_up_proj / down_proj")
                continue
            module = m.group(1)
            for old, new in _V5_MODULE_RENAMES:
                module = module.replace(old, new)
            self.experts_of[id(moe)] = module
        self.moe_of = {module: moe for moe in moes for module in [self.experts_of.get(id(moe))] if module}

    def experts(self, moe, what):
        if id(moe) not in self.experts_of:
            raise PresetError(f"{what}: the experts of {moe.path} cannot be written in PEFT's format: "
                              f"{self.experts_why_not.get(id(moe), 'not a stacked MoE layer of this model')}")
        return self.experts_of[id(moe)]

    def module(self, layer, what):
        if id(layer) not in self.module_of:
            raise PresetError(f"{what}: layer {layer.path} cannot be written in PEFT's format: "
                              f"{self.why_not.get(id(layer), 'it is not a Dense layer of this model')}")
        return self.module_of[id(layer)]


def _numpy(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def _head_rules(model, table):
    """Exported rules of a task's head whose variables are trainable (PEFT's modules_to_save)."""
    head = getattr(model, "head_rules", None)
    if head is None or getattr(model, "backbone", None) is None:
        return []
    backbone_vars = {id(v) for v in model.backbone.variables}
    out = []
    for rule in table.rules:
        variable = rule.variable
        if id(variable) in backbone_vars or not getattr(variable, "trainable", False):
            continue
        out.append(rule)
    return out


def _expert_keys(module, targets):
    """PEFT's key stem for each adapted expert parameter of ``module``: ParamWrappers nest in the
    module's parameter order, the last one outermost."""
    hf = [name for target, name in _EXPERT_PARAMS if target in targets]
    return {name: module + ".base_layer" * (len(hf) - 1 - i) for i, name in enumerate(hf)}


def _expert_tensors(moe, module):
    """``moe``'s expert adapters as PEFT ParamWrapper tensors (see the module docstring)."""
    out = {}
    stems = _expert_keys(module, moe.lora_targets)
    for target, hf in _EXPERT_PARAMS:
        if target not in moe.lora_targets:
            continue
        a, b = (_numpy(v) for v in moe.lora_variables(target))  # (E, in, r), (E, r, out)
        e, units_in, r = a.shape
        stem = _PEFT_PREFIX + stems[hf]
        out[f"{stem}.lora_A.weight"] = np.ascontiguousarray(a.transpose(0, 2, 1).reshape(e * r, units_in))
        out[f"{stem}.lora_B.weight"] = np.ascontiguousarray(b.transpose(2, 1, 0).reshape(b.shape[2], r * e))
    return out


def save_lora_weights(model, path, overwrite=False):
    """Write ``model``'s LoRA adapters (and its trainable task head) as a PEFT adapter folder."""
    from keras_models.presets.safetensors_io import save_file
    from keras_models.presets.saving import replace_folder

    layers = lora_layers(model)
    if not layers:
        raise PresetError(f"save_lora_weights: {type(model).__name__} has no LoRA adapters; "
                          "call enable_lora(rank) first")
    from keras_models.layers.moe import MoE

    table = _Map(model)
    tensors, ranks, alphas, fans = {}, {}, {}, set()
    params = {}  # target_parameters: full name -> (rank, alpha)
    for layer in [layer for layer in layers if isinstance(layer, MoE)]:
        module = table.experts(layer, "save_lora_weights")
        tensors.update(_expert_tensors(layer, module))
        for target, hf in _EXPERT_PARAMS:
            if target in layer.lora_targets:
                params[f"{module}.{hf}"] = (int(layer.lora_rank), layer.lora_alpha)
    for layer in [layer for layer in layers if not isinstance(layer, MoE)]:
        module, fan = table.module(layer, "save_lora_weights")
        tensors[f"{_PEFT_PREFIX}{module}.lora_A.weight"] = _numpy(layer.lora_kernel_a).T.copy()
        tensors[f"{_PEFT_PREFIX}{module}.lora_B.weight"] = _numpy(layer.lora_kernel_b).T.copy()
        ranks[module], alphas[module] = int(layer.lora_rank), layer.lora_alpha
        fans.add(fan)
    if len(fans) > 1:
        raise PresetError("save_lora_weights: adapters on both Linear and Conv1D-layout kernels "
                          "cannot share one PEFT config (fan_in_fan_out)")
    head_modules = set()
    for rule in _head_rules(model, table):
        name = _full_name(rule, table.prefix)
        tensors[_PEFT_PREFIX + name] = np.ascontiguousarray(rule.op.to_hf(_numpy(rule.variable)))
        head_modules.add(name.rsplit(".", 1)[0])
    if params and fans == {True}:
        raise PresetError("save_lora_weights: PEFT's adapters on expert parameters do not work with "
                          "fan_in_fan_out (Conv1D-layout kernels)")
    both = list(ranks.values()) + [r for r, _ in params.values()]
    rank = Counter(both).most_common(1)[0][0]
    alpha = Counter(list(alphas.values()) + [a for _, a in params.values()]).most_common(1)[0][0]
    ranks.update({name: r for name, (r, _) in params.items()})
    alphas.update({name: a for name, (_, a) in params.items()})
    config = {
        "peft_type": "LORA",
        "task_type": _TASK_TYPES.get(type(model).__name__, None if hasattr(model, "backbone") else
                                     "FEATURE_EXTRACTION"),
        "r": rank,
        "lora_alpha": alpha,
        "rank_pattern": {m: r for m, r in ranks.items() if r != rank},
        "alpha_pattern": {m: a for m, a in alphas.items() if a != alpha},
        # exactly these modules (PEFT full-matches a string against each module's name)
        "target_modules": ("(" + "|".join(re.escape(m) for m in sorted(set(ranks) - set(params))) + ")"
                           if set(ranks) - set(params) else []),
        "modules_to_save": sorted(head_modules) or None,
        "fan_in_fan_out": fans.pop() if fans else False,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "base_model_name_or_path": None,
    }
    if params:
        config["target_parameters"] = sorted(params)

    def write(folder):
        (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(tensors, folder / ADAPTER_WEIGHTS, metadata={"format": "pt"})

    replace_folder(path, write, overwrite=overwrite)
    return Path(path)


_UNSUPPORTED = {  # PEFT config keys whose non-default values change the computation
    "use_dora": (False, None), "bias": ("none", None), "layers_to_transform": (None,),
    "layers_pattern": (None, [], ""), "lora_bias": (False, None), "trainable_token_indices": (None,),
}


def _read_adapter(path):
    from keras_models.presets.resolve import resolve_preset
    from keras_models.presets.safetensors_io import CheckpointReader

    folder = Path(resolve_preset(path))
    config_path, weights_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    for f in (config_path, weights_path):
        if not f.is_file():
            raise PresetError(f"load_lora_weights: {f} not found (a PEFT adapter folder holds "
                              f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise PresetError(f"load_lora_weights: {config_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise PresetError(f"load_lora_weights: {config_path}: peft_type is "
                          f"{config.get('peft_type') if isinstance(config, dict) else None!r}, not 'LORA'")
    for key, allowed in _UNSUPPORTED.items():
        if config.get(key, allowed[0]) not in allowed:
            raise PresetError(f"load_lora_weights: {config_path}: {key}={config[key]!r} is not supported")
    reader = CheckpointReader(folder, filename=ADAPTER_WEIGHTS)
    return config_path, config, reader


def _scaling_alpha(config, module, rank, source):
    """The lora_alpha that gives Keras' scaling (alpha / r) PEFT's scaling for ``module``."""
    alpha = config.get("lora_alpha", 8)
    for key, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            alpha = value
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise PresetError(f"load_lora_weights: {source}: lora_alpha for {module} is {alpha!r}")
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def load_lora_weights(model, path):
    """Enable LoRA on the layers a PEFT adapter folder names and load its values (plus its
    modules_to_save); every tensor of the file must find its layer. Returns the adapted layers."""
    source, config, reader = _read_adapter(path)
    table = _Map(model)
    adapters, heads = {}, {}
    for key in reader.keys():
        name = key[len(_PEFT_PREFIX):] if key.startswith(_PEFT_PREFIX) else key
        name = name.replace(".default.", ".")
        m = re.fullmatch(r"(.+)\.lora_([AB])\.weight", name)
        if m:
            adapters.setdefault(m.group(1), {})[m.group(2)] = key
        elif "lora_" in name:
            raise PresetError(f"load_lora_weights: {reader.folder}: tensor {key} is not a LoRA A/B weight")
        else:
            heads[name.replace(".modules_to_save.", ".")] = key
    if not adapters:
        raise PresetError(f"load_lora_weights: {reader.folder} holds no lora_A / lora_B tensors")
    for module in adapters:
        if set(adapters[module]) != {"A", "B"}:
            raise PresetError(f"load_lora_weights: {reader.folder}: {module} has "
                              f"lora_{''.join(adapters[module])} only")
    expert_plan = _expert_plan(table, config, reader, adapters, source)  # pops the experts' entries
    plan = []
    for module, pair in sorted(adapters.items()):
        layer = table.layer_of.get(module)
        if layer is None:
            raise PresetError(f"load_lora_weights: tensor {pair['A']} names module {module}, which "
                              f"{type(model).__name__} does not have as a Dense layer")
        a, b = reader.get(pair["A"]), reader.get(pair["B"])
        units_in, units_out = (int(d) for d in compat.stored_kernel(layer).shape)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != units_in or b.shape[0] != units_out or a.shape[0] != b.shape[1]:
            raise PresetError(f"load_lora_weights: {pair['A']} {tuple(a.shape)} / {pair['B']} {tuple(b.shape)} "
                              f"do not fit {layer.path} (in {units_in}, out {units_out})")
        plan.append((layer, a, b, _scaling_alpha(config, module, a.shape[0], source)))
    head_plan = []
    for name, key in sorted(heads.items()):
        rule = table.rule_of.get(name)
        if rule is None:
            raise PresetError(f"load_lora_weights: tensor {key} (modules_to_save) names {name}, which "
                              f"{type(model).__name__} does not have")
        value = rule.op.to_keras(np.asarray(reader.get(key)))
        if tuple(value.shape) != tuple(rule.variable.shape):
            raise PresetError(f"load_lora_weights: tensor {key} has shape {tuple(value.shape)}, "
                              f"{name} needs {tuple(rule.variable.shape)}")
        head_plan.append((rule.variable, value))
    for layer, a, b, alpha in plan:  # everything checked: now change the model
        if getattr(layer, "lora_enabled", False):
            if layer.lora_rank != a.shape[0]:
                raise PresetError(f"load_lora_weights: {layer.path} already has rank-{layer.lora_rank} "
                                  f"LoRA; the adapter's rank is {a.shape[0]}")
            layer.lora_alpha = alpha
        else:
            layer.enable_lora(int(a.shape[0]), lora_alpha=alpha)
        layer.lora_kernel_a.assign(np.ascontiguousarray(a.T))
        layer.lora_kernel_b.assign(np.ascontiguousarray(b.T))
    for moe, targets, rank, alpha in expert_plan:
        fresh = tuple(t for t in targets if t not in moe.lora_targets)
        if moe.lora_targets and moe.lora_rank != rank:
            raise PresetError(f"load_lora_weights: {moe.path} already has rank-{moe.lora_rank} LoRA; "
                              f"the adapter's rank is {rank}")
        moe.lora_alpha = alpha if moe.lora_targets else moe.lora_alpha
        if fresh:
            moe.enable_lora(rank, lora_alpha=alpha, targets=fresh)
        for target, (a, b) in targets.items():
            va, vb = moe.lora_variables(target)
            va.assign(a)
            vb.assign(b)
    for variable, value in head_plan:
        variable.assign(value)
    return [layer for layer, *_ in plan] + [moe for moe, *_ in expert_plan]


def _expert_plan(table, config, reader, adapters, source):
    """The MoE expert adapters of a PEFT adapter (target_parameters on the fused expert parameters):
    ``[(moe, {target: (a, b)}, rank, alpha)]`` in our layout, checked; their entries leave ``adapters``."""
    targets_cfg = config.get("target_parameters") or []
    if isinstance(targets_cfg, str):
        targets_cfg = [targets_cfg]
    by_module = {}
    for key in list(adapters):
        module, depth = key, 0
        while module.endswith(".base_layer"):
            module, depth = module[: -len(".base_layer")], depth + 1
        if module in table.moe_of:
            by_module.setdefault(module, {})[depth] = adapters.pop(key)
    plan = []
    for module, depths in sorted(by_module.items()):
        moe = table.moe_of[module]
        named = [t for t, hf in _EXPERT_PARAMS
                 if any(f"{module}.{hf}" == p or f"{module}.{hf}".endswith("." + p) for p in targets_cfg)]
        if len(named) != len(depths):  # no (or a different) target_parameters list: PEFT's nesting
            named = ["gate_up", "down"] if len(depths) == 2 else None  # of one parameter is ambiguous
        if named is None:
            raise PresetError(f"load_lora_weights: {source}: tensors of {module} adapt one expert parameter, "
                              "but target_parameters does not say which (gate_up_proj or down_proj)")
        stems = _expert_keys(module, named)
        e, hidden, inter = moe.num_experts, moe.hidden_size, moe.intermediate_size
        dims = {"gate_up": (hidden, 2 * inter), "down": (inter, hidden)}
        found, ranks = {}, set()
        for target, hf in _EXPERT_PARAMS:
            if target not in named:
                continue
            depth = stems[hf].count(".base_layer")
            if depth not in depths:
                raise PresetError(f"load_lora_weights: {source}: no lora_A / lora_B tensors for {module}.{hf}")
            pair = depths.pop(depth)
            a, b = np.asarray(reader.get(pair["A"])), np.asarray(reader.get(pair["B"]))
            units_in, units_out = dims[target]
            if (a.ndim != 2 or b.ndim != 2 or a.shape[1] != units_in or b.shape[0] != units_out
                    or a.shape[0] != b.shape[1] or a.shape[0] % e):
                raise PresetError(f"load_lora_weights: {pair['A']} {tuple(a.shape)} / {pair['B']} {tuple(b.shape)} "
                                  f"do not fit the {e} experts' {hf} of {moe.path} (in {units_in}, out {units_out}, "
                                  f"lora_A (experts * r, in), lora_B (out, r * experts))")
            r = a.shape[0] // e
            ranks.add(r)
            found[target] = (np.ascontiguousarray(a.reshape(e, r, units_in).transpose(0, 2, 1)),
                             np.ascontiguousarray(b.reshape(units_out, r, e).transpose(2, 1, 0)))
        if len(ranks) != 1:
            raise PresetError(f"load_lora_weights: {source}: {module}'s expert adapters have ranks "
                              f"{sorted(ranks)}; one MoE layer takes one rank")
        rank = ranks.pop()
        alphas = {_scaling_alpha(config, f"{module}.{hf}", rank, source) for t, hf in _EXPERT_PARAMS if t in found}
        if len(alphas) != 1:
            raise PresetError(f"load_lora_weights: {source}: {module}'s expert adapters have lora_alpha "
                              f"{sorted(alphas)}; one MoE layer takes one lora_alpha")
        plan.append((moe, found, rank, alphas.pop()))
    return plan


def merge_lora_weights(model):
    """Fold every LoRA adapter into its kernel (``kernel + alpha / r * a @ b``) and remove the
    adapter variables: a plain model computing the same outputs. Returns the merged layers' count."""
    from keras_models.layers.moe import MoE

    layers = lora_layers(model)
    moes = [layer for layer in layers if isinstance(layer, MoE)]
    layers = [layer for layer in layers if not isinstance(layer, MoE)]
    for layer in layers:
        if getattr(layer, "quantization_mode", None) is not None:
            raise PresetError(f"merge_lora_weights: layer {layer.path} is quantized "
                              f"({layer.quantization_mode}); merge before quantizing")
    # deleting a variable attribute runs a full gc.collect in Keras (0.5 s each with a large heap):
    # the MoE adapters as well as the Dense ones
    with compat.cheap_collections():
        for moe in moes:
            moe.merge_lora()
        for layer in layers:
            stored = compat.stored_kernel(layer)
            merged = _numpy(layer.kernel).astype(np.dtype(stored.dtype) if stored.dtype != "bfloat16" else np.float32)
            layer.lora_enabled = False
            stored.assign(merged)
            stored.trainable = layer.trainable
            del layer.lora_kernel_a
            del layer.lora_kernel_b
            layer.lora_rank = None
    return len(layers) + len(moes)
