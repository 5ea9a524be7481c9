"""Presets without a server: ``[presets.NAME]`` in the settings and its errors, the registry of presets
(``models/presets.py``), how a preset shapes a request (``serving.job.with_preset``) and that its name
resolves to its base's catalog entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import error, load

from mullama import wire
from mullama.config import Settings
from mullama.config.presets import PresetAdapter, PresetMessage, PresetParameters, PresetSettings, inherit
from mullama.core.errors import ModelNotFound, PresetConflict
from mullama.models.presets import PRESET_DIR, Presets
from mullama.serving.job import Job, with_defaults, with_preset
from mullama.serving.supervisor import Supervisor

TOML = '''
[aliases]
chat = "smollm2"

[presets.coder]
from = "chat"
system = "You write Python."
template = "chatml"
parameters = { temperature = 0.2, stop = ["```"], max_tokens = 256 }
adapters = [{ name = "python", scale = 0.8 }]

[[presets.coder.messages]]
role = "user"
content = "hi"

[presets."coder:strict"]
from = "coder"
parameters = { temperature = 0 }
'''


def test_presets_in_the_settings(tmp_path: Path) -> None:
    s = load(tmp_path, TOML)
    coder = s.presets["coder"]
    assert coder.from_ == "chat" and coder.template == "chatml" and coder.adapters == (PresetAdapter(name="python",
                                                                                                     scale=0.8),)
    assert coder.parameters == PresetParameters(temperature=0.2, stop=("```",), max_tokens=256)
    assert coder.defaults() == (("temperature", 0.2), ("stop", ("```",)), ("max_tokens", 256))
    assert s.redacted()["presets"]["coder"]["from"] == "chat"


BAD = [
    ('[presets.p]\nsystem = "x"', "presets.p: Object missing required field `from`"),
    ('[presets.p]\nfrom = "m"\nsytem = "x"', "presets.p: Object contains unknown field `sytem`"),
    ('[presets.p]\nfrom = "m"\nparameters = { temperature = "hot" }',
     "presets.p.parameters.temperature: Expected `float`, got `str`"),
    ('[presets.p]\nfrom = "m"\nparameters = { temperature = -1.0 }',
     "presets.p.parameters.temperature: expected a value from 0"),
    ('[presets.p]\nfrom = "m"\nparameters = { max_tokens = 0 }', "presets.p.parameters.max_tokens: expected -1"),
    ('max_tokens_limit = 100\n[presets.p]\nfrom = "m"\nparameters = { max_tokens = 101 }',
     "or 1 to 100 (max_tokens_limit), got 101"),
    ('[presets.p]\nfrom = "m"\nparameters = { stop = [""] }', "presets.p.parameters.stop: expected non-empty"),
    ('[presets.p]\nfrom = "m"\nparameters = { num_ctx = 4096 }', "presets.p.parameters: Object contains unknown field"),
    ('[presets.p]\nfrom = "m"\ntemplate = "{{ .Prompt }}"', "presets.p.template: this is a Go template"),
    ('[presets.p]\nfrom = "m"\ntemplate = "not a template"', "presets.p.template: expected a Jinja chat template"),
    ('[presets.p]\nfrom = "m"\n[[presets.p.messages]]\nrole = "robot"\ncontent = "x"',
     "presets.p.messages[0].role: Invalid enum value 'robot'"),
    ('[presets.p]\nfrom = "m"\nadapters = [{ name = "a" }, { name = "a" }]', "presets.p.adapters[1]: adapter 'a'"),
    ('[presets.p]\nfrom = ""', "presets.p.from: expected the name of the base model"),
    ('[presets.p]\nfrom = "P"', "presets.p.from: a preset cannot be its own base"),
    ('[presets.a]\nfrom = "b"\n[presets.b]\nfrom = "a"', "presets.a.from: its bases lead back to it (a -> b -> a)"),
    ('[presets."a b"]\nfrom = "m"', "presets.a b: invalid preset name 'a b'"),
    ('[presets."x/y"]\nfrom = "m"', "invalid preset name 'x/y'"),
    ('[presets.A]\nfrom = "m"\n[presets.a]\nfrom = "m"', "presets.a: the same name as preset 'A'"),
    ('[aliases]\nchat = "m"\n[presets.chat]\nfrom = "m"', "presets.chat: 'chat' is also an alias"),
]


@pytest.mark.parametrize("toml, words", BAD)
def test_bad_presets_name_the_file_and_the_field(tmp_path: Path, toml: str, words: str) -> None:
    message = error(tmp_path, toml)
    assert message.startswith(f"{tmp_path / 'mullama.toml'}: ") and words in message, message


def test_inherit_takes_the_child_s_fields_and_the_parent_s_base() -> None:
    parent = PresetSettings(from_="base", system="P", template="chatml",
                            parameters=PresetParameters(temperature=0.5, top_k=3),
                            messages=(PresetMessage(role="user", content="p"),), license="MIT")
    child = PresetSettings(from_="parent", system="", parameters=PresetParameters(temperature=0.1))
    got = inherit(parent, child)
    assert (got.from_, got.system, got.template, got.license) == ("base", "", "chatml", "MIT")
    assert got.parameters == PresetParameters(temperature=0.1, top_k=3) and got.messages == parent.messages


# ---------------------------------------------------------------------- the registry


def test_the_registry_keeps_created_presets_as_files(tmp_path: Path) -> None:
    folder = tmp_path / PRESET_DIR
    configured = {"Fixed": PresetSettings(from_="base", system="S")}
    presets = Presets(configured, folder)
    made = presets.save("mine:v2", PresetSettings(from_="fixed", parameters=PresetParameters(seed=1)))
    assert made.path is not None and made.path.parent == folder
    again = Presets(configured, folder)  # a restart
    mine = again.get("MINE:v2")
    assert mine is not None and mine.source == "created" and mine.settings.parameters.seed == 1
    assert again.get("fixed:latest").source == "config" and again.get("base") is None and again.get("") is None
    assert [p.name for p in again.all()] == ["fixed", "mine:v2"]
    with pytest.raises(PresetConflict):
        again.save("fixed", PresetSettings(from_="base"))
    with pytest.raises(PresetConflict):
        again.remove("fixed")
    assert again.remove("mine:v2").name == "mine:v2" and again.get("mine:v2") is None
    assert again.remove("mine:v2") is None and not list(folder.glob("*.json"))


def test_a_preset_of_the_settings_may_build_on_a_created_one(tmp_path: Path) -> None:
    folder = tmp_path / PRESET_DIR
    Presets({}, folder).save("made", PresetSettings(from_="base", system="made's"))
    presets = Presets({"cfg": PresetSettings(from_="made", parameters=PresetParameters(top_p=0.5))}, folder)
    cfg = presets.get("cfg")
    assert cfg.settings.from_ == "base" and cfg.settings.system == "made's" and cfg.settings.parameters.top_p == 0.5
    assert presets.flat(PresetSettings(from_="cfg")).from_ == "base"


def test_unreadable_preset_files_are_skipped_and_reported(tmp_path: Path) -> None:
    folder = tmp_path / PRESET_DIR
    folder.mkdir()
    (folder / "broken.json").write_text("{not json")
    presets = Presets({}, folder)
    assert presets.all() == [] and "broken.json skipped" in presets.problems[0]
    assert Presets({}, None).get("x") is None


# ---------------------------------------------------------------------- shaping a request


def _job(messages: list[wire.ChatMessage] | None, **fields) -> Job:
    request = wire.CompletionRequest(messages=messages, prompt=None if messages else "raw", **fields)
    return Job(kind="chat", model="p", request=request, stream=False, include_usage=False, given=frozenset(fields))


PRESET = PresetSettings(from_="base", system="Be brief.", template="{{ messages }}",
                        messages=(PresetMessage(role="user", content="shot"),
                                  PresetMessage(role="assistant", content="reply")),
                        adapters=(PresetAdapter(name="sql", scale=0.5),),
                        parameters=PresetParameters(temperature=0.0, stop=("###",)))
USER = wire.ChatMessage(role="user", content="question")


def test_a_preset_shapes_the_request_as_ollama_does() -> None:
    req = with_preset(_job([USER]), PRESET).request
    assert [(m.role, m.content) for m in req.messages] == [
        ("system", "Be brief."), ("user", "shot"), ("assistant", "reply"), ("user", "question")]
    assert req.chat_template == "{{ messages }}" and req.lora == [wire.LoraRef(name="sql", scale=0.5)]
    own = wire.ChatMessage(role="system", content="mine")
    req = with_preset(_job([own, USER]), PRESET).request
    assert [m.content for m in req.messages] == ["mine", "shot", "reply", "question"]  # its own system wins
    req = with_preset(_job(None, lora=[wire.LoraRef(name="other")]), PRESET).request
    assert req.messages is None and req.prompt == "raw" and req.lora == [wire.LoraRef(name="other")]


def test_the_preset_s_defaults_lie_over_the_base_s_and_the_client_s_values_win() -> None:
    base = (("temperature", 0.7), ("top_k", 5))
    job = _job([USER])
    req = with_defaults(job, base + PRESET.defaults())
    assert (req.temperature, req.top_k, req.stop) == (0.0, 5, ["###"])
    req = with_defaults(_job([USER], temperature=1.2, stop=["!"]), base + PRESET.defaults())
    assert (req.temperature, req.stop) == (1.2, ["!"])


# ---------------------------------------------------------------------- resolution


def test_a_preset_resolves_to_its_base_s_entry(tmp_path: Path) -> None:
    import gguf_factory

    gguf_factory.write_tiny_llama(tmp_path / "tiny.Q8_0.gguf")
    presets = {"p": PresetSettings(from_="tiny"), "lost": PresetSettings(from_="nowhere")}
    settings = Settings(models_dirs=(str(tmp_path),), bundled_model=False, presets=presets, default_model="p")
    sup = Supervisor(settings)
    assert sup.resolve("P:latest").name == sup.resolve("tiny").name == sup.resolve("").name == "tiny:f32"
    assert sup.preset("").name == "p" and sup.preset("tiny") is None
    with pytest.raises(ModelNotFound, match="preset 'lost' is made from 'nowhere': model 'nowhere' not found"):
        sup.resolve("lost")
    listed = {p.name: (e.name if e else None, why) for p, e, why in sup.preset_entries()}
    assert listed["p"] == ("tiny:f32", None) and listed["lost"][0] is None and "nowhere" in listed["lost"][1]
