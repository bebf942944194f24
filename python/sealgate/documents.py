"""One safe loader for the JSON and YAML documents sealgate reads from operators and files.

Policies, the service configuration, bulk reference values, node session files, PCR files
and collateral JSON all go through :func:`load_document`. Whatever the bytes, it returns
plain JSON-shaped data (``dict`` with ``str`` keys, ``list``, ``str``, ``int``, finite
``float``, ``bool``, ``None``) or raises the caller's error type with the caller's stable
code, in time and memory linear in the input:

- size is capped before parsing, and bytes must be UTF-8 (RFC 8259 §8.1);
- nesting is capped (the C JSON decoder and PyYAML's composer recurse per level);
- YAML aliases and anchors are refused outright: an alias re-uses a node, so a small
  document can expand exponentially ("billion laughs"; a 21 KB policy reached 679 MB) —
  operator documents have no need for them (YAML 1.2 §3.2.2.2, §6.9.2); merge keys (which
  exist to be used with aliases) are refused with them;
- mapping keys must be strings and appear once: ``null``, ``.inf``, ``7`` or a repeated key
  would otherwise reach code that assumes JSON semantics (sorting, ``int()``), and a repeated
  key makes the document ambiguous;
- unquoted YAML timestamps stay strings, and anything that is not JSON-shaped (``!!binary``,
  ``!!set``, ``!!timestamp``, non-finite numbers, strings with lone surrogates that cannot
  be written back as UTF-8) is refused, naming where it is.

The loader only guarantees the shape of JSON; what each document must hold is a pydantic
model next to the code that reads it (strict: a YAML/JSON integer is an integer, never a
string or a bool; unknown keys are refused, so a misspelt key never silently means "not
set"). :func:`validate` runs such a model and turns every failure into the caller's error
with the caller's code, naming each offending field by its dotted path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import pydantic
import yaml
from pydantic import ConfigDict
from pydantic_core import ErrorDetails

from sealgate.errors import SealgateError, UsageError

#: Default size cap. Operator documents (policies, configuration) are a few KiB.
MAX_DOCUMENT_BYTES = 1 << 20
#: Default nesting cap. The deepest sealgate document (a TPM policy: platforms → tpm → pcrs
#: → bank → index → values) has six levels.
MAX_DEPTH = 32

#: The configuration of every document model: strict types (an integer field takes a YAML/
#: JSON integer only, a float field an integer or a float, never a bool or a string), unknown
#: fields refused, no NaN/infinity.
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

_T = TypeVar("_T")
#: At most this many field errors are spelled out in one message.
_MAX_ERRORS = 4

_SURROGATE = re.compile("[\ud800-\udfff]")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DocumentLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, anchors, merge keys or implicit timestamps,
    with a nesting bound checked while composing (before anything recurses deeper)."""

    # Unquoted dates (``2026-01-01``) stay strings: no sealgate field is a timestamp.
    yaml_implicit_resolvers = {  # noqa: RUF012 (PyYAML's class-level table)
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str, max_depth: int) -> None:
        super().__init__(stream)
        self._max_depth = max_depth
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            _refuse(event, "YAML aliases are not allowed")
        if getattr(event, "anchor", None) is not None:
            _refuse(event, "YAML anchors are not allowed")
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                _refuse(event, f"nested deeper than {self._max_depth} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    raise yaml.constructor.ConstructorError(
                        None, None, "YAML merge keys are not allowed", key_node.start_mark
                    )
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {_short(key)}", key_node.start_mark
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep)


def _refuse(event: Any, why: str) -> NoReturn:
    raise yaml.composer.ComposerError(None, None, why, event.start_mark)


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _where(path: tuple[str, ...]) -> str:
    out = ""
    for p in path:
        p = p if len(p) <= 40 else p[:37] + "..."
        out += p if p.startswith("[") or not out else "." + p
    return out or "top level"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {_short(k)}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_document(
    data: str | bytes,
    *,
    code: str,
    what: str,
    yaml_ok: bool = True,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_depth: int = MAX_DEPTH,
    error: Callable[[str, str], SealgateError] = UsageError,
) -> Any:
    """Parse one JSON (or, with ``yaml_ok``, YAML) document into JSON-shaped data.

    JSON is tried first; YAML only when the text is not JSON. Every refusal is
    ``error(code, f"{what}: <reason>")``, the reason naming the place in the document.
    """

    def bad(reason: str) -> SealgateError:
        return error(code, f"{what}: {reason}")

    if len(data) > max_bytes:
        raise bad(f"exceeds the {max_bytes}-byte limit")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise bad(f"not UTF-8 (byte {e.start})") from None
    else:
        text = data
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise bad("nested too deeply") from None
    except json.JSONDecodeError as e:
        if not yaml_ok:
            raise bad(f"not valid JSON: {e}") from None
        doc = _load_yaml(text, max_depth, bad)
    except ValueError as e:
        # Valid JSON syntax with a value refused: a repeated key, NaN/Infinity, or an
        # integer of more than 4300 digits (CPython's int() limit). Not YAML either.
        raise bad(f"JSON: {str(e)[:120]}") from None
    _check_shape(doc, max_depth, bad)
    return doc


