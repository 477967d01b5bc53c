"""Micro-benchmark of trio_ws's sans-IO core against wsproto's and websockets'.

Run from the repository root, with trio_ws installed (``pip install -e .``)
and the ``bench`` extra (``pip install -e '.[bench]'``)::

    python bench/bench_core.py                  # full run, about a minute
    python bench/bench_core.py --quick          # smoke run, a few seconds
    python bench/bench_core.py --json out.json  # also write every trial
    python bench/bench_core.py --only deflate   # scenarios whose name contains it

What is compared, on the same inputs, with no I/O at all:

- trio_ws: :class:`trio_ws.protocol.machine.WebSocketMachine`.
- wsproto: :class:`wsproto.connection.Connection`, the object ``WSConnection``
  hands everything to once the handshake is over. It is the lowest layer
  that turns bytes into message events and handles control frames and the
  closing state, as our machine does; ``FrameProtocol`` below it only yields
  frames. wsproto never joins fragments into a message, so the harness does
  it (``message_finished``) the way a wsproto user has to.
- websockets: :class:`websockets.protocol.Protocol` created in state OPEN, which
  is what ``ServerProtocol``/``ClientProtocol`` run after the handshake. Its
  events are frames and its UTF-8 decoding lives in the I/O layer's
  ``Assembler``, so the harness joins fragments (``fin``) and decodes text.

Scenarios, each with payloads of 16 B, 1 KiB, 64 KiB and 1 MiB:

- parse: a buffer of N pre-serialized single-frame messages, masked (client
  to server, parsed by a server) or unmasked (server to client), fed in one
  call or in 64 KiB chunks, collecting events after each call. Without
  compression all three parse the very same bytes (N copies of one binary
  frame). With permessage-deflate each library parses what its own peer
  compressed: N different JSON-like text messages, context takeover on.
- serialize: send N messages and collect ``data_to_send()`` after each one
  (wsproto's ``send()`` returns the bytes directly).

permessage-deflate is negotiated through each library's own API with equal
parameters: 15-bit windows both ways, context takeover, zlib level 6 and
memLevel 8 (wsproto's fixed settings; trio_ws and websockets default to a
smaller memLevel, 5, to save memory) and every message compressed
(trio_ws's ``min_size`` is set to 0; by default it sends messages shorter
than 32 bytes uncompressed).

Every run's result is checked: the right number of messages with the right
content (serialized output is parsed back by a fresh peer of the same
library), so a broken run fails instead of posting a fast number. Each
library first gets one untimed warm-up run per scenario; then the trials are
interleaved (trio_ws, wsproto, websockets, then again in a rotated order),
the garbage collector is off while the clock runs (as in :mod:`timeit`),
glibc's malloc is told to keep freed memory (see :func:`tune_malloc`), and
the table shows the median per message; "spread" is (max - min) / median of
the noisiest library. Ratios are ``their time / trio_ws time``: above 1 means
trio_ws is faster.

Targets: on small messages (16 B, 1 KiB) trio_ws at least 2x wsproto and
1.2x websockets; on large ones (64 KiB, 1 MiB) no slower than either. A ratio
less than 3% under its target is shown as "near" (within run-to-run noise)
rather than as a miss.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, cast

import websockets.extensions.permessage_deflate as websockets_deflate
import websockets.frames
import websockets.protocol
import wsproto.connection
import wsproto.events
import wsproto.extensions

from trio_ws.protocol import deflate as trio_ws_deflate
from trio_ws.protocol import frames as trio_ws_frames
from trio_ws.protocol.machine import BinaryMessage, Role, TextMessage, WebSocketMachine

if TYPE_CHECKING:
    from wsproto.events import Message as WsprotoMessage

KiB = 1024
MiB = 1024 * KiB
CHUNK_SIZE = 64 * KiB
SIZES = (16, 1 * KiB, 64 * KiB, 1 * MiB)
SMALL = 1 * KiB  # at most this is a "small" message for the targets
TARGET_SMALL = {"wsproto": 2.0, "websockets": 1.2}
TARGET_LARGE = {"wsproto": 1.0, "websockets": 1.0}
# Ratios this close under a target are reported as "near", not as a miss:
# repeated full runs on a quiet 2-core VM moved ratios by about this much.
NOISE = 0.03
LIBS = ("trio_ws", "wsproto", "websockets")

# Messages per run: trio_ws needs 2-80 ms per run on the 2-core dev VM, the
# slowest library up to 110 ms, and the full benchmark about 40 s there.
COUNTS_PLAIN = {16: 20_000, 1 * KiB: 10_000, 64 * KiB: 500, 1 * MiB: 32}
COUNTS_DEFLATE = {16: 10_000, 1 * KiB: 3_000, 64 * KiB: 60, 1 * MiB: 4}

# zlib settings all three libraries are given (see the module docstring).
ZLIB_LEVEL = 6
ZLIB_MEM_LEVEL = 8

Payload = bytes | str
Chunks = Sequence[bytes]
ParseRun = Callable[[Chunks], list[Any]]
SerializeRun = Callable[[Sequence[Payload]], list[Any]]


# -- inputs ---------------------------------------------------------------------

_WORDS = (
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"),
    *("juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"),
    *("sierra", "tango", "uniform", "victor", "whiskey", "order", "trade", "quote"),
    *("cancel", "fill", "partial", "market", "limit", "stop", "bid", "ask", "spread"),
)
_NAMES = ("Ana", "Björn", "Chloé", "Dmitri", "Eun-ji", "François", "Grace", "Hiroshi", "Zoë")
_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "BRK.B", "JPM", "V")


def json_corpus(length: int, seed: int = 6455) -> str:
    """Return ``length`` characters of JSON records, one per line, as an API feed sends.

    Values vary (random ids, prices, words) so that deflate sees realistic
    redundancy, not one record repeated. A few names are not ASCII.
    """
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    ts = 1_700_000_000_000
    while total < length:
        ts += rng.randint(1, 40)
        record = {
            "id": rng.randint(10**8, 10**9),
            "type": rng.choice(("trade", "quote", "order", "cancel")),
            "symbol": rng.choice(_SYMBOLS),
            "price": round(rng.uniform(5, 900), 2),
            "qty": rng.randint(1, 5_000),
            "ts": ts,
            "user": {"name": rng.choice(_NAMES), "id": rng.randint(1, 10**6)},
            "tags": rng.sample(_WORDS, 3),
            "note": " ".join(rng.choices(_WORDS, k=rng.randint(2, 12))),
        }
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        parts.append(line)
        total += len(line)
    return "".join(parts)[:length]


def json_messages(size: int, count: int, corpus: str) -> list[str]:
    """``count`` different ``size``-character slices of ``corpus``, in feed order."""
    stride = min(size, (len(corpus) - size) // max(count - 1, 1))
    assert stride > 0, "corpus too small"
    return [corpus[i * stride : i * stride + size] for i in range(count)]


def binary_payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def tune_malloc() -> bool:
    """Keep freed memory in the process between runs (glibc only).

    A run keeps its N messages alive, then frees them all. By default glibc
    hands big freed blocks back to the kernel (and serves >= 128 KiB
    allocations from fresh mmaps with a threshold that moves as the program
    runs), so the next run page-faults on every 4 KiB page it touches. On this
    VM that made a 1 MiB message cost 300 us instead of 30 us, whichever
    library ran, and the large-message numbers varied 3-8x between runs. With
    fixed thresholds, warm runs reuse the heap, as a long-running server does,
    and the numbers measure the libraries.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    # 32 MiB: the largest mmap threshold mallopt(3) documents for 64-bit systems.
    return bool(mallopt(m_mmap_threshold, 32 * MiB)) and bool(mallopt(m_trim_threshold, 2**30))


