"""Completions through one shared runner (SmolLM2, n_parallel 8, n_ctx 4096):
NDJSON streaming, non-streaming, concurrency, cancel, client disconnect,
pause/resume, prefix cache, constrained output, repeat_limit, logs."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from runner_harness import (  # noqa: F401  (client is a fixture)
    assert_error, client, greedy, load_model, running, split_stream, stream_text, stream_tokens, wait_until,
)

PROMPT = "The capital of France is"
CHAT_JSON = ("<|im_start|>user\nDescribe a person as a JSON object with a name and an age.<|im_end|>\n"
             "<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    with running(tmp_path_factory.mktemp("runner-completion")) as r:
        load_model(r, n_parallel=8, n_ctx=4096)
        yield r


async def all_idle(client, rid: str | None = None) -> bool:
    kv = await client.kv()
    return all(s["state"] == "idle" and s["request_id"] is None for s in kv["slots"]) and (
        rid is None or all(s["request_id"] != rid for s in kv["slots"]))


# ---------------------------------------------------------------- streaming / non-streaming


async def test_stream_is_ndjson_chunks_then_final_with_stats(client):
    records = await client.stream(greedy(PROMPT, 24, ignore_eos=True))
    chunks, final = split_stream(records)
    assert len(chunks) >= 1
    assert final["finish_reason"] == "length"
    assert final["stop_string"] is None and final["error"] is None
    stats = final["stats"]
    assert stats["completion_tokens"] == 24
    assert sum(len(r["tokens"]) for r in records) == stats["completion_tokens"]
    assert stats["prompt_tokens"] == 5
    assert 0 <= stats["cached_tokens"] < stats["prompt_tokens"]
    assert stats["ttft_ms"] > 0 and stats["total_ms"] >= stats["ttft_ms"]
    assert stats["decode_ms"] >= 0 and stats["inter_token_ms_p95"] >= stats["inter_token_ms_p50"] >= 0
    assert 0 <= stats["slot"] < 8
    assert stats["pauses"] == 0 and stats["swaps"] == 0
    assert stream_text(records).strip()


async def test_non_stream_is_one_object_equal_to_the_stream(client):
    body = greedy(PROMPT, 32)
    status, out = await client.post("/completion", {**body, "stream": False})
    assert status == 200
    assert set(out) == {"id", "content", "tokens", "done", "finish_reason", "stop_string", "error", "stats",
                        "deltas", "message", "logprobs", "index", "choices"}
    assert out["deltas"] is out["message"] is out["logprobs"] is out["choices"] is None and out["index"] == 0
    assert out["done"] is True and out["finish_reason"] in ("length", "stop")
    assert len(out["tokens"]) == out["stats"]["completion_tokens"]

    records = await client.stream(body)
    _, final = split_stream(records)
    assert stream_text(records) == out["content"]
    assert stream_tokens(records) == out["tokens"]
    assert final["finish_reason"] == out["finish_reason"]
    assert final["stats"]["completion_tokens"] == out["stats"]["completion_tokens"]


async def test_tokens_prompt_gives_the_same_output_as_text_prompt(client):
    toks = (await client.ok("POST", "/tokenize", {"content": PROMPT}))["tokens"]
    by_text = await client.complete(greedy(PROMPT, 12, ignore_eos=True))
    body = greedy("", 12, ignore_eos=True)
    del body["prompt"]
    by_tokens = await client.complete({**body, "tokens": toks})
    assert by_tokens["tokens"] == by_text["tokens"]
    assert by_tokens["stats"]["prompt_tokens"] == len(toks)


async def test_stop_string_ends_with_stop_and_names_it(client):
    out = await client.complete(greedy(PROMPT, 64, stop=["."]))
    assert out["finish_reason"] == "stop", out
    assert out["stop_string"] == "."
    assert "." not in out["content"]


async def test_max_tokens_zero_generates_nothing(client):
    out = await client.complete(greedy(PROMPT, 0))
    assert out["finish_reason"] == "length"
    assert out["stats"]["completion_tokens"] == 0 and out["tokens"] == [] and out["content"] == ""


# ---------------------------------------------------------------- concurrency


async def test_eight_concurrent_streams_complete_and_stats_add_up(client):
    before = (await client.stats())["counters"]
    bodies = [{"prompt": f"Story {i}: Once upon a time there was a", "max_tokens": 32, "ignore_eos": True,
               "temperature": 0.7, "seed": i} for i in range(8)]
    results = await asyncio.wait_for(asyncio.gather(*(client.stream(b) for b in bodies)), 300)
    finals = []
    for records in results:
        _, final = split_stream(records)
        assert final["finish_reason"] == "length", final
        assert final["stats"]["completion_tokens"] == 32
        assert len(stream_tokens(records)) == 32
        finals.append(final)
    assert len({f["id"] for f in finals}) == 8
    assert len({f["stats"]["slot"] for f in finals}) == 8, "the 8 requests did not run in 8 slots"

    stats = await client.stats()
    after = stats["counters"]
    assert stats["active"] == 0 and stats["queued"] == 0 and stats["n_parallel"] == 8
    assert after["requests"] - before["requests"] == 8
    assert after["tokens_out"] - before["tokens_out"] == 8 * 32
    prompt_evaluated = sum(f["stats"]["prompt_tokens"] - f["stats"]["cached_tokens"] for f in finals)
    assert after["tokens_in"] - before["tokens_in"] == prompt_evaluated
    steps = after["decode_steps"] - before["decode_steps"]
    assert 32 <= steps < 8 * 32, f"{steps} decode steps for 8 x 32 tokens: no batching?"
    assert after["avg_batch_size"] > 1.0
    assert after["rejected"] == before["rejected"] and after["kv_full"] == before["kv_full"]
    assert await all_idle(client)


# ---------------------------------------------------------------- cancel / disconnect


async def test_cancel_ends_the_stream_with_cancelled_and_frees_the_slot(client):
    rid = "cancel-me"
    seen = []
    async with client.open_stream(greedy(PROMPT, 500, ignore_eos=True, id=rid)) as records:
        async for rec in records:
            seen.append(rec)
            if len(seen) == 3:
                status, out = await client.control("cancel", rid)
                assert status == 200 and out == {"id": rid, "ok": True}, out
    _, final = split_stream(seen)
    assert final["finish_reason"] == "cancelled"
    assert final["id"] == rid
    assert 3 <= final["stats"]["completion_tokens"] < 500
    assert sum(len(r["tokens"]) for r in seen) == final["stats"]["completion_tokens"]
    assert await all_idle(client, rid)
    # the request is gone: a second cancel finds nothing
    status, out = await client.control("cancel", rid)
    assert_error(status, out, 404, "not_found_error")


async def test_client_disconnect_mid_stream_frees_the_slot(client):
    rid = "goes-away"
    got = 0
    async with client.open_stream(greedy(PROMPT, 500, ignore_eos=True, id=rid)) as records:
        async for _ in records:
            got += 1
            if got == 3:
                break  # leaving the block closes the connection
    await wait_until(lambda: all_idle(client, rid), timeout=10, what="the slot of a disconnected client to free")
    stats = await client.stats()
    assert stats["active"] == 0 and stats["queued"] == 0
    # the id is free again
    out = await client.complete(greedy(PROMPT, 2, id=rid))
    assert out["id"] == rid and out["stats"]["completion_tokens"] == 2


async def test_non_stream_client_that_gives_up_frees_the_slot(client, runner):
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.complete(greedy(PROMPT, 1500, ignore_eos=True, id="impatient")), 1.5)
    await wait_until(lambda: all_idle(client, "impatient"), timeout=10, what="slot of an abandoned request to free")
    stats = await client.stats()
    assert stats["active"] == 0 and stats["queued"] == 0


async def test_abandoned_non_stream_request_is_logged_as_aborted(client, runner):
    """The log must not claim a normal completion (finish "", zero stats) for a request the client dropped."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.complete(greedy(PROMPT, 1500, ignore_eos=True, id="dropped")), 1.5)
    await wait_until(lambda: all_idle(client, "dropped"), timeout=10, what="slot to free")

    def records():
        return [json.loads(ln) for ln in runner.stderr_text().splitlines() if '"dropped"' in ln]

    await wait_until(lambda: _async(records()), timeout=5, what="a log line for the dropped request")
    events = records()
    assert [e["event"] for e in events] == ["completion_aborted"], events


