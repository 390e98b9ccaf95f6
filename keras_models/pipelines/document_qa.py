"""document-question-answering: answer a question about a document, with Transformers' arguments
and output format.

* Extractive (LayoutLM-like km.QuestionAnswerer taking ``bbox``): the document is the user's
  ``word_boxes`` -- ``[(word, [x0, y0, x1, y1]), ...]``, boxes normalised to 0-1000. Transformers
  runs Tesseract OCR (pytesseract) on an image given without them; keras-models runs no OCR, so
  ``word_boxes`` are required. The question's words and the document's words are tokenized as a
  pair (the document cut into windows of ``max_seq_len`` tokens overlapping by ``doc_stride``);
  each token gets its word's box ([1000] * 4 for a separator, [0] * 4 otherwise). Span scores as
  extractive question answering (``p_start * p_end`` over the document tokens, CLS kept),
  answers ``[{"score", "answer", "start", "end"}]`` best first, ``top_k`` of them (default 1);
  ``start`` / ``end`` are word indices into ``word_boxes`` and ``answer`` the words joined by
  spaces.
* LayoutLMv2 / LayoutXLM / LayoutLMv3 (model_type 'layoutlmv2' / 'layoutlmv3'): as above, but the
  boxes are placed as their tokenizers place them -- the word's box on its pieces, the question's
  pieces on ``pad_token_box``, ``cls_token_box`` / ``sep_token_box`` on the special tokens (from
  tokenizer_config.json; the class defaults otherwise: [SEP] at [1000] * 4 for v2 / XLM, all
  zeros for v3). LayoutLMv2 / LayoutXLM also read the page image (its image processor, OCR off):
  ``image=`` is required. LayoutLMv3 answers from the words alone, as Transformers 5.25's pipeline
  does: that pipeline hands the page image to the model as ``image=``, which LayoutLMv3 ignores.
* Generative (Donut: VisionEncoderDecoder with a DonutSwin encoder, km.ImageToText): greedy
  decoding from the prompt ``<s_docvqa><s_question>{question}</s_question><s_answer>``;
  ``[{"answer"}]``, the text between ``<s_answer>`` and ``</s_answer>`` (None when the answer is
  not closed). 256 new tokens at most by default; ``max_new_tokens=`` / ``generate_kwargs=``.

Pix2Struct DocVQA checkpoints are refused: Transformers' pipeline has no Pix2Struct path (the
question never reaches the image processor as ``header_text``), so there is nothing to match;
the error says how to call the model directly (a TrueType font renders the question).

Inputs: ``pipe(image, question, word_boxes=None)``, or ``{"image", "question", "word_boxes"}``
dicts (one, or a list: one answer list each).
"""

from __future__ import annotations

import re

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError, generation_kwargs, to_numpy
from keras_models.pipelines.question_answering import select_spans

NO_OCR = ("document-question-answering: pass word_boxes=[(word, [x0, y0, x1, y1]), ...] (boxes normalised "
          "to 0-1000). Transformers would run Tesseract OCR (the pytesseract package) on an image given "
          "without word_boxes; keras-models runs no OCR")


