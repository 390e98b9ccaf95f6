"""Weight-map helpers shared by the decoder families: Linear/Conv1D, norms, fused-qkv layouts,
latent attention, stacked experts (from stacked or per-expert checkpoint tensors)."""

import numpy as np

from keras_models.layers.norms import norm_weights
from keras_models.presets.weight_map import IDENTITY, TRANSPOSE, Chain, Op, Rule


class Permute(Op):
    """Reorder the rows (axis 0) of an HF tensor: ``keras = hf[order]``; exact inverse on export."""

    def __init__(self, order):
        self.order = np.asarray(order)
        self.inverse = np.argsort(self.order)

    def to_keras(self, x):
        return x[self.order]

    def to_hf(self, x):
        return x[self.inverse]


class PermuteLast(Permute):
    """Reorder the last axis of an HF tensor: ``keras = hf[..., order]``; exact inverse on export."""

    def to_keras(self, x):
        return x[..., self.order]

    def to_hf(self, x):
        return x[..., self.inverse]


def interleaved_to_halves(width):
    """Order turning [g0, u0, g1, u1, ...] (gate / up interleaved) into [g0, g1, ... | u0, u1, ...]."""
    return np.concatenate([np.arange(0, width, 2), np.arange(1, width, 2)])


def qkv_order(layout, num_heads, num_kv_heads, head_dim):
    """Row order turning an HF fused qkv layout into ours ([q heads | k heads | v heads]).

    layouts: "concat" (already ours), "per_head" (heads, 3, head_dim: GPT-NeoX, BLOOM, Falcon),
    "grouped" (kv groups, heads/kv + 2, head_dim: Falcon's new decoder architecture).
    """
    if layout == "concat":
        return None
    rows = np.arange((num_heads + 2 * num_kv_heads) * head_dim)
    if layout == "per_head":
        r = rows.reshape(num_heads, 3, head_dim)
        return np.concatenate([r[:, 0].ravel(), r[:, 1].ravel(), r[:, 2].ravel()])
    if layout == "codegen_mp4":  # 4 model-parallel groups, each [q | v | k] of hidden/4 rows
        r = rows.reshape(4, 3, -1)
        return np.concatenate([r[:, 0].ravel(), r[:, 2].ravel(), r[:, 1].ravel()])
    if layout == "grouped":
        g = num_heads // num_kv_heads
        r = rows.reshape(num_kv_heads, g + 2, head_dim)
        return np.concatenate([r[:, :g].ravel(), r[:, g].ravel(), r[:, g + 1].ravel()])
    raise ValueError(f"unknown qkv layout {layout!r}")


def linear(hf, dense, conv1d=False, order=None, base=True):
    """An HF Linear (out, in) -- or GPT-2 Conv1D (in, out) -- onto a Keras Dense."""
    w_op = IDENTITY if conv1d else TRANSPOSE
    b_op = IDENTITY
    if order is not None:
        perm = Permute(order)
        w_op = Chain(perm, TRANSPOSE) if not conv1d else Chain(TRANSPOSE, perm, TRANSPOSE)
        b_op = perm
    out = [Rule(f"{hf}.weight", dense.kernel, w_op, base=base)]
    if dense.use_bias:
        out.append(Rule(f"{hf}.bias", dense.bias, b_op, base=base))
    return out


def norm(hf, layer):
    gamma, beta = norm_weights(layer)
    out = [] if gamma is None else [Rule(f"{hf}.weight", gamma)]
    if beta is not None:
        out.append(Rule(f"{hf}.bias", beta))
    return out


def embedding(hf, layer):
    return [Rule(f"{hf}.weight", layer.embeddings)]


