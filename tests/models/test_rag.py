"""RAG on given documents against Transformers (tiny random models, tests/parity.py):

* RagTokenForGeneration (BART generator, ``do_marginalize``: marginalised log-probabilities, DPR
  question encoder with a projection): logits, greedy and beam (num_beams 2) generate, the
  question embedding;
* RagSequenceForGeneration (T5 generator): raw logits, the per-row RAG-sequence loss (labels)
  and "thorough" greedy and beam (num_beams 2) generate (per-document decoding, deduplication,
  rescoring);
* the in-memory inner-product retriever feeding generate; RagTokenizer (question encoder /
  generator tokenizers) equal to Transformers'; bad inputs raise typed errors.
"""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from keras_models.models.rag import RagSequenceGenerator, RagTokenGenerator
from tests.parity import assert_close, hf_reference, to_numpy

VOCAB, N_DOCS = 99, 3


def _rag(kind):
    import transformers as T

    q = T.DPRConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=24, max_position_embeddings=64, projection_dim=8)
    if kind == "token":
        g = T.BartConfig(vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=20,
                         max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                         decoder_start_token_id=2, forced_eos_token_id=2)
    else:
        g = T.T5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=24, num_layers=1,
                       num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                       decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, feed_forward_proj="gated-gelu",
                       tie_word_embeddings=False)
    # (Transformers' RAG-sequence loss reads the generator's bos_token_id when RAG's is unset or 0, and
    # T5Config has none: give RAG its own)
    tokens = dict(bos_token_id=g.bos_token_id if kind == "token" else 3, pad_token_id=g.pad_token_id, eos_token_id=g.eos_token_id,
                  decoder_start_token_id=g.decoder_start_token_id)
    cfg = T.RagConfig(question_encoder=q.to_dict(), generator=g.to_dict(), n_docs=N_DOCS,
                      do_marginalize=kind == "token", **tokens)
    model = (T.RagTokenForGeneration if kind == "token" else T.RagSequenceForGeneration)(cfg)
    if kind == "sequence":  # a v1.1-style T5: its own lm_head, one input embedding shared by both stacks
        gen = model.rag.generator
        gen.encoder.embed_tokens = gen.decoder.embed_tokens = gen.shared
    return model


def _inputs(kind):
    rng = np.random.RandomState(0)
    pad, start = (1, 2) if kind == "token" else (0, 0)
    ctx = rng.randint(4, VOCAB, (2 * N_DOCS, 7)).astype("int64")
    mask = np.ones_like(ctx)
    ctx[1, -2:], mask[1, -2:] = pad, 0
    dec = rng.randint(4, VOCAB, (2, 5)).astype("int64")
    dec[:, 0] = start
    out = {"context_input_ids": ctx, "context_attention_mask": mask,
           "doc_scores": rng.randn(2, N_DOCS).astype("float32") * 2, "decoder_input_ids": dec}
    if kind == "sequence":
        dec[1, -1] = pad
        out["labels"] = dec
    return out


def _extra(kind, inputs):
    def save(folder, model):
        import torch

        t = {k: torch.tensor(v) for k, v in inputs.items() if k != "labels" and k != "decoder_input_ids"}
        question = torch.tensor(inputs["context_input_ids"][::N_DOCS])
        with torch.no_grad():
            # RAG-sequence: the 2 best candidates (an all-pad candidate scores log-likelihood 0 and
            # often wins: its targets are all masked)
            gen = model.generate(**t, max_length=8, **({"num_return_sequences": 2} if kind == "sequence" else {}))
            emb = model.question_encoder(question)[0]
            extra = {}
            if kind == "sequence":  # the per-row loss of the labels
                extra["loss"] = model(**{k: torch.tensor(v) for k, v in inputs.items()}).loss.numpy()
        np.savez(folder / "extra.npz", generated=gen.numpy(), question_ids=question.numpy(),
                 question_embedding=emb.numpy(), **extra)
    return save


