"""Graphormer's graph preprocessing in numpy: the same arrays as Transformers' ``preprocess_item``
and ``GraphormerDataCollator`` (which need a compiled Cython module, ``algos_graphormer``).

A graph is a dict as the Hub's graph datasets store it: ``edge_index`` (2, edges) source / target
node ids, ``num_nodes``, optionally ``edge_attr`` (edges, features) and ``node_feat`` (nodes,
features) integer features (absent: one feature of 1 for every edge / node), and ``y`` or
``labels``. Per graph:

* shortest-path lengths by Floyd-Warshall over the directed adjacency (unreachable pairs: 510),
  keeping for each pair the intermediate node Transformers' loop records (the last ``k`` that
  strictly improved it), from which each pair's path is rebuilt;
* ``input_edges`` (nodes, nodes, longest distance, edge features): the edge features along each
  pair's path; ``attn_edge_type`` (nodes, nodes, edge features): each edge's features;
* ``in_degree`` (= ``out_degree``): each node's number of outgoing edges, as Transformers counts
  it (the datasets are undirected, both directions stored);
* feature ``f`` of value ``v`` becomes id ``v + 512 * f + 1`` (+1 for edges, +2 for nodes; the
  shortest-path and degree values +1), 0 being padding.

:class:`GraphormerCollator` pads a batch to its largest graph and longest distance, and sets the
attention bias between nodes ``spatial_pos_max`` or more apart (``spatial_pos`` counts the +1) to
-inf, as ``GraphormerDataCollator`` does (its default, 20, is not the config's ``spatial_pos_max``,
which the model does not read).
"""

import numpy as np

from keras_models.errors import InputError

UNREACHABLE = 510  # Transformers' UNREACHABLE_NODE_DISTANCE
FEATURE_OFFSET = 512
MODEL_INPUTS = ("input_nodes", "input_edges", "attn_bias", "in_degree", "out_degree", "spatial_pos", "attn_edge_type")


def floyd_warshall(adjacency):
    """(n, n) adjacency (nonzero = edge) -> (distances (n, n) int32, path (n, n) int32): ``path[i, j]``
    is the intermediate node of i -> j's shortest path (-1: direct or none), 510 where unreachable."""
    a = np.asarray(adjacency)
    n = a.shape[0]
    dist = np.where(a != 0, a, UNREACHABLE).astype(np.int64)
    np.fill_diagonal(dist, 0)
    path = np.full((n, n), -1, np.int32)
    for k in range(n):  # row and column k do not change while k is the intermediate node
        cost = dist[:, k, None] + dist[None, k, :]
        better = dist > cost
        dist = np.where(better, cost, dist)
        path[better] = k
    unreachable = dist >= UNREACHABLE
    dist[unreachable] = UNREACHABLE
    path[unreachable] = UNREACHABLE
    return dist.astype(np.int32), path


def _nodes_between(path, i, j):
    k = path[i, j]
    if k == -1:
        return []
    return _nodes_between(path, i, k) + [int(k)] + _nodes_between(path, k, j)


def edge_paths(max_dist, path, edge_features):
    """The edge features along every pair's shortest path: (n, n, max_dist, features), -1 where
    there is no edge (the pair itself, unreachable pairs, beyond the path's length)."""
    n = path.shape[0]
    out = np.full((n, n, int(max_dist), edge_features.shape[-1]), -1, np.int32)
    for i in range(n):
        for j in range(n):
            if i == j or path[i, j] == UNREACHABLE:
                continue
            nodes = [i] + _nodes_between(path, i, j) + [j]
            hops = np.arange(len(nodes) - 1)
            out[i, j, hops] = edge_features[nodes[:-1], nodes[1:]]
    return out


def _to_ids(x):
    x = np.asarray(x, np.int64)
    width = x.shape[1] if x.ndim > 1 else 1
    return x + 1 + np.arange(0, width * FEATURE_OFFSET, FEATURE_OFFSET, dtype=np.int64)


