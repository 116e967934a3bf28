"""The Modelfile parser and renderer: every instruction, every error, the curated files."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from dsollama._catalogue import load_catalogue
from dsollama._exceptions import ModelfileError
from dsollama._modelfile import (
    DEPRECATED_PARAMETERS,
    PARAMETER_TYPES,
    Message,
    Modelfile,
    coerce_parameter,
    load_modelfile,
    parse_modelfile,
    render_modelfile,
)

PATH = "Modelfiles/x.Modelfile"
CURATED = sorted((Path(__file__).parent.parent / "Modelfiles").glob("*.Modelfile"))
R1_STOPS = (
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<\uff5cUser\uff5c>",
    "<\uff5cAssistant\uff5c>",
)


def parse(text: str) -> Modelfile:
    return parse_modelfile(text, path=PATH)


def parse_error(text: str) -> ModelfileError:
    with pytest.raises(ModelfileError) as info:
        parse(text)
    return info.value


# ----------------------------------------------------------------------------- FROM


def test_from_model_name() -> None:
    m = parse("FROM deepseek-r1:8b\n")
    assert m == Modelfile(from_="deepseek-r1:8b")
    assert m.path == PATH
    assert m.warnings == ()


def test_keywords_are_case_insensitive() -> None:
    m = parse("from x\nParameter top_k 5\nsYsTeM hi\nmessage user yo\n")
    assert m == Modelfile(
        from_="x", parameters={"top_k": 5}, system="hi", messages=(Message("user", "yo"),)
    )


def test_from_quoted_keeps_spaces_and_bare_value_is_trimmed() -> None:
    assert parse('FROM "  my model "\n').from_ == "  my model "
    assert parse("FROM\t  /models/the path \t\n").from_ == "/models/the path"


def test_instructions_may_come_in_any_order() -> None:
    m = parse("PARAMETER top_k 1\nSYSTEM s\nFROM base\n")
    assert (m.from_, dict(m.parameters), m.system) == ("base", {"top_k": 1}, "s")


def test_several_from_lines_are_refused_naming_both_lines() -> None:
    err = parse_error("FROM a\n\n  FROM b\n")
    assert str(err).startswith(f"{PATH}:3:3: a second FROM (the first is on line 1)")
    assert err.hint is not None
    assert "folder" in err.hint
    assert (err.path, err.line, err.column) == (PATH, 3, 3)


def test_no_from_line() -> None:
    err = parse_error("# only a comment\nPARAMETER top_k 1\n")
    assert str(err) == f"{PATH}: no FROM line"
    assert err.hint is not None
    assert "FROM deepseek-r1:8b" in err.hint
    assert str(parse_error("")) == f"{PATH}: no FROM line"


# ------------------------------------------------------------------------ PARAMETER

PARAMETER_EXAMPLES = {
    "num_ctx": ("16384", 16384),
    "num_batch": ("512", 512),
    "num_gpu": ("-1", -1),
    "main_gpu": ("0", 0),
    "use_mmap": ("false", False),
    "num_thread": ("+8", 8),
    "draft_num_predict": ("4", 4),
    "num_keep": ("4", 4),
    "seed": ("-1", -1),
    "num_predict": ("9223372036854775807", 2**63 - 1),
    "top_k": ("40", 40),
    "top_p": ("0.95", 0.95),
    "min_p": (".05", 0.05),
    "typical_p": ("1", 1.0),
    "repeat_last_n": ("64", 64),
    "temperature": ("6e-1", 0.6),
    "repeat_penalty": ("1.1", 1.1),
    "presence_penalty": ("-0.5", -0.5),
    "frequency_penalty": ("0x1p-1", 0.5),
    "stop": ("</s>", ("</s>",)),
}


def test_parameter_types_match_ollama_options() -> None:
    assert dict(PARAMETER_TYPES) == {
        name: type(v) if not isinstance(v, tuple) else list
        for name, (_, v) in PARAMETER_EXAMPLES.items()
    }


@pytest.mark.parametrize(("name", "example"), PARAMETER_EXAMPLES.items())
def test_every_parameter_is_typed(name: str, example: tuple[str, object]) -> None:
    raw, expected = example
    value = parse(f"FROM x\nPARAMETER {name} {raw}\n").parameters[name]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(s, True) for s in ("1", "t", "T", "TRUE", "true", "True")]
    + [(s, False) for s in ("0", "f", "F", "FALSE", "false", "False")],
)
def test_bool_accepts_go_parsebool_spellings(raw: str, expected: bool) -> None:
    assert parse(f"FROM x\nPARAMETER use_mmap {raw}\n").parameters["use_mmap"] is expected


@pytest.mark.parametrize("raw", ["yes", "on", "tRUE", "2", ""])
def test_bool_refuses_other_spellings(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid bool value"):
        coerce_parameter("use_mmap", raw)


def test_stop_lines_accumulate_in_order_and_keep_quoted_spaces() -> None:
    m = parse(
        'FROM x\nPARAMETER stop "### User: "\nPARAMETER top_k 1\n'
        "PARAMETER stop ### User: \nPARAMETER stop <|EOT|>\n"
    )
    assert m.parameters["stop"] == ("### User: ", "### User:", "<|EOT|>")
    assert list(m.parameters) == ["stop", "top_k"]  # order of first appearance


def test_repeated_parameter_last_wins_with_a_warning() -> None:
    m = parse("FROM x\nPARAMETER temperature 0.1\nPARAMETER temperature 0.9\n")
    assert m.parameters == {"temperature": 0.9}
    assert m.warnings == (
        f"{PATH}:3:11: temperature is set again; this value replaces the one on line 2",
    )


@pytest.mark.parametrize("name", sorted(DEPRECATED_PARAMETERS))
def test_deprecated_parameters_are_dropped_with_a_warning(name: str) -> None:
    m = parse(f"FROM x\nPARAMETER {name} 1\nPARAMETER top_k 2\n")
    assert m.parameters == {"top_k": 2}
    assert len(m.warnings) == 1
    assert m.warnings[0].startswith(f"{PATH}:2:11: parameter {name} is deprecated")


def test_deprecated_parameter_list_is_ollamas() -> None:
    assert {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    } == DEPRECATED_PARAMETERS


# --------------------------------------------------------- TEMPLATE, SYSTEM and quoting


def test_triple_quoted_value_is_kept_byte_for_byte() -> None:
    text = 'FROM x\nTEMPLATE """\n{{ .System }}\n  "quoted" \t\n\n"""   \nSYSTEM s\n'
    m = parse(text)
    assert m.template == '\n{{ .System }}\n  "quoted" \t\n\n'
    assert m.system == "s"


def test_single_quotes_span_lines_too_and_a_hash_line_inside_is_text() -> None:
    m = parse('FROM x\nSYSTEM "line one\n# not a comment\nline three"\n')
    assert m.system == "line one\n# not a comment\nline three"


def test_empty_quoted_values() -> None:
    assert parse('FROM x\nSYSTEM ""\n').system == ""
    assert parse('FROM x\nSYSTEM """"""\n').system == ""


def test_quotes_inside_values() -> None:
    assert parse('FROM x\nSYSTEM """say "hi" """\n').system == 'say "hi" '
    assert parse('FROM x\nSYSTEM "\'"\n').system == "'"  # single quotes are plain text
    assert parse('FROM x\nSYSTEM say "hi"\n').system == 'say "hi"'


def test_last_template_and_system_win_with_a_warning() -> None:
    m = parse("FROM x\nSYSTEM one\nTEMPLATE t1\nSYSTEM two\nTEMPLATE t2\n")
    assert (m.system, m.template) == ("two", "t2")
    assert m.warnings == (
        f"{PATH}:4:1: SYSTEM replaces the one on line 2",
        f"{PATH}:5:1: TEMPLATE replaces the one on line 3",
    )


def test_text_after_a_closing_quote_keeps_it_open_like_ollama_with_a_warning() -> None:
    m = parse('FROM x\nSYSTEM """abc""" # note\nmore\n"""\n')
    assert m.system == 'abc""" # note\nmore\n'
    assert len(m.warnings) == 1
    assert m.warnings[0].startswith(f"{PATH}:2:8: the SYSTEM value runs on to line 4")
    assert "line 2, column 14" in m.warnings[0]


