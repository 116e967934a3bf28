"""Modelfile -> structured /api/create body: typed JSON, local files hashed and named."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dsollama import _create_request
from dsollama._catalogue import load_catalogue
from dsollama._create_request import BlobUpload, plan_create
from dsollama._exceptions import ModelfileError
from dsollama._modelfile import Message, Modelfile, load_modelfile, parse_modelfile

CURATED = sorted((Path(__file__).parent.parent / "Modelfiles").glob("*.Modelfile"))


def gguf(path: Path, payload: bytes = b"weights") -> Path:
    """A small file that looks like GGUF (magic, version 3) to anything that checks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + payload)
    return path


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def modelfile_at(folder: Path, text: str) -> Modelfile:
    path = write(folder / "Modelfile", text)
    return load_modelfile(path)


# ------------------------------------------------------------------- model names


def test_from_a_model_name_with_typed_parameters_and_text_fields() -> None:
    m = parse_modelfile(
        "FROM deepseek-r1:8b\n"
        "PARAMETER temperature 1\nPARAMETER num_ctx 8192\nPARAMETER use_mmap false\n"
        "PARAMETER stop <\uff5cUser\uff5c>\nPARAMETER stop </s>\n"
        'TEMPLATE "{{ .Prompt }}"\nSYSTEM ""\nLICENSE MIT\nLICENSE Apache-2.0\n'
        "MESSAGE user hi\nMESSAGE assistant hello\nREQUIRES v0.14.0\nRENDERER r\nPARSER p\n"
    )
    plan = plan_create(m, "mine", quantize="q4_K_M")
    assert plan.model == "mine"
    assert plan.blobs == ()
    assert plan.request == {
        "model": "mine",
        "from": "deepseek-r1:8b",
        "template": "{{ .Prompt }}",
        "system": "",
        "parameters": {
            "temperature": 1.0,
            "num_ctx": 8192,
            "use_mmap": False,
            "stop": ["<\uff5cUser\uff5c>", "</s>"],
        },
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ],
        "license": ["MIT", "Apache-2.0"],
        "requires": "0.14.0",
        "renderer": "r",
        "parser": "p",
        "quantize": "q4_K_M",
    }


def test_parameters_go_out_as_json_numbers_bools_and_lists() -> None:
    m = parse_modelfile("FROM x\nPARAMETER temperature 1\nPARAMETER top_k 40\nPARAMETER stop a\n")
    body = json.dumps(plan_create(m, "y").request)
    assert '"temperature": 1.0' in body
    assert '"top_k": 40' in body
    assert '"stop": ["a"]' in body


def test_absent_fields_stay_out_of_the_request_and_there_is_no_stream() -> None:
    plan = plan_create(Modelfile(from_="deepseek-coder:6.7b"), "c")
    assert plan.request == {"model": "c", "from": "deepseek-coder:6.7b"}


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({"temperature": "0.7"}, "must be a number"),
        ({"stop": 5}, "list of strings"),
        ({"num_ctx": 4096.5}, "must be an integer"),
        ({"mirostat": 1}, "deprecated"),
    ],
)
def test_wrongly_typed_parameters_built_in_code_are_refused(
    parameters: dict[str, object], problem: str
) -> None:
    m = Modelfile(from_="x", parameters=parameters)  # type: ignore[arg-type]
    with pytest.raises(ModelfileError, match=problem):
        plan_create(m, "y")


def test_an_integral_float_for_an_int_parameter_goes_out_as_an_int() -> None:
    m = Modelfile(from_="x", parameters={"num_ctx": 8192.0, "temperature": 1})
    assert plan_create(m, "y").request["parameters"] == {"num_ctx": 8192, "temperature": 1.0}
    assert isinstance(plan_create(m, "y").request["parameters"]["num_ctx"], int)


def test_a_missing_path_is_an_error_not_a_model_name(tmp_path: Path) -> None:
    m = modelfile_at(tmp_path, "FROM ./models/deepseek.gguf\n")
    with pytest.raises(ModelfileError, match=r"FROM \./models/deepseek\.gguf: no such file"):
        plan_create(m, "y")


def test_a_from_that_is_no_model_name_is_refused() -> None:
    m = parse_modelfile("FROM deepseek-r1:8b # base\n")
    with pytest.raises(ModelfileError, match="neither an existing file nor a valid model name"):
        plan_create(m, "y")