def preprocess_graph(graph, keep_features=True):
    """One graph dict -> its model arrays (unpadded) plus ``labels`` when the graph has ``y`` /
    ``labels``; like Transformers' ``preprocess_item``."""
    if not isinstance(graph, dict) or "edge_index" not in graph or "num_nodes" not in graph:
        raise InputError("Graphormer: a graph must be a dict with 'edge_index' (2, edges) and 'num_nodes' "
                         f"(got {sorted(graph) if isinstance(graph, dict) else type(graph).__name__})")
    edge_index = np.asarray(graph["edge_index"], np.int64).reshape(2, -1)
    n = int(graph["num_nodes"])
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
        raise InputError(f"Graphormer: edge_index holds node ids outside [0, num_nodes={n})")
    if keep_features and graph.get("edge_attr") is not None:
        edge_attr = np.asarray(graph["edge_attr"], np.int64)
    else:
        edge_attr = np.ones((edge_index.shape[1], 1), np.int64)
    if keep_features and graph.get("node_feat") is not None:
        node_feat = np.asarray(graph["node_feat"], np.int64)
    else:
        node_feat = np.ones((n, 1), np.int64)
    if edge_attr.ndim == 1:
        edge_attr = edge_attr[:, None]
    if node_feat.ndim == 1:
        node_feat = node_feat[:, None]
    if len(node_feat) != n or len(edge_attr) != edge_index.shape[1]:
        raise InputError(f"Graphormer: node_feat has {len(node_feat)} rows for num_nodes={n} and edge_attr "
                         f"{len(edge_attr)} for {edge_index.shape[1]} edges; they must match")
    edge_type = np.zeros((n, n, edge_attr.shape[-1]), np.int64)
    edge_type[edge_index[0], edge_index[1]] = _to_ids(edge_attr) + 1
    adj = np.zeros((n, n), bool)
    adj[edge_index[0], edge_index[1]] = True
    dist, path = floyd_warshall(adj)
    edges = edge_paths(dist.max() if n else 0, path, edge_type)
    degree = adj.sum(axis=1).reshape(-1) + 1
    out = {"input_nodes": _to_ids(node_feat) + 2, "attn_bias": np.zeros((n + 1, n + 1), np.float32),
           "attn_edge_type": edge_type, "spatial_pos": dist.astype(np.int64) + 1, "in_degree": degree,
           "out_degree": degree, "input_edges": edges.astype(np.int64) + 1}
    labels = graph.get("labels", graph.get("y"))
    if labels is not None:
        out["labels"] = labels
    return out


class GraphormerCollator:
    """A list of graphs (raw dicts, or :func:`preprocess_graph` outputs) -> a padded batch of numpy
    arrays with Transformers' names (``input_nodes``, ``input_edges``, ``attn_bias``, ``in_degree``,
    ``out_degree``, ``spatial_pos``, ``attn_edge_type``; ``labels`` when every graph has one), equal
    to ``GraphormerDataCollator(spatial_pos_max)``'s tensors."""

    def __init__(self, spatial_pos_max=20, keep_features=True):
        self.spatial_pos_max = spatial_pos_max
        self.keep_features = keep_features

    def __call__(self, graphs):
        if isinstance(graphs, dict) or not len(graphs):
            raise InputError("GraphormerCollator: expected a non-empty list of graph dicts")
        items = [g if isinstance(g, dict) and "input_nodes" in g else preprocess_graph(g, self.keep_features)
                 for g in graphs]
        b = len(items)
        nodes = max(len(f["input_nodes"]) for f in items)
        node_width = np.asarray(items[0]["input_nodes"]).shape[-1]
        edge_width = np.asarray(items[0]["attn_edge_type"]).shape[-1]
        dist = max(np.asarray(f["input_edges"]).shape[2] for f in items)
        batch = {"attn_bias": np.zeros((b, nodes + 1, nodes + 1), np.float32),
                 "attn_edge_type": np.zeros((b, nodes, nodes, edge_width), np.int64),
                 "spatial_pos": np.zeros((b, nodes, nodes), np.int64),
                 "in_degree": np.zeros((b, nodes), np.int64),
                 "input_nodes": np.zeros((b, nodes, node_width), np.int64),
                 "input_edges": np.zeros((b, nodes, nodes, dist, edge_width), np.int64)}
        for i, f in enumerate(items):
            n = len(f["input_nodes"])
            bias = np.array(f["attn_bias"], np.float32)
            spatial = np.asarray(f["spatial_pos"])
            bias[1:, 1:][spatial >= self.spatial_pos_max] = -np.inf
            batch["attn_bias"][i, :n + 1, :n + 1] = bias
            batch["attn_edge_type"][i, :n, :n] = f["attn_edge_type"]
            batch["spatial_pos"][i, :n, :n] = spatial
            batch["in_degree"][i, :n] = f["in_degree"]
            batch["input_nodes"][i, :n] = f["input_nodes"]
            e = np.asarray(f["input_edges"])
            batch["input_edges"][i, :n, :n, :e.shape[2]] = e
        batch["out_degree"] = batch["in_degree"]
        if all("labels" in f for f in items):
            labels = [np.asarray(f["labels"]) for f in items]
            one = labels[0].size == 1 and labels[0].ndim == 1  # [y] per graph, as the datasets store it
            batch["labels"] = np.concatenate(labels) if one else np.stack(labels)
        return batch


__all__ = ["GraphormerCollator", "preprocess_graph", "floyd_warshall", "edge_paths", "MODEL_INPUTS"]
