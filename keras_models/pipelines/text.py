"""Encoder text pipelines: feature-extraction, sentence-similarity, text-classification,
fill-mask and zero-shot-classification, with Transformers' input and output formats."""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import HiddenStateOutputs, Pipeline, PipelineError, sigmoid, softmax


class TextPipeline(Pipeline):
    """Shared helpers: encode one text (or pair) with the Rust tokenizer, labels from config."""

    def encode(self, text, pair=None, truncation="longest_first", max_length=None, stride=0):
        tok = self._require_tokenizer()
        if not isinstance(text, (str, list)) or (pair is not None and not isinstance(pair, str)):
            raise PipelineError(f"{self.task} pipeline: expected text inputs (str), got {type(text).__name__}")
        enc = tok._encode_batch(
            [text], None if pair is None else [pair], truncation=truncation,
            max_length=max_length or self.max_length(), stride=stride,
        )
        return enc[0]

    def features(self, enc):
        out = {"input_ids": enc.ids, "attention_mask": enc.attention_mask}
        if "token_type_ids" in self.tokenizer.model_input_names:
            out["token_type_ids"] = enc.type_ids
        return out

    @property
    def id2label(self):
        labels = getattr(self.model, "id2label", None)
        if not labels and self.hf_config.get("id2label"):
            labels = {int(k): v for k, v in self.hf_config["id2label"].items()}
        n = getattr(self.model, "num_classes", None) or (len(labels) if labels else 0)
        labels = dict(labels or {})
        return {i: labels.get(i, f"LABEL_{i}") for i in range(n)}


def score_function(fn, hf_config, num_labels):
    """``function_to_apply`` resolved as Transformers does: regression -> none, multi-label or a
    single label -> sigmoid, else softmax."""
    if fn is None:
        problem = hf_config.get("problem_type")
        if problem == "regression":
            fn = "none"
        elif problem == "multi_label_classification" or num_labels == 1:
            fn = "sigmoid"
        else:
            fn = "softmax"
    fn = str(getattr(fn, "value", fn)).lower()
    if fn not in ("softmax", "sigmoid", "none"):
        raise PipelineError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {fn!r}")
    return fn


class FeatureExtractionPipeline(HiddenStateOutputs, TextPipeline):
    """Last hidden state per input, as nested lists of shape (1, tokens, hidden) (or numpy arrays
    with ``return_tensors=True``), like Transformers' feature-extraction pipeline."""

    task = "feature-extraction"
    call_params = ("return_tensors", "truncation")

    def preprocess(self, item, truncation=True, **_):
        enc = self.encode(item, truncation="longest_first" if truncation else None)
        return [{"features": self.features(enc)}]


class SentenceSimilarityPipeline(TextPipeline):
    """Cosine similarity of ``source_sentence`` to each of ``sentences`` with a TextEmbedder
    (the checkpoint's pooling and normalisation). Input: ``{"source_sentence": str, "sentences":
    [str, ...]}`` or ``pipe(source_sentence, sentences=[...])``; output: a list of floats."""

    task = "sentence-similarity"
    call_params = ("sentences",)

    def __call__(self, inputs, sentences=None, **kwargs):
        if sentences is not None:
            if not isinstance(inputs, str):
                raise PipelineError("sentence-similarity: with sentences=, the first argument is one source sentence")
            inputs = {"source_sentence": inputs, "sentences": sentences}
        return super().__call__(inputs, **kwargs)

    def normalize_inputs(self, inputs, params):
        single = isinstance(inputs, dict)
        items = [inputs] if single else list(inputs)
        for item in items:
            if not isinstance(item, dict) or "source_sentence" not in item or "sentences" not in item:
                raise PipelineError(
                    "sentence-similarity: each input needs 'source_sentence' and 'sentences' keys "
                    f"(got {item!r:.80})"
                )
            if isinstance(item["sentences"], str) or not item["sentences"]:
                raise PipelineError("sentence-similarity: 'sentences' must be a non-empty list of str")
        return single, items

    def preprocess(self, item, **_):
        texts = [item["source_sentence"], *item["sentences"]]
        return [{"features": self.features(self.encode(t))} for t in texts]

    def postprocess(self, item, chunks, outputs, **_):
        vectors = np.stack(outputs).astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
        return (vectors[1:] @ vectors[0]).tolist()