def to_chunks(data: bytes, chunked: bool) -> list[bytes]:
    if not chunked:
        return [data]
    return [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]


# -- the three libraries ----------------------------------------------------------


class Adapter:
    """Drives one library's sans-IO core. Each method returns a fresh object."""

    name: str

    def parser(self, *, server: bool, deflate: bool, text: bool) -> ParseRun:
        """A run that feeds chunks to a new receiver and returns the messages."""
        raise NotImplementedError

    def serializer(self, *, client: bool, deflate: bool, text: bool) -> SerializeRun:
        """A run that sends messages from a new sender and returns its output."""
        raise NotImplementedError

    def payloads(self, messages: list[Any], *, text: bool) -> list[Payload]:
        """Turn what a parse run returned into payloads, checking their types."""
        kind = str if text else (bytes, bytearray)
        for message in messages:
            if not isinstance(message, kind):
                raise AssertionError(f"{self.name}: expected {kind}, got {type(message)}")
        return messages

    def wire(self, output: list[Any]) -> bytes:
        """The bytes a serialize run produced, as they would go on the wire."""
        return b"".join(output)


class TrioWsAdapter(Adapter):
    name = "trio_ws"

    @staticmethod
    def _deflate(*, client: bool) -> trio_ws_deflate.PerMessageDeflate:
        # Negotiate as a real handshake would: offer, accept, check the answer.
        config = trio_ws_deflate.DeflateConfig(
            compress_level=ZLIB_LEVEL, mem_level=ZLIB_MEM_LEVEL, min_size=0
        )
        accepted = trio_ws_deflate.server_accept(config, [trio_ws_deflate.client_offer(config)])
        assert accepted is not None
        response, server_codec = accepted
        client_codec = trio_ws_deflate.client_accept(config, [response])
        assert client_codec is not None
        return client_codec if client else server_codec

    def _machine(self, *, client: bool, deflate: bool) -> WebSocketMachine:
        extension = self._deflate(client=client) if deflate else None
        role = Role.CLIENT if client else Role.SERVER
        return WebSocketMachine(role, max_size=None, extension=extension)

    def parser(self, *, server: bool, deflate: bool, text: bool) -> ParseRun:
        machine = self._machine(client=not server, deflate=deflate)
        receive_data = machine.receive_data
        events_received = machine.events_received

        def run(chunks: Chunks) -> list[Any]:
            out: list[Any] = []
            for chunk in chunks:
                receive_data(chunk)
                out += events_received()
            return out

        return run

    def payloads(self, messages: list[Any], *, text: bool) -> list[Payload]:
        kind = TextMessage if text else BinaryMessage
        for message in messages:
            if type(message) is not kind:
                raise AssertionError(f"trio_ws: expected {kind.__name__}, got {message!r:.80}")
        return [message.data for message in messages]

    def serializer(self, *, client: bool, deflate: bool, text: bool) -> SerializeRun:
        machine = self._machine(client=client, deflate=deflate)
        send = cast("Callable[[Payload], None]", machine.send_text if text else machine.send_binary)
        data_to_send = machine.data_to_send

        def run(messages: Sequence[Payload]) -> list[Any]:
            out: list[Any] = []
            for message in messages:
                send(message)
                out.append(data_to_send())
            return out

        return run


