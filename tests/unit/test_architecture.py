"""Rules of the code base that a tool checks, not a reviewer: status changes only in the domain,
card types only in cde/, one error table that covers every error class and every code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cardkeep
from cardkeep.domain.errors import Code, DomainError
from cardkeep.web import errors
from cardkeep.web.errors import TABLE, HttpError

SRC = Path(cardkeep.__file__).parent


def _modules(outside: str) -> list[Path]:
    return [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != outside]


def _status_replacements(path: Path) -> list[int]:
    """Lines where ``replace(…, status=…)`` (dataclasses.replace, any spelling) is called."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "replace" and any(k.arg == "status" for k in node.keywords):
            found.append(node.lineno)
    return found


def test_no_status_is_replaced_outside_the_domain() -> None:
    offenders = {
        str(p.relative_to(SRC)): lines
        for p in _modules(outside="domain")
        if (lines := _status_replacements(p))
    }
    assert offenders == {}, "status changes go through domain transition() only"


def test_the_status_check_sees_a_replacement(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from dataclasses import replace\nx = replace(si, status=1, a=2)\n")
    assert _status_replacements(sample) == [2]


def _imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_outside_cde_imports_the_card_types() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in _modules(outside="cde")
        if any(name.startswith("cardkeep.cde.pan") for name in _imports_of(p))
    ]
    assert offenders == []


def _subclasses(root: type[Exception]) -> set[type[Exception]]:
    found, todo = set(), [root]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def test_every_error_class_has_its_own_row() -> None:
    classes = {DomainError, *_subclasses(DomainError), *_subclasses(HttpError)}
    abstract = {DomainError}
    missing = sorted(c.__name__ for c in classes - abstract if c not in TABLE)
    assert missing == []


def test_every_code_has_a_row_and_a_title() -> None:
    used = {code for _, code in TABLE.values()}
    assert set(Code) - used == set()
    assert set(Code) == set(errors.TITLES)


def test_a_code_may_be_shared_but_each_class_has_one_status() -> None:
    by_code: dict[Code, set[type[Exception]]] = {}
    for cls, (_, code) in TABLE.items():
        by_code.setdefault(code, set()).add(cls)
    assert len(by_code[Code.INVALID_STATE]) >= 2  # InvalidState, IllegalTransition (and 409 later)
    assert len(by_code[Code.NOT_FOUND]) >= 2  # an unknown object, an unknown path


@pytest.mark.parametrize("cls", sorted(TABLE, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_each_class_renders_its_row(cls: type[Exception]) -> None:
    if cls is Exception:
        exc: Exception = RuntimeError("boom")
    elif issubclass(cls, HttpError):
        exc = cls("detail")
    elif cls.__name__ == "ValidationFailed":
        exc = cls({"Field": ["bad"]})  # type: ignore[call-arg]
    else:
        exc = cls("detail")  # type: ignore[call-arg]
    problem = errors.from_exception(exc)
    assert (problem.status, problem.code) == TABLE[cls]
    if problem.code is Code.INTERNAL_ERROR:
        assert problem.detail is None  # never the exception's text