def test_hash_starts_a_comment_only_as_first_non_blank() -> None:
    m = parse("# header\n   \t# indented comment\nFROM x\nSYSTEM keep # this\n")
    assert m.system == "keep # this"


def test_blank_lines_and_indentation_are_ignored() -> None:
    assert parse("\n\n\t  FROM x\n\n   PARAMETER   top_k    3   \n\n").parameters == {"top_k": 3}


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_line_endings(newline: str) -> None:
    text = newline.join(["FROM x", 'SYSTEM """a', 'b"""', "PARAMETER top_k 1", ""])
    m = parse(text)
    assert m.system == f"a{newline}b"  # inside quotes, line breaks are kept as written
    assert m.parameters == {"top_k": 1}
    err = parse_error(newline.join(["FROM x", "", "PARAMETER top_k z"]))
    assert (err.line, err.column) == (3, 17)


def test_deepseek_tokens_and_characters_ollama_would_drop_are_kept() -> None:
    m = parse(
        "FROM x\nPARAMETER stop <\uff5cUser\uff5c>\nSYSTEM \u4f60\u3000\u597d\U0001f469\u200d\U0001f4bb\n"
    )
    assert m.parameters["stop"] == ("<\uff5cUser\uff5c>",)
    assert m.system == "\u4f60\u3000\u597d\U0001f469\u200d\U0001f4bb"