class WsprotoAdapter(Adapter):
    name = "wsproto"

    @staticmethod
    def _deflate(*, client: bool) -> wsproto.extensions.PerMessageDeflate:
        # wsproto's handshake calls exactly these, with the extension name in front.
        client_ext = wsproto.extensions.PerMessageDeflate()
        server_ext = wsproto.extensions.PerMessageDeflate()
        response = server_ext.accept(f"{client_ext.name}; {client_ext.offer()}")
        assert isinstance(response, str)
        client_ext.finalize(f"{client_ext.name}; {response}")
        assert client_ext.enabled()
        assert server_ext.enabled()
        return client_ext if client else server_ext

    def _connection(self, *, client: bool, deflate: bool) -> wsproto.connection.Connection:
        extensions: list[wsproto.extensions.Extension] = (
            [self._deflate(client=client)] if deflate else []
        )
        kind = (
            wsproto.connection.ConnectionType.CLIENT
            if client
            else wsproto.connection.ConnectionType.SERVER
        )
        return wsproto.connection.Connection(kind, extensions=extensions)

    def parser(self, *, server: bool, deflate: bool, text: bool) -> ParseRun:
        connection = self._connection(client=not server, deflate=deflate)
        receive_data = connection.receive_data
        events = cast("Callable[[], Iterable[WsprotoMessage[Any]]]", connection.events)
        join: Callable[[list[Any]], Payload] = "".join if text else b"".join

        def run(chunks: Chunks) -> list[Any]:
            out: list[Any] = []
            parts: list[Any] = []
            for chunk in chunks:
                receive_data(chunk)
                for event in events():
                    if event.message_finished and not parts:
                        out.append(event.data)
                    else:
                        parts.append(event.data)
                        if event.message_finished:
                            out.append(join(parts))
                            parts = []
            return out

        return run

    def serializer(self, *, client: bool, deflate: bool, text: bool) -> SerializeRun:
        send = self._connection(client=client, deflate=deflate).send
        event = cast(
            "Callable[..., Any]",
            wsproto.events.TextMessage if text else wsproto.events.BytesMessage,
        )

        def run(messages: Sequence[Payload]) -> list[Any]:
            return [send(event(data=message)) for message in messages]

        return run


