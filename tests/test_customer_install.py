"""The customer side installs alone: `pip install rundruf` (no extra) into a fresh virtualenv
gets the agent and the job service with none of the central service's libraries, and their
commands and modules run there without api/, schema/ or workers/.

The venv is built once per run from a copy of the sources (so that no build/ folder lands in
the work tree); pip's wheel cache makes a rerun take seconds. Marked `slow`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from api.cli import SERVER_LIBRARIES
from edge_agent.ivr import definition
from tests.conftest import REQUIRE
from tests.jobservice.support import AGENT, ROUTING, bearer
from tests.processes import free_port, wait_until

# Builds a virtualenv: about 10 s with pip's cache warm, longer the first time.
slow = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER = ("edge_agent", "swyx_jobservice")
CENTRAL = ("api", "schema", "workers")
# Named in the issue; the full list is the server extra's import names (SERVER_LIBRARIES).
NEVER_IMPORTED = {*CENTRAL, "sqlalchemy", "strawberry", "dramatiq", "psycopg"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
    r"ConnectTimeout|No matching distribution found"
)

# Imports every module named on the command line, then reports what got loaded and what is
# installed: run with the venv's Python, outside the work tree.
IMPORT_ALL = """
import importlib, importlib.metadata, json, pathlib, sys
for name in ["edge_agent", "swyx_jobservice", *sys.argv[1:]]:
    importlib.import_module(name)
from edge_agent.broadcast import audio
from edge_agent.ivr import definition
ivr = pathlib.Path(definition.__file__).with_name("prompts")
print(json.dumps({
    "modules": sorted({name.partition(".")[0] for name in sys.modules}),
    "files": {name: sys.modules[name].__file__ for name in ("edge_agent", "swyx_jobservice")},
    "dists": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "prompts": sorted(p.name for p in [audio.CONFIRM_PROMPT, *audio.DEFAULTS.values()]
                      if p.is_file()),
    "ivrPrompts": sorted(p.relative_to(ivr).as_posix() for p in ivr.glob("*/*.wav")),
}))
"""


def server_dists() -> set[str]:
    extra = PYPROJECT["project"]["optional-dependencies"]["server"]
    return {canonicalize_name(Requirement(line).name) for line in extra}


def customer_modules() -> list[str]:
    """Every module of the customer packages in the source tree; a folder without
    __init__.py holds data or scripts (prompts, the call-routing script), not modules."""
    names = []
    for package in CUSTOMER:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            folders = [ROOT.joinpath(*parts[:i]) for i in range(1, len(parts))]
            if not all((folder / "__init__.py").is_file() for folder in folders):
                continue
            if parts[-1] == "__main__":  # runs the command when imported
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def child_env(**values: str) -> dict[str, str]:
    """No RUNDRUF_ settings, nothing of the work tree on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNDRUF_", "PYTHON"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(values)
    return env


def copy_sources(target: Path) -> None:
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in (*CENTRAL, *CUSTOMER):
        shutil.copytree(ROOT / package, target / package, ignore=skip)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv without pip, into which this Python's pip installs the project, no extra."""
    root = tmp_path_factory.mktemp("customer-install")
    copy_sources(root / "source")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    result = subprocess.run(
        [*command, str(root / "source")],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if not REQUIRE and NETWORK_TROUBLE.search(output):
            pytest.skip(f"PyPI is not reachable: {output[-300:]}")
        raise AssertionError(f"pip install failed:\n{output}")
    yield root / "venv"


def run(venv: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]],
        cwd=venv.parent,  # not the work tree: only the installed packages are importable
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def imported(importtime_log: str) -> set[str]:
    """Top-level names of the modules a `-X importtime` log shows as imported."""
    found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", importtime_log, re.M)
    return {name.partition(".")[0] for name in found}


@slow
def test_it_installs_none_of_the_central_service_libraries(venv: Path) -> None:
    result = run(venv, "python", "-c", IMPORT_ALL)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    installed = {canonicalize_name(name) for name in report["dists"]}
    assert "rundruf" in installed
    # The agent's own libraries come with it: SRTP needs libsrtp (issue 15, point 9).
    assert {"pylibsrtp", "cffi"} <= installed
    assert not installed & server_dists()
    assert not installed & {"sqlalchemy", "strawberry-graphql", "dramatiq", "psycopg"}