def test_a_leading_byte_order_mark_in_text_is_ignored() -> None:
    assert parse("\ufeffFROM x\n").from_ == "x"


# ------------------------------------------------ ADAPTER, LICENSE, MESSAGE, REQUIRES, …


def test_adapters_accumulate_with_a_warning_for_the_second() -> None:
    m = parse("FROM x\nADAPTER ./a.gguf\nADAPTER ./b\n")
    assert m.adapters == ("./a.gguf", "./b")
    assert m.warnings == (f"{PATH}:3:1: several ADAPTER lines: Ollama applies only one",)


def test_licenses_accumulate() -> None:
    m = parse('FROM x\nLICENSE MIT\nLICENSE """\nLong text.\n"Quoted."\n"""\n')
    assert m.licenses == ("MIT", '\nLong text.\n"Quoted."\n')


def test_messages_keep_order_and_multiline_content() -> None:
    m = parse(
        'FROM x\nMESSAGE system """\nBe brief.\n"""\nMESSAGE user Hey there!\n'
        "MESSAGE assistant   Hello.\n"
    )
    assert m.messages == (
        Message("system", "\nBe brief.\n"),
        Message("user", "Hey there!"),
        Message("assistant", "Hello."),
    )


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("0.14.0", "0.14.0"),
        ("v0.14.0", "0.14.0"),
        ("0.14", "0.14"),
        ("1", "1"),
        ("1.2.3-rc.1+build.05", "1.2.3-rc.1+build.05"),
    ],
)
def test_requires_accepts_semver_with_optional_v(raw: str, stored: str) -> None:
    assert parse(f"FROM x\nREQUIRES {raw}\n").requires == stored


@pytest.mark.parametrize("raw", ["0.14.x", "01.2.3", "1.2-rc1", "latest", "1.2.3-01", "V1.2.3"])
def test_requires_refuses_what_is_not_semver(raw: str) -> None:
    err = parse_error(f"FROM x\nREQUIRES {raw}\n")
    assert str(err) == f"{PATH}:2:10: REQUIRES {raw!r} is not a semantic version"
    assert err.hint == "write a version such as REQUIRES 0.14.0"