class WebsocketsAdapter(Adapter):
    name = "websockets"

    @staticmethod
    def _deflate(*, client: bool) -> websockets_deflate.PerMessageDeflate:
        settings = {"level": ZLIB_LEVEL, "memLevel": ZLIB_MEM_LEVEL}
        client_factory = websockets_deflate.ClientPerMessageDeflateFactory(
            compress_settings=settings
        )
        server_factory = websockets_deflate.ServerPerMessageDeflateFactory(
            compress_settings=settings
        )
        response, server_ext = server_factory.process_request_params(
            client_factory.get_request_params(), []
        )
        client_ext = client_factory.process_response_params(response, [])
        return client_ext if client else server_ext

    def _protocol(self, *, client: bool, deflate: bool) -> websockets.protocol.Protocol:
        protocol = websockets.protocol.Protocol(
            websockets.protocol.Side.CLIENT if client else websockets.protocol.Side.SERVER,
            state=websockets.protocol.State.OPEN,
            max_size=None,
        )
        if deflate:
            protocol.extensions = [self._deflate(client=client)]
        return protocol

    def parser(self, *, server: bool, deflate: bool, text: bool) -> ParseRun:
        protocol = self._protocol(client=not server, deflate=deflate)
        receive_data = protocol.receive_data
        # In state OPEN the only events are frames.
        events_received = cast(
            "Callable[[], list[websockets.frames.Frame]]", protocol.events_received
        )

        def run_binary(chunks: Chunks) -> list[Any]:
            out: list[Any] = []
            parts: list[Any] = []
            for chunk in chunks:
                receive_data(chunk)
                for frame in events_received():
                    if frame.fin and not parts:
                        out.append(frame.data)
                    else:
                        parts.append(frame.data)
                        if frame.fin:
                            out.append(b"".join(parts))
                            parts = []
            return out

        def run_text(chunks: Chunks) -> list[Any]:
            # Decoding belongs to websockets' Assembler; a user gets str.
            out: list[Any] = []
            parts: list[Any] = []
            for chunk in chunks:
                receive_data(chunk)
                for frame in events_received():
                    if frame.fin and not parts:
                        out.append(bytes(frame.data).decode())
                    else:
                        parts.append(frame.data)
                        if frame.fin:
                            out.append(b"".join(parts).decode())
                            parts = []
            return out

        return run_text if text else run_binary

    def serializer(self, *, client: bool, deflate: bool, text: bool) -> SerializeRun:
        protocol = self._protocol(client=client, deflate=deflate)
        send_binary = protocol.send_binary
        send_text = protocol.send_text
        data_to_send = protocol.data_to_send

        def run_binary(messages: Sequence[Payload]) -> list[Any]:
            out: list[Any] = []
            for message in messages:
                send_binary(cast("bytes", message))
                out.append(data_to_send())
            return out

        def run_text(messages: Sequence[Payload]) -> list[Any]:
            # websockets' send_text() takes UTF-8; its connection encodes str.
            out: list[Any] = []
            for message in messages:
                send_text(cast("str", message).encode())
                out.append(data_to_send())
            return out

        return run_text if text else run_binary

    def wire(self, output: list[Any]) -> bytes:
        # data_to_send() returns a list of buffers, ready for writelines().
        return b"".join(b"".join(writes) for writes in output)


ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter for adapter in (TrioWsAdapter(), WsprotoAdapter(), WebsocketsAdapter())
}