@pytest.mark.parametrize(
    "name",
    ["deepseek-r1", "deepseek-r1:8b", "me/tuned:v1", "hf.co/unsloth/DeepSeek-R1-GGUF:Q4_K_M"],
)
def test_model_names_pass_through_verbatim(name: str, tmp_path: Path) -> None:
    plan = plan_create(Modelfile(from_=name), "y", base_dir=tmp_path)
    assert plan.request["from"] == name


# --------------------------------------------------------------- local GGUF files


def test_from_a_gguf_file_relative_to_the_modelfile(tmp_path: Path) -> None:
    weights = gguf(tmp_path / "models" / "deepseek-r1-8b-q4.gguf", b"x" * 1000)
    m = modelfile_at(tmp_path, "FROM ./models/deepseek-r1-8b-q4.gguf\nPARAMETER num_ctx 4096\n")
    plan = plan_create(m, "local-r1")
    digest = sha(weights)
    assert digest == "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    assert plan.request["files"] == {"deepseek-r1-8b-q4.gguf": digest}
    assert "from" not in plan.request
    assert plan.request["parameters"] == {"num_ctx": 4096}
    assert plan.blobs == (BlobUpload(digest=digest, path=weights.resolve(), size=1008),)


def test_base_dir_overrides_the_modelfile_folder(tmp_path: Path) -> None:
    weights = gguf(tmp_path / "elsewhere" / "m.gguf")
    m = parse_modelfile("FROM m.gguf\n", path=str(tmp_path / "Modelfile"))
    plan = plan_create(m, "y", base_dir=tmp_path / "elsewhere")
    assert plan.request["files"] == {"m.gguf": sha(weights)}


def test_without_a_path_relative_files_are_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = gguf(tmp_path / "m.gguf")
    monkeypatch.chdir(tmp_path)
    assert plan_create(parse_modelfile("FROM m.gguf\n"), "y").request["files"] == {
        "m.gguf": sha(weights)
    }


def test_tilde_expands_to_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    weights = gguf(tmp_path / "models" / "r1.gguf")
    plan = plan_create(parse_modelfile("FROM ~/models/r1.gguf\n"), "y", base_dir=Path("/"))
    assert plan.request["files"] == {"r1.gguf": sha(weights)}


def test_absolute_path(tmp_path: Path) -> None:
    weights = gguf(tmp_path / "abs.gguf")
    plan = plan_create(parse_modelfile(f'FROM "{weights}"\n'), "y", base_dir=Path("/"))
    assert plan.request["files"] == {"abs.gguf": sha(weights)}


def test_large_files_are_hashed_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_create_request, "_CHUNK_SIZE", 7)
    weights = gguf(tmp_path / "big.gguf", bytes(range(256)) * 40)
    plan = plan_create(parse_modelfile("FROM big.gguf\n"), "y", base_dir=tmp_path)
    assert plan.blobs[0].digest == sha(weights)
    assert plan.blobs[0].size == weights.stat().st_size


def test_a_gguf_file_without_the_magic_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "fake.gguf", "<html>not found</html>")
    with pytest.raises(ModelfileError, match="is not a GGUF file"):
        plan_create(parse_modelfile("FROM fake.gguf\n"), "y", base_dir=tmp_path)


def test_a_git_lfs_pointer_is_refused_with_the_fix(tmp_path: Path) -> None:
    write(
        tmp_path / "model.safetensors",
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
    )
    with pytest.raises(ModelfileError, match="Git LFS pointer") as info:
        plan_create(parse_modelfile("FROM .\n"), "y", base_dir=tmp_path)
    assert info.value.hint is not None
    assert "git lfs pull" in info.value.hint


def test_a_symlinked_file_keeps_its_link_name_and_uploads_the_target(tmp_path: Path) -> None:
    target = gguf(tmp_path / "store" / "blob-1234")
    os.symlink(target, tmp_path / "r1.gguf")
    plan = plan_create(parse_modelfile("FROM r1.gguf\n"), "y", base_dir=tmp_path)
    assert plan.request["files"] == {"r1.gguf": sha(target)}
    assert plan.blobs[0].path == target.resolve()


# ----------------------------------------------------------------- model folders


