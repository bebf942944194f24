"""The error-code catalogue (sealgate.codes) against the code base and the README.

1. Every code the sources can produce is catalogued. Python sources are read with ``ast``
   (string constants and f-strings only, so comments and docstrings do not count); Rust
   sources by their string literals, outside ``#[cfg(test)]`` modules and tests/examples.
   A code is a dotted lowercase literal with a known component prefix and at least two dots,
   or one of the few older two-part codes (``config.*``, ``service.*``, ``storage.*``).
   Codes built at run time (f-strings, the Rust ``<platform>.format.<kind>`` family) are
   expanded from the values they are built from, read from the same sources.
2. Every catalogued code is produced somewhere: no dead codes.
3. Every code the README names (backticked, ``{a,b}`` groups expanded) is catalogued, and
   ``docs/errors.md`` is the catalogue as rendered. The README is prose that names the codes
   where it explains a behaviour, so it is not required to list all of them; the complete
   list is docs/errors.md, which cannot drift because it is generated.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import grpc
import pytest
from sealgate import codes
from sealgate.appraise.policy import TDX_MEASUREMENTS

ROOT = Path(__file__).resolve().parent.parent
PY_ROOT = ROOT / "python" / "sealgate"
RUST_ROOT = ROOT / "rust"

COMPONENTS = (
    "admin|attest|audit|auth|azure|broker|cli|collateral|config|grpc|model|node|policy|service"
    "|gpu|snp|storage|tdx|tpm|trust|x509"
)
CODE = re.compile(rf"(?:{COMPONENTS})(?:\.[a-z0-9_]+){{2,}}")
TWO_PART = re.compile(r"(?:config|service|storage)\.[a-z0-9_]+")
TEMPLATE = re.compile(rf"(?:{COMPONENTS})(?:\.[a-z0-9_{{}}]+){{2,}}|grpc\.\{{[^{{}}]+\}}")
#: The node agent's fallback for a gRPC failure without a sealgate code (``grpc.<status>``);
#: other two-part ``grpc.*`` literals are channel options.
GRPC = re.compile(r"grpc\.[a-z_]+")

#: Code-shaped literals that are not codes.
NOT_CODES = {
    "grpc.http2.max_pings_without_data",  # a gRPC channel option
}
#: Code-shaped f-strings that are not codes (a document field path in an error message).
NOT_CODE_TEMPLATES = {"tpm.pcrs.{bank}.{idx}"}


def _py_files() -> list[Path]:
    catalogue = PY_ROOT / "codes.py"  # lists codes, produces none
    return sorted(p for p in PY_ROOT.rglob("*.py") if "_proto" not in p.parts and p != catalogue)


def _rust_files() -> list[Path]:
    skip = {"tests", "examples", "benches", "target"}
    return sorted(p for p in RUST_ROOT.rglob("*.rs") if not skip & set(p.parts))


def _template(node: ast.JoinedStr) -> str:
    parts: list[str] = []
    for v in node.values:
        if isinstance(v, ast.Constant):
            parts.append(str(v.value))
        elif isinstance(v, ast.FormattedValue):
            parts.append("{" + ast.unparse(v.value) + "}")
    return "".join(parts)


def _audit_kinds(tree: ast.AST) -> set[str]:
    """String constants in the first argument of ``<...>.audit.append|pending(...)``."""
    out: set[str] = set()
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in {"append", "pending"}
            and isinstance(n.func.value, ast.Attribute | ast.Name)
            and (getattr(n.func.value, "attr", None) or getattr(n.func.value, "id", None))
            == "audit"
            and n.args
        ):
            for c in ast.walk(n.args[0]):
                if isinstance(c, ast.Constant) and isinstance(c.value, str):
                    out.add(c.value)
    return out


def _python_scan() -> tuple[set[str], set[str], set[str]]:
    """(literal codes, f-string templates, audit kinds) in the package."""
    literals: set[str] = set()
    templates: set[str] = set()
    audit: set[str] = set()
    for path in _py_files():
        tree = ast.parse(path.read_text(), str(path))
        kinds = _audit_kinds(tree)
        audit |= kinds
        fstring_parts: set[int] = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.JoinedStr):
                fstring_parts.update(id(v) for v in n.values)
                t = _template(n)
                if TEMPLATE.fullmatch(t) and "{" in t:
                    templates.add(t)
        for n in ast.walk(tree):
            if not (isinstance(n, ast.Constant) and isinstance(n.value, str)):
                continue
            if id(n) in fstring_parts or n.value in kinds:
                continue
            if CODE.fullmatch(n.value) or TWO_PART.fullmatch(n.value):
                literals.add(n.value)
    return literals, templates, audit


RUST_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _rust_source(path: Path) -> str:
    text = path.read_text()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod ", text)
    return text[: cut.start()] if cut else text


def _rust_scan() -> tuple[set[str], set[str]]:
    """(literal codes, format! templates) in the Rust crates."""
    literals: set[str] = set()
    templates: set[str] = set()
    for path in _rust_files():
        for m in RUST_STRING.finditer(_rust_source(path)):
            s = m.group(1)
            if CODE.fullmatch(s):
                literals.add(s)
            elif re.fullmatch(r"[a-z{}]+(?:\.[a-z0-9_{}]+){2,}", s) and "{" in s:
                templates.add(s)
    return literals, templates


def _rust_as_str(enum: str) -> list[str]:
    """The strings an ``as_str`` match over ``enum`` in rust/formats/src/error.rs returns."""
    text = (RUST_ROOT / "formats" / "src" / "error.rs").read_text()
    found = re.findall(rf"{enum}::\w+\s*=>\s*\"([a-z0-9_]+)\"", text)
    assert found, enum
    return found


def _rust_containers() -> list[str]:
    """The two-part platform names (``azure.hcl``) whose parse codes are
    ``<platform>.<kind>`` (ParseError::code)."""
    text = (RUST_ROOT / "formats" / "src" / "error.rs").read_text()
    found = re.findall(r"Platform::\w+\s*=>\s*\"([a-z0-9_]+\.[a-z0-9_]+)\"", text)
    assert found
    return found


def _node_tpm_tools() -> set[str]:
    """First arguments of ``self.run("<tool>", ...)`` in node/tpm.py and
    ``self._run("<tool>", ...)`` in node/azure.py."""
    tools: set[str] = set()
    for module, method in (("tpm.py", "run"), ("azure.py", "_run")):
        tools |= _self_calls(PY_ROOT / "node" / module, method)
    return tools


def _self_calls(path: Path, method: str) -> set[str]:
    tree = ast.parse(path.read_text())
    tools: set[str] = set()
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == method
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == "self"
            and n.args
            and isinstance(n.args[0], ast.Constant)
            and isinstance(n.args[0].value, str)
        ):
            tools.add(n.args[0].value)
    return tools


def _expansions() -> dict[str, set[str]]:
    """Every code template the sources build, with the codes it can build."""
    platforms = _rust_as_str("Platform")
    kinds = _rust_as_str("ParseErrorKind")
    # X.509 is a parse family shared by the platforms, not an evidence kind with a policy;
    # GPUs are appraised as components of the CPU evidence (appraise/gpu.py, its own
    # policy.gpu.* codes), never through the per-platform measurement rule.
    evidence = [p for p in platforms if p not in ("x509", "gpu")]
    return {
        # rust/formats/src/error.rs ParseError::code
        "{}.format.{}": {f"{p}.format.{k}" for p in platforms for k in kinds}
        | {f"{p}.{k}" for p in _rust_containers() for k in kinds},
        # appraise/evaluate.py _unconstrained (every platform has a measurement rule)
        "policy.{platform}.no_measurement": {f"policy.{p}.no_measurement" for p in evidence},
        "policy.{platform}.no_reference_values": {
            f"policy.{p}.no_reference_values" for p in evidence
        },
        # appraise/evaluate.py _tdx: RTMRs share policy.tdx.rtmr_mismatch
        "policy.tdx.{name}_mismatch": {
            f"policy.tdx.{n}_mismatch" for n in TDX_MEASUREMENTS if not n.startswith("rtmr")
        },
        # node/tpm.py Tpm2ToolsCollector.run, node/azure.py AzureVtpmCollector._run
        "node.tpm.{tool}_failed": {f"node.tpm.{t}_failed" for t in _node_tpm_tools()},
        # node/agent.py _code: a gRPC status without ErrorInfo
        "grpc.{code.name.lower()}": {f"grpc.{c.name.lower()}" for c in grpc.StatusCode},
    }


def _produced() -> tuple[set[str], set[str]]:
    """(codes the code base can produce, audit kinds it writes)."""
    py_lit, py_tpl, audit = _python_scan()
    rs_lit, rs_tpl = _rust_scan()
    expansions = _expansions()
    templates = (py_tpl | rs_tpl) - NOT_CODE_TEMPLATES
    unexpanded = templates - set(expansions)
    assert not unexpanded, f"dynamic codes without an expansion in this test: {unexpanded}"
    stale = set(expansions) - templates
    assert not stale, f"expansions for templates no longer in the sources: {stale}"
    built = set(itertools.chain.from_iterable(expansions.values()))
    return (py_lit | rs_lit | built) - NOT_CODES, audit


def test_every_produced_code_is_catalogued() -> None:
    produced, _ = _produced()
    missing = sorted(produced - set(codes.CODES))
    assert not missing, f"codes produced but not in sealgate.codes: {missing}"


def test_no_dead_codes() -> None:
    produced, _ = _produced()
    dead = sorted(set(codes.CODES) - produced)
    assert not dead, f"catalogued codes nothing produces: {dead}"


def test_audit_kinds_are_catalogued_and_none_is_dead() -> None:
    _, audit = _produced()
    assert audit == set(codes.AUDIT_EVENTS)
    assert not audit & set(codes.CODES)


def test_retired_spellings_are_produced_nowhere() -> None:
    produced, _ = _produced()
    assert not set(codes.RENAMED) & produced
    assert not set(codes.RENAMED) & set(codes.CODES)
    assert set(codes.RENAMED.values()) <= set(codes.CODES)


def test_catalogue_entries_are_well_formed() -> None:
    for code, entry in codes.CODES.items():
        assert CODE.fullmatch(code) or TWO_PART.fullmatch(code) or GRPC.fullmatch(code), code
        assert entry.meaning and "\n" not in entry.meaning, code
        assert entry.producer, code


def _expand_braces(token: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", token)
    if m is None:
        return [token]
    return [
        x
        for alt in m.group(1).split(",")
        for x in _expand_braces(token[: m.start()] + alt.strip() + token[m.end() :])
    ]


#: A backticked file name (``config.py``) looks like a two-part code; it is not one.
FILE_NAME = re.compile(r"\.(py|pyi|rs|md|json|pem|der|txt|toml|yaml|swidtag|proto|bin)$")


def _readme_codes(path: Path = ROOT / "README.md") -> set[str]:
    text = path.read_text()
    out: set[str] = set()
    # A brace group may wrap across lines: drop whitespace inside a backticked span, but
    # only for spans that hold a brace group (prose in backticks keeps its spaces).
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # fenced blocks are examples
    for span in re.findall(r"`([^`]+)`", text):
        token = re.sub(r"\s+", "", span) if "{" in span else span
        if re.search(r"\s", token):
            continue
        for code in _expand_braces(token):
            if code in codes.AUDIT_EVENTS or FILE_NAME.search(code):
                continue
            if CODE.fullmatch(code) or TWO_PART.fullmatch(code):
                out.add(code)
    return out - {"grpc.health.v1"}  # the gRPC health service's package, not a code


def test_readme_names_only_catalogued_codes() -> None:
    readme = _readme_codes()
    assert len(readme) > 50  # the parser finds the README's lists
    unknown = sorted(readme - set(codes.CODES))
    assert not unknown, f"README names codes that are not in sealgate.codes: {unknown}"


@pytest.mark.parametrize(
    "doc",
    sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "errors.md"),
)
def test_docs_name_only_catalogued_codes(doc: str) -> None:
    """The platform and operations documents list codes as the README does; a renamed or
    removed code must not live on there."""
    unknown = sorted(_readme_codes(ROOT / "docs" / doc) - set(codes.CODES))
    assert not unknown, f"docs/{doc} names codes that are not in sealgate.codes: {unknown}"


def test_brace_groups_expand() -> None:
    assert _expand_braces("tpm.format.{truncated,too_large}") == [
        "tpm.format.truncated",
        "tpm.format.too_large",
    ]


def test_docs_errors_md_is_the_rendered_catalogue() -> None:
    assert (ROOT / "docs" / "errors.md").read_text() == codes.markdown(), (
        "regenerate: PYTHONPATH=python python -m sealgate.codes > docs/errors.md"
    )


def test_the_scan_sees_every_kind_of_source() -> None:
    # Guards the scanner itself: a Rust-only literal, a Python-only literal, an f-string
    # expansion, the Rust format family and a two-part code are all found.
    produced, _ = _produced()
    assert {
        "tpm.quote.signature_invalid",
        "cli.internal.error",
        "node.tpm.quote_failed",
        "policy.tdx.mr_td_mismatch",
        "tdx.format.reserved_nonzero",
        "config.invalid",
        "grpc.unavailable",
    } <= produced
    assert "sealgate.snp.certtable" not in produced  # a logger/module name


def test_every_exception_class_is_raised() -> None:
    # A class counts as raised when something constructs it (Python) or the Rust binding
    # looks it up by name (rust/py/src/errors.rs), or when a subclass of it is raised.
    called: set[str] = set()
    bases: dict[str, set[str]] = {}
    for path in _py_files():
        tree = ast.parse(path.read_text(), str(path))
        for n in ast.walk(tree):
            if isinstance(n, ast.Call):
                f = n.func
                called.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
            elif isinstance(n, ast.ClassDef):
                names = {b.id for b in n.bases if isinstance(b, ast.Name)}
                if names & {"Exception", "RuntimeError", "ValueError"} or any(
                    b.endswith("Error") for b in names
                ):
                    bases[n.name] = names
    binding = (RUST_ROOT / "py" / "src" / "errors.rs").read_text()
    called |= set(re.findall(r'"([A-Z][A-Za-z]+Error)"', binding))
    alive = {c for c in bases if c in called}
    changed = True
    while changed:
        changed = False
        for cls, parents in bases.items():
            for p in parents & set(bases):
                if cls in alive and p not in alive:
                    alive.add(p)
                    changed = True
    assert len(bases) > 10
    assert set(bases) - alive == set(), "exception classes nothing raises"
