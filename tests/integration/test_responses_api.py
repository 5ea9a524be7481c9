"""The OpenAI Responses API (``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``) through the
official ``openai`` SDK and the OpenAI Agents SDK, on a real server with the real SmolLM2. Its template
knows no tools, so calls go through the generic JSON format: with ``tool_choice`` required or named,
the grammar forces a call whose arguments validate against the tool's schema.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from supervisor_harness import Server, assert_openai_error, base_settings

MODEL = "smollm2:q4_1"
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                           "unit": {"enum": ["celsius", "fahrenheit"]}},
                          "required": ["city", "unit"], "additionalProperties": False}, "strict": True}
TIME = {"type": "function", "name": "get_time", "description": "The local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK = "What's the weather in Paris?"
GREEDY = {"temperature": 0, "max_output_tokens": 96}
ONE_CALL = {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False, **GREEDY}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"}},
          "required": ["name", "ok"], "additionalProperties": False}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("responses"), base_settings(n_parallel=2, responses_store=8))
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120) as c:
        yield c


def _valid_call(item, tool: dict) -> dict:
    assert item.type == "function_call" and item.id.startswith("fc_") and item.call_id.startswith("call_")
    assert item.name == tool["name"] and item.status == "completed"
    args = json.loads(item.arguments)
    jsonschema.validate(args, tool["parameters"])
    return args


# ---------------------------------------------------------------------- text


def test_a_string_input_with_instructions(client):
    r = client.responses.create(model=MODEL, input="Say hello in one short sentence.", instructions="Be friendly.",
                                metadata={"run": "1"}, **GREEDY)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    assert r.status == "completed" and r.output_text and r.error is None
    (message,) = r.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert (r.instructions, r.metadata, r.temperature, r.max_output_tokens) == ("Be friendly.", {"run": "1"}, 0, 96)
    u = r.usage
    assert u.input_tokens > 0 and 0 < u.output_tokens <= 96 and u.total_tokens == u.input_tokens + u.output_tokens
    assert u.input_tokens_details.cached_tokens >= 0 and u.output_tokens_details.reasoning_tokens == 0


def test_an_item_list_input(client):
    r = client.responses.create(model=MODEL, input=[
        {"role": "developer", "content": "Answer with one word."},
        {"role": "user", "content": [{"type": "input_text", "text": "What color is the sky?"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Blue."}]},
        {"role": "user", "content": "And grass?"}], **GREEDY)
    assert r.status == "completed" and r.output_text


def test_max_output_tokens_is_incomplete(client):
    r = client.responses.create(model=MODEL, input="Tell me a long story about a dragon.", temperature=0,
                                max_output_tokens=5)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 5 and r.output[-1].status == "incomplete"


def test_a_json_schema_format(client):
    r = client.responses.create(model=MODEL, input='Reply with JSON: {"name": "Tom", "ok": true}', temperature=0,
                                max_output_tokens=48, text={"format": {"type": "json_schema", "name": "person",
                                                                       "schema": SCHEMA, "strict": True}})
    jsonschema.validate(json.loads(r.output_text), SCHEMA)
    assert r.text.format.type == "json_schema"


# ---------------------------------------------------------------------- streaming


def test_the_stream_helper_and_its_final_response(client):
    with client.responses.stream(model=MODEL, input="Say hello in three words.", **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == text and final.status == "completed" and final.usage.output_tokens > 0
    assert events[0].response.status == "in_progress" and events[0].response.id == final.id


def test_raw_stream_events(client):
    events = list(client.responses.create(model=MODEL, input="Tell me a story.", stream=True, temperature=0,
                                          max_output_tokens=4))
    assert events[0].type == "response.created" and events[-1].type == "response.incomplete"
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == events[-1].response.output_text and events[-1].response.usage.output_tokens == 4


def test_logprobs_whole_and_streamed_agree(client):
    kw = {"model": MODEL, "input": "Tell me a story.", "include": ["message.output_text.logprobs"],
          "top_logprobs": 2, **GREEDY, "max_output_tokens": 8}
    part = client.responses.create(**kw).output[0].content[0]
    assert len(part.logprobs) == 8 and "".join(lp.token for lp in part.logprobs) == part.text
    assert all(lp.logprob <= 0 and len(lp.top_logprobs) == 2 for lp in part.logprobs)
    events = list(client.responses.create(**kw, stream=True))
    streamed = [lp for e in events if e.type == "response.output_text.delta" for lp in e.logprobs]
    assert [lp.token for lp in streamed] == [lp.token for lp in part.logprobs]
    done = next(e for e in events if e.type == "response.output_text.done")
    assert [lp.token for lp in done.logprobs] == [lp.token for lp in part.logprobs]
    assert client.responses.create(model=MODEL, input="Hi", **GREEDY).output[0].content[0].logprobs == []


def test_a_streamed_function_call(client):
    whole = client.responses.create(model=MODEL, input=ASK, **ONE_CALL).output[-1]
    with client.responses.stream(model=MODEL, input=ASK, **ONE_CALL) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.done" in kinds and "response.output_text.delta" not in kinds
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "function_call" and added.item.name == "get_weather"
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    (call,) = final.output
    assert call.arguments == arguments and call.id == added.item.id
    assert _valid_call(call, WEATHER) == json.loads(whole.arguments)


# ---------------------------------------------------------------------- tools


def test_a_forced_call_fits_the_schema(client):
    r = client.responses.create(model=MODEL, input=ASK, **ONE_CALL)
    (call,) = r.output
    _valid_call(call, WEATHER)
    named = client.responses.create(model=MODEL, input=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False,
                                    tool_choice={"type": "function", "name": "get_time"}, **GREEDY)
    _valid_call(named.output[-1], TIME)
    assert named.tool_choice.name == "get_time" and [t.name for t in named.tools] == ["get_weather", "get_time"]


def test_a_round_trip_resending_the_items(client):
    first = client.responses.create(model=MODEL, input=ASK, store=False, **ONE_CALL)
    (call,) = first.output
    items = [{"role": "user", "content": ASK}, call.model_dump(exclude_none=True),
             {"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees celsius and sunny"}]
    second = client.responses.create(model=MODEL, input=items, tools=[WEATHER], tool_choice="none", **GREEDY)
    assert second.output_text and all(i.type == "message" for i in second.output)


def test_a_round_trip_with_previous_response_id(client):
    first = client.responses.create(model=MODEL, input=ASK, **ONE_CALL)
    (call,) = first.output
    second = client.responses.create(model=MODEL, previous_response_id=first.id, tools=[WEATHER],
                                     tool_choice="none", input=[{"type": "function_call_output",
                                                                 "call_id": call.call_id,
                                                                 "output": "22 degrees celsius and sunny"}], **GREEDY)
    assert second.output_text and second.previous_response_id == first.id
    third = client.responses.create(model=MODEL, previous_response_id=second.id, input="Thanks!", **GREEDY)
    assert third.output_text and third.previous_response_id == second.id
    # the chain is the point: a greedy reply may run past max_output_tokens (batching and the prefix cache
    # change the last bits of the logits from run to run), which must then say so
    assert third.status == "completed" or third.incomplete_details.reason == "max_output_tokens"


def test_an_unknown_previous_response_is_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, previous_response_id="resp_nope", input="hi")
    assert err.value.code == "previous_response_not_found" and err.value.param == "previous_response_id"


def test_stored_responses_can_be_read_and_deleted(client, server):
    r = client.responses.create(model=MODEL, input="Say hi.", temperature=0, max_output_tokens=8)
    again = client.responses.retrieve(r.id)
    assert again.id == r.id and again.output_text == r.output_text and again.usage == r.usage
    client.responses.delete(r.id)
    status, body = server.call("GET", f"/v1/responses/{r.id}")
    assert status == 404 and assert_openai_error(body)
    unstored = client.responses.create(model=MODEL, input="Say hi.", store=False, max_output_tokens=2)
    assert unstored.store is False
    assert server.call("GET", f"/v1/responses/{unstored.id}")[0] == 404
    assert server.call("DELETE", f"/v1/responses/{unstored.id}")[0] == 404


@pytest.mark.parametrize("body, param", [
    ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]}, "input[0].call_id"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
])
def test_bad_requests_are_400_naming_the_parameter(server, body, param):
    status, out = server.call("POST", "/v1/responses", {"model": MODEL, **body})
    err = assert_openai_error(out)
    assert (status, err["type"], err["param"]) == (400, "invalid_request_error", param), out


def test_a_body_that_is_no_json_is_400(server):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(server.url + "/v1/responses", data=b"{nope", method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400 and assert_openai_error(json.loads(err.value.read()))


# ---------------------------------------------------------------------- the Agents SDK


async def test_openai_agents_sdk_runs_a_tool(server):
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # no machine here reaches OpenAI's trace endpoint
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"22 degrees and sunny in {city}"

    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0) as c:
        model = OpenAIResponsesModel(model=MODEL, openai_client=c)
        caller = Agent(name="weather", instructions="Answer questions about the weather.", tools=[get_weather],
                       model=model, model_settings=ModelSettings(tool_choice="required", parallel_tool_calls=False,
                                                                 temperature=0, max_tokens=96),
                       tool_use_behavior="stop_on_first_tool")
        result = await Runner.run(caller, "What's the weather in Paris?", max_turns=3)
        assert len(seen) == 1 and result.final_output == f"22 degrees and sunny in {seen[0]}"
        # a second agent that answers after the tool ran: the call, its output and the answer go back as items
        answerer = Agent(name="reporter", instructions="Report the weather in one sentence.", tools=[get_weather],
                         model=model, model_settings=ModelSettings(temperature=0, max_tokens=64, tool_choice="none"))
        follow = await Runner.run(answerer, result.to_input_list() + [{"role": "user", "content": "Summarize."}],
                                  max_turns=2)
    assert isinstance(follow.final_output, str) and follow.final_output