async def _async(value):
    return value


async def test_paused_request_whose_client_disconnects_frees_the_slot(client):
    rid = "paused-and-gone"
    async with client.open_stream(greedy(PROMPT, 1500, ignore_eos=True, id=rid)) as records:
        async for _ in records:
            status, _ = await client.control("pause", rid)
            assert status == 200
            break
    await wait_until(lambda: all_idle(client, rid), timeout=10, what="the paused request's slot to free")
    assert (await client.stats())["active"] == 0


async def _collide(client):
    """Start a stream whose client-chosen id is the runner's next automatic id, then send an id-less request."""
    out = await client.complete(greedy(PROMPT, 1))
    assert out["id"].startswith("r") and out["id"][1:].isdigit(), out["id"]
    rid = f"r{int(out['id'][1:]) + 1}"
    cm = client.open_stream(greedy(PROMPT, 24, ignore_eos=True, id=rid))
    records = await cm.__aenter__()
    first = await asyncio.wait_for(anext(records), 120)
    status, idless = await client.post("/completion", {**greedy("Another prompt", 2), "stream": False})
    return rid, cm, records, [first], status, idless


async def test_id_less_request_is_not_rejected_for_a_client_chosen_id(client):
    rid, cm, records, _, status, idless = await _collide(client)
    try:
        assert status == 200, f"an id-less request failed because a client used id {rid!r}: {status} {idless}"
    finally:
        await client.control("cancel", rid)
        await cm.__aexit__(None, None, None)
        await wait_until(lambda: all_idle(client), timeout=30, what="idle")