def _load_yaml(text: str, max_depth: int, bad: Callable[[str], SealgateError]) -> Any:
    loader: _DocumentLoader | None = None
    try:
        # The reader already refuses non-printable characters in the constructor.
        loader = _DocumentLoader(text, max_depth)
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise bad(f"not valid JSON or YAML: {e}") from None
    except (ValueError, TypeError, OverflowError) as e:
        # Scalar constructors call int()/float()/base64 directly (e.g. an integer of more
        # than 4300 digits is a ValueError, not a YAMLError).
        raise bad(f"bad YAML value: {type(e).__name__}: {str(e)[:80]}") from None
    except RecursionError:
        raise bad("nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_shape(doc: Any, max_depth: int, bad: Callable[[str], SealgateError]) -> None:
    """Iteratively (no recursion) check that ``doc`` is JSON-shaped and not too deep."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(doc, ())]
    while stack:
        v, path = stack.pop()
        if len(path) > max_depth:
            raise bad(f"{_where(path[:max_depth])}: nested deeper than {max_depth} levels")
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise bad(f"{_where(path)}: key {_short(k)} is not a string (quote it)")
                if _SURROGATE.search(k):
                    raise bad(f"{_where(path)}: a key holds a lone surrogate (not Unicode text)")
                stack.append((item, (*path, k)))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                stack.append((item, (*path, f"[{i}]")))
        elif isinstance(v, str):
            if _SURROGATE.search(v):
                raise bad(f"{_where(path)}: holds a lone surrogate (not Unicode text)")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise bad(f"{_where(path)}: {v} is not a finite number")
        elif not (v is None or isinstance(v, bool | int)):
            raise bad(f"{_where(path)}: a YAML {type(v).__name__} is not a JSON value")


def _loc(loc: tuple[int | str, ...]) -> str:
    # pydantic marks an error in a mapping key with a "[key]" step after the key.
    return _where(tuple(f"[{p}]" if isinstance(p, int) else p for p in loc if p != "[key]"))


_PHRASES = {
    "int_type": "must be a int",
    "float_type": "must be a float",
    "bool_type": "must be a bool",
    "string_type": "must be a str",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
    "dataclass_args_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "missing": "is required",
    "finite_number": "must be a finite number",
}


def _phrase(e: ErrorDetails) -> str:
    """One field error as text. Never the input value: documents may hold secrets (a node
    session holds a token and a private key)."""
    kind, ctx = e["type"], e.get("ctx") or {}
    if kind in _PHRASES:
        return _PHRASES[kind]
    if kind == "greater_than" and ctx.get("gt") == 0:
        return "must be positive"
    if kind == "greater_than_equal" and ctx.get("ge") == 0:
        return "must not be negative"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    msg = e["msg"]
    if msg.startswith("must "):  # our own validators' phrasing
        return msg
    return ": " + (msg[:1].lower() + msg[1:] if msg.startswith("Input should") else msg)


def validate(
    adapter: pydantic.TypeAdapter[_T],
    doc: Any,
    *,
    code: str,
    what: str,
    error: Callable[[str, str], SealgateError] = UsageError,
    hints: Mapping[str, str] | None = None,
) -> _T:
    """``doc`` (from :func:`load_document`) validated by a pydantic model's adapter.

    Every failure is ``error(code, f"{what}: <field> <why>; ...")``: unknown keys are listed
    per mapping, at most a few other errors are spelled out. ``hints`` adds a sentence for
    errors under a top-level key (say what an entry needs). Build the adapter once, at
    import: building one compiles the schema."""
    try:
        return adapter.validate_python(doc)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=True)
    except (ValueError, TypeError) as exc:
        # pydantic turns a validator's ValueError into a field error but lets a TypeError
        # through; no exception other than the caller's error may leave a document check.
        raise error(code, f"{what}: {type(exc).__name__}") from None
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    parts: list[str] = []
    for e in errors:
        loc = tuple(e["loc"])
        # A model's unknown key, or a dataclass's unknown field.
        if e["type"] in ("extra_forbidden", "unexpected_keyword_argument") and loc:
            unknown.setdefault(loc[:-1], []).append(_loc(loc[-1:]))
            continue
        phrase = _phrase(e)
        parts.append(f"{_loc(loc)}{'' if phrase.startswith(':') else ' '}{phrase}")
    for where, keys in reversed(unknown.items()):
        parts.insert(0, f"unknown {_loc(where) if where else 'top-level'} key(s) {', '.join(keys)}")
    shown = "; ".join(parts[:_MAX_ERRORS])
    if len(parts) > _MAX_ERRORS:
        shown += f"; and {len(parts) - _MAX_ERRORS} more"
    tops = {str(e["loc"][0]) for e in errors if e["loc"]}
    shown += "".join(f" ({h})" for k, h in (hints or {}).items() if k in tops)
    raise error(code, f"{what}: {shown}")
