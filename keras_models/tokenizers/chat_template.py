"""Chat templates: render a conversation with the checkpoint's jinja2 template, as Transformers does.

Templates come from model repositories, so they are untrusted code: they run in jinja2's
``ImmutableSandboxedEnvironment`` and only see plain JSON-like data (strings, numbers, lists,
dicts). The environment matches Transformers': ``trim_blocks`` / ``lstrip_blocks``, the loop
controls extension (``break`` / ``continue``), a ``{% generation %}`` block, and the helpers
``raise_exception``, ``tojson`` (no HTML escaping), ``strftime_now``, ``dict`` and ``namespace``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime

import numpy as np

from keras_models.errors import ChatTemplateError, KerasModelsError

_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "
# (chunks rendered so far, [(start, end) character spans of {% generation %} blocks]) while tracking
_TRACKER: ContextVar = ContextVar("keras_models_generation_tracker", default=None)


@functools.lru_cache(maxsize=32)
def compile_template(source: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` marks assistant text; rendering is unchanged,
        and while a tracker is active the block's character span is recorded."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            text = caller()
            tracking = _TRACKER.get()
            if tracking is not None:
                chunks, spans = tracking
                start = sum(len(c) for c in chunks)
                spans.append((start, start + len(text)))
            return text

    class SafeNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                SafeNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            SafeNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} may not start with '_'")

    class DictFactory:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        """The sandbox, with ``*`` and ``**`` refused when their result would be huge (a template
        such as ``{{ 'a' * 10**10 }}`` would otherwise allocate gigabytes)."""

        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_RENDERED:
                        raise jinja2.exceptions.SecurityError(
                            f"the template repeats a sequence {n} times (over {MAX_RENDERED} items)")
            elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                if right * math.log2(abs(left)) > 4096:
                    raise jinja2.exceptions.SecurityError(f"the template computes {left} ** {right} (too large)")
            return super().call_binop(context, operator, left, right)

    env = BoundedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals.update(
        raise_exception=raise_exception, strftime_now=strftime_now, dict=DictFactory(), namespace=SafeNamespace
    )
    return env.from_string(source)


def plain_data(value):
    """Rebuild ``value`` from plain JSON types; anything else becomes an inert ``<TypeName>`` string."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_data(v) for v in value)
    if isinstance(value, np.generic):
        return plain_data(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return plain_data(value.model_dump())
    return f"<{type(value).__name__}>"


def _messages(conversation) -> list[dict]:
    messages = getattr(conversation, "messages", conversation)
    if isinstance(messages, (str, bytes, Mapping)) or not hasattr(messages, "__iter__"):
        raise _error(TypeError, f"conversation: expected a list of message dicts, got {type(messages).__name__} {messages!r:.80}")
    out = []
    for message in messages:
        if dataclasses.is_dataclass(message) and not isinstance(message, type):
            message = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
        elif callable(getattr(message, "model_dump", None)):
            message = message.model_dump()
        if not isinstance(message, Mapping):
            raise _error(TypeError, f"conversation: chat messages must be dicts, got {message!r}")
        # keys set to None are dropped: templates handle a missing key better than a None
        out.append({k: v for k, v in message.items() if v is not None})
    return out


def _alias_reasoning(chat):
    out = []
    for message in chat:
        reasoning = next((message[k] for k in _REASONING_KEYS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


MAX_RENDERED = 10_000_000  # characters / items a template may build by repetition


def _error(base, message):
    """A ChatTemplateError that is also ``base`` (TypeError, ValueError or jinja2's TemplateError)."""
    return _error_class(base)(message)


_ERROR_CLASSES = {}


def _error_class(base):
    cls = _ERROR_CLASSES.get(base)
    if cls is None:
        class TypedChatTemplateError(ChatTemplateError, base):
            pass

        TypedChatTemplateError.__name__ = TypedChatTemplateError.__qualname__ = f"ChatTemplateError[{base.__name__}]"
        cls = _ERROR_CLASSES[base] = TypedChatTemplateError
    return cls


def _template_source(tok, chat_template):
    if chat_template is not None and not (isinstance(tok.chat_template, dict) and chat_template in tok.chat_template):
        return "the chat_template argument"
    where = tok.name_or_path or "memory"
    return f"the chat template of the tokenizer from {where} (tokenizer_config.json / chat_template.jinja)"


@contextlib.contextmanager
def _template_errors(source):
    import jinja2

    try:
        yield
    except KerasModelsError:
        raise
    except jinja2.exceptions.TemplateError as e:
        message = f"{source}: {type(e).__name__}: {e}"
        # keep jinja2's own class where it is built from a message alone (not TemplateSyntaxError)
        kind = type(e) if type(e) in (jinja2.exceptions.SecurityError, jinja2.exceptions.UndefinedError) \
            else jinja2.exceptions.TemplateError
        raise _error(kind, message) from e
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError,
            RecursionError) as e:
        raise _error(ValueError, f"{source} failed while rendering: {type(e).__name__}: {e}") from e


def select_template(tok, chat_template=None, tools=None) -> str:
    templates = tok.chat_template
    if isinstance(templates, dict):
        if chat_template is not None and chat_template in templates:
            return templates[chat_template]
        if chat_template is None:
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise _error(ValueError,
                f"This tokenizer has several chat templates and none is the default: pass one of "
                f"{sorted(templates)} as chat_template"
            )
        return chat_template
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise _error(ValueError,
            f"Tokenizer from {tok.name_or_path or 'memory'} has no chat template (no chat_template in "
            "tokenizer_config.json and no chat_template.jinja): pass chat_template=..."
        )
    return templates


def _tool_schemas(tools):
    if tools is None:
        return None
    schemas = []
    for tool in tools:
        if isinstance(tool, Mapping):
            schemas.append(tool)
        elif callable(tool):
            from keras_models.tokenizers.tool_schema import json_schema_for

            schemas.append(json_schema_for(tool))
        else:
            raise _error(ValueError, "tools must be JSON schema dicts or functions with type hints and a docstring")
    return schemas


def render(
    template: str,
    conversations,
    tools=None,
    documents=None,
    add_generation_prompt=False,
    continue_final_message=False,
    spans_out=None,
    template_source="the chat template",
    **kwargs,
) -> list[str]:
    """Render each conversation; with ``spans_out`` (a list), append each one's generation spans.
    Errors of the template itself (syntax, ``raise_exception``, undefined values, sandbox refusals)
    are raised as :class:`~keras_models.errors.ChatTemplateError` naming ``template_source``."""
    with _template_errors(template_source):
        return _render(template, conversations, tools, documents, add_generation_prompt,
                       continue_final_message, spans_out, kwargs)


def _render(template, conversations, tools, documents, add_generation_prompt, continue_final_message,
            spans_out, kwargs):
    compiled = compile_template(template)
    tools = plain_data(_tool_schemas(tools))
    if documents is not None and not all(isinstance(d, Mapping) for d in documents):
        raise _error(TypeError, "documents must be a list of dicts with 'title' and 'text' keys")
    documents = plain_data(documents)
    kwargs = plain_data(kwargs)
    rendered = []
    for chat in conversations:
        chat = _alias_reasoning(plain_data(chat))
        final = None
        if continue_final_message:
            if not chat:
                raise _error(ValueError, "continue_final_message is set but the conversation is empty")
            key = continue_final_message if isinstance(continue_final_message, str) else "content"
            final = chat[-1].get(key)
            if final is None:
                raise _error(ValueError, f"continue_final_message is set but the final message has no {key!r}")
            keys = [key]
            if key in _REASONING_KEYS:
                keys = [k for k in _REASONING_KEYS if chat[-1].get(k) == final]
            if not any(k in template for k in keys):
                raise _error(ValueError, f"continue_final_message is set to {key!r} but the chat template never reads it")
            if isinstance(final, (list, tuple)):
                for block in reversed(final):
                    if "text" in block:
                        final = block["text"]
                        block["text"] = block["text"] + _CONTINUE_TAG
                        break
                else:
                    raise _error(ValueError, "continue_final_message is set but the final message has no text block")
            else:
                for k in keys:
                    chat[-1][k] = chat[-1][k] + _CONTINUE_TAG
        variables = dict(
            messages=chat, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt, **kwargs
        )
        if spans_out is None:
            text = compiled.render(**variables)
        else:
            chunks, spans = [], []
            token = _TRACKER.set((chunks, spans))
            try:
                for chunk in compiled.generate(**variables):
                    chunks.append(chunk)
            finally:
                _TRACKER.reset(token)
            text = "".join(chunks)
            spans_out.append(spans)
        if continue_final_message:
            tag = _CONTINUE_TAG.strip()
            if final.strip() not in text or tag not in text:
                raise _error(ValueError, "continue_final_message is set but the template dropped part of the final message")
            at = text.rindex(tag)
            text = text[:at] if text[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:at].rstrip()
        rendered.append(text)
    return rendered


def apply_chat_template(
    tok,
    conversation,
    tools=None,
    documents=None,
    chat_template=None,
    add_generation_prompt=False,
    continue_final_message=False,
    tokenize=True,
    padding=False,
    truncation=False,
    max_length=None,
    return_tensors=None,
    return_dict=True,
    return_assistant_tokens_mask=False,
    tokenizer_kwargs=None,
    sanitize_control_tokens=False,
    **kwargs,
):
    """Transformers' ``apply_chat_template``: the rendered text (``tokenize=False``), the ids, or
    the tokenizer's output dict (``return_dict=True``, the default when tokenizing), with
    ``assistant_masks`` (1 on tokens inside ``{% generation %}`` blocks) when asked."""
    if add_generation_prompt and continue_final_message:
        raise _error(ValueError, "continue_final_message and add_generation_prompt cannot be used together")
    if sanitize_control_tokens:
        raise NotImplementedError("sanitize_control_tokens=True is not supported by keras_models' chat templates")
    if return_assistant_tokens_mask and not (tokenize and return_dict):
        raise _error(ValueError, "return_assistant_tokens_mask=True needs tokenize=True and return_dict=True")
    if return_assistant_tokens_mask and continue_final_message:
        raise _error(ValueError, "continue_final_message cannot be combined with return_assistant_tokens_mask")
    template = select_template(tok, chat_template, tools)
    if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
        raise _error(ValueError, "conversation: cannot apply a chat template to an empty conversation")
    if not isinstance(conversation, (list, tuple)) and not hasattr(conversation, "messages"):
        raise _error(TypeError, f"conversation: expected a list of message dicts, got {type(conversation).__name__}")
    batched = isinstance(conversation, (list, tuple)) and (
        isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
    )
    conversations = [_messages(c) for c in (conversation if batched else [conversation])]
    template_kwargs = {**tok.special_tokens_map, **kwargs}
    spans = [] if return_assistant_tokens_mask else None
    rendered = render(
        template,
        conversations,
        tools=tools,
        documents=documents,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message,
        spans_out=spans,
        template_source=_template_source(tok, chat_template),
        **template_kwargs,
    )
    text = rendered if batched else rendered[0]
    if not tokenize:
        return text
    tokenizer_kwargs = dict(tokenizer_kwargs or {})
    keep_offsets = bool(tokenizer_kwargs.get("return_offsets_mapping"))
    if return_assistant_tokens_mask:
        tokenizer_kwargs["return_offsets_mapping"] = True
    out = tok(
        text,
        add_special_tokens=False,
        padding=padding,
        truncation=truncation,
        max_length=max_length,
        return_tensors=return_tensors,
        **tokenizer_kwargs,
    )
    if not return_dict:
        return out["input_ids"]
    if return_assistant_tokens_mask:
        offsets = out["offset_mapping"] if keep_offsets else out.pop("offset_mapping")
        rows = offsets if (batched or return_tensors) else [offsets]
        masks = [_assistant_mask(_rows_of(row), s) for row, s in zip(rows, spans)]
        if return_tensors == "np":
            import numpy as _np

            out["assistant_masks"] = _np.asarray(masks, dtype=_np.int32)
        else:
            out["assistant_masks"] = masks if batched else masks[0]
    return out


def _rows_of(offsets):
    return offsets.tolist() if hasattr(offsets, "tolist") else offsets


def _assistant_mask(offsets, spans):
    """1 for tokens overlapping a generation span (offsets and spans sorted by position)."""
    mask, k = [0] * len(offsets), 0
    for i, (start, end) in enumerate(offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if end > spans[k][0]:
            mask[i] = 1
    return mask