class DocumentQuestionAnsweringPipeline(Pipeline):
    task = "document-question-answering"
    call_params = ("top_k", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len",
                   "handle_impossible_answer", "padding", "lang", "tesseract_config", "timeout",
                   "max_new_tokens", "generate_kwargs")

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self._require_tokenizer()
        from keras_models.tasks.image_to_text import ImageToText

        self.generative = isinstance(model, ImageToText)
        self.image_processor = getattr(getattr(model, "preprocessor", None), "image_processor", None)
        if self.generative:
            encoder = (self.hf_config.get("encoder") or {}).get("model_type")
            kind = self.hf_config.get("model_type")
            if kind == "pix2struct":
                raise PipelineError(
                    f"{self.task}: Pix2Struct (DocVQA) is not answered by this pipeline: Transformers' "
                    "document-question-answering pipeline has no Pix2Struct path (it never passes the question "
                    "to the image processor as header_text and fails), so there is no behaviour to match. "
                    "Render the question yourself: model.preprocessor.image_processor(images, header_text="
                    "question, font_path=<a .ttf file>) and model.generate(...), then decode")
            if kind not in (None, "vision-encoder-decoder"):
                raise PipelineError(f"{self.task}: the generative models this pipeline answers with are Donut "
                                    f"checkpoints (VisionEncoderDecoder with a donut-swin encoder); this one is "
                                    f"{kind!r}")
            if kind == "vision-encoder-decoder" and encoder != "donut-swin":
                raise PipelineError(f"{self.task}: the only VisionEncoderDecoder this pipeline answers with is "
                                    f"Donut (a donut-swin encoder); this checkpoint's encoder is {encoder!r}")
            if self.image_processor is None:
                raise PipelineError(f"{self.task}: the model has no image processor (preprocessor_config.json)")
        else:
            self.layout = self.hf_config.get("model_type", "layoutlm")
            if self.layout not in ("layoutlm", "layoutlmv2", "layoutlmv3"):
                raise PipelineError(f"{self.task}: extractive answers are supported for LayoutLM, LayoutLMv2, "
                                    f"LayoutXLM and LayoutLMv3 checkpoints (model_type 'layoutlm', 'layoutlmv2', "
                                    f"'layoutlmv3'); this one is {self.layout!r}")
            self.special_boxes = self._special_boxes() if self.layout != "layoutlm" else None
            if self.layout == "layoutlmv2" and self.image_processor is None:
                raise PipelineError(f"{self.task}: LayoutLMv2 / LayoutXLM read the page image: the checkpoint "
                                    "needs its image processor (preprocessor_config.json)")

    def __call__(self, image=None, question=None, word_boxes=None, **kwargs):
        if isinstance(question, str):
            inputs = {"question": question, "image": image}
            if word_boxes is not None:
                inputs["word_boxes"] = word_boxes
        elif question is not None:
            raise PipelineError(f"{self.task}: question must be a str, got {type(question).__name__}")
        elif image is None:
            raise PipelineError(f"{self.task}: give image= and question= (and word_boxes=), or "
                                "{'image', 'question', 'word_boxes'} dicts")
        else:
            inputs = image
        return super().__call__(inputs, **kwargs)

    def normalize_inputs(self, inputs, params):
        single = isinstance(inputs, dict)
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items:
            raise PipelineError(f"{self.task}: give image= and question=, or a list of {{'image', 'question'}} "
                                "dicts")
        for item in items:
            if not isinstance(item, dict) or "question" not in item:
                raise PipelineError(f"{self.task}: each input is a dict with 'question' (and 'image' / "
                                    f"'word_boxes'), got {item!r:.80}")
            if not isinstance(item["question"], str) or not item["question"].strip():
                raise PipelineError(f"{self.task}: 'question' must be a non-empty str")
            if self.generative:
                if item.get("image") is None:
                    raise PipelineError(f"{self.task}: Donut answers from the image: pass image=")
            elif item.get("word_boxes") is None:
                raise PipelineError(NO_OCR)
            elif self.layout == "layoutlmv2" and item.get("image") is None:
                raise PipelineError(f"{self.task}: LayoutLMv2 / LayoutXLM answer from the words and the page "
                                    "image: pass image= as well as word_boxes=")
            else:
                _check_word_boxes(self.task, item["word_boxes"])
        return single, [dict(item) for item in items]

    def prepare_params(self, params):
        for name in ("top_k", "max_answer_len"):
            value = params.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise PipelineError(f"{self.task}: {name} must be >= 1 (got {value!r})")
        if self.generative:
            return {"top_k": params.get("top_k") or 1, "generate_kwargs": generation_kwargs(self.task, params)}
        max_seq_len = params.get("max_seq_len")
        if max_seq_len is None:
            limit = getattr(self.tokenizer, "model_max_length", None)
            max_seq_len = int(limit) if isinstance(limit, int) and 0 < limit < int(1e20) else self.max_length()
        doc_stride = params.get("doc_stride")
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 256)
        if params.get("padding") not in (None, False, "do_not_pad"):
            raise PipelineError(f"{self.task}: padding={params['padding']!r} is not supported (windows are "
                                "padded per batch)")
        if getattr(self.tokenizer, "padding_side", "right") not in (None, "right"):
            raise PipelineError(f"{self.task}: the tokenizer must pad on the right, not "
                                f"{self.tokenizer.padding_side!r}")
        return {"top_k": params.get("top_k") or 1, "max_answer_len": params.get("max_answer_len") or 15,
                "handle_impossible_answer": bool(params.get("handle_impossible_answer") or False),
                "max_seq_len": max_seq_len, "doc_stride": doc_stride}

    # --- preprocessing ------------------------------------------------------------------------------
    def preprocess(self, item, **params):
        if self.generative:
            return self._donut_chunks(item)
        return self._layout_chunks(item, params["max_seq_len"], params["doc_stride"])

    def _layout_chunks(self, item, max_seq_len, doc_stride):
        tok = self.tokenizer
        words = [str(w) for w, _ in item["word_boxes"]]
        boxes = [[int(v) for v in b] for _, b in item["word_boxes"]]
        try:
            enc = tok._encode_batch([item["question"].split()], [words], truncation="only_second",
                                    max_length=max_seq_len, stride=doc_stride, is_split_into_words=True)[0]
        except Exception as e:  # the Rust tokenizer rejects a stride that leaves no room
            raise PipelineError(f"{self.task}: cannot split the document with max_seq_len={max_seq_len}, "
                                f"doc_stride={doc_stride}: {e}") from e
        chunks = []
        pixels = None
        if self.layout == "layoutlmv2":
            from keras_models.preprocessing.image_io import load_image

            pixels = np.asarray(self.image_processor([load_image(item["image"])])["pixel_values"][0])
        for span in [enc] + list(enc.overflowing):
            p_mask = [0 if i == tok.cls_token_id else int(s != 1) for i, s in zip(span.ids, span.sequence_ids)]
            if self.layout == "layoutlm":  # the pipeline places the boxes
                bbox = [boxes[w] if s == 1 else [1000] * 4 if i == tok.sep_token_id else [0] * 4
                        for i, s, w in zip(span.ids, span.sequence_ids, span.word_ids)]
            else:  # as LayoutLMv2 / LayoutXLM / LayoutLMv3 tokenizers: the config's special boxes
                bbox = [self._token_box(i, s, w, boxes) for i, s, w in zip(span.ids, span.sequence_ids,
                                                                              span.word_ids)]
            features = {"input_ids": np.asarray(span.ids, np.int32),
                        "attention_mask": np.asarray(span.attention_mask, np.int32),
                        "token_type_ids": np.asarray(span.type_ids, np.int32),
                        "bbox": np.asarray(bbox, np.int32).reshape(-1, 4)}
            if pixels is not None:
                features["pixel_values"] = pixels
            chunks.append({"features": features, "p_mask": p_mask, "word_ids": list(span.word_ids),
                           "words": words})
        return chunks

    def _special_boxes(self):
        """cls / sep / pad token boxes: tokenizer_config.json's, else the tokenizer class defaults
        (LayoutLMv2 / LayoutXLM: [SEP] at [1000] * 4; LayoutLMv3: all [0] * 4)."""
        config = getattr(self.tokenizer, "init_config", None) or {}
        sep = [1000] * 4 if self.layout == "layoutlmv2" else [0] * 4
        out = {}
        for name, default in (("cls", [0] * 4), ("sep", sep), ("pad", [0] * 4)):
            value = config.get(f"{name}_token_box")
            value = default if value is None else value
            if not (isinstance(value, (list, tuple)) and len(value) == 4
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
                raise PipelineError(f"{self.task}: tokenizer_config.json {name}_token_box must be 4 integers, "
                                    f"got {value!r}")
            out[name] = list(value)
        return out

    def _token_box(self, token, sequence, word, boxes):
        special, tok = self.special_boxes, self.tokenizer
        if word is not None:
            return special["pad"] if sequence == 0 else boxes[word]
        if token == tok.cls_token_id:
            return special["cls"]
        return special["pad"] if token == tok.pad_token_id and token != tok.sep_token_id else special["sep"]

    def _donut_chunks(self, item):
        from keras_models.preprocessing.image_io import load_image

        prompt = f"<s_docvqa><s_question>{item['question']}</s_question><s_answer>"
        ids = self.tokenizer([prompt], add_special_tokens=False)["input_ids"]
        pixels = self.image_processor([load_image(item["image"])])["pixel_values"]
        return [{"pixel_values": np.asarray(pixels[0], np.float32), "prompt": np.asarray(ids[0], np.int32)}]

    # --- model calls --------------------------------------------------------------------------------
    def forward(self, chunks, generate_kwargs=None, **_):
        if self.generative:  # one document at a time: prompts differ in length
            return [np.asarray(self.model.generate(c["pixel_values"][None], decoder_input_ids=c["prompt"][None],
                                                   **(generate_kwargs or {})))[0] for c in chunks]
        longest = max(len(c["features"]["input_ids"]) for c in chunks)
        batch = {}
        for name in chunks[0]["features"]:
            pad = (getattr(self.tokenizer, "pad_token_id", None) or 0) if name == "input_ids" else 0
            if name == "pixel_values":
                batch[name] = np.stack([c["features"][name] for c in chunks])
                continue
            rows = []
            for c in chunks:
                row = c["features"][name]
                fill = np.full((longest - len(row),) + row.shape[1:], pad, np.int32)
                rows.append(np.concatenate([row, fill]))
            batch[name] = np.stack(rows)
        out = to_numpy(self.model.predict_on_batch(batch))
        n = [len(c["features"]["input_ids"]) for c in chunks]
        return [{"start": out["start_logits"][i, : n[i]], "end": out["end_logits"][i, : n[i]]}
                for i in range(len(chunks))]

    # --- answers ------------------------------------------------------------------------------------
    def postprocess(self, item, chunks, outputs, top_k=1, max_answer_len=15, handle_impossible_answer=False, **_):
        if self.generative:
            answers = [self._donut_answer(o) for o in outputs]
        else:
            answers, min_null = [], 1000000.0
            for chunk, out in zip(chunks, outputs):
                starts, ends, scores, min_null = select_spans(
                    out["start"], out["end"], chunk["p_mask"], chunk["features"]["attention_mask"], min_null,
                    top_k, handle_impossible_answer, max_answer_len)
                words, word_ids = chunk["words"], chunk["word_ids"]
                for s, e, score in zip(starts, ends, scores):
                    first, last = word_ids[int(s)], word_ids[int(e)]
                    if first is not None and last is not None:
                        answers.append({"score": float(score), "answer": " ".join(words[first: last + 1]),
                                        "start": first, "end": last})
            if handle_impossible_answer:
                answers.append({"score": min_null, "answer": "", "start": 0, "end": 0})
        return sorted(answers, key=lambda a: a.get("score", 0), reverse=True)[:top_k]

    def _donut_answer(self, ids):
        text = self.tokenizer.decode(np.asarray(ids).tolist(), skip_special_tokens=False)
        for special in (getattr(self.tokenizer, "eos_token", None), getattr(self.tokenizer, "pad_token", None)):
            if special:
                text = text.replace(special, "")
        text = re.sub(r"<.*?>", "", text, count=1).strip()  # the task start token
        found = re.search(r"<s_answer>(.*)</s_answer>", text)
        return {"answer": None if found is None else found.group(1).strip()}


def _check_word_boxes(task, word_boxes):
    if not isinstance(word_boxes, (list, tuple)) or not word_boxes:
        raise PipelineError(f"{task}: word_boxes must be a non-empty list of (word, [x0, y0, x1, y1]) pairs")
    for pair in word_boxes:
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
        box = pair[1] if ok else None
        if not ok or not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4:
            raise PipelineError(f"{task}: each word_boxes entry is (word, [x0, y0, x1, y1]), got {pair!r:.80}")


__all__ = ["DocumentQuestionAnsweringPipeline"]
