"""Sphinx configuration for the trio_ws documentation.

Build it with ``sphinx-build -W -n --keep-going -b html docs docs/_build/html``
(``nox -s docs`` does exactly that). The build works offline: links into the
Python, trio and anyio docs (intersphinx) need their inventories from the
network, so they are only used when ``TRIO_WS_DOCS_INTERSPHINX=1`` is set.
Without them, references to those projects render as plain text and are
listed in ``nitpick_ignore_regex`` below instead of failing the ``-n`` build.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio_ws  # noqa: E402  # after the path is set, for an uninstalled checkout

project = "trio_ws"
author = "trio_ws maintainers"
copyright = "the trio_ws maintainers"  # shadows a builtin: the name Sphinx reads
release = trio_ws.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
# Marks async functions, context managers and iterators as such in the
# reference: "await ws.recv()", "async with open_websocket_url(...)".
if importlib.util.find_spec("sphinxcontrib_trio") is not None:
    extensions.append("sphinxcontrib_trio")
# The measured pages (conformance counts, benchmark tables, the interop
# matrix) are Markdown, written by the tools that produce them.
extensions.append("myst_parser")
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}

INTERSPHINX = os.environ.get("TRIO_WS_DOCS_INTERSPHINX", "") not in ("", "0")
if INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable", None),
        "anyio": ("https://anyio.readthedocs.io/en/stable", None),
    }

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# Every reference must resolve (sphinx-build -n): a typo in :func:`...` fails
# the build instead of shipping a dead link.
nitpicky = True
_EXTERNAL = (
    # The standard library and builtins.
    r"(builtins\.)?(str|bytes|bytearray|memoryview|int|float|bool|object|type|list|dict|tuple|set"
    r"|frozenset|Exception|BaseException|RuntimeError|OSError|TimeoutError|EOFError|ValueError"
    r"|TypeError|NotImplementedError|KeyboardInterrupt|ExceptionGroup|BaseExceptionGroup"
    r"|None|Ellipsis|AbstractAsyncContextManager)"
    r"|(typing|collections\.abc|types|enum|ssl|ssl_module|logging|socket|uuid|http|functools"
    r"|dataclasses|contextlib|asyncio|zlib|codecs|os|sys|h11)(\..*)?"
    # Projects we build on.
    r"|(trio|anyio|outcome)(\..*)?"
)
nitpick_ignore_regex: list[tuple[str, str]] = []
if not INTERSPHINX:
    nitpick_ignore_regex += [(r"py:.*", _EXTERNAL)]
# Names that only exist for type checkers (aliases under TYPE_CHECKING) or in
# private modules; autodoc shows them as written in the annotations.
nitpick_ignore_regex += [
    # Private names in signatures (``options: _ClientOptions``, ``_T``).
    (r"py:.*", r"([\w.]+\.)?_\w+"),
    (r"py:.*", r"(trio_ws\.)?(_\w+\.)*_?\w*(Nursery|TaskStatus|TrioStreamLike|HeadersLike)"),
    (r"py:.*", r"(trio_ws\.)?(protocol\.)?(\w+\.)?(Data|BytesLike|Buffer|Compression|Handler)"),
    (r"py:.*", r"(trio_ws\.)?(\w+\.)?(CreateConnection|ProcessRequest|ProcessResponse)"),
    (r"py:.*", r"(trio_ws\.)?(\w+\.)?(SelectSubprotocol|Event|_T|_ReconnectingContext)"),
    (r"py:.*", r"(trio_ws\.)?(connection\.)?ConnectionContext"),
    (r"py:.*", r"(trio_ws\.)?(protocol\.)?(deflate\.)?PerMessageDeflate"),
    # Short references in trio_ws docstrings that Sphinx cannot resolve from
    # where the object is documented (TODO: spell them out in the source).
    (r"py:meth", r"ServerHandshake\.accept|__iter__"),
]

# -- autodoc and napoleon ---------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Every async public method says what cancelling it does (STYLE.md §3).
napoleon_custom_sections = ["Cancellation"]

# -- output -------------------------------------------------------------------

# Docstrings show Python in ``::`` blocks; the .rst pages name a language for
# every block (tests/test_docs.py checks, and runs each Python one).
pygments_style = "sphinx"
html_theme = "alabaster"
html_theme_options = {
    "description": "WebSocket for trio and anyio",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
html_title = f"trio_ws {release}"


# -- docstring adjustments ------------------------------------------------------


_PROSE: dict[str, list[str]] = {}


def _save_attribute_docstring(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Keep attribute and property docstrings as prose (with the next hook).

    napoleon reads a first line like ``The close code: 1006 if none`` as
    ``type: description``. Our types come from annotations, so we save such a
    docstring before napoleon sees it and put it back afterwards.
    """
    if what in ("attribute", "property") and lines and ":" in lines[0]:
        _PROSE[name] = list(lines)


def _restore_attribute_docstring(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    saved = _PROSE.pop(name, None)
    if saved is not None:
        lines[:] = saved


def _join_wrapped_argument_names(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Join an ``Args:`` entry naming several arguments over two lines.

    ``max_size, max_queue, ...,`` wrapped before ``close_timeout: see ...``
    is one entry to a reader but two to napoleon, which then breaks the field
    list. TODO: write such entries on one line in the source, then drop this.
    """
    for index in range(len(lines) - 1, 0, -1):
        previous = lines[index - 1]
        if previous.rstrip().endswith(",") and ":" not in previous and ":" in lines[index]:
            indent = len(previous) - len(previous.lstrip())
            if len(lines[index]) - len(lines[index].lstrip()) > indent:
                lines[index - 1] = previous.rstrip() + " " + lines[index].strip()
                del lines[index]


def setup(app: Any) -> None:
    # Before napoleon (priority 500), which rewrites the lines.
    app.connect("autodoc-process-docstring", _save_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", _join_wrapped_argument_names, priority=400)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=600)
