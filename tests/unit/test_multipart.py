"""The multipart parser against what real clients send, and against Werkzeug's parser."""

from __future__ import annotations

import io

import pytest
import requests
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from service.codecs.multipart import parse_multipart
from service.errors import InvalidInput, PayloadTooLarge


def encoded(files=None, data=None) -> tuple[bytes, str]:
    prepared = requests.Request("POST", "http://x/", files=files, data=data).prepare()
    return prepared.body, prepared.headers["Content-Type"]


def werkzeug_files(body: bytes, content_type: str) -> list[tuple[str, str, bytes]]:
    environ = EnvironBuilder(method="POST", input_stream=io.BytesIO(body), content_type=content_type,
                             content_length=len(body)).get_environ()
    _, _, files = parse_form_data(environ)
    return sorted((name, f.filename, f.read()) for name, f in files.items(multi=True))


@pytest.mark.parametrize("payloads", [
    [b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3],
    [b"", b"\r\n--tricky\r\n", b"--"],
    [b"a" * 100_000, b"\r\n\r\n"],
])
def test_same_files_as_werkzeug(payloads):
    files = [("image", (f"f{i}.png", data, "image/png")) for i, data in enumerate(payloads)]
    body, content_type = encoded(files=files, data={"note": "hello"})
    ours = sorted((p.name, p.filename, p.data) for p in parse_multipart(body, content_type, 64) if p.filename)
    assert ours == werkzeug_files(body, content_type)
    fields = {p.name: p.data for p in parse_multipart(body, content_type, 64) if p.filename is None}
    assert fields == {"note": b"hello"}


def test_unicode_filename_and_content_type():
    body, content_type = encoded(files=[("image", ("camisa-ñ.jpg", b"xyz", "image/jpeg"))])
    (part,) = parse_multipart(body, content_type, 4)
    assert (part.name, part.filename, part.content_type, part.data) == ("image", "camisa-ñ.jpg", "image/jpeg", b"xyz")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda body: body[:-10], "truncated"),
    (lambda body: body.replace(b"Content-Disposition", b"Content-Whatever"), "Content-Disposition"),
    (lambda body: b"no boundary anywhere", "boundary"),
])
def test_malformed_bodies_are_400(mutate, message):
    body, content_type = encoded(files=[("image", ("a.png", b"data", "image/png"))])
    with pytest.raises(InvalidInput, match=message):
        parse_multipart(mutate(body), content_type, 4)


def test_missing_boundary_parameter():
    with pytest.raises(InvalidInput, match="boundary"):
        parse_multipart(b"--x\r\n", "multipart/form-data", 4)


def test_hundreds_of_parts_are_refused_early():
    body, content_type = encoded(files=[("image", (f"{i}.png", b"x", "image/png")) for i in range(300)])
    with pytest.raises(PayloadTooLarge, match="more than 32 parts"):
        parse_multipart(body, content_type, 32)


def test_boundaries_longer_than_the_rfc_allows_are_accepted():
    boundary = "-" * 15 + "WerkzeugFormPart_1795770000.123456" + "7" * 30
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
            f"data\r\n--{boundary}--\r\n").encode()
    (part,) = parse_multipart(body, f"multipart/form-data; boundary={boundary}", 4)
    assert part.data == b"data"
