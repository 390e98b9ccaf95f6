"""TextEmbedder pooling as declared by sentence-transformers configs, against sentence-transformers."""

import json
import shutil

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder
from tests.presets.fixtures import tiny_classifier

SENTENCES = ["a good movie", "the service was very slow and the food was bad", "i", "fun"]
MODES = {
    "cls": ({"pooling_mode_cls_token": True}, False),
    "max_normalized": ({"pooling_mode_max_tokens": True}, True),
    "mean_sqrt_len": ({"pooling_mode_mean_sqrt_len_tokens": True}, False),
    "mean_and_cls": ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, True),
}


def _st_folder(dst, mode):
    folder, _, _ = tiny_classifier()
    shutil.copytree(folder, dst)
    flags, normalize = MODES[mode]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (dst / "modules.json").write_text(json.dumps(modules))
    (dst / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    pooling.update(flags)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    return dst


@pytest.mark.parametrize("mode", sorted(MODES))
def test_pooling_matches_sentence_transformers(tmp_path, mode):
    def build(tmp):
        from sentence_transformers import SentenceTransformer

        src = _st_folder(tmp / "st", mode)
        st = SentenceTransformer(str(src), device="cpu")
        np.save(tmp / "expected.npy", st.encode(SENTENCES, convert_to_numpy=True))

    ref = cached_folder(f"st-pooling-{mode}-v1", build)
    model = km.TextEmbedder.from_preset(ref / "st")
    assert_close(model.embed(SENTENCES, batch_size=4), np.load(ref / "expected.npy"), what=mode)
    # save_to_preset writes the sentence-transformers layout back.
    model.save_to_preset(tmp_path / "saved")
    again = km.TextEmbedder.from_preset(tmp_path / "saved")
    assert again.pooling == model.pooling and again.normalize == model.normalize


def test_plain_checkpoint_gets_mean_pooling():
    folder, _, _ = tiny_classifier()
    model = km.TextEmbedder.from_preset(folder)
    assert model.pooling == ["mean"] and not model.normalize
