"""LoRA adapters (issue 19): loaded with the model from its config and at run time, chosen per request by id
or name with a scale, and never mixed up — requests with different adapter sets take turns at the context
(llama.cpp applies adapters per context), and a prefix cached under one set is never reused by another.

The adapters are random-weight LoRAs for SmolLM2 written with the ``gguf`` package (tests/gguf_factory.py)."""

from __future__ import annotations

import concurrent.futures
import select

import httpx
import pytest
from gguf_factory import write_lora
from helpers import ctx_params
from supervisor_harness import Server, base_settings

from mullama import _engine, engine
from mullama.models import assets

MODEL = "smollm2:q4_1"
PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    base = assets.default_model_path()
    d = tmp_path_factory.mktemp("loras")
    return {name: str(write_lora(d / f"{name}.gguf", base, seed=seed)) for name, seed in (("a", 1), ("b", 2), ("c", 3))}


@pytest.fixture(scope="module")
def server(tmp_path_factory, loras):
    # scale 0 by default: a request that names no adapters is the base model
    adapters = [{"path": loras["a"], "scale": 0.0}, {"path": loras["b"], "scale": 0.0, "name": "bee"}]
    preset = {"from": "smollm2", "adapters": [{"name": "bee", "scale": 1.0}]}  # a preset with an adapter of its base
    settings = base_settings(n_parallel=4, n_ctx=4096, models={"smollm2": {"adapters": adapters, "kv_unified": False,
                                                                          "adapter_turn": 4}},
                             presets={"bee-talk": preset})
    srv = Server(tmp_path_factory.mktemp("lora"), settings)
    yield srv
    srv.stop()


def _ask(server: Server, lora=None, messages=PROMPT, model=MODEL) -> tuple[str, list[float]]:
    """The greedy answer and its tokens' log-probabilities (which tell adapters apart even where the text
    happens to agree)."""
    body = {"model": model, "messages": messages, "max_tokens": 24, "temperature": 0, "logprobs": True}
    if lora is not None:
        body["lora"] = lora
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    return choice["message"]["content"], [t["logprob"] for t in choice["logprobs"]["content"]]


def _adapters(server: Server) -> list[dict]:
    r = httpx.get(f"{server.url}/internal/models/{MODEL}/adapters", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["adapters"]


def test_configured_adapters_load_with_the_model(server, loras):
    _ask(server)
    listed = _adapters(server)
    assert [(a["id"], a["name"], a["path"], a["scale"]) for a in listed] == [
        (0, "a", loras["a"], 0.0), (1, "bee", loras["b"], 0.0)]
    assert all(a["alpha"] == 16.0 for a in listed)


def test_an_adapter_changes_greedy_output_and_scale_zero_is_the_base(server):
    base = _ask(server)
    assert _ask(server, lora=[]) == base
    assert _ask(server, lora=[{"id": 0, "scale": 0.0}]) == base
    with_a = _ask(server, lora=[{"id": 0, "scale": 1.0}])
    assert with_a != base
    assert _ask(server, lora=[{"name": "a", "scale": 1.0}]) == with_a  # by name, as by id
    with_b = _ask(server, lora=[{"name": "bee", "scale": 1.0}])
    assert with_b not in (base, with_a)
    # the same prompt again right after another set's run: no prefix cached under another set is reused
    assert _ask(server, lora=[{"id": 0, "scale": 1.0}]) == with_a
    assert _ask(server) == base


def _engine_answers(smollm, loras, sets, messages) -> list[tuple[str, list[float]]]:
    """What each set gives on its own in a fresh context: the engine's Batcher, the same adapters in the same
    order (ids 0 and 1), one request at a time."""
    prompt = smollm.tokenize(smollm.apply_chat_template(messages, True), True, True)
    answers = []
    for lora in sets:
        with engine.Context(smollm, ctx_params(n_ctx=4096, n_seq_max=4, n_batch=2048, kv_unified=False)) as ctx:
            batcher = _engine.Batcher(smollm, ctx)
            batcher.add_adapter(loras["a"], "", 0.0)
            batcher.add_adapter(loras["b"], "bee", 0.0)
            params = engine.GenerateParams(max_tokens=24, n_probs=0, sampling=engine.SamplingParams(temperature=0))
            batcher.submit("x", prompt, params, 0, "", None if lora is None else [(r["id"], r["scale"]) for r in lora])
            text, lps, done = "", [], False
            while not done:
                select.select([batcher.event_fd], [], [], 1.0)
                for ev in batcher.drain():
                    text, lps, done = text + ev.text, lps + [p.logprob for p in ev.probs], ev.done
            batcher.stop()
        answers.append((text, lps))
    return answers


def test_concurrent_requests_with_different_sets_each_get_their_own_adapter(server, smollm, loras):
    """Four requests with four sets at once (each set takes its turns at the context) answer exactly what each
    set answers alone. The server runs without a unified KV cache so that each slot's numbers depend on its
    own cells only: with one shared cache, llama.cpp's CPU attention rounds differently depending on where
    the other requests' cells sit (up to ~0.02 in a log-probability, and a later greedy token may flip),
    which is no adapter's doing. The prompt is new to the server: every answer starts with a fresh prefill,
    as in the reference."""
    messages = [{"role": "user", "content": "List two animals that live in the sea."}]
    sets = [None, [{"id": 0, "scale": 1.0}], [{"id": 1, "scale": 1.0}], [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.5}]]
    alone = _engine_answers(smollm, loras, sets, messages)
    assert len({tuple(lp) for _, lp in alone}) == 4  # the sets differ
    _ask(server)  # loaded
    before = httpx.get(f"{server.url}/internal/kv/{MODEL}", timeout=30).json()["adapter_switches"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda s: _ask(server, lora=s, messages=messages), sets))
    assert together == alone  # each got its own set's answer, to the last token and log-probability
    kv = httpx.get(f"{server.url}/internal/kv/{MODEL}", timeout=30).json()
    assert kv["adapter_switches"] - before >= 12  # the sets took turns of 4 steps (adapter_turn) at the context
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    waits = next(line for line in metrics.splitlines()
                 if line.startswith(f'mullama_adapter_wait_steps_total{{model="{MODEL}"}}'))
    assert float(waits.split()[-1]) > 0