class TextClassificationPipeline(TextPipeline):
    """Labels and scores per text (or ``{"text", "text_pair"}`` pair).

    Scores: softmax over classes, sigmoid for one class or ``problem_type=
    "multi_label_classification"``, raw logits for regression; ``function_to_apply`` overrides.
    Without ``top_k`` a single text gives ``[{"label", "score"}]`` (the best label); with ``top_k``
    (an int, or None for all) the labels sorted by score.
    """

    task = "text-classification"
    call_params = ("top_k", "function_to_apply")

    def __call__(self, inputs, **kwargs):
        legacy = "top_k" not in kwargs
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, str) and legacy:
            return [result]
        return result

    def normalize_inputs(self, inputs, params):
        if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], list) and len(inputs[0]) == 2:
            return True, [{"text": inputs[0][0], "text_pair": inputs[0][1]}]
        single, items = super().normalize_inputs(inputs, params)
        for item in items:
            if isinstance(item, dict):
                if "text" not in item or set(item) - {"text", "text_pair"}:
                    raise PipelineError("text-classification: a pair input is {'text': ..., 'text_pair': ...}")
            elif not isinstance(item, str):
                raise PipelineError(
                    f"text-classification: inputs must be str or {{'text', 'text_pair'}} dicts, got {type(item).__name__}"
                )
        return single, items

    def prepare_params(self, params):
        params = dict(params)
        params["_legacy"] = "top_k" not in params
        fn = score_function(params.get("function_to_apply"), self.hf_config, len(self.id2label))
        params["function_to_apply"] = fn
        return params

    def preprocess(self, item, **_):
        if isinstance(item, dict):
            enc = self.encode(item["text"], item.get("text_pair"))
        else:
            enc = self.encode(item)
        return [{"features": self.features(enc)}]

    def postprocess(self, item, chunks, outputs, top_k=1, function_to_apply="softmax", _legacy=True, **_):
        logits = np.asarray(outputs[0], dtype=np.float32)
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": np.asarray}[function_to_apply](logits)
        labels = self.id2label
        if top_k == 1 and _legacy:
            return {"label": labels[int(scores.argmax())], "score": float(scores.max())}
        ranked = [{"label": labels[i], "score": float(s)} for i, s in enumerate(scores)]
        if not _legacy:
            ranked.sort(key=lambda r: r["score"], reverse=True)
            if top_k is not None:
                ranked = ranked[:top_k]
        return ranked