def test_renderer_parser_and_draft() -> None:
    m = parse("FROM x\nRENDERER qwen3-coder\nPARSER qwen3-coder\nDRAFT ./draft\n")
    assert (m.renderer, m.parser, m.draft) == ("qwen3-coder", "qwen3-coder", "./draft")


def test_second_draft_is_refused() -> None:
    err = parse_error("FROM x\nDRAFT ./a\nDRAFT ./b\n")
    assert str(err) == f"{PATH}:3:1: a second DRAFT (the first is on line 2)"


def test_name_like_value_with_a_hash_warns() -> None:
    m = parse("FROM deepseek-r1:8b # base\n")
    assert m.from_ == "deepseek-r1:8b # base"  # as Ollama reads it
    assert m.warnings[0].startswith(f"{PATH}:1:6: the FROM value")
    assert "not a comment" in m.warnings[0]


# --------------------------------------------------------------------------- errors

ERRORS = [
    # text, "line:column", message part, hint part
    (
        "FROM x\nPARAMETER temperature abc\n",
        "2:23",
        "invalid float value 'abc' for parameter temperature (expected a number such as 0.7)",
        "PARAMETER temperature 0.7",
    ),
    (
        "FROM x\nPARAMETER temperature 1 # hot\n",
        "2:23",
        "invalid float value '1 # hot'",
        "not a comment",
    ),
    (
        "FROM x\nPARAMETER temperature 0,7\n",
        "2:23",
        "invalid float value '0,7'",
        "PARAMETER temperature 0.7",
    ),
    ("FROM x\nPARAMETER temperature nan\n", "2:23", "invalid float value 'nan'", "finite"),
    ("FROM x\nPARAMETER temperature 1e39\n", "2:23", "out of range", "32-bit"),
    (
        "FROM x\nPARAMETER num_ctx 4k\n",
        "2:19",
        "invalid int value '4k' for parameter num_ctx",
        "PARAMETER num_ctx 4096",
    ),
    ("FROM x\nPARAMETER num_ctx 2048.0\n", "2:19", "invalid int value '2048.0'", "whole number"),
    ("FROM x\nPARAMETER seed 9223372036854775808\n", "2:16", "out of range", "64-bit"),
    (
        "FROM x\nPARAMETER use_mmap yes\n",
        "2:20",
        "invalid bool value 'yes' for parameter use_mmap",
        "PARAMETER use_mmap true",
    ),
    (
        "FROM x\nPARAMETER Temperature 0.7\n",
        "2:11",
        "unknown parameter 'Temperature'",
        "case-sensitive: write temperature",
    ),
    (
        "FROM x\nPARAMETER temprature 0.7\n",
        "2:11",
        "unknown parameter 'temprature'",
        "did you mean temperature?",
    ),
    (
        "FROM x\nPARAMETER num_gqa 8\n",
        "2:11",
        "unknown parameter 'num_gqa'",
        "no longer has this parameter",
    ),
    (
        "FROM x\nPARAMETER xyzzy 8\n",
        "2:11",
        "unknown parameter 'xyzzy'",
        "known parameters: draft_num_predict, frequency_penalty,",
    ),
    (
        "FROM x\nPARAMETER temperature=0.7\n",
        "2:11",
        "invalid parameter name 'temperature=0.7'",
        "PARAMETER temperature <value>",
    ),
    ("FROM x\nPARAMETER top_k\n", "2:16", "PARAMETER top_k needs a value", "same line"),
    ("FROM x\nPARAMETER\n", "2:10", "PARAMETER needs a name and a value", None),
    ("FROM x\nMESSAGE system\n", "2:15", "MESSAGE system needs a value", '""'),
    ("FROM x\nMESSAGE User hi\n", "2:9", "invalid message role 'User'", "write MESSAGE user"),
    (
        "FROM x\nMESSAGE tool {}\n",
        "2:9",
        "invalid message role 'tool'",
        "tool messages cannot be preset",
    ),
    ("FROM x\nSYSTEM\n", "2:7", "SYSTEM needs a value", 'write "" for an empty value'),
    ("FROM x\nSYSTEM   \n", "2:10", "SYSTEM needs a value", None),
    ("FROM\n", "1:5", "FROM needs a value", "FROM deepseek-r1:8b"),
    ('FROM ""\n', "1:6", "FROM needs a model name or a path", None),
    (
        "FROM x\nINSTRUCTION y\n",
        "2:1",
        "unknown instruction 'INSTRUCTION'",
        "a line must start with FROM",
    ),
    ("FROM x\nSYTSEM y\n", "2:1", "unknown instruction 'SYTSEM'", "did you mean SYSTEM?"),
    (
        'FROM x\nSYSTEM"hi"\n',
        "2:1",
        "unknown instruction 'SYSTEM\"hi\"'",
        "put a space after SYSTEM",
    ),
    (
        'FROM x\n\nSYSTEM """never\nclosed\n',
        "3:8",
        'unterminated """ in the SYSTEM value',
        'end the value with """',
    ),
    (
        'FROM x\nTEMPLATE  """{{ .Prompt }}""" # c\n',
        "2:11",
        'unterminated """ in the TEMPLATE value',
        "line 2, column 27 does not close",
    ),
    ('FROM x\nPARAMETER stop "abc\n', "2:16", 'unterminated " in the PARAMETER stop value', None),
    ('FROM x\nSYSTEM """This is a multiline system.""\n', "2:8", "unterminated", None),
]


