"""RAG (model_type ``rag``): a question encoder (DPR) and a seq2seq generator (BART, T5, or any
registered family with a Seq2SeqLM head) as Transformers' RagModel stores them.

What runs here is RAG *given retrieved documents*: ``context_input_ids`` / ``context_attention_mask``
(batch * n_docs, source_len; each question's documents contiguous, as Transformers' retriever
returns them) and ``doc_scores`` (batch, n_docs). The question encoder is loaded (its pooled,
projected [CLS] embedding is ``encode_question``) and a small in-memory inner-product index
(:class:`~keras_models.models.rag.retrieval.InnerProductRetriever`) can supply the documents;
Transformers' faiss / ``datasets`` retriever is not implemented.

``RagBackbone`` (RagModel) returns ``{"logits": the generator's logits (batch * n_docs,
decoder_len, vocab), "doc_scores"}``; the two heads live in :mod:`keras_models.models.rag.tasks`.
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, task_class_for
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, build_tower, dim, hf, tower

_ser = keras.saving.register_keras_serializable(package="keras_models")
TOKEN_KEYS = ("bos_token_id", "pad_token_id", "eos_token_id", "decoder_start_token_id")


@dataclass(frozen=True, kw_only=True)
class RagSpec(Spec):
    question_encoder: dict = tower("question_encoder", "dpr")
    generator: dict = tower("generator", "bart")
    n_docs: int = dim("n_docs", 5)
    do_marginalize: bool = hf("do_marginalize", False, doc="RagToken: logits marginalised over the documents")
    exclude_bos_score: bool = hf("exclude_bos_score", False)
    do_deduplication: bool = hf("do_deduplication", True)
    label_smoothing: float = hf("label_smoothing", 0.0)
    reduce_loss: bool = hf("reduce_loss", False)
    bos_token_id: int | None = hf("bos_token_id", None, doc="null: the generator's")
    pad_token_id: int | None = hf("pad_token_id", None, doc="null: the generator's")
    eos_token_id: int | None = hf("eos_token_id", None, doc="null: the generator's")
    decoder_start_token_id: int | None = hf("decoder_start_token_id", None, doc="null: the generator's")
    prefix: str | None = hf("prefix", None)
    title_sep: str = hf("title_sep", " / ")
    doc_sep: str = hf("doc_sep", " // ")
    max_combined_length: int = dim("max_combined_length", 300)
    retrieval_vector_size: int = dim("retrieval_vector_size", 768)

    def validate(self, source="config.json"):
        qe = self.question_encoder.get("model_type")
        if qe != "dpr":
            raise ConfigError(f"{source}: question_encoder.model_type={qe!r}: RAG's question encoder must be a "
                              "DPR question encoder (model_type 'dpr'), whose pooled output scores documents")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"{source}: label_smoothing={self.label_smoothing} must be in [0, 1)")

    def dummy_inputs(self):
        n = self.n_docs
        return {"context_input_ids": np.ones((n, 2), "int32"), "context_attention_mask": np.ones((n, 2), "int32"),
                "doc_scores": np.zeros((1, n), "float32"), "decoder_input_ids": np.ones((1, 1), "int32")}


@_ser
@register_backbone("rag")
class RagBackbone(SpecBackbone):
    spec_cls = RagSpec
    base_model_prefix = "rag"
    hf_architecture = "RagModel"
    verified_backends = ("jax", "torch", "tensorflow")  # tests/models/test_rag.py (given documents)
    not_covered = "Transformers' faiss / datasets RagRetriever (an in-memory retriever is here)"  # shown beside the row in docs/models.md

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.n_docs = s.n_docs
        from keras_models.models.encoder.dpr import DPRTextEmbedder

        qe_backbone = build_tower(s.question_encoder, "question_encoder_backbone", self.dtype_policy)
        self.question_encoder = DPRTextEmbedder(qe_backbone, name="question_encoder", dtype=self.dtype_policy)
        gen_backbone = build_tower(s.generator, "generator_backbone", self.dtype_policy)
        gen_cls = task_class_for(type(gen_backbone), "Seq2SeqLM", source="config.json generator")
        gen_kwargs = gen_cls.task_config_from_hf(dict(s.generator), True)
        gen_kwargs.pop("_head_from_checkpoint", None)
        self.generator = gen_cls(backbone=gen_backbone, name="generator", dtype=self.dtype_policy, **gen_kwargs)

    def build(self, input_shape=None):
        self.question_encoder.backbone.build_from_dummy()
        self.question_encoder.build_from_dummy()
        self.generator.backbone.build_from_dummy()
        self.generator.build_from_dummy()
        self.built = True

    # --- special tokens: RAG's config, else the generator's --------------------------------------
    def token(self, name):
        value = getattr(self.spec, name, None)
        return value if value is not None else getattr(self.generator, name, None)

    # --- forward ------------------------------------------------------------------------------
    def check_documents(self, inputs):
        for key in ("context_input_ids", "context_attention_mask", "doc_scores"):
            if inputs.get(key) is None:
                raise InputError(f"RAG: inputs need '{key}' (retrieved documents: context_input_ids / "
                                 "context_attention_mask (batch * n_docs, length) and doc_scores (batch, n_docs))")
        scores, ctx = inputs["doc_scores"], inputs["context_input_ids"]
        if len(scores.shape) != 2 or len(ctx.shape) != 2:
            raise InputError(f"RAG: doc_scores must be (batch, n_docs) and context_input_ids (batch * n_docs, "
                             f"length); got {tuple(scores.shape)} and {tuple(ctx.shape)}")
        n, rows = scores.shape[1], ctx.shape[0]
        if n is not None and rows is not None and scores.shape[0] is not None and rows != scores.shape[0] * n:
            raise InputError(f"RAG: context_input_ids has {rows} rows but doc_scores {tuple(scores.shape)} "
                             f"needs batch * n_docs = {scores.shape[0] * n}")

    def call(self, inputs, training=False):
        self.check_documents(inputs)
        n = inputs["doc_scores"].shape[1]
        dec = inputs.get("decoder_input_ids")
        if dec is None:
            raise InputError("RAG: inputs need 'decoder_input_ids' (batch, length)")
        dec = ops.repeat(dec, n, axis=0)
        gen_inputs = {"input_ids": inputs["context_input_ids"], "attention_mask": inputs["context_attention_mask"],
                      "decoder_input_ids": dec}
        if inputs.get("decoder_attention_mask") is not None:
            gen_inputs["decoder_attention_mask"] = ops.repeat(inputs["decoder_attention_mask"], n, axis=0)
        return {"logits": self.generator(gen_inputs, training=training), "doc_scores": inputs["doc_scores"]}

    def encode_question(self, inputs):
        """The question encoder's pooled output (Transformers' ``question_encoder(input_ids)[0]``),
        (batch, projection_dim or hidden): the query vector documents are scored against."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        return self.question_encoder(inputs)

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        qe = self.question_encoder
        rules = mount(qe.backbone.weight_rules(), "question_encoder.") + mount(qe.head_rules(), "question_encoder.")
        gen = self.generator
        p = gen.export_prefix
        rules += mount(gen.backbone.weight_rules(), "generator." + (p + "." if p else ""))
        rules += mount(gen.head_rules(), "generator.")
        return [replace(r, base=True) for r in rules]  # all under rag. (a RagModel checkpoint has no prefix)


def marginalize(logits, doc_scores):
    """RAG-token marginalisation: log-softmax over the vocabulary per document, plus the documents'
    log-softmaxed scores, log-sum-exp over the documents. (batch * n, t, V), (batch, n) -> (batch, t, V)."""
    n = doc_scores.shape[1]
    lp = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    lp = ops.reshape(lp, (-1, n) + tuple(lp.shape[1:]))
    doc = ops.log_softmax(ops.cast(doc_scores, "float32"), axis=1)
    return ops.logsumexp(lp + doc[:, :, None, None], axis=1)


__all__ = ["RagSpec", "RagBackbone", "marginalize", "TOKEN_KEYS"]
