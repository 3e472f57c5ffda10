"""The bad-input catalogue: requests no client should send, sent byte for byte, and what must come back.

Each case is the exact bytes of one HTTP request, written here and sent over a raw socket, so
that no client library "fixes" it (a lying Content-Length, a bad chunk, a NUL byte or `..` in
the path reach the server as written), and what must come back: the status, a fragment of the
message, and whose answer it is. Most are the app's JSON `{"error": "..."}`; malformed HTTP and
the request line and header limits are answered by gunicorn itself, before the app sees the
request, as a small HTML page (`json=False`). Every answer is also checked for what must never
be in one: a stack trace or a path on the server.

Used by tests/integration/test_reliability.py (one test per case) and `make reliability` (the table).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import socket
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
SETOSA = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}
BOMB_SIDE = 20_000


@dataclass(frozen=True)
class Reply:
    status: int | None           # None: the connection ended with no answer
    headers: dict[str, str]      # lower-case names
    body: bytes
    seconds: float               # from the first byte sent to the end of the answer (or of the connection)

    @property
    def error(self) -> str:
        """The error message: the JSON `error`, else the text of gunicorn's page."""
        try:
            payload = json.loads(self.body)
            if isinstance(payload, dict) and isinstance(payload.get("error"), str):
                return payload["error"]
        except ValueError:
            pass
        # gunicorn's page: <title>, the same as <h1>, then the detail; the detail says more.
        text = self.body.decode("utf-8", "replace")
        text = text.split("</h1>", 1)[-1]
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    build: Callable[[], bytes]          # the request's bytes (built lazily: some are megabytes)
    status: int | None                  # None: no answer, the server closes the connection
    message: str = ""                   # a fragment the error message must contain (case-insensitive)
    json: bool = True                   # the app's JSON error; False: gunicorn's own page
    head_only: bool = False             # send only up to the blank line; the answer must not wait for the body
    half_close: bool = False            # shut our sending side after the request (the body ends there)
    timeout: float = 20.0


@dataclass
class Result:
    case: Case
    reply: Reply
    healthy: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------- raw HTTP

def request(method: str, path: str, body: bytes | None = None, *, content_type: str | None = "application/json",
            headers: tuple[tuple[str, str], ...] = (), length: int | str | None = "auto",
            chunked: bool = False) -> bytes:
    """One HTTP/1.1 request, exactly: `length` "auto" writes the true Content-Length, None leaves it out."""
    lines = [f"{method} {path} HTTP/1.1", "Host: catalogue", "Connection: close"]
    if content_type is not None and body is not None:
        lines.append(f"Content-Type: {content_type}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length == "auto" and body is not None:
        lines.append(f"Content-Length: {len(body)}")
    elif length not in ("auto", None):
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def chunks(body: bytes, size: int = 65536) -> bytes:
    """`body` in chunked transfer coding."""
    out = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(out) + b"0\r\n\r\n"


def send(host: str, port: int, data: bytes, *, timeout: float = 20.0, head_only: bool = False,
         half_close: bool = False) -> Reply:
    """Send `data` on a new connection and read one answer (to its Content-Length, or to the close)."""
    if head_only:
        data = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before taking everything (e.g. 413, 414)
        raw = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
                if _complete(raw):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    seconds = time.monotonic() - started
    if not raw.startswith(b"HTTP/"):
        return Reply(None, {}, raw, seconds)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split()[1]), headers, body, seconds)


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    return match is not None and len(body) >= int(match.group(1))


# --------------------------------------------------------------------------- images

def png(width: int, height: int, *, bits: int = 8, rows: int | None = None) -> bytes:
    """A grayscale PNG of zeros, written by hand so that its size costs no memory here.

    `rows` limits the pixel data actually written (the header still says width x height).
    """
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width * bits + 7) // 8)
    data = [compressor.compress(row) for _ in range(height if rows is None else rows)]
    data.append(compressor.flush())

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(data)) + chunk(b"IEND", b"")


@cache
def bomb_1bit() -> bytes:
    """20,000 x 20,000 pixels (400 megapixels, 400 MB decoded as 8-bit) in about 50 KB."""
    return png(BOMB_SIDE, BOMB_SIDE, bits=1)


@cache
def bomb_8bit() -> bytes:
    return png(BOMB_SIDE, BOMB_SIDE)


