"""token-classification (``ner``): entities per token, or grouped with an aggregation strategy.

Strategies follow Transformers: ``none`` (every token not in ``ignore_labels``), ``simple``
(consecutive tokens with the same tag grouped, B-/I- prefixes respected), ``first`` / ``average``
/ ``max`` (sub-word pieces first merged into words, taking the first piece's label, the averaged
scores, or the most confident piece). ``stride`` splits long texts into overlapping windows of the
tokenizer's ``model_max_length``; overlapping entities are resolved by length, then score.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import PipelineError
from keras_models.pipelines.text import TextPipeline

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(TextPipeline):
    task = "token-classification"
    call_params = ("aggregation_strategy", "ignore_labels", "stride", "is_split_into_words", "delimiter")

    def normalize_inputs(self, inputs, params):
        if params.get("is_split_into_words") and isinstance(inputs, list) and inputs and all(
            isinstance(w, str) for w in inputs
        ):
            return False, [inputs]  # one list of words, returned as a batch of one (as Transformers does)
        if isinstance(inputs, str):
            return True, [inputs]
        return super().normalize_inputs(inputs, params)

    def prepare_params(self, params):
        strategy = params.get("aggregation_strategy") or "none"
        strategy = str(getattr(strategy, "value", strategy)).lower()
        if strategy not in STRATEGIES:
            raise PipelineError(f"aggregation_strategy must be one of {STRATEGIES}, got {strategy!r}")
        stride = params.get("stride")
        if stride is not None:
            if strategy == "none":
                raise PipelineError("token-classification: stride needs an aggregation_strategy other than 'none'")
            if stride >= self.max_length():
                raise PipelineError(f"stride ({stride}) must be smaller than the maximum length ({self.max_length()})")
        ignore = params.get("ignore_labels")
        return {
            "aggregation_strategy": strategy,
            "ignore_labels": ["O"] if ignore is None else list(ignore),
            "stride": stride,
            "is_split_into_words": bool(params.get("is_split_into_words", False)),
            "delimiter": params.get("delimiter") or " ",
        }

    def preprocess(self, item, stride=None, is_split_into_words=False, delimiter=" ", **_):
        tok = self._require_tokenizer()
        word_chars = None
        if is_split_into_words:
            if not isinstance(item, list):
                raise PipelineError("token-classification: with is_split_into_words=True, inputs are lists of words")
            words, sentence, word_chars, pos = item, delimiter.join(item), [], 0
            for w in words:
                word_chars.append((pos, pos + len(w)))
                pos += len(w) + len(delimiter)
        elif not isinstance(item, str):
            raise PipelineError(f"token-classification: inputs must be str, got {type(item).__name__}")
        else:
            words, sentence = item, item
        enc = tok._encode_batch(
            [words], truncation="longest_first", max_length=self.max_length(), stride=stride or 0,
            is_split_into_words=is_split_into_words,
        )[0]
        pieces = [enc] + (list(enc.overflowing) if stride is not None else [])
        return [
            {"features": self.features(p), "sentence": sentence, "offsets": p.offsets,
             "special": p.special_tokens_mask, "word_ids": p.word_ids, "word_chars": word_chars}
            for p in pieces
        ]

    def postprocess(self, item, chunks, outputs, aggregation_strategy="none", ignore_labels=("O",), **_):
        entities = []
        for chunk, logits in zip(chunks, outputs):
            logits = np.asarray(logits, dtype=np.float32)
            e = np.exp(logits - logits.max(axis=-1, keepdims=True))
            scores = e / e.sum(axis=-1, keepdims=True)
            pre = self.gather_pre_entities(chunk, scores, aggregation_strategy)
            grouped = self.aggregate(pre, aggregation_strategy)
            entities.extend(
                x for x in grouped
                if x.get("entity") not in ignore_labels and x.get("entity_group") not in ignore_labels
            )
        if len(chunks) > 1:
            entities = _resolve_overlaps(entities)
        return entities

    # --- tokens -> words -> entities --------------------------------------------------------------
    def gather_pre_entities(self, chunk, scores, strategy):
        tok = self.tokenizer
        sentence, ids = chunk["sentence"], chunk["features"]["input_ids"]
        has_prefix = bool(getattr(tok.backend_tokenizer.model, "continuing_subword_prefix", None))
        out = []
        for idx, token_scores in enumerate(scores):
            if chunk["special"][idx]:
                continue
            word = tok.convert_ids_to_tokens(int(ids[idx]))
            start, end = chunk["offsets"][idx]
            if chunk["word_chars"] is not None and chunk["word_ids"][idx] is not None:
                shift = chunk["word_chars"][chunk["word_ids"][idx]][0]
                start, end = start + shift, end + shift
            word_ref = sentence[start:end]
            if has_prefix:
                is_subword = len(word) != len(word_ref)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1 : start + 1]
            if int(ids[idx]) == tok.unk_token_id:
                word, is_subword = word_ref, False
            out.append({"word": word, "scores": token_scores, "start": int(start), "end": int(end),
                        "index": idx, "is_subword": is_subword})
        return out

    def aggregate(self, pre, strategy):
        labels = self.id2label
        if strategy in ("none", "simple"):
            entities = []
            for p in pre:
                k = int(p["scores"].argmax())
                entities.append({"entity": labels[k], "score": float(p["scores"][k]), "index": p["index"],
                                 "word": p["word"], "start": p["start"], "end": p["end"]})
        else:
            entities, group = [], None
            for p in pre:
                if group is None:
                    group = [p]
                elif p["is_subword"]:
                    group.append(p)
                else:
                    entities.append(self._aggregate_word(group, strategy))
                    group = [p]
            if group is not None:
                entities.append(self._aggregate_word(group, strategy))
        return entities if strategy == "none" else self._group_entities(entities)

    def _aggregate_word(self, pieces, strategy):
        labels = self.id2label
        if strategy == "first":
            scores = pieces[0]["scores"]
        elif strategy == "max":
            scores = max(pieces, key=lambda p: p["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([p["scores"] for p in pieces]), axis=0)
        k = int(scores.argmax())
        return {"entity": labels[k], "score": float(scores[k]),
                "word": self.tokenizer.convert_tokens_to_string([p["word"] for p in pieces]),
                "start": pieces[0]["start"], "end": pieces[-1]["end"]}

    def _group_entities(self, entities):
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = _tag(entity["entity"])
                _, last_tag = _tag(current[-1]["entity"])
                if not (tag == last_tag and bi != "B"):
                    groups.append(self._group(current))
                    current = []
            current.append(entity)
        if current:
            groups.append(self._group(current))
        return groups

    def _group(self, entities):
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([e["score"] for e in entities])),
            "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"], "end": entities[-1]["end"],
        }


def _tag(name):
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name


def _resolve_overlaps(entities):
    """Of entities overlapping across stride windows keep the longest (then the most confident)."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda x: x["start"])
    kept, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, prev_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > prev_length or (length == prev_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            kept.append(previous)
            previous = entity
    kept.append(previous)
    return kept
