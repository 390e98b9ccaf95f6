"""apply_chat_template output equals Transformers' for real-world template styles."""

import jinja2
import pytest
from chat_templates import TEMPLATES
from tok_refs import hf_tokenizer, ref_dir

from keras_models.tokenizers import Tokenizer

CHATS = {
    "basic": [
        {"role": "user", "content": "Hello! 你好 👋"},
        {"role": "assistant", "content": "  Hi there, how can I help?  "},
        {"role": "user", "content": "Tell me a joke.\nWith two lines."},
    ],
    "system": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Summarise: Привет мир"},
        {"role": "assistant", "content": "Hello world", "tool_calls": None},
        {"role": "user", "content": "Again"},
    ],
    "tools": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": '{"temp": 21, "unit": "°C"}'},
    ],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city <b>now</b> & later",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def _pair():
    hf = hf_tokenizer("llama_json")
    ours = Tokenizer.from_preset(ref_dir("llama_json"))
    return hf, ours


def _cases():
    for tname in TEMPLATES:
        for chat in CHATS:
            for gen in (False, True):
                yield tname, chat, gen


@pytest.mark.parametrize("tname,chat,gen", list(_cases()))
def test_render_and_tokenize_match_transformers(tname, chat, gen):
    hf, ours = _pair()
    template = TEMPLATES[tname]
    kwargs = dict(chat_template=template, add_generation_prompt=gen)
    if tname == "chatml_tools":
        kwargs["tools"] = TOOLS
    try:
        expected = hf.apply_chat_template(CHATS[chat], tokenize=False, **kwargs)
    except jinja2.TemplateError as e:
        with pytest.raises(jinja2.TemplateError, match=str(e)[:30]):
            ours.apply_chat_template(CHATS[chat], tokenize=False, **kwargs)
        return
    assert ours.apply_chat_template(CHATS[chat], tokenize=False, **kwargs) == expected
    ref_ids = hf.apply_chat_template(CHATS[chat], tokenize=True, return_dict=False, **kwargs)
    assert ours.apply_chat_template(CHATS[chat], tokenize=True, return_dict=False, **kwargs) == list(ref_ids)
    ref = hf.apply_chat_template(CHATS[chat], **kwargs)
    got = ours.apply_chat_template(CHATS[chat], **kwargs)
    assert got["input_ids"] == list(ref["input_ids"]) and got["attention_mask"] == list(ref["attention_mask"])


def test_batch_padding_and_continue_final_message():
    from transformers import AutoTokenizer

    _, ours = _pair()
    hf = AutoTokenizer.from_pretrained(str(ref_dir("llama_json")))  # not the shared one: we set its pad token
    hf.pad_token = hf.eos_token
    ours.pad_token = ours.eos_token
    chats = [CHATS["basic"], CHATS["system"]]
    kw = dict(chat_template=TEMPLATES["chatml"], padding=True)
    assert ours.apply_chat_template(chats, tokenize=False, **kw) == hf.apply_chat_template(
        chats, tokenize=False, **kw
    )
    ref = hf.apply_chat_template(chats, **kw)
    got = ours.apply_chat_template(chats, return_tensors="np", **kw)
    assert got["input_ids"].tolist() == [list(r) for r in ref["input_ids"]]
    prefill = CHATS["basic"][:2]
    kw = dict(chat_template=TEMPLATES["chatml"], continue_final_message=True, tokenize=False)
    assert ours.apply_chat_template(prefill, **kw) == hf.apply_chat_template(prefill, **kw)


def test_callable_tools_schema_matches_transformers():
    from typing import Literal

    from transformers.utils import get_json_schema

    from keras_models.tokenizers.tool_schema import json_schema_for

    def get_weather(city: str, unit: Literal["c", "f"] = "c", days: list[int] | None = None) -> dict:
        """Get the weather.

        Args:
            city: The city name,
                possibly long.
            unit (str): Temperature unit.
            days: Which days (choices: [1, 2, 3])

        Returns:
            The forecast.
        """

    assert json_schema_for(get_weather) == get_json_schema(get_weather)
    hf, ours = _pair()
    kw = dict(chat_template=TEMPLATES["chatml_tools"], tools=[get_weather], tokenize=False)
    assert ours.apply_chat_template(CHATS["basic"], **kw) == hf.apply_chat_template(CHATS["basic"], **kw)


