"""Tool calling through the official ``openai`` SDK and two agent frameworks (issue 13), on a real server
with the real SmolLM2. Its template knows no tools, so these exercise the generic JSON format: with
``tool_choice`` required or named, the grammar forces a call whose arguments validate against the tool's
own JSON schema. (Native formats: ``test_tool_formats.py``.)
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from supervisor_harness import assert_openai_error, module_server, openai_client

MODEL = "smollm2:q4_1"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
GREEDY = {"temperature": 0, "max_tokens": 96}


server = module_server("tools", n_parallel=2)


@pytest.fixture
def client(server):
    with openai_client(server) as c:
        yield c


def _valid_call(call, tool: dict) -> dict:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == tool["function"]["name"]
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, tool["function"]["parameters"])
    return args


def test_required_forces_a_call_whose_arguments_fit_the_schema(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", **GREEDY)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    _valid_call(call, WEATHER)


def test_a_named_function_is_the_one_called(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME],
                                       tool_choice={"type": "function", "function": {"name": "get_time"}}, **GREEDY)
    (call,) = r.choices[0].message.tool_calls
    _valid_call(call, TIME)


def test_parallel_calls_are_a_list(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                       parallel_tool_calls=True, **GREEDY)
    calls = r.choices[0].message.tool_calls
    assert calls and len({c.id for c in calls}) == len(calls)
    for call in calls:
        _valid_call(call, WEATHER if call.function.name == "get_weather" else TIME)


def test_streamed_deltas_add_up_to_the_same_call(client):
    whole = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
                                           **GREEDY).choices[0].message.tool_calls[0]
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER],
                                                tool_choice="required", stream=True, **GREEDY):
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": tc.id, "name": "", "arguments": ""})
            entry["name"] += tc.function.name or ""
            entry["arguments"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0] and calls[0]["id"].startswith("call_")
    assert (calls[0]["name"], json.loads(calls[0]["arguments"])) == (whole.function.name,
                                                                     json.loads(whole.function.arguments))


async def test_async_client_and_a_two_turn_round_trip(server):
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as c:
        first = await c.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
                                                **GREEDY)
        message = first.choices[0].message
        call = message.tool_calls[0]
        history = [*ASK, message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "22 degrees celsius and sunny"}]
        second = await c.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER], tool_choice="none",
                                                 **GREEDY)
    answer = second.choices[0]
    assert answer.finish_reason in ("stop", "length") and answer.message.content
    assert not answer.message.tool_calls


@pytest.mark.parametrize("body, param", [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"messages": [*ASK, {"role": "tool", "content": "22"}]}, "messages[1].tool_call_id"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
])
def test_bad_tool_requests_are_400_naming_the_parameter(server, body, param):
    status, out = server.call("POST", "/v1/chat/completions", {"model": MODEL, "messages": ASK, **body})
    err = assert_openai_error(out)
    assert (status, err["type"], err["param"]) == (400, "invalid_request_error", param), out


def test_a_parameter_schema_that_cannot_be_a_grammar_is_400(server):
    broken = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"$ref": "#/definitions/missing"}}}}}
    status, out = server.call("POST", "/v1/chat/completions", {"model": MODEL, "messages": ASK, "tools": [broken],
                                                               "tool_choice": "required"})
    err = assert_openai_error(out)
    assert (status, err["type"]) == (400, "invalid_request_error"), out
    assert server.call("POST", "/v1/chat/completions", {"model": MODEL, "messages": ASK, "max_tokens": 2})[0] == 200


def test_langchain_bind_tools(server):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "sunny"

    llm = ChatOpenAI(model=MODEL, base_url=server.url + "/v1", api_key="none", temperature=0, max_tokens=96)
    reply = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What's the weather in Paris?")
    (call,) = reply.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)


async def test_openai_agents_sdk_runs_a_tool(server):
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # no machine here reaches OpenAI's trace endpoint
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"22 degrees and sunny in {city}"

    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as c:
        agent = Agent(name="weather", instructions="Answer questions about the weather.", tools=[get_weather],
                      model=OpenAIChatCompletionsModel(model=MODEL, openai_client=c),
                      model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=96),
                      tool_use_behavior="stop_on_first_tool")
        result = await Runner.run(agent, "What's the weather in Paris?", max_turns=3)
    assert len(seen) == 1 and result.final_output == f"22 degrees and sunny in {seen[0]}"
