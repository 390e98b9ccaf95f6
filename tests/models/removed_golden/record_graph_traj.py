"""Records the Trajectory Transformer and Graphormer references (tests/models/test_trajectory_transformer.py,
tests/models/test_graphormer.py).

Both were removed from Transformers 5, so their outputs are recorded once with Transformers 4.57.1
(models/deprecated/...). Graphormer's data collator compiles a Cython module (algos_graphormer,
through pyximport), so Cython must be installed while recording (``pip install "cython<3"``: the .pyx does not compile under Cython 3):
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record_graph_traj.py [trajectory_transformer] [graphormer]

Each checkpoint is a tiny seeded model whose weights are re-drawn by tests/parity.py's
``randomize_weights`` (kernels ~N(0, 1/fan_in), tables ~N(0, 1), norms and biases moved off 1 / 0),
saved and reloaded before its outputs are computed. <family>/<case>/ holds config.json and
model.safetensors; <family>.npz the inputs (``in_*``) and the outputs (``<case>__<name>``).
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.parity import randomize_weights  # noqa: E402


def save(cls, config, folder, seed=0):
    torch.manual_seed(seed)
    model = randomize_weights(cls(config).eval(), seed)
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return cls.from_pretrained(folder).eval()


# --- Trajectory Transformer ----------------------------------------------------------------------
TT_CASES = {
    # observation 3 + action 2 + reward + value = transition_dim 7; loss weights != 1 (the weighted
    # loss needs 7 * steps - 1 tokens: 13); block_size above the sequence
    "weighted": dict(vocab_size=7, observation_dim=3, action_dim=2, transition_dim=7, block_size=16, n_layer=2,
                     n_head=2, n_embd=16, action_weight=5, reward_weight=2, value_weight=3),
    # a transition_dim (6) unlike observation + action + 2 (8, the masked value columns), 11 tokens
    # (not a whole number of transitions: the head's padding), block_size = the sequence, unit weights
    "unweighted": dict(vocab_size=5, observation_dim=4, action_dim=2, transition_dim=6, block_size=11, n_layer=1,
                       n_head=4, n_embd=24, action_weight=1, reward_weight=1, value_weight=1),
}


def tt_inputs(case, seq):
    cfg = TT_CASES[case]
    rng = np.random.RandomState(len(case))
    v = cfg["vocab_size"]
    traj = rng.randint(0, v, size=(2, seq)).astype("int64")
    traj[0, 5] = traj[1, -1] = v  # stop tokens
    targets = rng.randint(0, v + 1, size=(2, seq)).astype("int64")
    mask = np.ones((2, seq), "float32")
    mask[1, -3:] = 0
    if case == "unweighted":
        targets[0, 2] = -100  # cross_entropy's ignore_index
    return {"trajectories": traj, "targets": targets, "attention_mask": mask}


def trajectory_transformer():
    from transformers import TrajectoryTransformerConfig, TrajectoryTransformerModel

    arrays = {}
    for case, seq in (("weighted", 13), ("unweighted", 11)):
        model = save(TrajectoryTransformerModel, TrajectoryTransformerConfig(**TT_CASES[case]),
                     HERE / "trajectory_transformer" / case)
        inputs = tt_inputs(case, seq)
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in inputs.items()}, output_hidden_states=True,
                        return_dict=True)
            hidden = model.ln_f(out.hidden_states[-1])  # the backbone's output: ln_f of the last block
        arrays.update({f"{case}__in_{k}": v for k, v in inputs.items()})
        arrays[f"{case}__logits"] = out.logits.numpy()
        arrays[f"{case}__loss"] = out.loss.numpy()
        arrays[f"{case}__hidden"] = hidden.numpy()
    np.savez(HERE / "trajectory_transformer.npz", **arrays)


# --- Graphormer ----------------------------------------------------------------------------------
def graphs():
    """Three graphs as the Hub's graph datasets store them (edge_index, edge_attr, node_feat,
    num_nodes, y): two node and two edge features; the third graph has a node with no edges (its
    distances are 510, "unreachable")."""
    rng = np.random.RandomState(3)
    out = []
    for n, edges in ((5, [(0, 1), (1, 2), (2, 3), (3, 4), (1, 3)]), (3, [(0, 1), (1, 2)]),
                     (6, [(0, 1), (1, 2), (2, 3), (3, 0), (1, 4)])):
        both = edges + [(b, a) for a, b in edges]  # undirected, as stored in ogbg datasets
        out.append({"edge_index": [[a for a, _ in both], [b for _, b in both]],
                    "edge_attr": rng.randint(0, 4, size=(len(both), 2)).tolist(),
                    "node_feat": rng.randint(0, 6, size=(n, 2)).tolist(),
                    "num_nodes": n, "y": [int(rng.randint(0, 3))]})
    return out


def random_graphs():
    """Four random directed graphs (7 to 10 nodes) with one 1-D edge feature and no node features
    (the collator's defaults): preprocessing only."""
    rng = np.random.RandomState(7)
    out = []
    for n in (7, 10, 8, 9):
        src, dst = np.nonzero((rng.rand(n, n) < 0.25) & ~np.eye(n, dtype=bool))
        out.append({"edge_index": [src.tolist(), dst.tolist()], "edge_attr": rng.randint(0, 5, len(src)).tolist(),
                    "num_nodes": n, "y": [float(rng.randn())]})
    return out


GRAPH_KEYS = ("input_nodes", "input_edges", "attn_bias", "in_degree", "out_degree", "spatial_pos", "attn_edge_type")
G_BASE = dict(num_atoms=1100, num_edges=1100, num_in_degree=8, num_out_degree=9, num_spatial=512, num_edge_dis=6,
              max_nodes=16)
G_CASES = {
    # multi-hop edge encodings cut at 2 hops, post-norm, gelu, 3 classes
    "multi_hop": dict(G_BASE, num_classes=3, multi_hop_max_dist=2, num_hidden_layers=2, embedding_dim=16,
                      ffn_embedding_dim=24, num_attention_heads=4),
    # single-hop edge encodings, pre-norm, embedding LayerNorm, embed_scale, relu, quant-noise
    # projection (q_noise > 0 adds a bias-free Linear), layerdrop, one regression output
    "single_hop": dict(G_BASE, num_classes=1, edge_type="single_hop", pre_layernorm=True,
                       encoder_normalize_before=True, embed_scale=1.5, activation_fn="relu", q_noise=0.1,
                       qn_block_size=4, layerdrop=0.1, num_hidden_layers=1, embedding_dim=12, ffn_embedding_dim=20,
                       num_attention_heads=3),
}


def graphormer():
    import copy

    from transformers import GraphormerConfig, GraphormerForGraphClassification
    from transformers.models.deprecated.graphormer.collating_graphormer import GraphormerDataCollator

    batch = GraphormerDataCollator(spatial_pos_max=3, on_the_fly_processing=True)(copy.deepcopy(graphs()))
    inputs = {k: batch[k].numpy() for k in GRAPH_KEYS}
    arrays = {f"in_{k}": v for k, v in inputs.items()}
    arrays["in_labels"] = batch["labels"].numpy()
    # the default collator (spatial_pos_max 20: nothing beyond it here)
    default = GraphormerDataCollator(on_the_fly_processing=True)(copy.deepcopy(graphs()))
    arrays["default_attn_bias"] = default["attn_bias"].numpy()
    rand = GraphormerDataCollator(spatial_pos_max=4, on_the_fly_processing=True)(random_graphs())
    arrays.update({f"rand_{k}": v.numpy() for k, v in rand.items()})
    for case, cfg in G_CASES.items():
        model = save(GraphormerForGraphClassification, GraphormerConfig(**cfg), HERE / "graphormer" / case)
        with torch.no_grad():
            t = {k: torch.tensor(v) for k, v in inputs.items()}
            out = model(**t, return_dict=True)
            hidden = model.encoder(**t, return_dict=True).last_hidden_state
        arrays[f"{case}__logits"] = out.logits.numpy()
        arrays[f"{case}__hidden"] = hidden.numpy()
    np.savez_compressed(HERE / "graphormer.npz", **arrays)


if __name__ == "__main__":
    import transformers

    assert transformers.__version__.startswith("4."), transformers.__version__
    for name in sys.argv[1:] or ["trajectory_transformer", "graphormer"]:
        globals()[name]()
        print("recorded", name)
