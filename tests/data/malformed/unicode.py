"""Unicode: invalid escapes and bytes (400), odd-but-valid text (served)."""

from __future__ import annotations

from .common import CHAT, COMPLETIONS, Case, chat, j


def unicode_cases() -> list[Case]:
    def raw_content(content: bytes) -> bytes:
        return b'{"max_tokens": 1, "messages": [{"role": "user", "content": "' + content + b'"}]}'

    bad = [
        ("lone_high_surrogate", b"\\ud800"),
        ("lone_low_surrogate", b"\\udc00"),
        ("reversed_pair", b"\\udc00\\ud800"),
        ("high_then_letter", b"\\ud800\\u0041"),
        ("invalid_byte_ff", b"\xff"),
        ("overlong_slash", b"\xc0\xaf"),
        ("overlong_nul", b"\xc0\x80"),
        ("cesu_surrogate", b"\xed\xa0\x80"),
        ("truncated_sequence", b"\xe2\x82"),
        ("latin1_byte", b"caf\xe9"),
        ("raw_control_char", b"a\x01b"),
        ("bad_escape", b"\\x41"),
        ("short_unicode_escape", b"\\u12"),
    ]
    cases = [Case(f"unicode:chat:{name}", "POST", CHAT, raw_content(c), 400) for name, c in bad]
    cases += [
        Case(
            f"unicode:completions:{name}",
            "POST",
            COMPLETIONS,
            b'{"max_tokens": 1, "prompt": "' + c + b'"}',
            400,
        )
        for name, c in bad[:6]
    ]
    cases += [
        Case(f"unicode:model:{name}", "POST", CHAT, b'{"messages": [], "model": "' + c + b'"}', 400)
        for name, c in bad[4:8]
    ]
    ok = [
        ("nul_escape", "a\u0000b"),
        ("rtl_override", "\u202eevil\u202c"),
        ("emoji", "\U0001f600\U0001f44d\U0001f3fd"),
        ("zwj_family", "\U0001f468\u200d\U0001f469\u200d\U0001f467"),
        ("bom_char", "\ufeffhi"),
        ("noncharacter", "\uffff\ufffe"),
        ("combining", "e\u0301\u0301\u0301\u0301"),
        ("valid_pair_escape", "\U0001d11e"),
        ("cjk", "\u4f60\u597d"),
        ("arabic", "\u0645\u0631\u062d\u0628\u0627"),
    ]
    cases += [
        Case(
            f"unicode:ok:{name}",
            "POST",
            CHAT,
            j({"max_tokens": 1, "messages": [{"role": "user", "content": text}]}),
            200,
        )
        for name, text in ok
    ]
    cases.append(Case("unicode:ok:stop_emoji", "POST", CHAT, chat(stop=["\U0001f600"]), 200))
    cases.append(Case("unicode:ok:ascii_escaped_pair", "POST", CHAT, raw_content(b"\\ud834\\udd1e"), 200))
    return cases
