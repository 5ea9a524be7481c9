"""A model's chat template replaced from the config (``[models.NAME] chat_template``, issue 19): a Jinja
file or one of llama.cpp's built-in names renders the chats; a name that is neither fails the load with
the reason, never a crashed runner or a hung client."""

from __future__ import annotations

import openai
import pytest
from supervisor_harness import Server, base_settings

MODEL = "smollm2:q4_1"
HI = [{"role": "user", "content": "Hi"}]


def _server(tmp_path, template: str) -> Server:
    return Server(tmp_path, base_settings(n_parallel=1, models={"smollm2": {"chat_template": template}}))


@pytest.mark.parametrize("template, rendered", [
    ("{% for m in messages %}{{ m.content }}{% endfor %}", "Hi"),
    ("llama3", ("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant"
                "<|end_header_id|>\n\n")),
])
def test_the_override_renders_the_chat(tmp_path, smollm, template, rendered):
    if "{%" in template:
        (tmp_path / "bare.jinja").write_text(template)
        template = str(tmp_path / "bare.jinja")
    srv = _server(tmp_path, template)
    try:
        with openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0) as client:
            r = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, temperature=0)
        # exactly the override's rendering (SmolLM2's own adds a default system prompt)
        assert r.usage.prompt_tokens == len(smollm.tokenize(rendered, True, True))
    finally:
        srv.stop()


def test_an_unknown_name_fails_the_load_with_the_reason(tmp_path):
    srv = _server(tmp_path, "no-such-template")
    try:
        with openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0) as client, \
                pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
        assert e.value.status_code in (400, 500, 503) and "neither Jinja nor" in e.value.message
    finally:
        srv.stop()
