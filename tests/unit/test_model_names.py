"""Model store, pure parts: pull names, quantisation choice (split sets, the 'available' error), families."""

from __future__ import annotations

import pytest

from mullama.core.errors import InvalidModelName, PullNotFound
from mullama.models.names import (
    RemoteFile, available_quants, choose_files, family_for_repo, manifest_key, parse_pull_name, quant_label,
)


def files(*names: str) -> list[RemoteFile]:
    return [RemoteFile(path=n, size=100 + i, sha256=f"{i:064x}") for i, n in enumerate(names)]


REPO = files(
    "README.md",
    "SmolLM2-1.7B-Instruct-Q4_K_M.gguf",
    "SmolLM2-1.7B-Instruct-Q8_0.gguf",
    "SmolLM2-1.7B-Instruct-IQ4_XS.gguf",
    "SmolLM2-1.7B-Instruct-UD-Q4_K_XL.gguf",
    "mmproj-SmolLM2-f16.gguf",
    "BF16/SmolLM2-1.7B-Instruct-BF16-00001-of-00003.gguf",
    "BF16/SmolLM2-1.7B-Instruct-BF16-00002-of-00003.gguf",
    "BF16/SmolLM2-1.7B-Instruct-BF16-00003-of-00003.gguf",
    "F32/SmolLM2-1.7B-Instruct-F32-00001-of-00002.gguf",  # part 2 missing: not offered
)


@pytest.mark.parametrize(
    "text,repo,quant",
    [
        ("bartowski/SmolLM2-135M-Instruct-GGUF", "bartowski/SmolLM2-135M-Instruct-GGUF", None),
        ("bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M", "bartowski/SmolLM2-135M-Instruct-GGUF", "q4_k_m"),
        ("hf.co/org/repo:q8_0", "org/repo", "q8_0"),
        ("HF.CO/org/repo:latest", "org/repo", None),
        ("huggingface.co/org/re.po_1-x:UD-Q4_K_XL", "org/re.po_1-x", "ud-q4_k_xl"),
        ("  org/repo  ", "org/repo", None),
    ],
)
def test_parse_pull_name(text: str, repo: str, quant: str | None) -> None:
    ref = parse_pull_name(text)
    assert (ref.repo, ref.quant, ref.revision) == (repo, quant, "main")
    assert ref.name == (f"{repo.lower()}:{quant}" if quant else repo.lower())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "repo",
        "org/",
        "/repo",
        "org/repo/extra",
        "../etc/passwd",
        "org/../x",
        "org/..",
        "org/re po",
        "org/repo:a:b",
        "org/repo:",
        "org/repo:../x",
        "org\\repo",
        "-org/repo",
        "org/repo-",
        "org--x/repo",
        42,
        "org/" + "r" * 200,
        "org/repo:q4\x00",
    ],
)
def test_parse_pull_name_refuses(text: object) -> None:
    with pytest.raises(InvalidModelName) as info:
        parse_pull_name(text)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "name,label",
    [
        ("x-Q4_K_M.gguf", "q4_k_m"),
        ("dir/x.q8_0.gguf", "q8_0"),
        ("x-IQ4_XS.gguf", "iq4_xs"),
        ("x-UD-Q4_K_XL.gguf", "q4_k_xl"),
        ("x-BF16-00001-of-00003.gguf", "bf16"),
        ("x-f16.gguf", "f16"),
        ("x-Q4_0_4_4.gguf", "q4_0_4_4"),
        ("plain.gguf", None),
    ],
)
def test_quant_label(name: str, label: str | None) -> None:
    assert quant_label(name) == label


def test_choose_exact_case_insensitive() -> None:
    quant, chosen = choose_files(REPO, "Q8_0".lower(), "o/r")
    assert quant == "q8_0" and [f.path for f in chosen] == ["SmolLM2-1.7B-Instruct-Q8_0.gguf"]


def test_choose_default_prefers_q4_k_m() -> None:
    quant, chosen = choose_files(REPO, None, "o/r")
    assert quant == "q4_k_m" and chosen[0].basename == "SmolLM2-1.7B-Instruct-Q4_K_M.gguf"


def test_choose_split_set_downloads_as_a_set_in_order() -> None:
    quant, chosen = choose_files(list(reversed(REPO)), "bf16", "o/r")
    assert quant == "bf16"
    assert [f.basename for f in chosen] == [
        f"SmolLM2-1.7B-Instruct-BF16-0000{i}-of-00003.gguf" for i in (1, 2, 3)
    ]


def test_choose_by_an_inner_token() -> None:
    _, chosen = choose_files(REPO, "ud-q4_k_xl", "o/r")
    assert chosen[0].basename == "SmolLM2-1.7B-Instruct-UD-Q4_K_XL.gguf"
    assert choose_files(REPO, "q4_k_xl", "o/r")[1] == chosen


def test_no_match_lists_the_available_quants() -> None:
    with pytest.raises(PullNotFound) as info:
        choose_files(REPO, "q2_k", "o/r")
    message = str(info.value)
    assert info.value.status == 404
    assert "no Q2_K GGUF file" in message
    assert "available quantisations: BF16, IQ4_XS, Q4_K_M, Q4_K_XL, Q8_0" in message
    assert "F32" not in message and "MMPROJ" not in message.upper().replace("AVAILABLE", "")


def test_available_quants_and_repos_without_gguf() -> None:
    assert available_quants(REPO) == ["bf16", "iq4_xs", "q4_k_m", "q4_k_xl", "q8_0"]
    with pytest.raises(PullNotFound, match="no GGUF model files"):
        choose_files(files("README.md", "model.safetensors"), None, "o/r")


def test_default_without_a_usual_quant() -> None:
    one = files("weird-model.gguf")
    assert choose_files(one, None, "o/r")[1][0].path == "weird-model.gguf"
    with pytest.raises(PullNotFound, match="name one: IQ2_XS, IQ3_S"):
        choose_files(files("m-IQ2_XS.gguf", "m-IQ3_S.gguf"), None, "o/r")


@pytest.mark.parametrize(
    "repo,family",
    [
        ("bartowski/SmolLM2-135M-Instruct-GGUF", "smollm2-135m-instruct"),
        ("org/Llama-3.2-1B", "llama-3.2-1b"),
        ("org/GGUF", "gguf"),
        ("org/x_gguf", "x"),
    ],
)
def test_family_for_repo(repo: str, family: str) -> None:
    assert family_for_repo(repo) == family


def test_manifest_key_is_safe_and_unique() -> None:
    a, b = manifest_key("Org/Repo:Q4_K_M"), manifest_key("org-repo:q4_k_m")
    assert a.startswith("org--repo--q4_k_m-") and a != b
    assert "/" not in manifest_key("../../x:y") and not manifest_key("../../x:y").startswith(".")


@pytest.mark.parametrize("word", ["instruct", "smollm2", "1.7b"])
def test_a_word_of_the_file_name_is_not_a_quantisation(word: str) -> None:
    """Only quantisation-looking labels fall back to a token search; a plain word is a 404 that lists
    the quantisations (it once picked the first file alphabetically)."""
    with pytest.raises(PullNotFound, match="available quantisations"):
        choose_files(REPO, word, "o/r")