async def test_running_stream_is_not_orphaned_by_an_id_collision(client):
    rid, cm, records, seen, status, _ = await _collide(client)
    try:
        # the engine finishes the request ...
        await wait_until(lambda: all_idle(client, rid), timeout=120, what=f"{rid} to finish in the engine")
        # ... and its client must get the rest of the stream, final record included
        try:
            async def rest():
                return [rec async for rec in records]

            seen += await asyncio.wait_for(rest(), 5)
        except TimeoutError:
            pytest.fail(f"stream {rid!r} got {len(seen)} records and then nothing: its events were dropped "
                        f"(the id-less request got {status})")
        _, final = split_stream(seen)
        assert final["finish_reason"] == "length" and len(stream_tokens(seen)) == 24
    finally:
        await cm.__aexit__(None, None, None)


async def test_control_of_unknown_id_is_404(client):
    for op in ("cancel", "pause", "resume"):
        status, out = await client.control(op, "never-submitted")
        assert_error(status, out, 404, "not_found_error")


async def test_duplicate_running_id_is_400(client):
    rid = "dup"
    async with client.open_stream(greedy(PROMPT, 500, ignore_eos=True, id=rid)) as records:
        async for _ in records:
            break
        status, out = await client.post("/completion", greedy(PROMPT, 2, id=rid))
        assert_error(status, out, 400, "invalid_request_error")
        assert (await client.control("cancel", rid))[0] == 200
        async for _ in records:
            pass
    await wait_until(lambda: all_idle(client, rid), timeout=10, what="slot idle")


# ---------------------------------------------------------------- pause / resume


async def test_pause_resume_gives_identical_greedy_output(client):
    body = greedy("Write a short poem about the sea:", 40, ignore_eos=True)
    reference = await client.complete(body)
    assert reference["stats"]["completion_tokens"] == 40

    rid = "pause-me"
    seen = []
    async with client.open_stream({**body, "id": rid}) as records:
        async for rec in records:
            seen.append(rec)
            if len(seen) == 3:
                status, out = await client.control("pause", rid)
                assert status == 200 and out["ok"] is True, out

                async def paused():
                    kv = await client.kv()
                    return [s for s in kv["slots"] if s["request_id"] == rid and s["state"] == "paused"]

                slot = (await wait_until(paused, timeout=10, what="the slot to show paused"))[0]
                await asyncio.sleep(0.5)
                again = (await paused())[0]
                assert again["n_generated"] == slot["n_generated"], "a paused request kept generating"
                assert again["n_generated"] < 40
                status, out = await client.control("resume", rid)
                assert status == 200 and out["ok"] is True, out
    _, final = split_stream(seen)
    assert final["finish_reason"] == "length"
    assert final["stats"]["pauses"] == 1 and final["stats"]["swaps"] == 0
    assert stream_tokens(seen) == reference["tokens"]
    assert stream_text(seen) == reference["content"]


# ---------------------------------------------------------------- prefix cache


async def test_same_prompt_twice_hits_the_prefix_cache(client):
    prompt = ("Zanzibar archipelago notes: the islands lie off the coast of East Africa, and their "
              "history is shaped by the spice trade. Summary:")
    kv0 = await client.kv()
    first = await client.complete(greedy(prompt, 8))
    second = await client.complete(greedy(prompt, 8))
    n = first["stats"]["prompt_tokens"]
    assert n > 20
    assert second["stats"]["cached_tokens"] > 0
    assert second["stats"]["cached_tokens"] == n - 1  # all but the last prompt token are reused
    assert second["stats"]["cached_tokens"] > first["stats"]["cached_tokens"]
    assert second["tokens"] == first["tokens"]
    kv1 = await client.kv()
    assert kv1["prefix_hits"] >= kv0["prefix_hits"] + 1
    assert kv1["cached_tokens"] >= kv0["cached_tokens"] + n - 1
    assert kv1["cells_total"] == 4096 and kv1["n_ctx_slot"] == 4096
    assert kv1["cells_used"] == sum(s["n_tokens"] for s in kv1["slots"]) > 0