@slow
@pytest.mark.parametrize(
    ("command", "package", "usage"),
    [
        (["rundruf-agent", "--help"], "edge_agent", "usage: rundruf-agent [-h] {enroll,run,"),
        (["rundruf-agent", "run", "--help"], "edge_agent", "usage: rundruf-agent run [-h]"),
        (["rundruf-jobservice", "--help"], "swyx_jobservice", "usage: rundruf-jobservice [-h]"),
        # The Windows service host: its help, enrolment and files need no pywin32.
        (["rundruf-service", "--help"], "edge_agent", "usage: rundruf-service [-h]"),
    ],
)
def test_the_customer_commands_start_without_central_code(
    venv: Path, command: list[str], package: str, usage: str
) -> None:
    result = run(venv, *command, PYTHONPROFILEIMPORTTIME="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(usage)
    modules = imported(result.stderr)
    assert package in modules  # the log is read right
    assert not modules & (NEVER_IMPORTED | SERVER_LIBRARIES)


@slow
def test_the_agent_command_refuses_to_run_without_an_adapter_choice(venv: Path) -> None:
    result = run(venv, "rundruf-agent", "run", PYTHONPROFILEIMPORTTIME="1")

    assert result.returncode == 2
    assert "RUNDRUF_AGENT_PBX and RUNDRUF_AGENT_DIALER have no default" in result.stderr
    assert not imported(result.stderr) & (NEVER_IMPORTED | SERVER_LIBRARIES)


@slow
def test_every_customer_module_imports_without_central_code(venv: Path) -> None:
    modules = customer_modules()
    assert "edge_agent.pbx.swyx_com" in modules and "swyx_jobservice.app" in modules

    result = run(venv, "python", "-c", IMPORT_ALL, *modules)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert all(path.startswith(str(venv)) for path in report["files"].values()), report["files"]
    assert not set(report["modules"]) & (NEVER_IMPORTED | SERVER_LIBRARIES)
    # The agent's bundled prompts are installed with it, not only in the work tree.
    assert report["prompts"] == ["alarm.wav", "bestaetigen.wav", "test.wav"]
    # So are the trigger call's prompts, every one in each language (issue 16 point 2).
    assert report["ivrPrompts"] == sorted(
        f"{lang}/{file}" for lang in definition.LANGUAGES for file in definition.PROMPTS.values()
    )


@slow
def test_the_windows_service_host_and_the_installers_files_are_installed(
    venv: Path, tmp_path: Path
) -> None:
    """ops/windows/README.md's steps work from `pip install rundruf` alone: the service
    host is a command, the env examples and the prerequisites checker come with it."""
    result = run(venv, "rundruf-service", "files", str(tmp_path / "install"))

    assert result.returncode == 0, result.stderr
    written = sorted(path.name for path in (tmp_path / "install").iterdir())
    assert written == [
        "Test-RundrufPrerequisites.ps1",
        "agent.env.example",
        "jobservice.env.example",
    ]
    assert "RUNDRUF_AGENT_PBX=swyx" in (tmp_path / "install" / "agent.env.example").read_text()
    # The services themselves need pywin32, which the install brings on Windows only.
    result = run(venv, "rundruf-service", "agent", "install")
    assert result.returncode == 2
    assert "need pywin32" in result.stderr


@slow
def test_the_job_service_serves_from_the_customer_install(venv: Path) -> None:
    port = free_port()
    env = child_env(
        RUNDRUF_JOBSERVICE_PORT=str(port),
        RUNDRUF_JOBSERVICE_DATA_DIR=str(venv.parent / "jobservice"),
        RUNDRUF_JOBSERVICE_AGENT_TOKEN=AGENT,
        RUNDRUF_JOBSERVICE_ROUTING_TOKEN=ROUTING,
        PYTHONPROFILEIMPORTTIME="1",
    )
    process = subprocess.Popen(
        [str(venv / "bin" / "rundruf-jobservice")],
        cwd=venv.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def health() -> int:
            try:
                url = f"http://127.0.0.1:{port}/health"
                return httpx.get(url, headers=bearer(AGENT), timeout=1).status_code
            except httpx.HTTPError:
                return 0

        assert wait_until(health, 30, "the job service") == 200
    finally:
        process.terminate()
        _, log = process.communicate(timeout=30)
    assert "uvicorn" in imported(log)
    assert not imported(log) & (NEVER_IMPORTED | SERVER_LIBRARIES)


@slow
def test_the_central_commands_say_which_extra_they_need(venv: Path) -> None:
    result = run(venv, "rundruf", "serve")

    assert result.returncode == 2
    assert result.stderr.startswith("rundruf: serve is part of the central service")
    assert "pip install 'rundruf[server]'" in result.stderr
    assert "rundruf-agent and rundruf-jobservice" in result.stderr


def central_imports(path: Path) -> list[str]:
    """`import api…`, `from schema… import`, `importlib.import_module("workers…")` in a file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in CENTRAL]
    return [f"{path.name}:{line} {name}" for line, name in sorted(found)]


def test_no_customer_file_imports_central_code() -> None:
    files = [path for package in CUSTOMER for path in (ROOT / package).rglob("*.py")]
    assert len(files) > 50

    assert [hit for path in files for hit in central_imports(path)] == []


def test_the_scan_finds_each_way_of_importing(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import api.settings\nfrom schema import sdl\nimport importlib\n"
        "def f():\n    from workers.runner import run_worker\n"
        "    return importlib.import_module('api.db')\n"
        "from . import api\nimport apis\n",
        encoding="utf-8",
    )

    assert central_imports(sample) == [
        "sample.py:1 api.settings",
        "sample.py:2 schema",
        "sample.py:5 workers.runner",
        "sample.py:6 api.db",
    ]


def test_the_server_extra_is_what_the_central_command_names() -> None:
    from importlib.metadata import packages_distributions

    provided = {
        module
        for module, dists in packages_distributions().items()
        if {canonicalize_name(d) for d in dists} & server_dists()
    }
    assert {m for m in provided if not m.startswith("_")} <= SERVER_LIBRARIES | {"psycopg_binary"}
    # graphql and cross_web come with strawberry
    assert SERVER_LIBRARIES - {"graphql", "cross_web"} <= provided
