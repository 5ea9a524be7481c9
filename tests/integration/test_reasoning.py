"""Reasoning ("thinking") through llama.cpp's chat layer (issue 13): templates that reason are detected,
thinking is switched on or off in the prompt, and the answer is split into reasoning and content in each
``reasoning_format`` -- whole and split at every byte as a stream delivers it. Tiny random-weight GGUFs
carry the real Qwen3 and DeepSeek-R1 templates; a runner serving one takes every chat through that layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf_factory import write_tiny_llama
from runner_harness import client as client  # noqa: F401  (fixture)
from runner_harness import load_model, running

from mullama import engine
from mullama.core.errors import InvalidArgument

TEMPLATES = Path(__file__).resolve().parents[2] / "third_party" / "llama.cpp" / "models" / "templates"
HI = json.dumps([{"role": "user", "content": "Hi"}])
# template -> the answer a reasoning model writes after the generation prompt (R1's opens the thinking itself)
ANSWERS = {
    "Qwen-Qwen3-0.6B": "<think>I should greet.</think>Hello!",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "I should greet.</think>Hello!",
}


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reasoning-templates")
    names = [*ANSWERS, "Qwen-Qwen2.5-7B-Instruct"]
    return {n: write_tiny_llama(d / f"{n}.gguf", chat_template=(TEMPLATES / f"{n}.jinja").read_text()) for n in names}


@pytest.fixture(scope="module")
def models(paths) -> dict[str, engine.Model]:
    out = {n: engine.Model(str(p), engine.ModelParams(n_gpu_layers=0)) for n, p in paths.items()}
    yield out
    for m in out.values():
        m.close()


def _render(model: engine.Model, fmt: str = "deepseek", think: bool = True) -> engine.ChatPrompt:
    return engine.apply_chat(model, HI, "", "auto", False, True, fmt, think)


def test_templates_that_reason_are_told_apart(models):
    assert engine.chat_caps(models["Qwen-Qwen3-0.6B"])["supports_thinking"]
    assert engine.chat_caps(models["deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"])["supports_thinking"]
    assert not engine.chat_caps(models["Qwen-Qwen2.5-7B-Instruct"])["supports_thinking"]


@pytest.mark.parametrize("family", ANSWERS)
def test_think_false_closes_the_thinking_in_the_prompt(models, family):
    on, off = _render(models[family]), _render(models[family], think=False)
    assert "</think>" not in on.prompt and off.prompt.rstrip().endswith("</think>")
    parser = engine.ChatParser(off)  # nothing is split out of an answer that was told not to think
    parser.append("Hello!", True)
    assert (parser.result().reasoning_content, parser.result().content) == ("", "Hello!")


@pytest.mark.parametrize("family", ANSWERS)
def test_the_thinking_is_split_from_the_answer(models, family):
    parser = engine.ChatParser(_render(models[family]))
    parser.append(ANSWERS[family], True)
    r = parser.result()
    assert (r.reasoning_content.strip(), r.content, r.tool_calls) == ("I should greet.", "Hello!", [])


@pytest.mark.parametrize("family", ANSWERS)
def test_streamed_at_every_byte_the_deltas_add_up(models, family):
    text = ANSWERS[family]
    parser = engine.ChatParser(_render(models[family]))
    reasoning, content = [], []
    for i in range(1, len(text) + 1):
        for d in parser.append(text[i - 1:i], i == len(text)):
            reasoning.append(d.reasoning_content)
            content.append(d.content)
            assert d.tool_index == -1
    assert "".join(reasoning).strip() == "I should greet." and "".join(content) == "Hello!"


def test_earlier_thinking_in_a_tool_loop_reaches_the_template(models):
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    loop = [{"role": "user", "content": "What time is it?"},
            {"role": "assistant", "content": "", "reasoning_content": "I should call get_time.",
             "tool_calls": [{"id": "abc123XYZ", "type": "function",
                             "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "abc123XYZ", "content": "12:00"}]
    chat = engine.apply_chat(models["Qwen-Qwen3-0.6B"], json.dumps(loop), json.dumps(tools), "auto", False, True,
                             "deepseek", True)
    assert "<think>\nI should call get_time.\n</think>" in chat.prompt


def test_a_reasoning_budget_forces_the_end_of_the_thinking(paths, tmp_path):
    """llama.cpp's budget sampler: after the budget the first end tag is forced (the template's thinking
    tags are whole tokens here, as in real reasoning models' vocabularies)."""
    r1 = "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"
    path = write_tiny_llama(tmp_path / "r1.gguf", chat_template=(TEMPLATES / f"{r1}.jinja").read_text(),
                            extra_tokens=("<think>", "</think>"))
    with engine.Model(str(path), engine.ModelParams(n_gpu_layers=0)) as model, \
            engine.Context(model, engine.ContextParams(n_ctx=256, n_threads=2)) as ctx:
        chat = _render(model)
        assert (chat.thinking_start_tag, chat.thinking_end_tags) == ("<think>", ["</think>"])
        (end,) = model.tokenize("</think>", False, True)
        prompt = model.tokenize(chat.prompt, True, True)

        def generated(budget: int) -> list[int]:
            sampling = engine.with_chat(engine.SamplingParams(temperature=0, reasoning_budget=budget), chat)
            out = ctx.generate(model, [prompt], [engine.GenerateParams(max_tokens=16, sampling=sampling)])
            ctx.kv_clear()
            return out[0].tokens

        assert end not in generated(-1)  # left alone, these random weights never close the thinking
        for budget in (2, 5):
            assert end in generated(budget)[:budget]  # the budget counts the prompt's own "\n" after <think>


def test_format_none_leaves_the_thinking_in_the_content(models):
    parser = engine.ChatParser(_render(models["Qwen-Qwen3-0.6B"], "none"))
    parser.append(ANSWERS["Qwen-Qwen3-0.6B"], True)
    assert parser.result().reasoning_content == "" and "I should greet." in parser.result().content


def test_an_unknown_reasoning_format_is_refused(models):
    with pytest.raises(InvalidArgument, match="reasoning_format"):
        _render(models["Qwen-Qwen3-0.6B"], "thoughtful")


@pytest.fixture(scope="module")
def runner(tmp_path_factory, paths):
    with running(tmp_path_factory.mktemp("reasoning-runner")) as r:
        load_model(r, model=str(paths["Qwen-Qwen3-0.6B"]), n_ctx=512, n_parallel=2)
        yield r


async def test_a_runner_reads_every_chat_of_a_reasoning_template_back(client):  # noqa: F811
    """Random weights write no real thinking, but the answer comes back parsed (message, deltas), with or
    without thinking, streamed or not."""
    for think in (True, False, None):
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0,
                "stream": False, **({"think": think} if think is not None else {})}
        status, out = await client.post("/completion", body)
        assert status == 200, out
        assert out["message"] is not None and out["message"]["content"] + out["message"]["reasoning_content"]
        records = await client.stream({**body, "stream": True})
        assert all(r.get("deltas") is not None for r in records)
        status, counted = await client.post("/count", body)  # rendered the same way, nothing evaluated
        assert status == 200 and counted == {"prompt_tokens": out["stats"]["prompt_tokens"]}
    status, err = await client.post("/count", {"max_tokens": 1})
    assert status == 400 and "exactly one of" in err["error"]["message"]
