"""The MoE layer's eager torch dispatch (keras_models.layers.moe): raw torch ops on the rows routed
to each chosen expert, one host read per layer. Functions of the layer (``layer``: a
:class:`keras_models.layers.moe.MoE`), kept apart from the backend-neutral layer."""

import keras


def eager_experts(layer, x, w):
    """``MoE._eager_experts`` in torch ops: Keras' torch ``segment_sum`` expands the segment ids to
    the data's shape and scatters in float32 (a few hundred microseconds per layer at decode);
    here each expert's weighted rows are added in place with ``index_add_``."""
    import torch

    x2, w2 = x.reshape(-1, layer.hidden_size), w.reshape(-1, layer.num_experts)
    pairs = torch.nonzero(w2.T)  # (chosen, 2): expert, row -- expert-major; the one host sync
    out = torch.zeros_like(x2)
    if pairs.shape[0] == 0:
        return out.reshape(x.shape)
    experts, rows = pairs[:, 0], pairs[:, 1]
    counts = torch.bincount(experts, minlength=layer.num_experts).tolist()
    weights = w2[rows, experts][:, None]
    if layer.stacked:
        out.index_add_(0, rows, stacked_pairs(layer, x2.index_select(0, rows), weights, counts).to(out.dtype))
        return out.reshape(x.shape)
    start = 0
    for e, n in enumerate(counts):
        if n:
            r = rows[start:start + n]
            out.index_add_(0, r, layer._expert(e, x2.index_select(0, r), weights[start:start + n]).to(out.dtype))
            start += n
    return out.reshape(x.shape)


def pairs_dispatch(layer, x):
    """Whether ``layer``'s call takes the (row, expert) pairs straight from the top-k choice."""
    return (layer.stacked and layer.expert_capacity is None and keras.backend.backend() == "torch"
            and layer._dispatch_mode(x) == "eager")


def top_k_dispatch(layer, x):
    """The eager torch dispatch from the top-k choice itself (``call``'s path): the (row,
    expert) pairs are the top-k indices stably sorted by expert (the order of
    ``eager_experts``' nonzero on the dense weights, and the same weight values),
    without building the dense (rows, experts) weights and reading them back: one host read
    per layer (the per-expert counts)."""
    import torch

    top, idx = top_k_routing(layer, x)
    if layer.expert_scale != 1.0:
        top = top * layer.expert_scale
    k = layer.experts_per_token
    x2, flat = x.reshape(-1, layer.hidden_size), idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=layer.num_experts).tolist()
    rows = torch.div(order, k, rounding_mode="floor")
    weights = top.to(x.dtype).reshape(-1)[order][:, None]
    xs = x2.expand(len(order), -1) if x2.shape[0] == 1 else x2.index_select(0, rows)
    pairs = stacked_pairs(layer, xs, weights, counts)
    if x2.shape[0] == 1:
        return pairs.sum(0, keepdim=True).to(x.dtype).reshape(x.shape)
    return torch.zeros_like(x2).index_add_(0, rows, pairs.to(x.dtype)).reshape(x.shape)


def top_k_routing(layer, x):
    """``MoE._top_k_routing`` for the plain softmax router as the torch functions keras.ops calls
    (softmax, topk, the renormalising division): the same kernels and values without keras.ops'
    per-op argument conversion (about six ops per layer and decode step). Off with
    ``KM_TORCH_DIRECT_OPS=0`` (``keras_models.generation.backend.TORCH_DIRECT_OPS``)."""
    from keras_models.generation import backend

    if (not backend.TORCH_DIRECT_OPS or layer.router_score != "softmax" or layer.router_groups
            or layer.router_correction_bias):
        return layer._top_k_routing(x)
    import torch

    logits = layer.router(x)
    probs = torch.softmax(logits if logits.dtype == torch.float32 else logits.float(), dim=-1)
    top, idx = torch.topk(probs, layer.experts_per_token)
    if layer.normalize_top_k:
        top = top / top.sum(dim=-1, keepdim=True)
    return top, idx


def stacked_pairs(layer, xs, weights, counts):
    """Stacked experts on (row, expert) pairs sorted by expert (``counts`` per expert), in torch
    ops on the raw tensors: per chosen expert one GEMM on its [gate | up] slice and one on its
    down slice (views, no copy); the gated unit runs once on all pairs. Returns the pairs'
    weighted outputs (``weight_inputs``: outputs of the weighted rows)."""
    import torch

    from keras_models.generation.backend import decode_matmul

    matmul = decode_matmul()  # oneDNN's fp32 GEMM without autograd, F.linear otherwise
    dtype = xs.dtype
    gate_up, down = _raw(layer.expert_gate_up), _raw(layer.expert_down)  # LoRA: the adapted tensors
    gate_up_b = layer.expert_gate_up_bias.value if layer.use_bias else None
    down_b = layer.expert_down_bias.value if layer.use_bias else None
    if layer.weight_inputs:
        xs = xs * weights
    spans, start = [], 0
    for e, c in enumerate(counts):
        if c:
            spans.append((e, start, start + c))
            start += c
    h = [matmul(xs[a:b], _cast(gate_up[e], dtype), None if gate_up_b is None else _cast(gate_up_b[e], dtype))
         for e, a, b in spans]
    h = h[0] if len(h) == 1 else torch.cat(h)
    n = layer.intermediate_size
    act = layer._glu(h[:, :n], h[:, n:])
    out = [matmul(act[a:b], _cast(down[e], dtype), None if down_b is None else _cast(down_b[e], dtype))
           for e, a, b in spans]
    out = out[0] if len(out) == 1 else torch.cat(out)
    return out if layer.weight_inputs else out * weights


def _raw(x):
    """A variable's torch tensor (a LoRA-adapted kernel is a tensor already)."""
    return x.value if isinstance(x, keras.Variable) else x


def _cast(tensor, dtype):
    """One expert's torch tensor in the compute dtype (no copy when it already is)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)