# -- scenarios ------------------------------------------------------------------


@dataclass
class Scenario:
    op: str  # "parse" or "serialize"
    size: int
    count: int
    masked: bool  # client to server
    deflate: bool
    chunked: bool = False
    # Filled in by prepare(): inputs per library.
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)
    expected: list[Payload] = field(default_factory=list, repr=False)
    payload_bytes: int = 0

    @property
    def name(self) -> str:
        size = (
            f"{self.size // MiB} MiB"
            if self.size >= MiB
            else (f"{self.size // KiB} KiB" if self.size >= KiB else f"{self.size} B")
        )
        parts = [
            self.op,
            "masked" if self.masked else "unmasked",
            size,
            "deflate" if self.deflate else "plain",
        ]
        if self.op == "parse":
            parts.append("64K-chunks" if self.chunked else "one-call")
        return " ".join(parts)

    @property
    def text(self) -> bool:
        return self.deflate  # JSON-like text for deflate, random binary otherwise


def make_scenarios(scale: float) -> list[Scenario]:
    scenarios = []
    for deflate in (False, True):
        counts = COUNTS_DEFLATE if deflate else COUNTS_PLAIN
        for size in SIZES:
            count = max(2, round(counts[size] * scale))
            for masked in (True, False):
                for chunked in (False, True):
                    scenarios.append(Scenario("parse", size, count, masked, deflate, chunked))
                scenarios.append(Scenario("serialize", size, count, masked, deflate))
    return scenarios


def prepare(scenario: Scenario, corpus: str) -> None:
    """Build the inputs: the same bytes for all, or each library's own peer's output."""
    if scenario.text:
        messages: list[Payload] = list(json_messages(scenario.size, scenario.count, corpus))
        scenario.payload_bytes = sum(len(cast("str", m).encode()) for m in messages)
    else:
        payload = binary_payload(scenario.size)
        messages = [payload] * scenario.count
        scenario.payload_bytes = scenario.size * scenario.count
    scenario.expected = messages
    if scenario.op == "serialize":
        for lib in LIBS:
            scenario.inputs[lib] = messages
        return
    if scenario.deflate:
        for lib, adapter in ADAPTERS.items():
            sender = adapter.serializer(client=scenario.masked, deflate=True, text=scenario.text)
            wire = adapter.wire(sender(messages))
            scenario.inputs[lib] = to_chunks(wire, scenario.chunked)
    else:
        sender = ADAPTERS["trio_ws"].serializer(
            client=scenario.masked, deflate=False, text=scenario.text
        )
        frame = ADAPTERS["trio_ws"].wire(sender(messages[:1]))
        chunks = to_chunks(frame * scenario.count, scenario.chunked)
        for lib in LIBS:
            scenario.inputs[lib] = chunks


def check(scenario: Scenario, lib: str, payloads: list[Payload]) -> None:
    expected = scenario.expected
    if len(payloads) != len(expected):
        raise AssertionError(
            f"{lib} / {scenario.name}: {len(payloads)} messages, expected {len(expected)}"
        )
    for index, (got, want) in enumerate(zip(payloads, expected, strict=True)):
        if got != want:
            raise AssertionError(f"{lib} / {scenario.name}: message {index} differs")


