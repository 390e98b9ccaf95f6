"""Streamers: receive tokens as they are generated (Transformers' TextStreamer and
TextIteratorStreamer, plus TokenCallbackStreamer for a plain function).

``generate`` calls ``put(ids)`` once with the prompt ids (batch 1: a 1-D array), then once per
new token, and ``end()`` at the end. Streaming needs a batch of 1, like Transformers.
"""

from __future__ import annotations

import queue
import unicodedata

import numpy as np


class BaseStreamer:
    def put(self, value):
        raise NotImplementedError

    def end(self):
        raise NotImplementedError


class TokenCallbackStreamer(BaseStreamer):
    """Calls ``callback(token_ids: list[int])`` for every new token (and the prompt unless
    ``skip_prompt``), and ``on_end()`` when given."""

    def __init__(self, callback, skip_prompt=True, on_end=None):
        self.callback = callback
        self.skip_prompt = skip_prompt
        self.on_end = on_end
        self._prompt_seen = False

    def put(self, value):
        ids = np.asarray(value).reshape(-1).tolist()
        if not self._prompt_seen:
            self._prompt_seen = True
            if self.skip_prompt:
                return
        self.callback(ids)

    def end(self):
        self._prompt_seen = False
        if self.on_end is not None:
            self.on_end()


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class TextStreamer(BaseStreamer):
    """Prints text as soon as whole words are ready (``on_finalized_text`` can be overridden).

    Decodes the ids seen so far and releases text up to the last space or newline (or a whole CJK
    character), so that tokens that only make sense together are printed together.
    """

    def __init__(self, tokenizer, skip_prompt=False, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.token_cache = []
        self.print_len = 0
        self.next_tokens_are_prompt = True

    def put(self, value):
        value = np.asarray(value)
        if value.ndim > 1 and value.shape[0] > 1:
            raise ValueError("TextStreamer only supports a batch of 1")
        ids = value.reshape(-1).tolist()
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.next_tokens_are_prompt = False
        self.token_cache.extend(ids)
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        if text.endswith("\n"):
            printable = text[self.print_len :]
            self.token_cache = []
            self.print_len = 0
        elif text and _is_cjk(ord(text[-1])):
            printable = text[self.print_len :]
            self.print_len += len(printable)
        elif text.endswith("\ufffd"):
            printable = ""  # an incomplete multi-byte character: wait for the next token
        else:
            cut = text.rfind(" ") + 1
            printable = text[self.print_len : cut] if cut > self.print_len else ""
            self.print_len += len(printable)
        self.on_finalized_text(printable)

    def end(self):
        if self.token_cache:
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            printable = text[self.print_len :]
        else:
            printable = ""
        self.token_cache = []
        self.print_len = 0
        self.next_tokens_are_prompt = True
        self.on_finalized_text(printable, stream_end=True)

    def on_finalized_text(self, text, stream_end=False):
        print(unicodedata.normalize("NFC", text) if text else text, flush=True, end="" if not stream_end else None)


class TextIteratorStreamer(TextStreamer):
    """Puts finalized text on a queue; iterate over it (typically while ``generate`` runs in a
    thread). ``timeout`` (seconds) raises ``queue.Empty`` when no text arrives in time."""

    def __init__(self, tokenizer, skip_prompt=False, timeout=None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue = queue.Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text, stream_end=False):
        if text:
            self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self):
        value = self.text_queue.get(timeout=self.timeout)
        if value is self.stop_signal:
            raise StopIteration()
        return value


def as_streamer(streamer):
    """A streamer object, or a plain callable wrapped as a TokenCallbackStreamer."""
    if streamer is None or (hasattr(streamer, "put") and hasattr(streamer, "end")):
        return streamer
    if callable(streamer):
        return TokenCallbackStreamer(streamer)
    raise TypeError(f"streamer must have put()/end() or be callable, got {type(streamer).__name__}")
