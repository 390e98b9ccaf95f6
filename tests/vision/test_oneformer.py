"""OneFormer against Transformers: class / mask query logits for a batch holding the three task
tokens (semantic, instance, panoptic), the decoder's last queries, the contrastive queries, the task
token, the pixel decoder's and backbone's maps, from one compiled pass; the processor (pixel values
and task_inputs, a tiny CLIP BPE tokenizer); the three post-processings; save_to_preset reloaded by
Transformers; .keras; config errors. Inference only: Transformers' training-only text mapper is not
built (``is_training`` false)."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import _key, _versions, assert_close, cached_folder, randomize_weights
from tests.vision.test_maskformer import _nhwc, _run, _same_segments

SIZE = (3, 56, 48, 3)
TASKS = ["semantic", "instance", "panoptic"]
CLASSES = {"0": {"name": "wall", "isthing": 0}, "1": {"name": "person", "isthing": 1},
           "2": {"name": "car", "isthing": 1}, "3": {"name": "sky", "isthing": 0}}
WORDS = ("the", "task", "is", "semantic", "instance", "panoptic")


def _config(kind):
    import transformers as T

    if kind == "post_norm":  # 4 heads, odd eps, one query-transformer layer
        backbone = T.SwinConfig(embed_dim=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 2, 4], window_size=4,
                                image_size=64, out_features=["stage1", "stage2", "stage3", "stage4"])
        return T.OneFormerConfig(backbone_config=backbone, conv_dim=32, mask_dim=32, hidden_dim=32,
                                 encoder_feedforward_dim=40, encoder_layers=1, decoder_layers=3,
                                 num_attention_heads=4, dim_feedforward=56, num_queries=5, num_labels=3,
                                 query_dec_layers=1, task_seq_len=7, layer_norm_eps=1e-4, is_training=False)
    # pre-norm layers over unprojected levels, a 3-stage Swin (no FPN level), no task norm (zero
    # initial queries, the raw task token appended), two query-transformer layers
    backbone = T.SwinConfig(embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 2], window_size=4, image_size=64,
                            out_features=["stage1", "stage2", "stage3"])
    return T.OneFormerConfig(backbone_config=backbone, conv_dim=32, mask_dim=32, hidden_dim=32,
                             encoder_feedforward_dim=24, encoder_layers=2, decoder_layers=3, num_attention_heads=2,
                             dim_feedforward=40, num_queries=6, num_labels=4, pre_norm=True, strides=[4, 8, 16],
                             use_task_norm=False, query_dec_layers=2, task_seq_len=7, is_training=False)


def _write_tokenizer():
    """A tiny CLIP BPE vocabulary: the letters, each task word merged letter by letter."""
    import string

    import transformers as T

    chars = list(string.ascii_lowercase)
    vocab = chars + [c + "</w>" for c in chars]
    merges = []

    def bpe(pieces):  # apply the merges so far, best rank first, as the tokenizer does
        while True:
            ranks = [(merges.index(p), i) for i, p in enumerate(zip(pieces, pieces[1:])) if p in merges]
            if not ranks:
                return pieces
            i = min(ranks)[1]
            pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2:]

    for word in WORDS:
        pieces = bpe(list(word[:-1]) + [word[-1] + "</w>"])
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            if pieces[0] + pieces[1] not in vocab:
                vocab.append(pieces[0] + pieces[1])
            pieces = bpe(pieces)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tok = T.CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
    ids = tok("the task is panoptic")["input_ids"]
    assert len(ids) == 6 and len(set(ids)) == 6, ids  # start, the four words, end
    return tok


def _hf_processor(folder):
    import transformers as T

    tok = T.AutoTokenizer.from_pretrained(folder)
    image = T.OneFormerImageProcessor(repo_path=str(folder), class_info_file="classes.json",
                                      size={"shortest_edge": 40, "longest_edge": 64})
    return T.OneFormerProcessor(image_processor=image, tokenizer=tok, task_seq_length=7)


def _reference(kind):
    import inspect
    import sys

    x = np.random.RandomState(1).randn(*SIZE).astype("float32")

    def build(tmp):  # Transformers and torch are imported only when the reference is built
        import torch
        import transformers as T

        folder = tmp / "model"
        folder.mkdir()
        (folder / "classes.json").write_text(json.dumps(CLASSES))
        tok = _write_tokenizer()
        tok.save_pretrained(folder)
        proc = _hf_processor(folder)
        proc.save_pretrained(folder)
        images = [np.zeros((20, 30, 3), np.uint8)] * 3
        task_inputs = proc(images=images, task_inputs=TASKS, return_tensors="pt")["task_inputs"]
        torch.manual_seed(0)
        model = T.OneFormerForUniversalSegmentation(_config(kind)).eval()
        randomize_weights(model, 0)
        model.save_pretrained(folder)
        with torch.no_grad():
            out = model(pixel_values=torch.tensor(x.transpose(0, 3, 1, 2)), task_inputs=task_inputs,
                        output_hidden_states=True)
        exp = {k: getattr(out, k).numpy() for k in ("class_queries_logits", "masks_queries_logits",
                                                   "transformer_decoder_object_queries",
                                                   "transformer_decoder_contrastive_queries", "task_token")}
        exp["task_inputs"] = task_inputs.numpy()
        for name in ("encoder_hidden_states", "pixel_decoder_hidden_states"):
            for i, h in enumerate(getattr(out, name)):
                exp[f"{name}_{i}"] = h.numpy()
        np.savez(tmp / "expected.npz", **exp)

    key = _key(f"oneformer-{kind}", inspect.getsource(sys.modules[__name__]), _versions())
    folder = cached_folder(key, build)
    return x, folder / "model", dict(np.load(folder / "expected.npz"))


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["post_norm", "pre_norm"])
def test_oneformer_parity(kind):
    x, folder, exp = _reference(kind)
    model = km.UniversalSegmenter.from_preset(folder)
    assert type(model).__name__ == "OneFormerUniversalSegmenter" and model.head_from_checkpoint
    # the batch holds one image per task token: semantic, instance, panoptic
    out, hidden = _run(model, {"pixel_values": x, "task_inputs": exp["task_inputs"].astype("float32")})
    for k in ("class_queries_logits", "masks_queries_logits"):
        assert_close(out[k], exp[k], what=f"{kind} {k}")
    for k in ("transformer_decoder_object_queries", "transformer_decoder_contrastive_queries", "task_token"):
        assert_close(out[k], exp[k], what=f"{kind} {k}")
    n = len([k for k in exp if k.startswith("encoder_hidden_states")])
    assert len(hidden["encoder_hidden_states"]) == n
    for i in range(n):
        assert_close(hidden["encoder_hidden_states"][i], _nhwc(exp[f"encoder_hidden_states_{i}"]),
                     what=f"{kind} encoder_hidden_states[{i}]")
    # Transformers: the mask features, then the three multi-scale maps
    assert_close(out["pixel_decoder_last_hidden_state"], _nhwc(exp["pixel_decoder_hidden_states_0"]))
    for i in range(3):
        assert_close(hidden["pixel_decoder_hidden_states"][i], _nhwc(exp[f"pixel_decoder_hidden_states_{i + 1}"]),
                     what=f"{kind} pixel_decoder_hidden_states[{i}]")


@pytest.mark.backend_independent
def test_oneformer_processor():
    """Pixel values, pixel mask and task_inputs equal Transformers' OneFormerProcessor's."""
    x, folder, exp = _reference("post_norm")
    from keras_models.models.oneformer.processor import OneFormerProcessor

    proc = OneFormerProcessor.from_preset(folder)  # what UniversalSegmenter.from_preset attaches
    rng = np.random.RandomState(3)
    images = [rng.randint(0, 256, (37, 50, 3)).astype(np.uint8), rng.randint(0, 256, (61, 29, 3)).astype(np.uint8),
              rng.randint(0, 256, (40, 40, 3)).astype(np.uint8)]
    ours = proc(images, TASKS)
    np.testing.assert_array_equal(ours["task_inputs"], exp["task_inputs"])
    theirs = _hf_processor(folder)(images=images, task_inputs=TASKS, return_tensors="np")
    np.testing.assert_allclose(ours["pixel_values"], theirs["pixel_values"].transpose(0, 2, 3, 1), atol=1e-5)
    np.testing.assert_array_equal(ours["pixel_mask"], theirs["pixel_mask"])
    np.testing.assert_array_equal(ours["task_inputs"], np.asarray(theirs["task_inputs"]))
    assert proc.image_processor.metadata["thing_ids"] == [1, 2]


@pytest.mark.backend_independent
def test_oneformer_post_processing():
    """Semantic (with and without target sizes), instance (instance and panoptic task types, is_demo
    on and off) and panoptic post-processing equal OneFormerImageProcessor's on the reference's
    outputs."""
    from types import SimpleNamespace

    import torch

    x, folder, exp = _reference("pre_norm")
    ours = {"class_queries_logits": exp["class_queries_logits"] * 3,
            "masks_queries_logits": exp["masks_queries_logits"]}
    theirs = SimpleNamespace(**{k: torch.tensor(v) for k, v in ours.items()})
    proc = _hf_processor(folder).image_processor
    cls = km.models.OneFormerUniversalSegmenter
    for ts in (None, [(30, 21), (17, 40), (20, 20)]):
        for a, b in zip(cls.post_process_semantic_segmentation(ours, target_sizes=ts),
                        proc.post_process_semantic_segmentation(theirs, target_sizes=ts)):
            np.testing.assert_array_equal(a, b.numpy())
        if ts is not None:  # Transformers resizes the instance / panoptic masks with torchvision (not a CI package)
            continue
        got = cls.post_process_panoptic_segmentation(ours, threshold=0.3, target_sizes=ts)
        want = proc.post_process_panoptic_segmentation(theirs, threshold=0.3, target_sizes=ts)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a["segmentation"], b["segmentation"].numpy())
            _same_segments(a["segments_info"], b["segments_info"])
        for task_type, demo in (("instance", True), ("panoptic", True), ("instance", False)):
            kw = dict(task_type=task_type, is_demo=demo, threshold=0.2, target_sizes=ts)
            got = cls.post_process_instance_segmentation(ours, thing_ids=[1, 2], class_info_file="classes.json", **kw)
            want = proc.post_process_instance_segmentation(theirs, **kw)
            for a, b in zip(got, want):
                _same_up_to_ids(a, b)


def _same_up_to_ids(ours, theirs):
    """The same segments, numbered differently at most: ours are numbered best-first, Transformers'
    in the order of torch's unsorted top-k (unspecified)."""
    seg, ref = ours["segmentation"], theirs["segmentation"].numpy()
    assert seg.shape == ref.shape
    ids = {}
    for i in np.unique(seg):
        under = np.unique(ref[seg == i])
        assert len(under) == 1, f"segment {i} covers {under}"
        ids[int(i)] = int(under[0])
    assert len(set(ids.values())) == len(ids)
    theirs_info = {s["id"]: s for s in theirs["segments_info"]}
    assert len(ours["segments_info"]) == len(theirs_info)
    for s in ours["segments_info"]:
        t = theirs_info[ids.get(s["id"], s["id"])]
        assert (s["label_id"], s["was_fused"]) == (t["label_id"], t["was_fused"])
        assert abs(s["score"] - t["score"]) <= 2e-6


