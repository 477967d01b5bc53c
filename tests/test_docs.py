"""Every Python block in the docs and the README runs, so the docs cannot rot.

Blocks are written for readers; an RST comment just before a block (invisible
in the rendered page) tells this module what to do with it, and most blocks
need none. The conventions, also in ``docs/contributing.rst``:

- A ``.. code-block:: python`` with no marker is a whole program: it runs in
  its own process, in an empty temporary directory, and must exit with status
  0 within ``TIMEOUT`` seconds without printing a traceback (a handler that
  raises is only logged by the server, so a traceback on stderr fails too).
  If it mentions port 8765 it talks to "the echo server from the tutorial":
  we start ``python -m trio_ws serve --port 0`` and put its port in place of
  8765.
- ``.. docs-test: server`` marks a program that serves on port 8765 until
  stopped. We run it on a free port, wait until it accepts connections, then
  stop it; it must not have printed a traceback.
- ``.. docs-test: client`` marks a program that talks to the last ``server``
  block before it on the same page; both run, on a free port.
- ``.. docs-test: output`` before a ``.. code-block:: text`` gives what the
  program just before prints on stdout; ``...`` matches anything, as in
  doctest.
- ``.. docs-test: compile -- why`` marks a fragment that cannot run on its
  own; it is only compiled. The reason is required, and such blocks are kept
  few (see ``MAX_COMPILE_ONLY``).
- ``certs`` after the mode puts ``cert.pem``, ``key.pem`` (for localhost and
  127.0.0.1) and ``ca.pem`` (the CA that signed them) in the directory first.
- ``pytest`` as the mode runs the block as a test module with pytest.

In the README the marker is an HTML comment, ``<!-- docs-test: compile -->``.

Every program also type-checks with ``mypy --strict`` (one run for all of them).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

# The programs use UNIX sockets and POSIX signals here and there.
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = [*sorted(DOCS.rglob("*.rst")), ROOT / "README.md"]
TIMEOUT = 30.0
#: The port docs use for "the server of the tutorial"; tests substitute a free one.
DOCS_PORT = "8765"
#: Fragments that are only compiled. Raise it only with a good reason.
MAX_COMPILE_ONLY = 3
#: Code in the docs fits the page without scrolling.
DOCS_LINE_LENGTH = 88
MODES = {"run", "server", "client", "compile", "output", "pytest"}
RUNS = {"run", "client", "pytest"}  # the modes whose output a block may give
FLAGS = {"certs"}
#: mypy errors the docs accept on purpose, because the API causes them and the
#: docs should show the code users will write. TODO: remove each with its cause.
KNOWN_API_FRICTION: list[str] = []
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}


@dataclass
class Block:
    """A code block of a page, and what its marker asks for."""

    path: Path
    line: int  # of the directive or fence, 1-based
    language: str
    code: str
    mode: str = "run"
    flags: frozenset[str] = frozenset()
    reason: str = ""
    server: Block | None = None  # for "client"
    output: Block | None = None  # the expected output, if given

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    includes: list[tuple[int, str]] = field(default_factory=list)  # literalinclude
    problems: list[str] = field(default_factory=list)


# -- parsing -------------------------------------------------------------------------

_MARKER_RST = re.compile(r"^\s*\.\. docs-test:\s*(?P<spec>.*?)\s*$")
_MARKER_MD = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<spec>.*?)\s*-->\s*$")
_DIRECTIVE = re.compile(
    r"^(?P<indent>\s*)\.\. (?:code-block|code|sourcecode)::\s*(?P<lang>\S*)\s*$"
)
_INCLUDE = re.compile(r"^\s*\.\. literalinclude::\s*(?P<path>\S+)\s*$")
_FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
# A paragraph that ends with "::" starts a literal block with no language.
_BARE_LITERAL = re.compile(r"^(?!\s*\.\. ).*\S.*(?<!:)::\s*$|^\s*::\s*$")


def _parse_spec(spec: str, where: str, problems: list[str]) -> tuple[str, frozenset[str], str]:
    spec, _, reason = spec.partition("--")
    words = spec.split()
    if not words or words[0] not in MODES:
        problems.append(f"{where}: unknown docs-test mode in {spec!r}; one of {sorted(MODES)}")
        return "run", frozenset(), ""
    flags = frozenset(words[1:])
    if flags - FLAGS:
        problems.append(f"{where}: unknown docs-test flags {sorted(flags - FLAGS)}")
    if words[0] == "compile" and not reason.strip():
        problems.append(f"{where}: 'compile' needs a reason: '.. docs-test: compile -- why'")
    return words[0], flags, reason.strip()


def parse_rst(path: Path) -> Page:
    page = Page(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    marker: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        where = f"{path.relative_to(ROOT)}:{index + 1}"
        if match := _MARKER_RST.match(line):
            if marker is not None:
                page.problems.append(f"{where}: two docs-test markers in a row")
            marker = (index + 1, match["spec"])
            index += 1
            continue
        if match := _INCLUDE.match(line):
            page.includes.append((index + 1, match["path"]))
        if match := _DIRECTIVE.match(line):
            indent = len(match["indent"])
            body_start = index + 1
            while body_start < len(lines) and re.match(r"^\s+:[\w-]+:", lines[body_start]):
                body_start += 1  # directive options such as :caption:
            end = body_start
            while end < len(lines) and (
                not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
            ):
                end += 1
            code = textwrap.dedent("\n".join(lines[body_start:end])).strip("\n") + "\n"
            block = Block(path, index + 1, match["lang"] or "?", code)
            if marker is not None:
                block.mode, block.flags, block.reason = _parse_spec(
                    marker[1], f"{path.relative_to(ROOT)}:{marker[0]}", page.problems
                )
                marker = None
            _add_block(page, block)
            index = end
            continue
        if _BARE_LITERAL.match(line):
            page.problems.append(
                f"{where}: a literal block without a language; use '.. code-block:: LANG'"
            )
        if line.strip() and marker is not None:
            page.problems.append(
                f"{path.relative_to(ROOT)}:{marker[0]}: docs-test marker not followed by a block"
            )
            marker = None
        index += 1
    if marker is not None:
        page.problems.append(f"{path.relative_to(ROOT)}:{marker[0]}: marker at the end")
    return page


def parse_markdown(path: Path) -> Page:
    page = Page(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    marker: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := _MARKER_MD.match(line):
            marker = (index + 1, match["spec"])
        elif match := _FENCE.match(line):
            end = index + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            code = "\n".join(lines[index + 1 : end]) + "\n"
            block = Block(path, index + 1, match["lang"] or "?", code)
            if marker is not None:
                block.mode, block.flags, block.reason = _parse_spec(
                    marker[1], f"{path.relative_to(ROOT)}:{marker[0]}", page.problems
                )
                marker = None
            _add_block(page, block)
            index = end
        elif line.strip():
            marker = None
        index += 1
    return page


def _add_block(page: Page, block: Block) -> None:
    """Link outputs to programs and clients to servers; check the markers."""
    programs = [b for b in page.blocks if b.language == "python"]
    if block.mode == "output":
        if block.language == "python" or not programs or programs[-1].mode not in RUNS:
            page.problems.append(f"{block.id}: 'output' must follow a program that runs")
        elif programs[-1].output is not None:
            page.problems.append(f"{block.id}: a second 'output' for {programs[-1].id}")
        else:
            programs[-1].output = block
    elif block.language != "python" and block.mode != "run":
        page.problems.append(f"{block.id}: docs-test marker on a {block.language} block")
    if block.mode == "client":
        servers = [b for b in programs if b.mode == "server"]
        if not servers:
            page.problems.append(f"{block.id}: 'client' with no 'server' block before it")
        else:
            block.server = servers[-1]
    page.blocks.append(block)


def load_pages() -> list[Page]:
    return [parse_markdown(p) if p.suffix == ".md" else parse_rst(p) for p in SOURCES]


PAGES = load_pages()
PROGRAMS = [b for page in PAGES for b in page.blocks if b.language == "python"]
RUNNABLE = [b for b in PROGRAMS if b.mode != "compile"]


# -- running ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_port(code: str, port: int) -> str:
    return re.sub(rf"\b{DOCS_PORT}\b", str(port), code)


def write_certs(directory: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(directory / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))


def assert_no_traceback(block: Block, stderr: str) -> None:
    assert "Traceback" not in stderr, f"{block.id} printed a traceback:\n{stderr}"


def assert_output(block: Block, stdout: str, port: int | None) -> None:
    """Compare with the expected output, where ``...`` matches anything."""
    if block.output is None:
        return
    expected_text = block.output.code if port is None else with_port(block.output.code, port)
    expected = expected_text.rstrip("\n").splitlines()
    actual = stdout.rstrip("\n").splitlines()
    pattern = "\n".join(
        ".*".join(re.escape(part) for part in line.rstrip().split("...")) for line in expected
    )
    text = "\n".join(line.rstrip() for line in actual)
    assert re.fullmatch(pattern, text, re.DOTALL), (
        f"{block.id}: the output differs from {block.output.id}.\n"
        f"expected:\n{block.output.code}\nactual:\n{stdout}"
    )


def run_program(
    block: Block, directory: Path, port: int | None
) -> subprocess.CompletedProcess[str]:
    script = directory / f"docs_{block.line}.py"
    code = with_port(block.code, port) if port is not None else block.code
    script.write_text(code, encoding="utf-8")
    command = [sys.executable, script.name]
    if block.mode == "pytest":
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
    try:
        return subprocess.run(
            command,
            cwd=directory,
            env=ENV,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.id} did not finish within {TIMEOUT} s; stderr:\n{exc.stderr!r}")


class Background:
    """A program running on its own, its output going to files."""

    def __init__(self, block: Block, directory: Path, port: int) -> None:
        self.block = block
        self.port = port
        script = directory / f"docs_server_{block.line}.py"
        script.write_text(with_port(block.code, port), encoding="utf-8")
        self.stdout_path = directory / f"server_{block.line}.out"
        self.stderr_path = directory / f"server_{block.line}.err"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, script.name], cwd=directory, env=ENV, stdout=out, stderr=err
            )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.block.id} exited early:\n{self.stderr()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"{self.block.id} did not listen on port {self.port} within {TIMEOUT} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def echo_server_port() -> Iterator[int]:
    """``python -m trio_ws serve``: the server the tutorial starts."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_ws", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        # The server prints its URL first, at once; don't wait forever if not.
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "python -m trio_ws serve printed nothing"
        line = proc.stdout.readline()
        match = re.search(r":(\d+)/$", line.strip())
        assert match, line
        yield int(match.group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover  # would be a bug
            proc.kill()
            proc.wait(TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


# -- the tests --------------------------------------------------------------------------


def test_markers_and_blocks_are_well_formed() -> None:
    problems = [problem for page in PAGES for problem in page.problems]
    assert not problems, "\n".join(problems)


def test_compile_only_blocks_are_few() -> None:
    fragments = [f"{b.id}: {b.reason}" for b in PROGRAMS if b.mode == "compile"]
    assert len(fragments) <= MAX_COMPILE_ONLY, "\n".join(fragments)


def test_literalincluded_files_exist_and_compile() -> None:
    for page in PAGES:
        for line, name in page.includes:
            target = (page.path.parent / name).resolve()
            assert target.is_file(), f"{page.path}:{line}: {name} not found"
            compile(target.read_text(encoding="utf-8"), str(target), "exec")


@pytest.mark.parametrize("block", PROGRAMS, ids=[b.id for b in PROGRAMS])
def test_block(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if block.mode == "compile":
        compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    if "certs" in block.flags or (block.server is not None and "certs" in block.server.flags):
        write_certs(tmp_path)
    if block.mode == "server":
        server = Background(block, tmp_path, free_port())
        try:
            server.wait_listening()
        finally:
            server.stop()
        assert_no_traceback(block, server.stderr())
        return
    if block.mode == "client":
        assert block.server is not None
        server = Background(block.server, tmp_path, free_port())
        try:
            server.wait_listening()
            port: int | None = server.port
            result = run_program(block, tmp_path, port)
        finally:
            server.stop()
        assert_no_traceback(block.server, server.stderr())
    else:
        port = None
        if re.search(rf"\b{DOCS_PORT}\b", block.code):
            port = request.getfixturevalue("echo_server_port")
        result = run_program(block, tmp_path, port)
    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout}\n{result.stderr}"
    assert_no_traceback(block, result.stderr)
    assert_output(block, result.stdout, port)


def _write_programs(directory: Path, blocks: list[Block]) -> None:
    for block in blocks:
        name = re.sub(r"\W", "_", block.id)
        (directory / f"{name}.py").write_text(block.code, encoding="utf-8")


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="needs ruff")
def test_programs_are_linted_and_formatted(tmp_path: Path) -> None:
    """ruff, with the project's rules and lines of at most 88 characters, which
    fit a page of the docs without scrolling; the README's example too."""
    _write_programs(tmp_path, RUNNABLE)
    options = ["--line-length", str(DOCS_LINE_LENGTH), "--target-version", "py311"]
    rules = "E,W,F,I,B,UP,SIM,C4,PIE,RUF,PT,ASYNC,FA"  # pyproject.toml's
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            *options,
            "--select",
            rules,
            "--ignore",
            "SIM105",  # as in pyproject.toml: try/except/pass reads better
            "--config",
            "lint.isort.known-first-party=['trio_ws']",
            "--output-format",
            "concise",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    formatting = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--no-cache", "--check", *options, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert formatting.returncode == 0, formatting.stdout


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="needs mypy")
def test_programs_type_check(tmp_path: Path) -> None:
    """``mypy --strict`` over every program: the docs show code that type-checks."""
    _write_programs(tmp_path, RUNNABLE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--python-version",
            "3.11",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        # The source tree, not the installed package: mypy cannot follow the
        # import hooks of an editable install.
        env={**ENV, "MYPYPATH": str(ROOT)},
    )
    errors = [
        line
        for line in result.stdout.splitlines()
        if ": error:" in line and not any(known in line for known in KNOWN_API_FRICTION)
    ]
    assert not errors, "\n".join(errors)
