"""Models for the Ollama double: `FakeModel`, Ollama's name rules, the pullable registry.

A model here is what a manifest describes in the real daemon: weights (a blob with a
digest and a size), a template, a license, a system prompt, parameters and preset
messages, plus the config values ``/api/show`` and ``/api/tags`` report. Only the bytes
are missing: the weights are a digest and a size, scaled down so a pull is quick.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._ollama_wire import go_float, go_quote

__all__ = [
    "CAPABILITIES",
    "FakeModel",
    "Layer",
    "ModelName",
    "default_registry",
    "parse_name",
]

CAPABILITIES = ("completion", "thinking", "tools", "insert", "embedding", "vision")
SIZE_SCALE = 100_000
"The registry's weights are the library's download sizes divided by this."

# Templates in the spirit of the library's (Go text/template). The daemon infers
# capabilities from them: `.Thinking` inside the messages range → thinking, `.Tools` →
# tools, `.Suffix` → insert, so each template agrees with the model's capabilities.
_R1_TEMPLATE = (
    "{{- if .System }}{{ .System }}{{ end }}\n"
    "{{- range $i, $_ := .Messages }}\n"
    '{{- if eq .Role "user" }}<｜User｜>{{ .Content }}\n'
    '{{- else if eq .Role "assistant" }}<｜Assistant｜>'
    "{{- if and $.IsThinkSet (and $.Think .Thinking) }}<think>\n{{ .Thinking }}\n</think>\n"
    "{{- end }}{{ .Content }}<｜end▁of▁sentence｜>\n"
    "{{- end }}{{- end }}<｜Assistant｜>"
    "{{- if and $.IsThinkSet (not $.Think) }}<think>\n\n</think>\n\n{{ end }}"
)
_CHAT_TEMPLATE = (
    "{{- if .System }}{{ .System }}\n\n{{ end }}"
    "{{- range .Messages }}"
    '{{- if eq .Role "user" }}User: {{ .Content }}\n\n'
    '{{- else if eq .Role "assistant" }}Assistant: {{ .Content }}<｜end▁of▁sentence｜>{{ end }}'
    "{{- end }}Assistant:"
)
_CODER_TEMPLATE = (
    "{{- if .Suffix }}<｜fim▁begin｜>{{ .Prompt }}<｜fim▁hole｜>{{ .Suffix }}<｜fim▁end｜>"
    "{{- else }}{{ if .System }}{{ .System }}\n{{ end }}### Instruction:\n{{ .Prompt }}\n"
    "### Response:\n{{ end }}"
)
_R1_PARAMETERS = {
    "stop": ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]
}
_CODER_PARAMETERS = {"stop": ["<|EOT|>"]}
_DEEPSEEK_LICENSE = "MIT License\n\nCopyright (c) 2023 DeepSeek"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FakeModel:
    """One installed or pullable model.

    ``size_bytes`` is the weights' size (the registry divides the library's sizes by
    100,000). ``capabilities`` is what ``/api/show`` reports and what the handlers check:
    ``thinking`` enables ``think``, ``tools`` enables ``tools``, ``insert`` enables
    ``suffix``, a model without ``completion`` cannot chat.
    """

    name: str
    family: str = "llama"
    parameter_size: str = "7B"
    quantization: str = "Q4_K_M"
    size_bytes: int = 40_000
    context_length: int = 4096
    capabilities: tuple[str, ...] = ("completion",)
    template: str = "{{ .Prompt }}"
    parameters: Mapping[str, Any] = field(default_factory=dict)
    license: str = ""
    system: str = ""
    parent: str = ""
    messages: tuple[Mapping[str, str], ...] = ()
    families: tuple[str, ...] | None = None
    format: str = "gguf"
    embedding_length: int = 4096
    weights_digest: str = ""
    "``sha256:<hex>`` of the weights; derived from the name when empty."

    def __post_init__(self) -> None:
        self.capabilities = tuple(self.capabilities)
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(
                f"unknown capabilities {sorted(unknown)}; expected some of {', '.join(CAPABILITIES)}"
            )
        if not self.weights_digest:
            self.weights_digest = "sha256:" + _sha256(f"weights\x00{self.name.lower()}")
        self.messages = tuple(self.messages)
        self.parameters = dict(self.parameters)

    # -- layers -------------------------------------------------------------------------

    def layers(self) -> list[Layer]:
        """The manifest's layers in pull order: weights, template, license, params, config."""
        out = [Layer("application/vnd.ollama.image.model", self.weights_digest, self.size_bytes)]
        for media, text in (
            ("template", self.template),
            ("system", self.system),
            ("license", self.license),
            (
                "params",
                json.dumps(dict(self.parameters), sort_keys=True) if self.parameters else "",
            ),
            ("messages", json.dumps(list(self.messages)) if self.messages else ""),
        ):
            if text:
                out.append(
                    Layer(
                        f"application/vnd.ollama.image.{media}",
                        _text_digest(text),
                        len(text.encode()),
                    )
                )
        config = json.dumps(
            {"family": self.family, "type": self.parameter_size, "file": self.quantization},
            sort_keys=True,
        )
        out.append(
            Layer(
                "application/vnd.docker.container.image.v1+json", _text_digest(config), len(config)
            )
        )
        return out

    @property
    def size(self) -> int:
        """What ``/api/tags`` reports: the sum of all layer sizes."""
        return sum(layer.size for layer in self.layers())

    @property
    def digest(self) -> str:
        """The manifest's hex SHA-256 (``/api/tags`` shows it without ``sha256:``)."""
        return _sha256(json.dumps([(x.media_type, x.digest, x.size) for x in self.layers()]))

    # -- response shapes ----------------------------------------------------------------

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": self.parent,
            "format": self.format,
            "family": self.family,
            "families": list(self.families) if self.families is not None else [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }

    def parameters_text(self) -> str:
        """``/api/show`` ``parameters``: ``%-30s %#v`` per value, one line per stop entry."""
        lines = []
        for key in sorted(self.parameters):  # Go ranges over a map: any order is real
            value = self.parameters[key]
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{key:<30} {_go_sharp_v(item)}")
        return "\n".join(lines)

    def modelfile(self) -> str:
        """``/api/show`` ``modelfile``, generated the way ``ollama show`` writes it."""
        out = [
            '# Modelfile generated by "ollama show"',
            "# To build a new Modelfile based on this, replace FROM with:",
            f"# FROM {self.name}",
            "",
            f"FROM /usr/share/ollama/.ollama/models/blobs/{self.weights_digest.replace(':', '-')}",
        ]
        if self.template:
            out.append(f"TEMPLATE {_modelfile_quote(self.template)}")
        if self.system:
            out.append(f"SYSTEM {_modelfile_quote(self.system)}")
        for key in sorted(self.parameters):
            value = self.parameters[key]
            for item in value if isinstance(value, list) else [value]:
                text = go_float(item) if isinstance(item, float) else str(item)
                if isinstance(item, bool):
                    text = "true" if item else "false"
                out.append(f"PARAMETER {key} {_modelfile_quote(text)}")
        if self.license:
            out.append(f"LICENSE {_modelfile_quote(self.license)}")
        for message in self.messages:
            out.append(
                f"MESSAGE {message.get('role', '')} {_modelfile_quote(message.get('content', ''))}"
            )
        return "\n".join(out) + "\n"

    def model_info(self) -> dict[str, Any]:
        arch = self.family
        info = {
            "general.architecture": arch,
            "general.basename": self.name.split(":")[0].rsplit("/", 1)[-1],
            "general.file_type": 15,
            "general.parameter_count": _parameter_count(self.parameter_size),
            "general.quantization_version": 2,
            f"{arch}.attention.head_count": 32,
            f"{arch}.block_count": 32,
            f"{arch}.context_length": self.context_length,
            f"{arch}.embedding_length": self.embedding_length,
            "tokenizer.ggml.model": "gpt2",
        }
        return dict(sorted(info.items()))  # Go marshals map keys in order


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int

    @property
    def short(self) -> str:
        """The 12 hex characters ``pulling <short>`` shows."""
        return self.digest.split(":", 1)[-1][:12]