def _reference(kind):
    inputs = _inputs(kind)
    folder, expected = hf_reference(f"rag-{kind}", lambda: _rag(kind), inputs, extra_save=_extra(kind, inputs))
    expected.update(np.load(folder / "extra.npz"))
    return folder, inputs, expected


def test_rag_token():
    folder, inputs, expected = _reference("token")
    model = km.models.RagTokenGenerator.from_preset(folder)
    assert model.do_marginalize
    x = {k: v for k, v in inputs.items() if k != "labels"}
    out = to_numpy(model(x))
    assert out["logits"].shape == (2, 5, VOCAB)
    assert_close(out["logits"], expected["logits"], what="rag-token marginalised logits")
    raw = to_numpy(RagTokenGenerator(model.backbone, do_marginalize=False)(x))["logits"]
    assert_close(to_numpy(model.marginalize(raw, x["doc_scores"])), expected["logits"], what="marginalize()")
    docs = {k: x[k] for k in ("context_input_ids", "context_attention_mask", "doc_scores")}
    np.testing.assert_array_equal(model.generate(docs, max_length=8), expected["generated"])
    assert_close(to_numpy(model.encode_question(expected["question_ids"])), expected["question_embedding"],
                 what="question embedding")
    with pytest.raises(InputError, match="doc_scores"):
        model({**x, "doc_scores": x["doc_scores"][:, :2]})


def test_rag_sequence():
    folder, inputs, expected = _reference("sequence")
    model = km.models.RagSequenceGenerator.from_preset(folder)
    x = {k: v for k, v in inputs.items() if k != "labels"}
    out = to_numpy(model(x))
    assert_close(out["logits"], expected["logits"], what="rag-sequence logits")
    assert_close(to_numpy(model.sequence_nll(out["logits"], x["doc_scores"], inputs["labels"])), expected["loss"],
                 what="rag-sequence loss")
    docs = {k: x[k] for k in ("context_input_ids", "context_attention_mask", "doc_scores")}
    generated = model.generate(docs, max_length=8, num_return_sequences=2)
    assert generated.shape[0] == 4 and (generated[:, 1] != 0).any()
    np.testing.assert_array_equal(generated, expected["generated"])