@pytest.mark.parametrize(("text", "where", "problem", "hint"), ERRORS)
def test_errors_name_file_line_column_and_fix(
    text: str, where: str, problem: str, hint: str | None
) -> None:
    err = parse_error(text)
    assert str(err).startswith(f"{PATH}:{where}: ")
    assert problem in err.problem
    line, column = (int(n) for n in where.split(":"))
    assert (err.path, err.line, err.column) == (PATH, line, column)
    if hint is not None:
        assert err.hint is not None
        assert hint in err.hint


def test_error_without_path_says_modelfile() -> None:
    with pytest.raises(ModelfileError, match=r"^<modelfile>:1:1: unknown instruction"):
        parse_modelfile("BOGUS x\n")


# --------------------------------------------------------------- coerce_parameter


def test_coerce_parameter_is_usable_on_its_own() -> None:
    assert coerce_parameter("num_ctx", "8192") == 8192
    assert coerce_parameter("stop", "<|EOT|>") == ("<|EOT|>",)
    with pytest.raises(
        ValueError,
        match=r"invalid float value 'abc' for parameter temperature \(expected a number such as 0.7\)",
    ):
        coerce_parameter("temperature", "abc")
    with pytest.raises(ValueError, match="unknown parameter 'numa'"):
        coerce_parameter("numa", "true")
    with pytest.raises(ValueError, match="deprecated"):
        coerce_parameter("mirostat", "1")


# ------------------------------------------------------------------ load_modelfile

SAMPLE = "FROM bob\nPARAMETER num_ctx 4096\nSYSTEM \u4f60\u597d\U0001f44b <\uff5cUser\uff5c>\n"


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s.encode("utf-8"),
        lambda s: codecs.BOM_UTF8 + s.encode("utf-8"),
        lambda s: codecs.BOM_UTF16_LE + s.encode("utf-16-le"),
        lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-le", "utf-16-be"],
)
def test_load_modelfile_decodes_utf8_and_utf16_with_bom(tmp_path: Path, encode: object) -> None:
    path = tmp_path / "m.Modelfile"
    path.write_bytes(encode(SAMPLE))  # type: ignore[operator]
    m = load_modelfile(path)
    assert m == Modelfile(
        from_="bob",
        parameters={"num_ctx": 4096},
        system="\u4f60\u597d\U0001f44b <\uff5cUser\uff5c>",
    )
    assert m.path == str(path)