def _text_digest(text: str) -> str:
    return "sha256:" + _sha256(text)


def _parameter_count(size: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([KMBT]?)", size.strip().upper())
    if not match:
        return 0
    scale = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}[match.group(2)]
    return round(float(match.group(1)) * scale)


def _go_sharp_v(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_float(float(value))
    if isinstance(value, str):
        return go_quote(value)
    return json.dumps(value)


def _modelfile_quote(text: str) -> str:
    # parser.quote: quote only values with a newline or edge spaces; triple quotes when
    # the value holds a double quote.
    if "\n" in text or text.startswith(" ") or text.endswith(" "):
        return f'"""{text}"""' if '"' in text else f'"{text}"'
    return text


# -- names ------------------------------------------------------------------------------

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
_MISSING = "\x00missing"


@dataclass(frozen=True)
class ModelName:
    """``[host/][namespace/]model[:tag]`` with the daemon's defaults filled in."""

    host: str
    namespace: str
    model: str
    tag: str

    @property
    def full(self) -> str:
        """``registry.ollama.ai/library/deepseek-r1:8b``: what capability errors name."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def display(self) -> str:
        """The shortest display name: ``deepseek-r1:8b``, ``me/tuned:v1``."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def key(self) -> str:
        """Lookups of local models are case-insensitive (each part matched with EqualFold)."""
        return self.full.lower()


def _cut_last(text: str, sep: str) -> tuple[str, str, bool]:
    index = text.rfind(sep)
    if index < 0:
        return text, "", False
    return text[:index] or _MISSING, text[index + 1 :] or _MISSING, True


def _valid_part(kind: str, part: str) -> bool:
    limit = 350 if kind == "host" else 80
    if not 1 <= len(part) <= limit or part == _MISSING:
        return False
    if not (part[0].isascii() and (part[0].isalnum() or part[0] == "_")):
        return False
    for char in part[1:]:
        if char in "_-":
            continue
        if char == ".":
            if kind == "namespace":
                return False
            continue
        if char == ":":
            if kind != "host":
                return False
            continue
        if not (char.isascii() and char.isalnum()):
            return False
    return True


def parse_name(text: str) -> ModelName | None:
    """Ollama's ``model.ParseName`` + ``IsValid``: None when the name is invalid.

    >>> parse_name("DeepSeek-R1").display
    'DeepSeek-R1:latest'
    >>> parse_name("me/tuned:v1").full
    'registry.ollama.ai/me/tuned:v1'
    >>> parse_name("bad name") is None
    True
    """
    rest = text.strip()
    tag = ""
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag, _ = _cut_last(rest, ":")
    host = namespace = ""
    rest, model, found = _cut_last(rest, "/")
    if not found:
        model = rest
    else:
        rest, namespace, found = _cut_last(rest, "/")
        if not found:
            namespace = rest
        else:
            host = rest.split("://", 1)[-1]
    name = ModelName(host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, model, tag or "latest")
    parts = (
        ("host", name.host),
        ("namespace", name.namespace),
        ("model", name.model),
        ("tag", name.tag),
    )
    if not all(_valid_part(kind, part) for kind, part in parts):
        return None
    return name


# -- the registry -----------------------------------------------------------------------


def default_registry() -> list[FakeModel]:
    """The DeepSeek family from the catalogue, weights scaled down, ``:latest`` aliases too."""
    from .._catalogue import load_catalogue

    models: list[FakeModel] = []
    for entry in load_catalogue().local.values():
        if entry.library == "deepseek-r1":
            template, parameters = _R1_TEMPLATE, _R1_PARAMETERS
        elif entry.library.startswith("deepseek-coder"):
            template, parameters = _CODER_TEMPLATE, _CODER_PARAMETERS
        else:
            template, parameters = _CHAT_TEMPLATE, {}
        model = FakeModel(
            name=entry.tag,
            family=entry.architecture or "llama",
            parameter_size=entry.parameters,
            size_bytes=max(entry.size_bytes // SIZE_SCALE, 1),
            context_length=entry.context_length,
            capabilities=entry.capabilities,
            template=template,
            parameters={k: list(v) for k, v in parameters.items()},
            license=_DEEPSEEK_LICENSE,
        )
        models.append(model)
        if entry.default:
            # `library:latest` is its own tag in the registry, sharing the default's layers.
            models.append(dataclasses.replace(model, name=f"{entry.library}:latest"))
    return models


def registry_index(models: Iterable[FakeModel]) -> dict[str, FakeModel]:
    index: dict[str, FakeModel] = {}
    for model in models:
        name = parse_name(model.name)
        if name is None:
            raise ValueError(f"invalid model name {model.name!r}")
        index[name.key] = model
    return index
