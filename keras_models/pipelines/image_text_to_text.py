"""image-text-to-text: chats with images, or images and a prompt, -> generated text (km.ImageTextToText:
LLaVA, VipLlava), with Transformers 5's arguments and output format.

* A chat: ``pipe(text=messages)`` (or ``pipe(messages)``), where the messages' ``content`` lists hold
  ``{"type": "image", "image": <path | PIL image | array>}`` (``"url"`` / ``"path"`` keys too) and
  ``{"type": "text", "text": ...}`` entries. The processor's chat template renders it (with the
  generation prompt, or continuing the last message when it is the assistant's:
  ``continue_final_message``), the images are taken from the messages in order. Result:
  ``[{"input_text": messages, "generated_text": messages + [{"role": "assistant", "content": new}]}]``
  (with ``return_full_text=False`` ``generated_text`` is the new text only; a chat that ends with an
  assistant message gets the new text appended to that message). A list of chats gives a list of
  such lists.
* Images and a prompt: ``pipe(images=image, text="USER: <image>\\n... ASSISTANT:")`` (the prompt holds
  the model's image placeholder) -> ``[{"input_text": prompt, "generated_text": prompt + new}]``; lists
  of images and prompts run as one padded batch and give one record per prompt.

Greedy decoding unless ``generate_kwargs`` asks otherwise; ``max_new_tokens`` defaults to 256 (as
Transformers' pipeline). The new text is the decoded sequence minus the decoded prompt (special
tokens, image tokens included, skipped), as Transformers does it.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import Pipeline, PipelineError, generation_kwargs

_PARAMS = ("max_new_tokens", "generate_kwargs", "return_full_text", "return_tensors", "continue_final_message",
           "skip_special_tokens", "clean_up_tokenization_spaces", "timeout")


def _is_chat(x):
    return (isinstance(x, (list, tuple)) and bool(x) and isinstance(x[0], dict)
            and all(isinstance(m, dict) and "role" in m for m in x))


def _is_chat_batch(x):
    return isinstance(x, (list, tuple)) and bool(x) and all(_is_chat(c) for c in x)


class ImageTextToTextPipeline(Pipeline):
    task = "image-text-to-text"
    call_params = _PARAMS

    def __init__(self, model, tokenizer=None, **kwargs):
        super().__init__(model, tokenizer=tokenizer, **kwargs)
        self.processor = getattr(model, "preprocessor", None)
        if (self.tokenizer is None or self.processor is None
                or getattr(self.processor, "image_processor", None) is None):
            raise PipelineError(f"{self.task}: the model needs its processor (tokenizer files and "
                                "preprocessor_config.json in its preset)")
        if getattr(self.tokenizer, "padding_side", None) == "right":
            self.tokenizer.padding_side = "left"  # a decoder generates after the prompt (as Transformers)

    def __call__(self, images=None, text=None, **kwargs):
        kwargs.pop("batch_size", None)  # one generate call per input (a prompt list is one batch)
        kwargs.pop("progress", None)
        if "image" in kwargs and images is None:
            images = kwargs.pop("image")
        params = {**self.defaults, **self._check_params(kwargs)}
        gen = self._generate_kwargs(params)
        if images is None and text is None:
            raise PipelineError(f"{self.task}: give text= (a prompt or a chat) and/or images=")
        if text is None and (_is_chat(images) or _is_chat_batch(images)):
            images, text = None, images
        if _is_chat(text) or _is_chat_batch(text):
            if images is not None:
                raise PipelineError(f"{self.task}: images= cannot be given with a chat; put the images in the "
                                    "messages' content ({'type': 'image', 'image': ...})")
            if _is_chat(text):
                return self._chat(list(text), gen, params)
            return [self._chat(list(c), gen, params) for c in text]
        if text is None:
            raise PipelineError(f"{self.task}: text= is needed (a prompt holding the image placeholder, or a chat)")
        if isinstance(text, (list, tuple)):
            if not text or not all(isinstance(t, str) for t in text):
                raise PipelineError(f"{self.task}: text must be a str, a list of str, or a chat (list of "
                                    "{'role', 'content'} dicts)")
            prompts = list(text)
        elif isinstance(text, str):
            prompts = [text]
        else:
            raise PipelineError(f"{self.task}: text must be a str, a list of str or a chat, got "
                                f"{type(text).__name__}")
        enc = self.processor(text=prompts, images=self._load(images, params), padding=True)
        return self._records(enc, prompts, gen, params)

    # --- arguments ----------------------------------------------------------------------------------
    def _generate_kwargs(self, params):
        gen = generation_kwargs(self.task, params)
        if params.get("return_full_text") is not None and params.get("return_tensors"):
            raise PipelineError(f"{self.task}: return_full_text and return_tensors cannot be used together")
        return gen

    def _load(self, images, params):
        if images is None:
            return None
        from keras_models.preprocessing.image_io import load_image

        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        flat = []
        for im in (images if isinstance(images, (list, tuple)) else [images]):
            flat.extend(im if isinstance(im, (list, tuple)) else [im])
        return [load_image(im, what="images") for im in flat]

    # --- a chat -------------------------------------------------------------------------------------
    def _chat(self, messages, gen, params):
        cont = params.get("continue_final_message")
        if cont is None:
            cont = messages[-1].get("role") == "assistant"
        images = []
        for i, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, (list, tuple)):
                continue
            for entry in content:
                if isinstance(entry, dict) and entry.get("type") == "image":
                    source = next((entry[k] for k in ("image", "url", "path") if entry.get(k) is not None), None)
                    if source is None:
                        raise PipelineError(f"{self.task}: messages[{i}] has an image entry without an 'image', "
                                            "'url' or 'path'")
                    images.append(source)
        enc = self.processor.apply_chat_template(messages, add_generation_prompt=not cont,
                                                 continue_final_message=bool(cont), tokenize=True,
                                                 images=self._load(images, params) or None)
        return self._records(enc, [messages], gen, params, chat_continues=bool(cont))

    # --- generate and decode ------------------------------------------------------------------------
    def _records(self, enc, prompts, gen, params, chat_continues=False):
        enc = dict(enc)
        ids = np.asarray(enc["input_ids"]).reshape(len(prompts), -1)
        enc["input_ids"] = ids.astype("int32")
        if "attention_mask" in enc:
            enc["attention_mask"] = np.asarray(enc["attention_mask"]).reshape(ids.shape).astype("int32")
        if enc.get("pixel_values") is None:
            enc.pop("pixel_values", None)
        out = np.asarray(self.model.generate(enc, **gen))
        out = out.reshape(-1, out.shape[-1])
        per = out.shape[0] // len(prompts)
        if params.get("return_tensors"):
            return [{"input_text": prompts[i // per], "generated_token_ids": row.tolist()}
                    for i, row in enumerate(out)]
        skip = params.get("skip_special_tokens")
        skip = True if skip is None else skip
        cleanup = params.get("clean_up_tokenization_spaces")
        full = params.get("return_full_text")
        full = True if full is None else full

        def decode(row):
            return self.tokenizer.decode(np.asarray(row).tolist(), skip_special_tokens=skip,
                                         clean_up_tokenization_spaces=cleanup)

        prompt_texts = [decode(row) for row in ids]
        records = []
        for i, row in enumerate(out):
            prompt, said = prompts[i // per], prompt_texts[i // per]
            text = decode(row)
            at = text.find(said)
            if 0 <= at <= 2:  # the prompt's own text (up to 2 leading characters) is not new text
                text = text[at + len(said):]
            if full:
                text = _full_text(prompt, text, chat_continues)
            records.append({"input_text": prompt, "generated_text": text})
        return records


def _full_text(prompt, new, continues):
    if isinstance(prompt, str):
        return prompt + new
    messages = list(prompt)
    if not continues:
        return messages + [{"role": "assistant", "content": new}]
    last = messages[-1]
    content = last["content"]
    if isinstance(content, str):
        content = content + new
    else:
        tail = dict(content[-1])
        tail["text"] = tail.get("text", "") + new
        content = list(content[:-1]) + [tail]
    return messages[:-1] + [{"role": last["role"], "content": content}]


__all__ = ["ImageTextToTextPipeline"]