def test_a_preset_applies_its_adapters_unless_the_request_names_its_own(server):
    with_b = _ask(server, lora=[{"name": "bee", "scale": 1.0}])
    assert _ask(server, model="bee-talk") == with_b
    assert _ask(server, model="bee-talk", lora=[]) == _ask(server)


def test_the_profile_names_the_set_and_its_waits(server):
    r = httpx.post(server.url + "/v1/chat/completions", headers={"X-Profile": "1"}, timeout=60, json={
        "model": MODEL, "messages": PROMPT, "max_tokens": 4, "lora": [{"id": 0, "scale": 0.5}]})
    profile = r.json()["profile"]
    assert profile["adapters"] == "0:0.5" and profile["adapter_waits"] >= 0 and profile["context_shifts"] == 0


def test_adapters_load_and_unload_at_run_time(server, loras):
    url = f"{server.url}/internal/models/{MODEL}/adapters"
    r = httpx.post(url, json={"path": loras["c"], "scale": 0.0}, timeout=60)
    assert r.status_code == 200, r.text
    added = r.json()["adapter"]
    assert added["name"] == "c" and added["id"] == 2
    again = httpx.post(url, json={"path": loras["c"]}, timeout=60).json()["adapter"]
    assert again["id"] == 2  # a path already loaded is not loaded twice
    with_c = _ask(server, lora=[{"name": "c", "scale": 1.0}])
    assert with_c != _ask(server)
    r = httpx.delete(f"{url}/2", timeout=30)
    assert r.status_code == 200 and [a["id"] for a in r.json()["adapters"]] == [0, 1]
    gone = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL, "messages": PROMPT, "max_tokens": 4, "lora": [{"id": 2, "scale": 1.0}]})
    assert gone.status_code == 400 and "no LoRA adapter with id 2" in gone.json()["error"]["message"]
    assert httpx.delete(f"{url}/2", timeout=30).status_code == 404
    # loaded again, it gets a new id: ids are never reused
    assert httpx.post(url, json={"path": loras["c"]}, timeout=60).json()["adapter"]["id"] == 3
    assert httpx.delete(f"{url}/3", timeout=30).status_code == 200


@pytest.mark.parametrize(("lora", "words"), [
    ([{"id": 9, "scale": 1.0}], "no LoRA adapter with id 9"),
    ([{"name": "nope"}], "no adapter named 'nope'"),
    ([{"id": 0, "name": "a"}], "give either 'id' or 'name'"),
    ([{"scale": 1.0}], "give either 'id' or 'name'"),
    ([{"id": -1}], "lora[0].id"),
    ("all", "lora"),
])
def test_bad_adapter_sets_are_refused(server, lora, words):
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL, "messages": PROMPT, "max_tokens": 4, "lora": lora})
    assert r.status_code == 400 and words in r.text, r.text


def test_bad_adapter_files_are_refused_clearly(server, tmp_path):
    url = f"{server.url}/internal/models/{MODEL}/adapters"
    missing = httpx.post(url, json={"path": str(tmp_path / "none.gguf")}, timeout=30)
    assert missing.status_code in (400, 404) and "not found" in missing.text
    not_lora = httpx.post(url, json={"path": str(assets.default_model_path())}, timeout=60)
    assert not_lora.status_code == 400 and "general.type" in not_lora.text
    assert httpx.post(url, json={"scale": 1.0}, timeout=30).status_code == 400
    assert httpx.delete(f"{url}/x", timeout=30).status_code == 400
    assert _ask(server, lora=[{"id": 0, "scale": 1.0}])  # the runner still serves


def test_a_model_that_is_not_loaded_has_no_adapters_to_show(tmp_path):
    srv = Server(tmp_path, base_settings())
    try:
        r = httpx.get(f"{srv.url}/internal/models/{MODEL}/adapters", timeout=30)
        assert r.status_code in (409, 503) and "not loaded" in r.text
    finally:
        srv.stop()
