"""Ollama Modelfiles: parse, validate and render them, with no I/O but reading a file.

The syntax is Ollama's (``parser/parser.go``): one ``INSTRUCTION value`` per line,
case-insensitive keywords, ``#`` comments as the first non-blank character of a line,
and ``"…"`` / ``\"\"\"…\"\"\"`` values that may span lines and are kept byte for byte.

Where dsollama differs, it is stricter or clearer, never silently different:

* errors name the file, the line and the column, and say how to fix the problem;
* parameter values are type-checked here, not when the daemon first uses the model;
* a value must be given (``SYSTEM ""`` for an empty one), and several ``FROM`` or ``DRAFT``
  lines are refused;
* every character of a value is kept (Ollama's parser drops non-printable characters such
  as U+3000 IDEOGRAPHIC SPACE or U+200D ZERO WIDTH JOINER).

>>> m = parse_modelfile('FROM deepseek-r1:8b\\nPARAMETER temperature 0.6\\nPARAMETER stop </s>\\n')
>>> m.from_, dict(m.parameters)
('deepseek-r1:8b', {'temperature': 0.6, 'stop': ('</s>',)})
>>> print(render_modelfile(m), end='')
FROM deepseek-r1:8b
PARAMETER temperature 0.6
PARAMETER stop </s>

The modules: `model` (`Modelfile`, `Message`), `parameters` (names, types and typing of
``PARAMETER`` values), `parse` (text and files → `Modelfile`) and `render`
(`Modelfile` → text). This package re-exports their public names, so callers import
from ``dsollama._modelfile``.
"""

from __future__ import annotations

from .model import Message, Modelfile, ParamValue
from .parameters import DEPRECATED_PARAMETERS, PARAMETER_TYPES, coerce_parameter
from .parameters import _checked_parameter as _checked_parameter
from .parameters import _ParameterError as _ParameterError
from .parse import load_modelfile, parse_modelfile
from .render import render_modelfile

__all__ = [
    "DEPRECATED_PARAMETERS",
    "PARAMETER_TYPES",
    "Message",
    "Modelfile",
    "ParamValue",
    "coerce_parameter",
    "load_modelfile",
    "parse_modelfile",
    "render_modelfile",
]
