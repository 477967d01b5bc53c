"""Every check CI runs, runnable on a laptop: ``nox -l`` lists them."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "no_speedups", "examples", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, examples and benchmarks (the
    public API's completeness, pyright --verifytypes, runs in ``build``)."""
    session.install("-e", ".[test,bench]", "nox")
    session.run("mypy")
    # The public API, from the installed wheel: pyright --verifytypes 100%.
    session.run("python", "tools/check_dist.py")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on trio and asyncio, with the C accelerator."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def no_speedups(session: nox.Session) -> None:
    """The sans-IO core and I/O layer with the pure-Python masking."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/protocol",
        "tests/test_speedups.py",
        env={"TRIO_WS_NO_SPEEDUPS": "1"},
    )


@nox.session
def conformance(session: nox.Session) -> None:
    """The RFC 6455/7692 conformance suite, both roles, a table per category;
    ``-- --slow`` adds the 16 MiB and large deflate cases, ``-- --help`` lists
    the options."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.conformance", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs; any warning or unresolved reference fails. Offline by
    default; TRIO_WS_DOCS_INTERSPHINX=1 links to Python, trio and anyio."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build",
        "-E",  # reread every source: a cached build can hide warnings
        "-W",
        "-n",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session
def examples(session: nox.Session) -> None:
    """Run the examples that finish on their own."""
    session.install("-e", ".")
    session.run("python", "examples/demo.py")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark: every library as server and client, raw TCP as the
    limit, ratios in one run (~6 min on 2 cores); writes
    docs/performance.md with ``-- --markdown docs/performance.md``."""
    session.install("-e", ".[bench]")
    session.run("python", "bench/bench_io.py", *session.posargs)


@nox.session
def bench_core(session: nox.Session) -> None:
    """Micro-benchmark of the sans-IO core against wsproto's and websockets'."""
    session.install("-e", ".[bench]")
    session.run("python", "bench/bench_core.py", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and wheel and check their metadata."""
    session.install("build", "twine")
    session.run("python", "-m", "build", "--outdir", "dist")
    session.run("twine", "check", "dist/*")
    # The wheel in a fresh venv: imports, runs the demo, fully typed.
    session.run("python", "tools/check_dist.py")