def test_oneformer_reloads_in_transformers(tmp_path):
    import torch
    import transformers as T

    x, folder, exp = _reference("pre_norm")
    model = km.UniversalSegmenter.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["architectures"] == ["OneFormerForUniversalSegmentation"]
    hf = T.OneFormerForUniversalSegmentation.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = hf(pixel_values=torch.tensor(x.transpose(0, 3, 1, 2)), task_inputs=torch.tensor(exp["task_inputs"]))
    for k in ("class_queries_logits", "masks_queries_logits"):
        assert_close(getattr(out, k).numpy(), exp[k], what=f"reloaded {k}")
    again = km.UniversalSegmenter.from_preset(tmp_path / "saved", load_weights=False)
    np.testing.assert_array_equal(again.preprocessor(np.zeros((9, 9, 3), np.uint8), "instance")["task_inputs"],
                                  exp["task_inputs"][1:2])


def test_oneformer_keras_round_trip_and_errors(tmp_path):
    import keras

    from tests.parity import assert_keras_round_trip

    x, folder, exp = _reference("post_norm")
    if keras.backend.backend() == "torch":  # the .keras file does not depend on the backend
        model = km.UniversalSegmenter.from_preset(folder)
        assert_keras_round_trip(model, {"pixel_values": x[:1], "task_inputs": exp["task_inputs"][:1]}, tmp_path,
                                atol=1e-5)
    config = json.loads((folder / "config.json").read_text())
    for change, word in ((dict(mask_dim=64), "mask_dim"), (dict(conv_dim=64, mask_dim=64), "conv_dim"),
                         (dict(enforce_input_proj=True), "enforce_input_proj"),
                         (dict(is_training=True), "is_training"), (dict(norm="BN"), "norm"),
                         (dict(decoder_layers=1), "decoder_layers"), (dict(num_queries=1), "num_queries"),
                         (dict(backbone_config={"model_type": "dinat"}), "backbone_config"),
                         (dict(common_stride=3), "common_stride"), (dict(num_attention_heads=5), "num_attention_heads"),
                         (dict(task_seq_len=0), "task_seq_len")):
        bad = tmp_path / word
        bad.mkdir(exist_ok=True)
        (bad / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=word):
            km.Backbone.from_preset(bad, load_weights=False)
