"""Graphormer (``graphormer``, removed from Transformers 5) against references recorded with
Transformers 4.57.1 (tests/models/removed_golden/record_graph_traj.py; Transformers 5 cannot load
these checkpoints, so our ``save_to_preset`` output is checked by reloading it here).

Preprocessing: km.models.GraphormerCollator (numpy Floyd-Warshall and path edges) must give the
arrays of Transformers' GraphormerDataCollator, recorded with its compiled Cython module: three
undirected graphs with two node and two edge features (ties between shortest paths, an isolated
node, spatial_pos_max 3 and the default 20) and four random directed graphs with one 1-D edge
feature and no node features.

Model: two checkpoints on the three graphs (padded to 6 nodes; paths up to 510 hops): "multi_hop"
(multi-hop edge encodings cut at 2 hops, post-norm, gelu, 3 classes) and "single_hop" (direct-edge
encodings, pre-norm with the unused final norm, embedding LayerNorm, embed_scale 1.5, relu, the
quant-noise projection, layerdrop, 1 regression output)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, jit_under_jax

GOLDEN = Path(__file__).parent / "removed_golden"
KEYS = ("input_nodes", "input_edges", "attn_bias", "in_degree", "out_degree", "spatial_pos", "attn_edge_type")


def golden():
    d = dict(np.load(GOLDEN / "graphormer.npz"))
    return {k: d[f"in_{k}"] for k in KEYS}, d


def recorded_graphs():
    sys.path.insert(0, str(GOLDEN))
    try:
        from record_graph_traj import graphs, random_graphs
    finally:
        sys.path.remove(str(GOLDEN))
    return graphs(), random_graphs()


@pytest.mark.backend_independent
def test_graphormer_collator_matches_transformers():
    from keras_models.models.graphormer import GraphormerCollator

    _, d = golden()
    graphs, random = recorded_graphs()
    for batch, prefix in ((GraphormerCollator(spatial_pos_max=3)(graphs), "in_"),
                          (GraphormerCollator(spatial_pos_max=4)(random), "rand_")):
        for key in (*KEYS, "labels"):
            want = d[prefix + key]
            assert batch[key].shape == want.shape and batch[key].dtype == want.dtype, key
            np.testing.assert_array_equal(batch[key], want, err_msg=f"{prefix}{key}")
    np.testing.assert_array_equal(GraphormerCollator()(graphs)["attn_bias"], d["default_attn_bias"])
    with pytest.raises(InputError, match="edge_index"):
        GraphormerCollator()([{"num_nodes": 3}])
    with pytest.raises(InputError, match="num_nodes=2"):
        GraphormerCollator()([{"edge_index": [[0], [2]], "num_nodes": 2}])


def check(model, inputs, d, case, what):
    logits, hidden = jit_under_jax(lambda x: (model(x), model.backbone(x)))(inputs)
    assert_close(logits, d[f"{case}__logits"], what=f"{what} logits")
    assert_close(hidden, d[f"{case}__hidden"], what=f"{what} backbone hidden state")


@pytest.mark.parametrize("case", ["multi_hop", "single_hop"])
def test_graphormer_graph_classification_parity(case, tmp_path):
    inputs, d = golden()
    folder = GOLDEN / "graphormer" / case
    model = km.GraphClassifier.from_preset(folder)
    assert type(model).__name__ == "GraphormerGraphClassifier" and model.head_from_checkpoint
    check(model, inputs, d, case, case)
    # save_to_preset: the recorded checkpoint's config keys and tensors, reloaded here
    model.save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    recorded = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["GraphormerForGraphClassification"]
    for key in ("num_classes", "edge_type", "multi_hop_max_dist", "embedding_dim", "num_attention_heads",
                "pre_layernorm", "encoder_normalize_before", "embed_scale", "q_noise", "activation_fn", "num_atoms"):
        assert config[key] == recorded[key], key
    from safetensors.numpy import load_file

    saved, recorded = load_file(tmp_path / "saved" / "model.safetensors"), load_file(folder / "model.safetensors")
    assert set(saved) == set(recorded)
    for k in recorded:
        np.testing.assert_array_equal(saved[k], recorded[k], err_msg=k)
    reloaded = km.GraphClassifier.from_preset(tmp_path / "saved")
    assert reloaded.head_from_checkpoint and reloaded.backbone.spec == model.backbone.spec


def test_graphormer_backbone_round_trip_and_errors(tmp_path):
    from tests.parity import assert_keras_round_trip

    inputs, d = golden()
    folder = GOLDEN / "graphormer" / "single_hop"
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "GraphormerBackbone"
    assert_close(backbone(inputs), d["single_hop__hidden"], what="Backbone.from_preset")
    # a GraphormerModel checkpoint (tensors without the "encoder." prefix) and a new head
    backbone.save_to_preset(tmp_path / "base")
    assert json.loads((tmp_path / "base" / "config.json").read_text())["architectures"] == ["GraphormerModel"]
    new = km.GraphClassifier.from_preset(tmp_path / "base", num_classes=4)
    assert not new.head_from_checkpoint and new.num_classes == 4
    assert_close(new.backbone(inputs), d["single_hop__hidden"], what="GraphormerModel checkpoint")
    model = km.GraphClassifier.from_preset(folder)
    assert_keras_round_trip(model, inputs, tmp_path)
    with pytest.raises(InputError, match="spatial_pos"):
        model({k: v for k, v in inputs.items() if k != "spatial_pos"})
    with pytest.raises(InputError, match="input_edges"):
        model({**inputs, "input_edges": inputs["input_edges"][..., 0]})
    for key, value in (("num_attention_heads", 5), ("freeze_embeddings", True), ("bias", False), ("kdim", 7),
                       ("num_classes", 0), ("activation_fn", "swishy")):
        bad = tmp_path / f"bad_{key}"
        shutil.copytree(folder, bad)
        config = json.loads((bad / "config.json").read_text())
        config[key] = value
        (bad / "config.json").write_text(json.dumps(config))
        with pytest.raises(ConfigError, match=key):
            km.GraphClassifier.from_preset(bad)