def test_load_modelfile_reports_invalid_utf8_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.Modelfile"
    path.write_bytes(b"FROM x\nSYSTEM caf\xe9\n")
    with pytest.raises(ModelfileError) as info:
        load_modelfile(path)
    assert str(info.value) == f"{path}:2:11: invalid UTF-8 (byte 0xe9)"
    assert info.value.hint is not None
    assert "UTF-8" in info.value.hint


def test_load_modelfile_refuses_utf16_without_bom(tmp_path: Path) -> None:
    path = tmp_path / "m.Modelfile"
    path.write_bytes(SAMPLE.encode("utf-16-le"))
    with pytest.raises(ModelfileError, match="UTF-16 without a byte-order mark"):
        load_modelfile(path)


def test_load_modelfile_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="cannot read the Modelfile"):
        load_modelfile(tmp_path / "nope.Modelfile")


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.Modelfile"
    path.write_text("FROM x\nPARAMETER top_p high\n", encoding="utf-8")
    with pytest.raises(ModelfileError, match=rf"^{path}:2:17: invalid float value 'high'"):
        load_modelfile(path)


# ------------------------------------------------------------------------ the type


def test_equality_ignores_path_and_warnings_and_parameter_order() -> None:
    a = parse("FROM x\nPARAMETER top_k 1\nPARAMETER top_p 0.5\nPARAMETER mirostat 1\n")
    b = parse_modelfile("FROM x\nPARAMETER top_p 0.5\nPARAMETER top_k 1\n")
    assert a == b
    assert a.warnings
    assert not b.warnings


def test_modelfile_is_immutable_and_hashable() -> None:
    params: dict[str, object] = {"stop": ["a"], "top_k": 1}
    m = Modelfile(from_="x", parameters=params)  # type: ignore[arg-type]  # a list, on purpose
    params["top_k"] = 2
    assert m.parameters == {"stop": ("a",), "top_k": 1}
    assert hash(m) == hash(Modelfile(from_="x", parameters={"top_k": 1, "stop": ("a",)}))
    with pytest.raises(TypeError):
        m.parameters["top_k"] = 3  # type: ignore[index]


# ------------------------------------------------------------------------ rendering


def test_render_writes_every_instruction_and_parses_back() -> None:
    m = Modelfile(
        from_="deepseek-r1:8b",
        parameters={"num_ctx": 16384, "temperature": 0.6, "use_mmap": True, "stop": R1_STOPS},
        template="{{ .Prompt }}\n",
        system="",
        adapters=("./lora.gguf",),
        licenses=("MIT", 'multi\n"line"'),
        messages=(Message("user", " hi "), Message("assistant", "#1")),
        requires="0.14.0",
        renderer="r",
        parser="p",
        draft="./draft.gguf",
    )
    text = render_modelfile(m)
    assert text.startswith("FROM deepseek-r1:8b\nREQUIRES 0.14.0\nADAPTER ./lora.gguf\n")
    assert "PARAMETER temperature 0.6\nPARAMETER use_mmap true\n" in text
    assert 'SYSTEM ""\n' in text
    assert 'LICENSE """multi\n"line""""\n' in text
    assert 'MESSAGE user " hi "\n' in text
    assert parse_modelfile(text) == m