def run_once(scenario: Scenario, lib: str) -> int:
    """Time one run of ``lib`` on ``scenario``, check its result, return nanoseconds."""
    adapter = ADAPTERS[lib]
    run: Callable[[Any], list[Any]]
    if scenario.op == "parse":
        run = adapter.parser(server=scenario.masked, deflate=scenario.deflate, text=scenario.text)
    else:
        run = adapter.serializer(
            client=scenario.masked, deflate=scenario.deflate, text=scenario.text
        )
    arg = scenario.inputs[lib]
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        output = run(arg)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()

    if len(output) != scenario.count:
        problem = f"{len(output)} results, not {scenario.count}"
        raise AssertionError(f"{lib} / {scenario.name}: {problem}")
    if scenario.op == "parse":
        check(scenario, lib, adapter.payloads(output, text=scenario.text))
    else:
        # Parse the output back with a fresh peer of the same library.
        peer = adapter.parser(server=scenario.masked, deflate=scenario.deflate, text=scenario.text)
        parsed = peer([adapter.wire(output)])
        check(scenario, lib, adapter.payloads(parsed, text=scenario.text))
    return elapsed


@dataclass
class Result:
    scenario: Scenario
    times: dict[str, list[int]]

    def median(self, lib: str) -> float:
        return statistics.median(self.times[lib])

    def per_op(self, lib: str) -> float:
        return self.median(lib) / self.scenario.count

    def ratio(self, lib: str) -> float:
        return self.median(lib) / self.median("trio_ws")

    def spread(self) -> float:
        return max((max(t) - min(t)) / statistics.median(t) for t in self.times.values())

    def mb_per_s(self, lib: str) -> float:
        return self.scenario.payload_bytes / (self.median(lib) / 1e9) / 1e6

    def _below(self, low: float, high: float) -> list[str]:
        targets = TARGET_SMALL if self.scenario.size <= SMALL else TARGET_LARGE
        return [
            f"{lib} {self.ratio(lib):.2f}x<{target:g}x"
            for lib, target in targets.items()
            if target * low <= self.ratio(lib) < target * high
        ]

    def misses(self) -> list[str]:
        """Targets missed by more than the noise."""
        return self._below(0.0, 1.0 - NOISE)

    def near_misses(self) -> list[str]:
        """Targets missed by less than the noise: ties, as far as we can tell."""
        return self._below(1.0 - NOISE, 1.0)

    def as_json(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "scenario": s.name,
            "op": s.op,
            "payload_size": s.size,
            "messages": s.count,
            "masked": s.masked,
            "deflate": s.deflate,
            "chunked": s.chunked,
            "payload_bytes": s.payload_bytes,
            "trials_ns": self.times,
            "median_ns_per_message": {lib: self.per_op(lib) for lib in LIBS},
            "mb_per_s": {lib: self.mb_per_s(lib) for lib in LIBS},
            "ratio_vs_trio_ws": {lib: self.ratio(lib) for lib in LIBS if lib != "trio_ws"},
            # Fastest trials: less sensitive to other load on the machine.
            "min_ns_per_message": {lib: min(self.times[lib]) / s.count for lib in LIBS},
            "ratio_vs_trio_ws_of_min": {
                lib: min(self.times[lib]) / min(self.times["trio_ws"])
                for lib in LIBS
                if lib != "trio_ws"
            },
            "spread": self.spread(),
            "misses": self.misses(),
            "near_misses": self.near_misses(),
        }


def bench(scenario: Scenario, trials: int) -> Result:
    # One untimed run each first: the first run of a scenario pays for page
    # faults while malloc grows the heap, which made it up to 5x slower.
    for lib in LIBS:
        run_once(scenario, lib)
    times: dict[str, list[int]] = {lib: [] for lib in LIBS}
    for trial in range(trials):
        # Rotate the order so that no library always runs first or last.
        order = LIBS[trial % len(LIBS) :] + LIBS[: trial % len(LIBS)]
        for lib in order:
            times[lib].append(run_once(scenario, lib))
    return Result(scenario, times)


# -- output ---------------------------------------------------------------------