async def test_conversations_sharing_a_system_prompt_keep_their_own_slots(client):
    """A new conversation that shares only a short start (a default system prompt) with a cached one
    takes an empty or older slot, so every conversation's next turn still finds its history cached:
    8 conversations in 8 slots, and the first one's second turn reuses all of its first turn."""
    system = "System: you are a terse assistant who answers in one short line.\n"
    topics = ["volcanoes of Iceland", "the history of tea", "how bridges carry loads", "migrating birds",
              "the rules of chess", "coral reefs", "early printing presses", "desert plants"]
    first = {}
    for topic in topics:
        first[topic] = await client.complete(greedy(f"{system}User: tell me about {topic}.\nAssistant:", 8))
    a = topics[0]
    history = f"{system}User: tell me about {a}.\nAssistant:{first[a]['content']}\nUser: and more?\nAssistant:"
    second = await client.complete(greedy(history, 4))
    assert second["stats"]["cached_tokens"] >= first[a]["stats"]["prompt_tokens"], (first[a]["stats"],
                                                                                    second["stats"])


# ---------------------------------------------------------------- constrained output


async def test_json_schema_output_parses_and_validates(client):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 16},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    out = await client.complete(greedy(CHAT_JSON, 96, json_schema=schema))
    assert out["finish_reason"] == "stop", out
    value = json.loads(out["content"])
    jsonschema.validate(value, schema)


async def test_json_schema_true_gives_any_json(client):
    out = await client.complete(greedy(CHAT_JSON, 96, json_schema=True))
    if out["finish_reason"] == "stop":
        json.loads(out["content"])
    else:  # cut by max_tokens: at least it starts as JSON
        assert out["content"].lstrip()[:1] in "{[\"-0123456789tfn"


async def test_gbnf_grammar_constrains_output(client):
    prompt = "<|im_start|>user\nIs the sky blue? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"
    out = await client.complete(greedy(prompt, 16, grammar='root ::= "yes" | "no"'))
    assert out["finish_reason"] == "stop", out
    assert out["content"] in ("yes", "no")

    out = await client.complete(greedy("Three numbers:", 40, grammar='root ::= [0-9]{1,3} ("," [0-9]{1,3}){2}'))
    assert out["finish_reason"] == "stop", out
    parts = out["content"].split(",")
    assert len(parts) == 3 and all(p.isdigit() and len(p) <= 3 for p in parts), out["content"]


async def test_repeat_limit_ends_a_forced_repetition(client):
    eog = (await client.ok("POST", "/tokenize", {"content": "<|im_end|><|endoftext|>", "parse_special": True,
                                                 "add_special": False}))["tokens"]
    body = greedy("Say x:", 48, grammar='root ::= ("x ")+', logit_bias={str(t): -100.0 for t in eog})
    out = await client.complete({**body, "repeat_limit": 2})
    assert out["finish_reason"] == "repeat_limit", out
    assert 3 <= out["stats"]["completion_tokens"] <= 3 * 8
    assert set(out["content"].replace(" ", "")) == {"x"}
    # the detector is what ended it: off, the same request runs to max_tokens
    out = await client.complete({**body, "repeat_limit": 0})
    assert out["finish_reason"] == "length", out
    assert out["stats"]["completion_tokens"] == 48


async def test_negative_repeat_limit_is_400(client):
    status, out = await client.post("/completion", greedy(PROMPT, 4, repeat_limit=-1))
    assert_error(status, out, 400)


# ---------------------------------------------------------------- logs (keep last: reads the module's stderr)


async def test_logs_are_json_lines_without_prompt_text(client, runner):
    secret = "quokka-zephyr-8812 marmalade"
    await client.complete(greedy(f"My secret phrase is {secret}. Repeat it:", 8, id="log-check"))
    await client.stream(greedy(f"Again: {secret}", 4))
    await client.post("/completion", greedy(f"{secret} " * 3, 4, top_p=5))  # a rejected one too

    async def logged():
        return '"log-check"' in runner.stderr_text()

    await wait_until(logged, timeout=5, what="the completion log line")
    text = runner.stderr_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        rec = json.loads(ln)  # every line is JSON
        assert {"event", "level", "timestamp"} <= set(rec), rec
    assert "quokka" not in text and "marmalade" not in text, "prompt text leaked into the logs"
    events = [json.loads(ln) for ln in lines]
    done = [e for e in events if e["event"] == "completion" and e.get("id") == "log-check"]
    assert done and done[0]["completion_tokens"] == 8