def test_a_safetensors_folder_lists_weights_configs_and_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "DeepSeek-R1-Distill-Qwen-1.5B"
    files = {
        "model-00001-of-00002.safetensors": b"shard one",
        "model-00002-of-00002.safetensors": b"shard two",
        "config.json": b'{"architectures": ["Qwen2ForCausalLM"]}',
        "tokenizer.json": b"{}",
        "generation_config.json": b'{"temperature": 0.6}',
        "chat_template.jinja": b"{{ messages }}",
        "tokenizer.model": b"\x00\x01sentencepiece",
        "2_Dense/config.json": b'{"dense": 1}',
        "2_Dense/model.safetensors": b"dense",
        # not part of a model: another weights group, docs, deeper folders
        "consolidated.safetensors": b"other format",
        "README.md": b"# readme",
        "a/b/deep.json": b"{}",
    }
    for name, data in files.items():
        write(folder / name, data)
    m = modelfile_at(tmp_path, "FROM ./DeepSeek-R1-Distill-Qwen-1.5B\n")
    plan = plan_create(m, "y")
    expected = {
        name: sha(folder / name)
        for name in files
        if name not in ("consolidated.safetensors", "README.md", "a/b/deep.json")
    }
    assert plan.request["files"] == expected
    assert sorted(b.path for b in plan.blobs) == sorted((folder / n).resolve() for n in expected)


@pytest.mark.parametrize(
    ("weights", "ignored"),
    [
        (["consolidated.safetensors"], ["model.gguf"]),
        (["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"], ["x.gguf"]),
        (["consolidated.00.pth", "consolidated.01.pth"], ["x.bin"]),
        (["model-q4.gguf", "mmproj.gguf"], ["extra.bin"]),
        (["ggml-model.bin"], []),
    ],
)
def test_the_first_matching_weights_group_wins(
    tmp_path: Path, weights: list[str], ignored: list[str]
) -> None:
    for i, name in enumerate([*weights, *ignored]):
        if name.endswith(".gguf"):
            gguf(tmp_path / "m" / name, bytes([i]))
        else:
            write(tmp_path / "m" / name, bytes([i]) * 3)
    write(tmp_path / "m" / "config.json", "{}")
    plan = plan_create(parse_modelfile("FROM m\n"), "y", base_dir=tmp_path)
    assert sorted(plan.request["files"]) == sorted([*weights, "config.json"])


def test_tokenizer_model_in_a_subfolder_is_used_when_none_is_at_the_top(tmp_path: Path) -> None:
    write(tmp_path / "m" / "model.safetensors", b"w")
    write(tmp_path / "m" / "original" / "tokenizer.model", b"t")
    plan = plan_create(parse_modelfile("FROM m\n"), "y", base_dir=tmp_path)
    assert sorted(plan.request["files"]) == ["model.safetensors", "original/tokenizer.model"]


def test_a_folder_without_model_files_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "m" / "README.md", "hi")
    write(tmp_path / "m" / "config.json", "{}")
    with pytest.raises(ModelfileError, match="no model files found") as info:
        plan_create(parse_modelfile("FROM m\n"), "y", base_dir=tmp_path)
    assert info.value.hint is not None
    assert "safetensors" in info.value.hint


def test_files_linking_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    # The layout of a Hugging Face cache snapshot: every file links to ../../blobs.
    blob = write(tmp_path / "blobs" / "9f2c", b"weights")
    write(tmp_path / "snapshot" / "config.json", "{}")
    os.symlink(blob, tmp_path / "snapshot" / "model.safetensors")
    with pytest.raises(ModelfileError, match="outside the folder") as info:
        plan_create(parse_modelfile("FROM snapshot\n"), "y", base_dir=tmp_path)
    assert info.value.hint is not None
    assert "--local-dir" in info.value.hint


def test_links_inside_the_folder_are_followed(tmp_path: Path) -> None:
    real = write(tmp_path / "m" / "real" / "weights.bin", b"w")
    os.symlink(real, tmp_path / "m" / "model.safetensors")
    plan = plan_create(parse_modelfile("FROM m\n"), "y", base_dir=tmp_path)
    assert plan.request["files"] == {"model.safetensors": sha(real)}


