"""An in-memory stand-in for Transformers' RagRetriever (which needs faiss and ``datasets``):
documents given as numpy embeddings (N, dim) with their titles and texts, exact inner-product
top-k search, and Transformers' way of building the generator inputs
(``prefix + title + title_sep + text + doc_sep + question``, the title's surrounding quotes
dropped, tokenized by the generator tokenizer to ``max_combined_length``).

    retriever = InnerProductRetriever(embeddings, titles, texts, tokenizer=rag_tokenizer)
    q = model.encode_question(rag_tokenizer(["who wrote the iliad?"]))
    docs = retriever(question_ids, q, n_docs=model.backbone.n_docs)
    model.generate(docs)   # context_input_ids / context_attention_mask / doc_scores
"""

import numpy as np
from keras import ops

from keras_models.errors import InputError


class InnerProductRetriever:
    def __init__(self, embeddings, titles, texts, tokenizer, title_sep=" / ", doc_sep=" // ", prefix=None,
                 max_combined_length=300):
        self.embeddings = np.asarray(embeddings, np.float32)
        if self.embeddings.ndim != 2 or len(titles) != len(self.embeddings) or len(texts) != len(self.embeddings):
            raise InputError(f"InnerProductRetriever: embeddings must be (num_docs, dim) with one title and one text "
                             f"per row; got {self.embeddings.shape}, {len(titles)} titles, {len(texts)} texts")
        self.titles, self.texts = list(titles), list(texts)
        self.tokenizer = tokenizer  # a RagTokenizer
        self.title_sep, self.doc_sep, self.prefix = title_sep, doc_sep, prefix
        self.max_combined_length = max_combined_length

    @classmethod
    def for_model(cls, model, embeddings, titles, texts, tokenizer=None):
        """Separators, prefix and length from the RAG model's config."""
        s = model.backbone.spec
        return cls(embeddings, titles, texts, tokenizer or model.preprocessor, s.title_sep, s.doc_sep, s.prefix,
                   s.max_combined_length)

    def retrieve(self, question_embeddings, n_docs):
        """(doc_ids (batch, n_docs) best first, doc_embeddings (batch, n_docs, dim))."""
        q = np.asarray(ops.convert_to_numpy(question_embeddings), np.float32)
        if q.ndim != 2 or q.shape[1] != self.embeddings.shape[1]:
            raise InputError(f"question_embeddings: expected (batch, {self.embeddings.shape[1]}), got {q.shape}")
        if not 0 < n_docs <= len(self.embeddings):
            raise InputError(f"n_docs={n_docs}: the index holds {len(self.embeddings)} documents")
        scores = q @ self.embeddings.T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :n_docs]
        return ids, self.embeddings[ids]

    def __call__(self, question_input_ids, question_embeddings, n_docs):
        ids, doc_embeds = self.retrieve(question_embeddings, n_docs)
        q = np.asarray(ops.convert_to_numpy(question_embeddings), np.float32)
        questions = self.tokenizer.question_encoder.batch_decode(
            np.asarray(ops.convert_to_numpy(question_input_ids)).tolist(), skip_special_tokens=True)
        strings = []
        for row, question in zip(ids, questions):
            for d in row:
                title = self.titles[d]
                if title.startswith('"'):
                    title = title[1:]
                if title.endswith('"'):
                    title = title[:-1]
                strings.append(((self.prefix or "") + title + self.title_sep + self.texts[d] + self.doc_sep
                                + question).replace("  ", " "))
        enc = self.tokenizer.generator(strings, max_length=self.max_combined_length, padding="max_length",
                                       truncation=True)
        return {"context_input_ids": np.asarray(enc["input_ids"], np.int32),
                "context_attention_mask": np.asarray(enc["attention_mask"], np.int32),
                "doc_scores": np.einsum("bd,bnd->bn", q, doc_embeds), "doc_ids": ids}


__all__ = ["InnerProductRetriever"]
