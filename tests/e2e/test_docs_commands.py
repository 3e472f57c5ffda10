"""Every command in README.md and docs/*.md works, and every answer they show is the real one.

The ```sh / ```bash blocks are read from the documents. A `curl` command runs against a real
gunicorn serving the committed models (its address in place of 127.0.0.1:8501), and the
```json block right after its block, when there is one, must equal the answer (both parsed as
JSON). A `make` target must exist in the Makefile; a `python -m module` or a Python script must
exist and accept --help; `docker` and `kubectl` commands (run by CI's scripts/docker_smoke.sh
and checked by tests/integration/test_k8s_manifests.py) must name files and compose profiles that exist.
Any other command fails the test: the documents hold no command nobody runs.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
SHELL = {"sh", "bash"}
DOCUMENTED_ADDRESS = re.compile(r"(?:http://)?(?:127\.0\.0\.1|localhost):8501")
PYTHONS = {"python", "python3", ".venv/bin/python"}


@dataclass(frozen=True)
class Command:
    where: str             # document:line of its block
    text: str              # continuation lines joined
    answer: str | None     # the ```json block right after the command's block

    @property
    def words(self) -> list[str]:
        """Its words, without leading VAR=value assignments."""
        words = shlex.split(self.text, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words.pop(0)
        return words


def _fences(path: Path) -> list[tuple[int, str, str, int, int]]:
    """(line, language, body, start, end) of each fenced block."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2), m.start(), m.end())
            for m in FENCE.finditer(text)]


def _commands(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def documented_commands() -> list[Command]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        fences = _fences(path)
        for i, (line, lang, body, _start, end) in enumerate(fences):
            if lang not in SHELL:
                continue
            follower = fences[i + 1] if i + 1 < len(fences) else None
            answer = None
            if follower and follower[1] == "json" and not text[end:follower[3]].strip():
                answer = follower[2]
            where = f"{path.relative_to(ROOT)}:{line}"
            commands = _commands(body)
            if answer is not None:
                assert len(commands) == 1, f"{where}: a block followed by its answer holds one command"
            found += [Command(where, command, answer) for command in commands]
    return found


COMMANDS = documented_commands()
CURLS = [c for c in COMMANDS if c.words[0] == "curl"]
OTHERS = [c for c in COMMANDS if c.words[0] != "curl"]


def test_the_documents_with_answers_are_all_found():
    answered = {c.where.split(":")[0] for c in CURLS if c.answer is not None}
    assert answered == {"README.md", "docs/images.md", "docs/tfserving.md", "docs/v2.md"}


def test_every_json_block_after_a_command_is_an_answer_to_one_curl():
    """A ```json block right after a shell block is compared only if that block is one curl."""
    for path in DOCUMENTS:
        text = path.read_text()
        fences = _fences(path)
        for before, after in itertools.pairwise(fences):
            if before[1] in SHELL and after[1] == "json" and not text[before[4]:after[3]].strip():
                words = shlex.split(_commands(before[2])[0], comments=True)
                assert words[0] == "curl", f"{path.name}:{before[0]}: an answer after a non-curl command"


@pytest.mark.slow
@pytest.mark.parametrize("command", CURLS, ids=[c.where for c in CURLS])
def test_curl_answers_as_documented(command: Command, server):
    text, count = DOCUMENTED_ADDRESS.subn(server.url, command.text)
    assert count == 1, f"{command.where}: the command names the server's address once"
    if command.answer is None:   # no answer shown: it must at least succeed
        text = text.replace("curl ", "curl --fail ", 1)
    done = subprocess.run(["bash", "-c", text], check=False, cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    if command.answer is None:
        assert done.stdout
    else:
        assert json.loads(done.stdout) == json.loads(command.answer)


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def _compose_profiles() -> set[str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {profile for service in services.values() for profile in service.get("profiles", [])}


def _option_values(words: list[str], option: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]


@pytest.mark.parametrize("command", OTHERS, ids=[c.where for c in OTHERS])
def test_other_commands_exist(command: Command):
    words = command.words
    program = words[0]
    if program == "make":
        targets = [word for word in words[1:] if "=" not in word]
        assert set(targets) <= _make_targets(), command.text
    elif program in PYTHONS:
        if words[1] == "-m":
            argv = [sys.executable, "-m", words[2], "--help"]
        else:
            assert (ROOT / words[1]).is_file(), command.text
            argv = [sys.executable, words[1], "--help"]
        done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert b"usage:" in done.stdout
    elif program == "docker":
        files = _option_values(words, "-f")
        if words[1] == "build":
            files.append("Dockerfile")
        elif words[1] == "compose" and not files:
            files.append("docker-compose.yml")
        assert [f for f in files if not (ROOT / f).is_file()] == [], command.text
        assert set(_option_values(words, "--profile")) <= _compose_profiles(), command.text
    elif program == "kubectl":
        folders = _option_values(words, "-k")
        assert folders, f"{command.where}: only kubectl apply -k is checked: {command.text}"
        assert [f for f in folders if not (ROOT / f / "kustomization.yaml").is_file()] == [], command.text
    else:
        pytest.fail(f"{command.where}: no test runs {program!r}: {command.text}")