def test_identical_files_are_uploaded_once(tmp_path: Path) -> None:
    write(tmp_path / "m" / "model.safetensors", b"w")
    write(tmp_path / "m" / "config.json", "{}")
    write(tmp_path / "m" / "tokenizer_config.json", "{}")
    plan = plan_create(parse_modelfile("FROM m\n"), "y", base_dir=tmp_path)
    assert len(plan.request["files"]) == 3
    assert len(plan.blobs) == 2


# ------------------------------------------------------------------ ADAPTER, DRAFT


def test_adapter_gguf_file(tmp_path: Path) -> None:
    lora = gguf(tmp_path / "loras" / "style.gguf")
    m = modelfile_at(tmp_path, "FROM deepseek-r1:8b\nADAPTER loras/style.gguf\n")
    plan = plan_create(m, "y")
    assert plan.request["from"] == "deepseek-r1:8b"
    assert plan.request["adapters"] == {"style.gguf": sha(lora)}
    assert [b.digest for b in plan.blobs] == [sha(lora)]


@pytest.mark.parametrize("weights", ["adapter_model.safetensors", "adapters.safetensors"])
def test_adapter_safetensors_folder(tmp_path: Path, weights: str) -> None:
    write(tmp_path / "lora" / weights, b"lora")
    write(tmp_path / "lora" / "adapter_config.json", '{"r": 8}')
    m = modelfile_at(tmp_path, "FROM deepseek-r1:8b\nADAPTER ./lora\n")
    files = plan_create(m, "y").request["adapters"]
    assert files == {
        weights: sha(tmp_path / "lora" / weights),
        "adapter_config.json": sha(tmp_path / "lora" / "adapter_config.json"),
    }


def test_a_missing_adapter_is_named(tmp_path: Path) -> None:
    m = modelfile_at(tmp_path, "FROM deepseek-r1:8b\nADAPTER ./nope.gguf\n")
    with pytest.raises(ModelfileError) as info:
        plan_create(m, "y")
    assert str(info.value).startswith(f"{tmp_path / 'Modelfile'}: ADAPTER ./nope.gguf: no such")
    assert str(tmp_path / "nope.gguf") in str(info.value)


def test_two_adapters_are_refused(tmp_path: Path) -> None:
    gguf(tmp_path / "a.gguf")
    gguf(tmp_path / "b.gguf")
    m = Modelfile(from_="x", adapters=("a.gguf", "b.gguf"))
    with pytest.raises(ModelfileError, match="supports one adapter"):
        plan_create(m, "y", base_dir=tmp_path)


def test_draft_files(tmp_path: Path) -> None:
    draft = gguf(tmp_path / "draft.gguf", b"small")
    plan = plan_create(parse_modelfile("FROM base\nDRAFT ./draft.gguf\n"), "y", base_dir=tmp_path)
    assert plan.request["draft_files"] == {"draft.gguf": sha(draft)}


def test_draft_must_exist_and_differ_from_from(tmp_path: Path) -> None:
    gguf(tmp_path / "m.gguf")
    with pytest.raises(ModelfileError, match=r"DRAFT \./d\.gguf: no such file"):
        plan_create(parse_modelfile("FROM base\nDRAFT ./d.gguf\n"), "y", base_dir=tmp_path)
    with pytest.raises(ModelfileError, match="the same as FROM"):
        plan_create(parse_modelfile("FROM m.gguf\nDRAFT ./m.gguf\n"), "y", base_dir=tmp_path)


# ---------------------------------------------------------------- curated files


@pytest.mark.parametrize("path", CURATED, ids=lambda p: p.stem)
def test_every_curated_modelfile_converts(path: Path) -> None:
    m = load_modelfile(path)
    plan = plan_create(m, path.stem)
    assert plan.blobs == ()
    assert plan.request["model"] == path.stem
    assert load_catalogue().resolve(plan.request["from"]) is not None
    params = plan.request["parameters"]
    assert isinstance(params["num_ctx"], int)
    assert isinstance(params["temperature"], float)
    assert isinstance(params["stop"], list)
    assert json.loads(json.dumps(plan.request, ensure_ascii=False)) == plan.request


def test_messages_keep_roles_in_the_request() -> None:
    m = Modelfile(from_="x", messages=(Message("system", "s"), Message("user", "u")))
    assert plan_create(m, "y").request["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
    ]
