"""Tool calling through the official ``ollama`` client on ``/api/chat`` (issue 13): the same engine path
as the OpenAI routes (docs/tools.md), Ollama's shapes: calls carry their arguments as an object and come
whole, tool results name their function with ``tool_name``. Ollama has no ``tool_choice``: the model
decides, so the prompts ask for the tool (SmolLM2 then calls it, greedy, with a fresh cache or a warm
one; without the system line its first answer was text)."""

from __future__ import annotations

import ollama
import pytest

from supervisor_harness import Server, base_settings

MODEL = "smollm2:q4_1"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "system", "content": "Always call a tool."},
       {"role": "user", "content": "Use the get_weather tool to get the weather in Paris."}]
GREEDY = {"temperature": 0, "num_predict": 96}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("tools-ollama"), base_settings())
    yield srv
    srv.stop()


def test_a_tool_call_and_its_result(server):
    c = ollama.Client(host=server.url)
    r = c.chat(model=MODEL, messages=ASK, tools=[WEATHER], options=GREEDY)
    (call,) = r.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
    assert r.done_reason == "stop" and not r.message.content
    history = [*ASK, r.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_name": "get_weather", "content": "22 degrees and sunny"}]
    answer = c.chat(model=MODEL, messages=history, options=GREEDY)  # no tools now: plain text
    assert answer.message.content and not answer.message.tool_calls


def test_streamed_calls_come_whole_before_the_final_record(server):
    parts = list(ollama.Client(host=server.url).chat(model=MODEL, messages=ASK, tools=[WEATHER], options=GREEDY,
                                                     stream=True))
    calls = [tc for p in parts for tc in (p.message.tool_calls or [])]
    assert [(tc.function.name, sorted(tc.function.arguments)) for tc in calls] == [("get_weather", ["city"])]
    assert parts[-1].done and not parts[-1].message.tool_calls


async def test_async_client(server):
    r = await ollama.AsyncClient(host=server.url).chat(model=MODEL, messages=ASK, tools=[WEATHER], options=GREEDY)
    assert r.message.tool_calls[0].function.name == "get_weather"


def test_bad_tools_are_400(server):
    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=server.url).chat(model=MODEL, messages=ASK,
                                            tools=[{"type": "function", "function": {"name": "bad name"}}])
    assert info.value.status_code == 400 and "tools[0].function.name" in info.value.error
