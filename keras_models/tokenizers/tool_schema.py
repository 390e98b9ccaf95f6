"""JSON schemas for tool functions (type hints + Google-style docstring), for chat templates."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from enum import Enum

_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
_BASIC = {**{k: {"type": v} for k, v in _SCALARS.items()}, list: {"type": "array"}, tuple: {"type": "array"},
          dict: {"type": "object"}, typing.Any: {}}


class ToolSchemaError(ValueError):
    """A tool function cannot be described as a JSON schema."""


def _enum(values):
    kinds = list(dict.fromkeys(_SCALARS[type(v)] for v in values))
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(values)}


def hint_schema(hint) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None and isinstance(hint, type) and issubclass(hint, Enum):
        values = [m.value for m in hint]
        if not values or any(type(v) not in _SCALARS for v in values):
            raise ToolSchemaError(f"Enum {hint.__name__} must have JSON scalar member values")
        return _enum(values)
    if origin is None:
        if hint in _BASIC:
            return dict(_BASIC[hint])
        raise ToolSchemaError(f"Cannot describe type hint {hint!r} as JSON schema; pass a JSON schema dict instead")
    if origin is typing.Union or origin is types.UnionType:
        subs = [hint_schema(a) for a in args if a is not type(None)]
        if len(subs) == 1:
            out = subs[0]
        elif all(s.keys() == {"type"} and isinstance(s["type"], str) for s in subs):
            names = sorted({s["type"] for s in subs})
            out = {"type": names[0] if len(names) == 1 else names}
        else:
            out = {"anyOf": subs}
        if type(None) in args:
            out["nullable"] = True
        return out
    if origin is typing.Literal and args:
        if any(type(a) not in _SCALARS for a in args):
            raise ToolSchemaError("typing.Literal values must be JSON scalars")
        return _enum(list(args))
    if origin is list:
        return {"type": "array", "items": hint_schema(args[0])} if args else {"type": "array"}
    if origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 1 or ... in args:
            raise ToolSchemaError(f"Tuple hint {hint} is not supported: use list[...] for variable length")
        return {"type": "array", "prefixItems": [hint_schema(a) for a in args]}
    if origin is dict:
        out = {"type": "object"}
        if len(args) == 2:
            out["additionalProperties"] = hint_schema(args[1])
        return out
    raise ToolSchemaError(f"Cannot describe type hint {hint!r} as JSON schema")


_DESCRIPTION = re.compile(r"^(.*?)[\n\s]*(Args:|Returns:|Raises:|\Z)", re.DOTALL)
_ARGS = re.compile(r"\n\s*Args:\n(.*?)[\n\s]*(Returns:|Raises:|\Z)", re.DOTALL)
_RETURNS = re.compile(r"\n\s*Returns:\n\s*(.*?)[\n\s]*(Raises:|\Z)", re.DOTALL)
_ARG_LINE = re.compile(r"(?:^|\n)([ \t]*)(\w+)(?:[ \t]*\([^()\n]*\))?:\s*(.*?)(?=\n\1\w+(?:[ \t]*\([^()\n]*\))?:|\Z)",
                       re.DOTALL)


def parse_docstring(doc: str):
    description = _DESCRIPTION.search(doc)
    args = _ARGS.search(doc)
    returns = _RETURNS.search(doc)
    arg_text = "\n".join(line for line in args.group(1).split("\n") if line.strip()) if args else ""
    arg_docs = {m[1]: re.sub(r"\s*\n+\s*", " ", m[2].strip()) for m in _ARG_LINE.findall(arg_text)}
    return (
        description.group(1).strip() if description else None,
        arg_docs,
        returns.group(1).strip() if returns else None,
    )


def json_schema_for(func) -> dict:
    name = getattr(func, "__name__", "operation")
    doc = inspect.getdoc(func)
    if not doc:
        raise ToolSchemaError(f"Tool {name} has no docstring to describe it")
    description, arg_docs, return_doc = parse_docstring(doc.strip())
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params = list(signature.parameters.items())
    skip = None
    if params and params[0][0] in ("self", "cls") and params[0][1].annotation is inspect.Parameter.empty:
        skip = params[0][0]
    required, properties = [], {}
    for pname, param in params:
        if pname == skip:
            continue
        if param.annotation is inspect.Parameter.empty:
            raise ToolSchemaError(f"Argument {pname} of tool {name} has no type hint")
        if param.default is inspect.Parameter.empty:
            required.append(pname)
    returned = None
    for pname, hint in hints.items():
        if pname == skip:
            continue
        if pname == "return":
            try:
                returned = hint_schema(hint)
            except ToolSchemaError:
                returned = None
            continue
        schema = hint_schema(hint)
        if pname not in arg_docs:
            raise ToolSchemaError(f"The docstring of tool {name} does not describe argument {pname!r}")
        text = arg_docs[pname]
        choices = re.search(r"\(choices:\s*(.*?)\)\s*$", text, flags=re.IGNORECASE)
        if choices:
            schema["enum"] = [c.strip() if isinstance(c, str) else c for c in json.loads(choices.group(1))]
            text = text[: choices.start()].strip()
        schema["description"] = text
        properties[pname] = schema
    parameters = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    function = {"name": name, "description": description, "parameters": parameters}
    if returned is not None:
        if return_doc is not None:
            returned["description"] = return_doc
        function["return"] = returned
    return {"type": "function", "function": function}