def small_png(side: int = 28, value: int = 200) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (side, side), value).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "catalogue-boundary-7f3a") -> bytes:
    """(field, filename or None, data) parts as a multipart/form-data body."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += b"Content-Type: image/png\r\n" if filename else b""
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = "multipart/form-data; boundary=catalogue-boundary-7f3a"
UPLOAD = "/api/models/fashion_mnist/predict"


def upload(*parts: tuple[str, str | None, bytes]) -> bytes:
    return request("POST", UPLOAD, multipart(list(parts)), content_type=MULTIPART)


# --------------------------------------------------------------------------- the cases

def _json(path: str, payload: object) -> Callable[[], bytes]:
    return lambda: request("POST", path, json.dumps(payload).encode())


def _raw(path: str, body: bytes, **options: object) -> Callable[[], bytes]:
    return lambda: request("POST", path, body, **options)  # type: ignore[arg-type]


def _get(path: str) -> Callable[[], bytes]:
    return lambda: request("GET", path)


PREDICT = "/v1/models/iris:predict"
FASHION = "/v1/models/fashion_mnist:predict"
FRIENDLY = "/api/models/iris/predict"
V2 = "/v2/models/iris/infer"


def cases(max_instances: int = 256, max_files: int = 16) -> list[Case]:
    """The catalogue, for a server with the committed models and these limits."""
    nested = {"instances": json.loads("[" * 200 + "5.1" + "]" * 200)}
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bright = [[300] * 28 for _ in range(28)]
    dark = [[-1] * 28 for _ in range(28)]
    good = json.dumps({"instances": [IRIS_ROW]}).encode()
    big = b'{"instances": [' + b" " * (17 * 1024 * 1024) + b"]}"
    return [
        # --- JSON that is not what a door takes
        Case("json", "malformed JSON", _raw(PREDICT, b'{"instances": [[5.1 3.5]]}'), 400, "malformed JSON"),
        Case("json", "truncated JSON", _raw(PREDICT, good[:-3]), 400, "malformed JSON"),
        Case("json", "a JSON array, not an object", _json(PREDICT, [IRIS_ROW]), 400, "must be a JSON object"),
        Case("json", "wrong key", _json(PREDICT, {"instance": [IRIS_ROW]}), 400, "unknown key"),
        Case("json", "extra key", _json(PREDICT, {"instances": [IRIS_ROW], "debug": True}), 400, "unknown key"),
        Case("json", "instances and inputs together", _json(PREDICT, {"instances": [IRIS_ROW], "inputs": [IRIS_ROW]}),
             400, "exactly one of"),
        Case("json", "empty body", _raw(PREDICT, b""), 400, "empty"),
        Case("json", "null instances", _json(PREDICT, {"instances": None}), 400, "must be a list"),
        Case("json", "empty instances", _json(PREDICT, {"instances": []}), 400, "is empty"),
        Case("json", "ragged instances", _json(PREDICT, {"instances": [IRIS_ROW, [1.0, 2.0]]}), 400, "ragged"),
        Case("json", "nested 200 deep", _json(PREDICT, nested), 400, "ragged"),
        Case("json", "nested 100,000 deep", _raw(PREDICT, deep), 400, "depth limit"),
        Case("json", "wrong shape", _json(PREDICT, {"instances": [[1.0, 2.0, 3.0]]}), 400, "shape [4]"),
        Case("json", "strings", _json(PREDICT, {"instances": [["a", "b", "c", "d"]]}), 400, "expected numbers"),
        Case("json", "booleans", _json(PREDICT, {"instances": [[True, 1.0, 2.0, 3.0]]}), 400, "got bool"),
        Case("json", "NaN", _raw(PREDICT, b'{"instances": [[NaN, 3.5, 1.4, 0.2]]}'), 400, "NaN and Infinity"),
        Case("json", "Infinity", _raw(PREDICT, b'{"instances": [[Infinity, 3.5, 1.4, 0.2]]}'), 400, "NaN and Infinity"),
        Case("json", "1e309 (overflows a double)", _raw(PREDICT, b'{"instances": [[1e309, 3.5, 1.4, 0.2]]}'), 400,
             "infinity"),
        Case("json", "1e300 (a double, infinite as float32)", _raw(PREDICT, b'{"instances": [[1e300, 3.5, 1.4, 0.2]]}'),
             400, "within the range of float32"),
        Case("json", "3e38: the model overflows", _json("/v1/models/linear:predict", {"instances": [[3e38]]}), 400,
             "not a finite"),
        Case("json", "pixels above 255", _json(FASHION, {"instances": [bright]}), 400,
             "within 0..255"),
        Case("json", "pixels below 0", _json(FASHION, {"instances": [dark]}), 400,
             "within 0..255"),
        Case("json", f"{max_instances + 1} instances", _json(PREDICT, {"instances": [IRIS_ROW] * (max_instances + 1)}),
             413, f"limit is {max_instances}"),
        Case("json", "friendly: unknown feature", _json(FRIENDLY, {"instances": [{"sepal": 1}]}),
             400, "missing"),
        Case("json", "friendly: 4 numbers for named features", _json(FRIENDLY, {"instances": [SETOSA]}),
             200),
        Case("json", "classify a regression model", _json("/v1/models/linear:classify", {"examples": [{"x": 1.0}]}),
             400, "not a classification model"),
        Case("json", "b64 that is not base64", _json(FASHION, {"instances": [{"b64": "!!"}]}),
             400, "not valid base64"),
        Case("json", "v2: shape and data disagree",
             _json(V2, {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}),
             400, "needs 4 elements"),
        Case("json", "v2: unknown datatype",
             _json(V2, {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP99", "data": IRIS_ROW}]}),
             400, "not supported"),
        Case("json", "v2: binary header length past the body",
             _raw(V2, b'{"inputs": []}', content_type="application/octet-stream",
                  headers=(("Inference-Header-Content-Length", "500"),)), 400, "Inference-Header-Content-Length"),
        Case("json", "v2: pixels in a JSON image above 255",
             _json("/v2/models/fashion_mnist/infer",
                   {"inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": [bright]}]}),
             400, "within 0..255"),
        # --- the body's size and framing
        Case("body", "Content-Length of 100 GB, body never sent", _raw(PREDICT, b"", length=100 * 10**9), 413,
             "over the limit", head_only=True),
        Case("body", "17 MiB chunked (no Content-Length)", lambda: request("POST", PREDICT, chunks(big), chunked=True),
             413, "over the limit"),
        Case("body", "chunked, well formed", lambda: request("POST", PREDICT, chunks(good, 7), chunked=True), 200),
        Case("body", "chunked, bad chunk size",
             lambda: request("POST", PREDICT, b"zz\r\n" + good + b"\r\n0\r\n\r\n", chunked=True), 400,
             "malformed chunked"),
        Case("body", "chunked, cut off (client closed)",
             lambda: request("POST", PREDICT, chunks(good)[:20], chunked=True), 400, "ended before",
             half_close=True),
        Case("body", "body without Content-Length", _raw(PREDICT, good, length=None), 400, "body is empty"),
        Case("body", "Content-Length shorter than the body", _raw(PREDICT, good, length=10), 400, "malformed JSON"),
        Case("body", "Content-Length longer than the body (client closed)", _raw(PREDICT, good, length=len(good) + 50),
             400, "ended after", half_close=True),
        Case("body", "Content-Length longer than the body (client waits)", _raw(PREDICT, good, length=len(good) + 50),
             None, "", timeout=60),
        Case("body", "Content-Length and Transfer-Encoding", _raw(PREDICT, chunks(good), length=5,
             headers=(("Transfer-Encoding", "chunked"),)), 400, "Invalid HTTP Header", json=False),
        Case("body", "negative Content-Length", _raw(PREDICT, b"", length=-1), 400, "Invalid HTTP Header", json=False),
        Case("body", "Content-Length not a number", _raw(PREDICT, b"", length="ten"), 400, "Invalid HTTP Header",
             json=False),
        Case("body", "wrong Content-Type", _raw(PREDICT, b"<instances/>", content_type="application/xml"), 415,
             "application/xml"),
        Case("body", "CSV to the friendly API", _raw("/api/models/iris/predict", b"5.1,3.5,1.4,0.2",
                                                     content_type="text/csv"), 415, "text/csv"),
        Case("body", "an image for a features model", lambda: request(
            "POST", "/api/models/iris/predict", multipart([("image", "a.png", small_png())]), content_type=MULTIPART),
            415, "takes features"),
        # --- image uploads
        Case("image", "a file that is not an image", lambda: upload(("image", "a.png", b"hello, not an image")), 415,
             "not an image"),
        Case("image", "a PDF", lambda: upload(("image", "a.pdf", b"%PDF-1.7\n%...")), 415, "PDF"),
        Case("image", "a truncated PNG", lambda: upload(("image", "a.png", small_png(64)[:60])), 400,
             "truncated or corrupt"),
        Case("image", "a 1x1 image", lambda: upload(("image", "a.png", small_png(1))), 200),
        Case("image", f"{BOMB_SIDE:,}x{BOMB_SIDE:,} PNG, 1-bit ({len(bomb_1bit()) // 1024} KB)",
             lambda: upload(("image", "bomb.png", bomb_1bit())), 413, "the limit is"),
        Case("image", f"{BOMB_SIDE:,}x{BOMB_SIDE:,} PNG, 8-bit ({len(bomb_8bit()) // 1024} KB)",
             lambda: upload(("image", "bomb.png", bomb_8bit())), 413, "the limit is"),
        Case("image", f"{BOMB_SIDE:,}x{BOMB_SIDE:,} PNG header, 4 KB", lambda: upload(
            ("image", "bomb.png", png(BOMB_SIDE, BOMB_SIDE, rows=10)[:4096])), 413, "the limit is"),
        Case("image", "the bomb as a raw image/png body", lambda: request(
            "POST", UPLOAD, bomb_1bit(), content_type="image/png"), 413, "the limit is"),
        Case("image", "the bomb as b64 in :predict", _json(FASHION, {
            "instances": [{"b64": base64.b64encode(bomb_1bit()).decode()}]}), 413, "the limit is"),
        Case("image", f"{max_files + 1} images", lambda: upload(*[("image", f"{i}.png", small_png())
                                                               for i in range(max_files + 1)]),
             413, f"limit is {max_files}"),
        Case("image", "multipart with 500 parts", lambda: upload(("image", "a.png", small_png()),
                                                                 *[(f"f{i}", None, b"x") for i in range(499)]),
             413, "parts"),
        Case("image", "multipart without a boundary", _raw(UPLOAD, b"--x\r\n\r\n", content_type="multipart/form-data"),
             400, "boundary"),
        Case("image", "multipart cut short", lambda: request(
            "POST", UPLOAD, multipart([("image", "a.png", small_png())])[:-40], content_type=MULTIPART), 400,
            "multipart"),
        Case("image", "multipart without an image field", lambda: upload(("photo", "a.png", small_png())), 400,
             "no file in form field 'image'"),
        # --- names: unknown ones, and ones that try to leave the models folder
        Case("names", "unknown model", _get("/v1/models/nope"), 404, "not found"),
        Case("names", "unknown version", _get("/v1/models/iris/versions/99"), 404, "no version 99"),
        Case("names", "version 0", _get("/v1/models/iris/versions/0"), 404, "positive integer"),
        Case("names", "version not a number", _get("/api/models/iris/versions/one"), 404, "positive integer"),
        Case("names", "unknown label", _get("/v1/models/iris/labels/canary"), 404, "no version label"),
        Case("names", "../ in the path", _get("/v1/models/../../etc/passwd"), 404, "not found"),
        Case("names", "%2e%2e as the model", _get("/v1/models/%2e%2e/metadata"), 404, "not found"),
        Case("names", "%2e%2e as the version", _get("/api/models/iris/versions/%2e%2e"), 404, "positive integer"),
        Case("names", "..%2f..%2f in a model", _get("/api/models/..%2f..%2fetc%2fpasswd"), 404, "not found"),
        Case("names", "..%2f in a plot file name", _get("/api/models/iris/versions/1/plots/..%2f..%2fsaved_model.pb"),
             404, "not found"),
        Case("names", "a plot the card does not name", _get("/api/models/iris/versions/1/plots/saved_model.pb"), 404,
             "has no plot"),
        Case("names", "absolute path as the model", _get("/v2/models/%2fetc%2fpasswd"), 404, "not found"),
        Case("names", "a hidden staging folder", _get("/v1/models/iris/versions/.staging-2"), 404, "positive integer"),
        Case("names", "%00 in the model", _get("/v1/models/iris%00/metadata"), 404, "not found"),
        Case("names", "a raw NUL byte in the request line", lambda: b"GET /v1/models/iris\x00 HTTP/1.1\r\n"
             b"Host: catalogue\r\nConnection: close\r\n\r\n", 400, "Invalid HTTP request line", json=False),
        # --- HTTP itself
        Case("http", "URL of 9,000 bytes", _get("/v1/models/" + "a" * 9000), 414, "too large", json=False),
        Case("http", "a header of 9,000 bytes", lambda: request("GET", "/v2/health/live", headers=(
            ("X-Padding", "a" * 9000),)), 431, "limit request headers fields size", json=False),
        Case("http", "101 headers", lambda: request("GET", "/v2/health/live", headers=tuple(
            (f"X-H{i}", "1") for i in range(101))), 431, "limit request headers fields", json=False),
        Case("http", "GET on :predict", _get(PREDICT), 405, "not allowed"),
        Case("http", "unknown method BREW", lambda: request("BREW", "/v1/models/iris"), 405, "not allowed"),
        Case("http", "not HTTP at all (TLS hello)", lambda: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
             400, "Invalid HTTP request line", json=False),
    ]


# --------------------------------------------------------------------------- judging

# Never in an answer: a stack trace, a source file, or a path of this machine's filesystem.
_LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages|/usr/(lib|local)|/proc/|" + re.escape(str(ROOT)),
                    re.IGNORECASE)


def leaks(reply: Reply, secret_paths: tuple[str, ...] = ()) -> list[str]:
    text = reply.body.decode("utf-8", "replace") + "\n" + "\n".join(reply.headers.values())
    found = [m.group(0) for m in _LEAKS.finditer(text)]
    found += [path for path in secret_paths if path and path in text]
    return found


def judge(case: Case, reply: Reply, healthy: bool, secret_paths: tuple[str, ...] = ()) -> Result:
    problems = []
    if reply.status != case.status:
        problems.append(f"status {reply.status}, expected {case.status}")
    if case.message and case.message.lower() not in reply.error.lower():
        problems.append(f"message {reply.error[:120]!r} lacks {case.message!r}")
    if case.status is not None and reply.status is not None:
        is_json = reply.headers.get("content-type", "").startswith("application/json")
        if case.json and not is_json:
            problems.append(f"answer is {reply.headers.get('content-type')!r}, not JSON")
        if case.json and reply.status >= 400 and is_json and set(json.loads(reply.body)) != {"error"}:
            problems.append("JSON error is not exactly {\"error\": ...}")
    if case.head_only and reply.status is not None and reply.seconds > 5:
        problems.append(f"answered after {reply.seconds:.1f} s: it waited for the body")
    found = leaks(reply, secret_paths)
    if found:
        problems.append(f"answer leaks {sorted(set(found))}")
    if not healthy:
        problems.append("server not healthy afterwards")
    return Result(case, reply, healthy, problems)


def healthy(host: str, port: int) -> bool:
    reply = send(host, port, request("GET", "/v2/health/ready"), timeout=10)
    return reply.status == 200


def run_case(case: Case, host: str, port: int, secret_paths: tuple[str, ...] = ()) -> Result:
    reply = send(host, port, case.build(), timeout=case.timeout, head_only=case.head_only,
                 half_close=case.half_close)
    return judge(case, reply, healthy(host, port), secret_paths)


def table(results: list[Result]) -> str:
    """The catalogue as printed by `make reliability`."""
    rows = [("case", "status", "error message", "healthy after", "as expected")]
    for result in results:
        reply = result.reply
        status = str(reply.status) if reply.status is not None else f"closed after {reply.seconds:.1f} s"
        who = "" if result.case.json or reply.status is None else " (gunicorn)"
        message = reply.error if reply.status is not None and reply.status >= 400 else ""
        message = message if len(message) <= 90 else message[:87] + "..."
        rows.append((f"{result.case.group}: {result.case.name}", status + who, message,
                     "yes" if result.healthy else "NO", "yes" if result.ok else "NO: " + "; ".join(result.problems)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)))
        if index == 0:
            lines.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 11)
    return "\n".join(lines)


# --------------------------------------------------------------------------- memory

def memory_mib(pid: int) -> tuple[float, float] | None:
    """(RSS, PSS) of one process in MiB, from /proc; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None

    def kib(text: str, key: str) -> float:
        for line in text.splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return float("nan")

    return kib(status, "VmRSS:"), kib(rollup, "Pss:")
