"""SmolLM2's chat template (ChatML) and its typed errors."""

from __future__ import annotations

import pytest

from mullama.core.errors import TemplateError

SYSTEM = {"role": "system", "content": "You are terse."}
USER = {"role": "user", "content": "Hello"}


def test_chatml_with_generation_prompt(smollm):
    out = smollm.apply_chat_template([SYSTEM, USER], True)
    assert out == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_without_generation_prompt_the_assistant_header_is_omitted(smollm):
    out = smollm.apply_chat_template([SYSTEM, USER], False)
    assert out == "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
    assert not out.endswith("<|im_start|>assistant\n")


def test_default_system_prompt_is_added(smollm):
    out = smollm.apply_chat_template([USER], True)
    assert out.startswith("<|im_start|>system\n")
    assert out.endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")


def test_multi_turn_and_unicode(smollm):
    msgs = [
        SYSTEM,
        USER,
        {"role": "assistant", "content": "Hi \U0001f44b"},
        {"role": "user", "content": "\u4f60\u597d"},
    ]
    out = smollm.apply_chat_template(msgs, True)
    assert "<|im_start|>assistant\nHi \U0001f44b<|im_end|>\n<|im_start|>user\n\u4f60\u597d<|im_end|>\n" in out


def test_none_content_is_an_empty_message(smollm):
    out = smollm.apply_chat_template([SYSTEM, {"role": "user", "content": None}], False)
    assert out.endswith("<|im_start|>user\n<|im_end|>\n")


def test_template_override(smollm):
    tmpl = (
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}"
    )
    assert smollm.apply_chat_template([USER], True, tmpl) == "[user]Hello>"
    assert smollm.apply_chat_template([USER], False, tmpl) == "[user]Hello"


BAD_MESSAGES = {
    "empty list": [],
    "not a dict": ["hello"],
    "tuple message": [("user", "hi")],
    "missing role": [{"content": "hi"}],
    "role not str": [{"role": 1, "content": "hi"}],
    "content not str": [{"role": "user", "content": 5}],
    "content list": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    "second message bad": [USER, None],
}


@pytest.mark.parametrize("messages", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_bad_messages_raise_template_error(smollm, messages):
    with pytest.raises(TemplateError):
        smollm.apply_chat_template(messages, True)


BAD_TEMPLATES = {
    "does not parse": "{% if %}",
    "unclosed block": "{% for m in messages %}{{ m['content'] }}",
    "unknown filter": "{{ messages | nosuchfilter }}",
    "raises": "{{ raise_exception('unsupported conversation') }}",
}


@pytest.mark.parametrize("template", BAD_TEMPLATES.values(), ids=BAD_TEMPLATES.keys())
def test_bad_template_override_raises_template_error(smollm, template):
    with pytest.raises(TemplateError):
        smollm.apply_chat_template([USER], True, template)


def test_template_error_is_a_value_error(smollm):
    with pytest.raises(ValueError):
        smollm.apply_chat_template([], True)


def test_template_still_works_after_errors(smollm):
    for template in BAD_TEMPLATES.values():
        with pytest.raises(TemplateError):
            smollm.apply_chat_template([USER], True, template)
    assert smollm.apply_chat_template([SYSTEM, USER], True).endswith("<|im_start|>assistant\n")