def fmt_time(ns: float) -> str:
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "versions": {
            "trio_ws": version("trio_ws"),
            "wsproto": version("wsproto"),
            "websockets": version("websockets"),
        },
        "c_masking": {
            "trio_ws": trio_ws_frames.HAVE_SPEEDUPS,
            "wsproto": False,
            # websockets.frames imports apply_mask from its C module when built.
            "websockets": vars(websockets.frames)["apply_mask"].__module__.endswith("speedups"),
        },
    }


HEADER = (
    f"{'scenario':<40} {'N':>6} {'trio_ws':>9} {'wsproto':>9} {'websockets':>10}"
    f" {'wsproto/':>8} {'websock/':>8} {'trio_ws':>8} {'spread':>6}  target"
)
SUBHEADER = (
    f"{'':<40} {'':>6} {'per msg':>9} {'per msg':>9} {'per msg':>10}"
    f" {'trio_ws':>8} {'trio_ws':>8} {'MB/s':>8} {'':>6}"
)


def row(result: Result) -> str:
    s = result.scenario
    misses, near = result.misses(), result.near_misses()
    verdict = "ok"
    if misses:
        verdict = "MISS " + ", ".join(misses + near)
    elif near:
        verdict = "near " + ", ".join(near)
    return (
        f"{s.name:<40} {s.count:>6} {fmt_time(result.per_op('trio_ws')):>9}"
        f" {fmt_time(result.per_op('wsproto')):>9} {fmt_time(result.per_op('websockets')):>10}"
        f" {result.ratio('wsproto'):>7.2f}x {result.ratio('websockets'):>7.2f}x"
        f" {result.mb_per_s('trio_ws'):>8.0f} {result.spread():>6.0%}  " + verdict
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, 1 trial")
    parser.add_argument("--trials", type=int, default=None, help="trials per library (5)")
    parser.add_argument("--scale", type=float, default=None, help="multiply message counts")
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    parser.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    parser.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="leave glibc malloc's thresholds alone (see tune_malloc)",
    )
    args = parser.parse_args(argv)
    malloc_tuned = False if args.no_malloc_tuning else tune_malloc()
    trials = args.trials or (1 if args.quick else 5)
    scale = args.scale or (0.01 if args.quick else 1.0)

    env = environment()
    env["malloc_tuned"] = malloc_tuned
    print(f"Python {env['python']} ({env['implementation']}, {env['platform']})")
    print(
        "trio_ws {trio_ws} (WebSocketMachine), wsproto {wsproto} (connection.Connection), "
        "websockets {websockets} (protocol.Protocol)".format(**env["versions"])
    )
    print(
        "C masking: "
        + ", ".join(f"{lib} {'yes' if c else 'no'}" for lib, c in env["c_masking"].items())
    )
    print(
        "glibc malloc: "
        + ("fixed thresholds, freed memory kept" if malloc_tuned else "default (not tuned)")
    )
    print(f"{trials} interleaved trial(s), median shown; ratio > 1: trio_ws is faster\n")

    scenarios = [s for s in make_scenarios(scale) if args.only in s.name]
    if not scenarios:
        parser.error(f"no scenario name contains {args.only!r}")
    corpus = json_corpus(max(SIZES) * 3 // 2)
    print(HEADER)
    print(SUBHEADER)
    started = time.perf_counter()
    results = []
    for scenario in scenarios:
        prepare(scenario, corpus)
        result = bench(scenario, trials)
        scenario.inputs.clear()  # let the next scenario have the memory
        results.append(result)
        print(row(result), flush=True)
    elapsed = time.perf_counter() - started

    missed = sum(1 for r in results if r.misses())
    near = sum(1 for r in results if r.near_misses() and not r.misses())
    print(
        f"\n{len(results)} scenarios in {elapsed:.0f} s; {missed} miss a target,"
        f" {near} more within {NOISE:.0%} of one."
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(
                {
                    "environment": env,
                    "trials": trials,
                    "scale": scale,
                    "targets": {"small": TARGET_SMALL, "large": TARGET_LARGE, "small_max": SMALL},
                    "results": [r.as_json() for r in results],
                },
                file,
                indent=2,
            )
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