@pytest.mark.backend_independent
def test_rag_tokenizer(tmp_path):
    import shutil
    import sys
    from pathlib import Path

    import transformers

    from keras_models.models.rag import RagTokenizer

    sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
    try:
        from tok_refs import ref_dir
    finally:
        sys.path.pop(0)
    shutil.copytree(ref_dir("bert_vocab_uncased"), tmp_path / "question_encoder_tokenizer")
    shutil.copytree(ref_dir("roberta_vocab"), tmp_path / "generator_tokenizer")
    ours = RagTokenizer.from_preset(tmp_path)
    texts = ["Who wrote the Iliad?", "how many people live in paris"]
    q = transformers.AutoTokenizer.from_pretrained(tmp_path / "question_encoder_tokenizer")
    g = transformers.AutoTokenizer.from_pretrained(tmp_path / "generator_tokenizer")
    np.testing.assert_array_equal(np.asarray(ours(texts, padding=True)["input_ids"]),
                                  np.asarray(q(texts, padding=True)["input_ids"]))
    targets = g(texts)["input_ids"]
    assert ours.as_target()(texts, return_tensors=None)["input_ids"] == targets
    assert ours.batch_decode(targets, skip_special_tokens=True) == g.batch_decode(targets, skip_special_tokens=True)
    ours.save_pretrained(tmp_path / "saved")
    again = RagTokenizer.from_preset(tmp_path / "saved")
    np.testing.assert_array_equal(again(texts, padding=True)["input_ids"], ours.as_input()(texts, padding=True)["input_ids"])

    # the in-memory retriever: exact inner-product top-k, Transformers' "title / text // question" strings
    from keras_models.models.rag.retrieval import InnerProductRetriever

    emb = np.random.RandomState(1).randn(5, 4).astype("float32")
    titles, bodies = ['"Homer"', "Paris", "Rome", "Iliad", "Seine"], ["poet", "city", "city", "epic", "river"]
    retriever = InnerProductRetriever(emb, titles, bodies, ours, max_combined_length=24)
    question = np.random.RandomState(2).randn(2, 4).astype("float32")
    qids = ours.as_input()(texts, padding=True)["input_ids"]
    docs = retriever(qids, question, n_docs=3)
    np.testing.assert_array_equal(docs["doc_ids"], np.argsort(-(question @ emb.T), axis=1)[:, :3])
    np.testing.assert_allclose(docs["doc_scores"], np.sort(question @ emb.T, axis=1)[:, ::-1][:, :3], rtol=1e-5)
    first = titles[docs["doc_ids"][0, 0]].strip('"') + " / " + bodies[docs["doc_ids"][0, 0]] + " // " + \
        q.batch_decode(qids, skip_special_tokens=True)[0]
    want = g(first, max_length=24, padding="max_length", truncation=True)
    assert docs["context_input_ids"].shape == (6, 24)
    np.testing.assert_array_equal(docs["context_input_ids"][0], want["input_ids"])
    np.testing.assert_array_equal(docs["context_attention_mask"][0], want["attention_mask"])
    with pytest.raises(InputError, match="n_docs"):
        retriever(qids, question, n_docs=9)

    shutil.rmtree(tmp_path / "generator_tokenizer")
    with pytest.raises(ConfigError, match="generator_tokenizer"):
        RagTokenizer.from_preset(tmp_path)


def test_rag_sequence_beam_search():
    """RAG-sequence with num_beams=2: each document's generator beam search (2 beams, both kept),
    deduplication, rescoring over all documents; equal to Transformers' generate."""
    folder, inputs, _ = _reference("sequence")
    docs = {k: inputs[k] for k in ("context_input_ids", "context_attention_mask", "doc_scores")}

    def build(tmp):
        import torch
        import transformers

        hf = transformers.RagSequenceForGeneration.from_pretrained(folder).eval()
        with torch.no_grad():
            out = hf.generate(**{k: torch.tensor(v) for k, v in docs.items()}, max_length=8, num_beams=2,
                              num_return_sequences=2)
        np.save(tmp / "generated.npy", out.numpy())

    from tests.parity import cached_folder

    want = np.load(cached_folder(f"rag-sequence-beam-{folder.parent.name}", build) / "generated.npy")
    model = km.models.RagSequenceGenerator.from_preset(folder)
    got = model.generate(docs, max_length=8, num_beams=2, num_return_sequences=2)
    np.testing.assert_array_equal(got, want)


def test_rag_token_beam_search():
    """RAG-token with num_beams=2 (2 returned): the marginalised log-probabilities through the beam
    engine, the documents' decoder rows copied per beam; equal to Transformers' generate."""
    folder, inputs, _ = _reference("token")
    docs = {k: inputs[k] for k in ("context_input_ids", "context_attention_mask", "doc_scores")}

    def build(tmp):
        import torch
        import transformers

        hf = transformers.RagTokenForGeneration.from_pretrained(folder).eval()
        with torch.no_grad():
            out = hf.generate(**{k: torch.tensor(v) for k, v in docs.items()}, max_length=8, num_beams=2,
                              num_return_sequences=2)
        np.save(tmp / "generated.npy", out.numpy())

    from tests.parity import cached_folder

    want = np.load(cached_folder(f"rag-token-beam-{folder.parent.name}", build) / "generated.npy")
    model = km.models.RagTokenGenerator.from_preset(folder)
    got = model.generate(docs, max_length=8, num_beams=2, num_return_sequences=2)
    np.testing.assert_array_equal(got, want)