def test_render_refuses_a_value_modelfile_syntax_cannot_hold() -> None:
    m = Modelfile(from_="x", system='ends in quotes"""\nnext line')
    with pytest.raises(ModelfileError, match="cannot write the SYSTEM value"):
        render_modelfile(m)


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({"temperature": "0.7"}, "must be a number"),
        ({"num_ctx": 0.5}, "must be an integer"),
        ({"num_ctx": True}, "must be an integer"),
        ({"use_mmap": 1}, "must be true or false"),
        ({"stop": (1,)}, "list of strings"),
        ({"temperature": float("inf")}, "finite"),
        ({"numa": True}, "unknown parameter"),
    ],
)
def test_render_refuses_wrongly_typed_parameters(
    parameters: dict[str, object], problem: str
) -> None:
    with pytest.raises(ModelfileError, match=problem):
        render_modelfile(Modelfile(from_="x", parameters=parameters))  # type: ignore[arg-type]


def test_render_refuses_an_unknown_role() -> None:
    m = Modelfile(from_="x", messages=(Message("tool", "x"),))  # type: ignore[arg-type]
    with pytest.raises(ModelfileError, match="role 'tool'"):
        render_modelfile(m)


# ---------------------------------------------------------------- curated Modelfiles


def test_the_curated_set_is_there() -> None:
    assert [p.name for p in CURATED] == [
        "deepseek-coder-assistant.Modelfile",
        "deepseek-r1-reasoner.Modelfile",
        "deepseek-r1-zh.Modelfile",
    ]


@pytest.mark.parametrize("path", CURATED, ids=lambda p: p.stem)
def test_curated_modelfile_parses_cleanly_and_round_trips(path: Path) -> None:
    m = load_modelfile(path)
    assert m.warnings == ()
    assert parse_modelfile(render_modelfile(m)) == m


@pytest.mark.parametrize("path", CURATED, ids=lambda p: p.stem)
def test_curated_modelfile_is_a_catalogue_model_under_a_family_name(path: Path) -> None:
    m = load_modelfile(path)
    catalogue = load_catalogue()
    base = catalogue.resolve(m.from_)
    assert base is not None, f"{m.from_} is not in the catalogue"
    assert path.stem.startswith(base.library)  # the family prefix maps fallback
    assert any(path.stem.startswith(f.prefix) for f in catalogue.families)
    header = path.read_text(encoding="utf-8").splitlines()
    assert header[0].startswith(f"# {path.stem}:")
    comments = "\n".join(line for line in header if line.startswith("#"))
    assert "Based on" in comments
    assert "Memory" in comments
    assert base.base_model in comments


@pytest.mark.parametrize("stem", ["deepseek-r1-reasoner", "deepseek-r1-zh"])
def test_r1_modelfiles_stop_on_deepseeks_real_token_spelling(stem: str) -> None:
    m = load_modelfile(next(p for p in CURATED if p.stem == stem))
    assert m.parameters["stop"] == R1_STOPS
    assert m.parameters["temperature"] == 0.6
    assert m.parameters["top_p"] == 0.95
    stops = m.parameters["stop"]
    assert isinstance(stops, tuple)
    for stop in stops:
        assert "|" not in stop
        assert "_" not in stop


def test_reasoner_has_the_larger_context() -> None:
    m = load_modelfile(next(p for p in CURATED if p.stem == "deepseek-r1-reasoner"))
    assert m.parameters["num_ctx"] == 16384
    assert m.system is None


def test_zh_assistant_has_a_chinese_system_prompt() -> None:
    m = load_modelfile(next(p for p in CURATED if p.stem == "deepseek-r1-zh"))
    assert m.system is not None
    assert "\u7b80\u4f53\u4e2d\u6587" in m.system
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in m.system) > 50


def test_coder_assistant_keeps_the_base_template_and_stops_on_eot() -> None:
    path = next(p for p in CURATED if p.stem == "deepseek-coder-assistant")
    m = load_modelfile(path)
    assert m.from_ == "deepseek-coder:6.7b"
    assert m.template is None
    assert m.system is None
    assert "<|EOT|>" in m.parameters["stop"]  # type: ignore[operator]
    assert isinstance(m.parameters["temperature"], float)
    assert m.parameters["temperature"] <= 0.3
    assert "UNVERIFIED" in path.read_text(encoding="utf-8")