def test_date_string_and_template_kwargs():
    hf, ours = _pair()
    kw = dict(chat_template=TEMPLATES["llama3"], tokenize=False, date_string="26 Jul 2024")
    assert ours.apply_chat_template(CHATS["system"], **kw) == hf.apply_chat_template(CHATS["system"], **kw)
    assert "26 Jul 2024" in ours.apply_chat_template(CHATS["system"], **kw)


def test_sandbox_blocks_attribute_escapes():
    _, ours = _pair()
    for evil in (
        "{{ messages.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{% set ns = namespace() %}{% set ns._x = 1 %}",
        "{{ messages.append(1) }}",
    ):
        with pytest.raises(jinja2.exceptions.SecurityError):
            ours.apply_chat_template(CHATS["basic"], chat_template=evil, tokenize=False)


def test_template_saved_and_reloaded(tmp_path):
    from transformers import AutoTokenizer

    _, ours = _pair()
    ours.chat_template = TEMPLATES["mistral"]
    ours.save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    again = Tokenizer.from_preset(tmp_path)
    expected = hf.apply_chat_template(CHATS["system"], tokenize=False)
    assert again.apply_chat_template(CHATS["system"], tokenize=False) == expected
    assert ours.apply_chat_template(CHATS["system"], tokenize=False) == expected


def test_no_template_is_a_clear_error():
    ours = Tokenizer.from_preset(ref_dir("bert_json"))
    with pytest.raises(ValueError, match="no chat template"):
        ours.apply_chat_template(CHATS["basic"])


ASSISTANT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ m.content + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
)


def test_assistant_tokens_mask_matches_transformers():
    from transformers import AutoTokenizer

    _, ours = _pair()
    hf = AutoTokenizer.from_pretrained(str(ref_dir("llama_json")))
    hf.pad_token = hf.eos_token
    ours.pad_token = ours.eos_token
    kw = dict(chat_template=ASSISTANT_TEMPLATE, return_assistant_tokens_mask=True)
    ref = hf.apply_chat_template(CHATS["basic"], **kw)
    got = ours.apply_chat_template(CHATS["basic"], **kw)
    assert got["input_ids"] == list(ref["input_ids"])
    assert got["assistant_masks"] == list(ref["assistant_masks"]) and sum(got["assistant_masks"]) > 0
    chats = [CHATS["basic"], CHATS["system"]]
    ref = hf.apply_chat_template(chats, padding=True, **kw)
    got = ours.apply_chat_template(chats, padding=True, return_tensors="np", **kw)
    assert got["assistant_masks"].tolist() == [list(r) for r in ref["assistant_masks"]]


def test_named_templates_from_files(tmp_path):
    from transformers import AutoTokenizer

    src = ref_dir("llama_json")
    for f in src.iterdir():
        if f.is_file() and f.suffix == ".json":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "chat_template.jinja").write_text(TEMPLATES["chatml"], encoding="utf-8")
    (tmp_path / "additional_chat_templates").mkdir()
    (tmp_path / "additional_chat_templates" / "tool_use.jinja").write_text(TEMPLATES["chatml_tools"], encoding="utf-8")
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    ours = Tokenizer.from_preset(tmp_path)
    assert sorted(ours.chat_template) == sorted(hf.chat_template) == ["default", "tool_use"]
    for kw in (dict(), dict(tools=TOOLS), dict(chat_template="tool_use", tools=TOOLS)):
        assert ours.apply_chat_template(CHATS["system"], tokenize=False, **kw) == hf.apply_chat_template(
            CHATS["system"], tokenize=False, **kw
        )
    out = tmp_path / "saved"
    ours.save_pretrained(out)
    again = AutoTokenizer.from_pretrained(str(out))
    assert again.apply_chat_template(CHATS["system"], tokenize=False, tools=TOOLS) == hf.apply_chat_template(
        CHATS["system"], tokenize=False, tools=TOOLS
    )