class FillMaskPipeline(TextPipeline):
    """Top ``top_k`` fillers of the mask token: ``{"score", "token", "token_str", "sequence"}``
    (a list per mask when the text holds several masks). ``targets`` restricts the candidates."""

    task = "fill-mask"
    call_params = ("top_k", "targets")

    def __call__(self, inputs, **kwargs):
        out = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and len(inputs) == 1:
            return out[0]
        return out

    def prepare_params(self, params):
        tok = self._require_tokenizer()
        if tok.mask_token_id is None:
            raise PipelineError("fill-mask: the tokenizer defines no mask token")
        params = dict(params)
        targets = params.pop("targets", None)
        if targets is not None:
            params["target_ids"] = self._target_ids(targets)
        return params

    def _target_ids(self, targets):
        tok = self.tokenizer
        targets = [targets] if isinstance(targets, str) else list(targets)
        vocab = tok.get_vocab()
        ids = []
        for target in targets:
            index = vocab.get(target)
            if index is None:
                pieces = tok(target, add_special_tokens=False, return_tensors=None)["input_ids"]
                if not pieces:
                    continue
                index = pieces[0]
            ids.append(index)
        ids = sorted(set(ids))
        if not ids:
            raise PipelineError(f"fill-mask: none of targets={targets!r} maps to a vocabulary token")
        return np.asarray(ids)

    def preprocess(self, item, **_):
        enc = self.encode(item)
        if self.tokenizer.mask_token_id not in enc.ids:
            raise PipelineError(f"fill-mask: no mask token ({self.tokenizer.mask_token}) found in input {item!r:.80}")
        return [{"features": self.features(enc)}]

    def postprocess(self, item, chunks, outputs, top_k=5, target_ids=None, **_):
        tok = self.tokenizer
        ids = np.asarray(chunks[0]["features"]["input_ids"])
        positions = np.nonzero(ids == tok.mask_token_id)[0]
        probs = softmax(np.asarray(outputs[0], dtype=np.float32)[positions])
        if target_ids is not None:
            probs = probs[:, target_ids]
            top_k = min(top_k, len(target_ids))
        single = len(positions) == 1
        rows = []
        for row_i, p in enumerate(probs):
            order = np.argsort(-p, kind="stable")[:top_k]
            row = []
            for j in order:
                token = int(target_ids[j]) if target_ids is not None else int(j)
                filled = ids.copy()
                filled[positions[row_i]] = token
                filled = filled[filled != tok.pad_token_id]
                row.append({
                    "score": float(p[j]), "token": token, "token_str": tok.decode([token]),
                    "sequence": tok.decode(filled, skip_special_tokens=single),
                })
            rows.append(row)
        return rows[0] if single else rows


class ZeroShotClassificationPipeline(TextPipeline):
    """NLI-based zero-shot classification: each candidate label is put in ``hypothesis_template``
    and scored by the checkpoint's entailment class. Output ``{"sequence", "labels", "scores"}``."""

    task = "zero-shot-classification"
    call_params = ("candidate_labels", "hypothesis_template", "multi_label")

    def __call__(self, sequences, *args, **kwargs):
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise PipelineError(f"zero-shot-classification: unexpected positional arguments {args!r}")
        return super().__call__(sequences, **kwargs)

    @property
    def entailment_id(self):
        label2id = self.hf_config.get("label2id") or {v: k for k, v in self.id2label.items()}
        for label, index in label2id.items():
            if str(label).lower().startswith("entail"):
                return int(index)
        return -1

    def prepare_params(self, params):
        labels = params.get("candidate_labels")
        if isinstance(labels, str):
            labels = [s.strip() for s in labels.split(",") if s.strip()]
        if not labels:
            raise PipelineError("zero-shot-classification: candidate_labels must name at least one label")
        template = params.get("hypothesis_template", "This example is {}.")
        if template.format(labels[0]) == template:
            raise PipelineError(
                f"zero-shot-classification: hypothesis_template {template!r} has no '{{}}' for the label"
            )
        return {"candidate_labels": list(labels), "hypothesis_template": template,
                "multi_label": bool(params.get("multi_label", False))}

    def preprocess(self, item, candidate_labels, hypothesis_template, **_):
        if not isinstance(item, str):
            raise PipelineError(f"zero-shot-classification: sequences must be str, got {type(item).__name__}")
        return [
            {"features": self.features(self.encode(item, hypothesis_template.format(label), truncation="only_first"))}
            for label in candidate_labels
        ]

    def postprocess(self, item, chunks, outputs, candidate_labels, multi_label=False, **_):
        logits = np.stack([np.asarray(o, dtype=np.float32) for o in outputs])
        entail = self.entailment_id
        if multi_label or len(candidate_labels) == 1:
            contradiction = -1 if entail == 0 else 0
            scores = softmax(logits[:, [contradiction, entail]])[:, 1]
        else:
            scores = softmax(logits[:, entail])
        order = list(reversed(scores.argsort()))
        return {"sequence": item, "labels": [candidate_labels[i] for i in order],
                "scores": [float(scores[i]) for i in order]}
