"""/openapi.json describes every route of the live app, validates as OpenAPI 3.1, and its examples run;
/docs renders it from the package alone."""

from __future__ import annotations

import itertools
import re
import shutil
from urllib.parse import quote, urljoin

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from service.app import create_app
from service.config import Config

_VARIABLE = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
_EXTERNAL = re.compile(r"""(?:https?:)?//[\w.-]+""")


@pytest.fixture(scope="module")
def spec(app):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def expected_paths(rule: str) -> list[str]:
    """`<name>` -> `{name}`; a rule with `<any(a,b):verb>` stands for one path per alternative."""
    pieces, position = [], 0
    for match in _VARIABLE.finditer(rule):
        literal = rule[position:match.start()]
        position = match.end()
        if match[1] == "any":
            pieces.append([literal + choice.strip() for choice in match[2].split(",")])
        else:
            pieces.append([literal + "{" + match[3] + "}"])
    pieces.append([rule[position:]])
    return ["".join(combination) for combination in itertools.product(*pieces)]


def schema_errors(spec, schema, instance) -> list[str]:
    # The schema travels with the document's components, so its "#/components/..." references resolve.
    validator = Draft202012Validator({**schema, "components": spec["components"]})
    return [f"{list(e.absolute_path)}: {e.message[:300]}" for e in validator.iter_errors(instance)]


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def concrete(path: str, operation) -> str | None:
    """The path with every path parameter replaced by its example, or None if one has none."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        if "example" not in parameter:
            return None
        path = path.replace("{" + parameter["name"] + "}", quote(str(parameter["example"]), safe=""))
    return path


def test_every_rule_is_documented(app, spec):
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for path in expected_paths(rule.rule):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if method.lower() not in spec["paths"].get(path, {}):
                    missing.append(f"{method} {path}")
    assert not missing
    for path in ("/openapi.json", "/docs", "/v2", "/v2/health/live", "/v1/models/{name}:classify"):
        assert path in spec["paths"]


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1.")
    validate(spec)
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))


def test_every_example_request_succeeds_and_matches_the_response_schema(client, spec):
    sent = 0
    for path, method, operation in operations(spec):
        url = concrete(path, operation)
        if url is None:
            continue
        if method == "get":
            bodies = [None]
        else:
            media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            bodies = [example["value"] for example in media.get("examples", {}).values()]
        for body in bodies:
            response = client.open(url, method=method.upper(), json=body)
            where = f"{method.upper()} {url}"
            assert 200 <= response.status_code < 300, f"{where}: {response.status_code} {response.data[:300]!r}"
            documented = operation["responses"][str(response.status_code)].get("content", {})
            if response.mimetype == "application/json":
                assert "application/json" in documented, where
                assert not schema_errors(spec, documented["application/json"]["schema"], response.get_json()), where
            else:
                assert response.mimetype in documented or any(t.endswith("*") for t in documented), where
            sent += 1
    assert sent >= 30


def test_example_responses_match_their_schemas(spec):
    checked = 0
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            media = response.get("content", {}).get("application/json", {})
            for name, example in media.get("examples", {}).items():
                errors = schema_errors(spec, media["schema"], example["value"])
                assert not errors, f"{method} {path} {status} example {name}: {errors}"
                checked += 1
    assert checked >= 10


def test_per_model_schemas_carry_names_shapes_and_examples(spec):
    components = {"components": spec["components"]}
    iris = spec["paths"]["/v2/models/iris/infer"]["post"]
    request = iris["requestBody"]["content"]["application/json"]
    (iris_input,) = request["schema"]["properties"]["inputs"]["items"]["anyOf"]
    assert iris_input["properties"]["name"] == {"const": "features"}
    assert iris_input["properties"]["datatype"] == {"const": "FP32"}
    assert iris_input["properties"]["shape"]["description"] == "[batch, 4]"
    example = request["examples"]["iris"]["value"]
    assert example["inputs"][0]["shape"] == [1, 4]
    iris_schema = Draft202012Validator({**request["schema"], **components})
    assert iris_schema.is_valid(example)
    assert not iris_schema.is_valid({"inputs": [
        {"name": "features", "shape": [1, 5], "datatype": "FP32", "data": [[1, 2, 3, 4, 5]]}]})
    assert not iris_schema.is_valid({"inputs": [{**example["inputs"][0], "datatype": "INT32"}]})

    friendly = spec["paths"]["/api/models/iris/predict"]["post"]
    (named,) = friendly["requestBody"]["content"]["application/json"]["examples"]["iris"]["value"]["instances"]
    assert list(named) == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    answer = friendly["responses"]["200"]["content"]["application/json"]["schema"]
    prediction = answer["properties"]["predictions"]["items"]
    assert prediction["properties"]["label"] == {"enum": ["setosa", "versicolor", "virginica"]}

    fashion = spec["paths"]["/api/models/fashion_mnist/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data", "image/*"} <= set(fashion)
    (image,) = fashion["application/json"]["examples"]["fashion_mnist"]["value"]["instances"]
    assert len(image) == 28 and all(len(row) == 28 for row in image)
    assert all(0 <= value <= 255 for row in image for value in row)
    pixels = fashion["application/json"]["schema"]["properties"]["instances"]["items"]
    assert pixels["minItems"] == pixels["maxItems"] == 28
    assert pixels["items"]["items"] == {"type": "number", "minimum": 0, "maximum": 255}

    png = spec["paths"]["/v2/models/fashion_mnist/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert png["examples"]["fashion_mnist-png"]["value"]["inputs"][0]["datatype"] == "BYTES"


def test_errors_are_documented_with_the_error_schema(client, spec):
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert {"200", "400", "404", "413", "415", "503"} <= set(infer)
    for status in ("400", "404", "413", "415", "503"):
        assert infer[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    response = client.post("/v2/models/nope/infer", json={"inputs": []})
    assert response.status_code == 404
    assert not schema_errors(spec, infer["404"]["content"]["application/json"]["schema"], response.get_json())
    upload = spec["paths"]["/api/models/{name}/predict"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"400", "413", "415"} <= set(upload["responses"])


def test_the_document_follows_the_served_models(tmp_path, models_dir):
    shutil.copytree(models_dir / "iris", tmp_path / "iris")
    spec = create_app(Config(model_base_path=tmp_path, poll_seconds=0), watch=False).test_client() \
        .get("/openapi.json").get_json()
    assert "/v2/models/iris/infer" in spec["paths"]
    assert not any("fashion_mnist" in path or "linear" in path for path in spec["paths"])
    assert spec["paths"]["/v2/models/{name}"]["get"]["parameters"][0]["example"] == "iris"


def test_docs_page_is_served_from_the_package(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assets = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    assert {"docs/docs.js", "docs/docs.css", "openapi.json"} <= set(assets)
    for text in [html] + [client.get(urljoin("/docs", asset)).get_data(as_text=True) for asset in assets]:
        assert not _EXTERNAL.search(text), _EXTERNAL.search(text)
    for asset in assets:
        assert client.get(urljoin("/docs", asset)).status_code == 200, asset
    assert "<script>" not in html and "style=" not in html
    assert client.get("/docs/nope.js").status_code == 404

