"""The wheel holds everything the installed gateway needs (the container image installs it,
docker/Dockerfile): setuptools packs a directory only when it is a package (has an
``__init__.py``; ``[tool.setuptools.packages.find]``), and a file that is not Python only
when ``[tool.setuptools.package-data]`` names it. A file missed either way works from the
checkout and is absent from the image."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "providers")


def _files(package: str) -> list[Path]:
    return [
        path
        for path in sorted((REPO / package).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]


def test_every_directory_with_python_code_is_a_package() -> None:
    missing = sorted(
        str(path.parent.relative_to(REPO))
        for package in PACKAGES
        for path in _files(package)
        if path.suffix == ".py" and not (path.parent / "__init__.py").is_file()
    )
    assert missing == []


def test_every_file_that_is_not_python_is_package_data() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["packages"]["find"]["include"] == [f"{p}*" for p in PACKAGES]
    data: dict[str, list[str]] = setuptools["package-data"]
    missing = sorted(
        str(path.relative_to(REPO))
        for package in PACKAGES
        for path in _files(package)
        if path.suffix != ".py"
        and not any(
            fnmatch(str(path.relative_to(REPO / package)), pattern)
            for pattern in data.get(package, [])
        )
    )
    assert missing == []