def attention(prefix, attn, names, conv1d=False, layout="concat"):
    """names: {"q","k","v","o"} or {"qkv","o"} (+ optional "q_norm","k_norm") HF sub-names."""
    r = []
    if attn.fused_qkv:
        order = qkv_order(layout, attn.num_heads, attn.num_kv_heads, attn.head_dim)
        r += linear(prefix + names["qkv"], attn.qkv, conv1d, order)
    else:
        for key, dense in (("q", attn.query), ("k", attn.key), ("v", attn.value)):
            r += linear(prefix + names[key], dense, conv1d)
    r += linear(prefix + names["o"], attn.output_dense, conv1d)
    if attn.qk_norm:
        r += norm(prefix + names["q_norm"], attn.query_norm)
        r += norm(prefix + names["k_norm"], attn.key_norm)
    return r


def latent_attention(prefix, attn, names):
    """LatentAttention under ``prefix``; names: "q" (one query projection) or "q_a", "q_a_norm",
    "q_b"; "kv_a", "kv_a_norm", "kv_b", "o"."""
    r = []
    if attn.query is not None:
        r += linear(prefix + names["q"], attn.query)
    else:
        r += linear(prefix + names["q_a"], attn.query_a) + norm(prefix + names["q_a_norm"], attn.query_a_norm)
        r += linear(prefix + names["q_b"], attn.query_b)
    r += linear(prefix + names["kv_a"], attn.kv_a) + norm(prefix + names["kv_a_norm"], attn.kv_a_norm)
    r += linear(prefix + names["kv_b"], attn.kv_b) + linear(prefix + names["o"], attn.output_dense)
    return r


def stacked_experts(prefix, moe, names, interleaved=False):
    """MoE stacked expert tensors: names "e_gate_up", "e_down" (+ "_bias" variants when the
    experts have biases). HF stores (experts, in, out) like ours; ``interleaved``: its gate / up
    columns alternate (ours are [gate | up] halves)."""
    op = PermuteLast(interleaved_to_halves(2 * moe.intermediate_size)) if interleaved else IDENTITY
    r = [Rule(prefix + names["e_gate_up"], moe.expert_gate_up, op), Rule(prefix + names["e_down"], moe.expert_down)]
    if moe.use_bias:
        r += [Rule(prefix + names["e_gate_up_bias"], moe.expert_gate_up_bias, op),
              Rule(prefix + names["e_down_bias"], moe.expert_down_bias)]
    return r


def per_expert_stacked(prefix, moe, names):
    """Stacked MoE experts loaded from (and saved as) one gated MLP per expert: HF's
    ``{prefix}{e}.{gate|up|down}.weight`` (Linear, (out, in)) fill expert ``e``'s gate half, up half
    and down slice of our stacked tensors (``names``: "gate", "up", "down" HF sub-names)."""
    n = moe.intermediate_size
    gate, up, full = slice(0, n), slice(n, 2 * n), slice(None)
    r = []
    gate_up, down = moe.expert_gate_up, moe.expert_down  # read once: with LoRA each read computes the sum
    for e in range(moe.num_experts):
        p = f"{prefix}{e}."
        r += [Rule(f"{p}{names['gate']}.weight", gate_up, TRANSPOSE, part=(e, full, gate)),
              Rule(f"{p}{names['up']}.weight", gate_up, TRANSPOSE, part=(e, full, up)),
              Rule(f"{p}{names['down']}.weight", down, TRANSPOSE, part=(e,))]
        if moe.use_bias:
            r += [Rule(f"{p}{names['gate']}.bias", moe.expert_gate_up_bias, part=(e, gate)),
                  Rule(f"{p}{names['up']}.bias", moe.expert_gate_up_bias, part=(e, up)),
                  Rule(f"{p}{names['down']}.bias", moe.expert_down_bias, part=(e,))]
    return r


def mlp(prefix, layer, names, conv1d=False):
    """names: {"gate","up","down"} HF sub-names (gate omitted for a plain MLP)."""
    r = []
    if layer.gate is not None:
        r += linear(prefix + names["gate"], layer.gate, conv1d)
    r += linear(prefix + names["up"], layer.up, conv1d)
    r += linear(prefix + names["down"], layer.down, conv1d)
    return r
