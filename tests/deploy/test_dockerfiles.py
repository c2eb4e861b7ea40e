"""docker/*.Dockerfile and .dockerignore: what the images are made of (no Docker engine runs here).

hadolint lints both files; the instructions are read back to check the promises (multi-stage, pinned
base, non-root numeric user, nothing built in the final stage, the model and offline settings baked into
the worker); the build context is computed with docker-py's own .dockerignore implementation.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy._tools import DOCKER_DIR, REPO, TOOLS_BIN, lint_tool, run

IMAGES = ("operator", "worker")
MODEL_DIR = "/opt/sentiment/models/sentiment-minilm"
# The images' interpreter is Python 3.11, like the project's venv.
PYTHON_BIN = str(Path(sys.executable).parent)
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "cmake", "git", "python3-dev")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            values.update(dict(re.findall(r"(\w+)=(\S+)", args)))
        return values


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its (keyword, arguments) instructions."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+ )?(\S+)(?: AS (\S+))?", args, re.IGNORECASE)
            assert match, f"{path.name}: unreadable FROM {args!r}"
            parent = next((s for s in stages if s.name == match[1]), None)
            if parent is None:
                stages.append(Stage(base=match[1], name=match[2]))
            else:  # FROM an earlier stage: it starts with that stage's base and instructions
                stages.append(Stage(parent.base, match[2], list(parent.instructions)))
        elif keyword != "ARG" or stages:
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


# (Dockerfile, build target): the worker builds a slim (default, last stage) and a torch variant.
TARGETS = (("operator", None), ("worker", None), ("worker", "torch"))


def _until(stages: list[Stage], target: str | None) -> list[Stage]:
    """The stages up to the build target (the last one by default)."""
    if target is None:
        return stages
    index = next(i for i, stage in enumerate(stages) if stage.name == target)
    return stages[: index + 1]


@pytest.fixture(scope="module", params=TARGETS, ids=lambda t: "-".join(filter(None, t)))
def image(request: pytest.FixtureRequest) -> tuple[str, list[Stage]]:
    name, target = request.param
    return name, _until(parse(DOCKER_DIR / f"{name}.Dockerfile"), target)


def test_hadolint_passes_with_every_exception_justified_in_place() -> None:
    files = [DOCKER_DIR / f"{name}.Dockerfile" for name in IMAGES]
    result = run([str(lint_tool("hadolint")), "--config", str(REPO / ".hadolint.yaml"), *map(str, files)])
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                assert lines[number - 1].startswith("# ") and len(lines[number - 1]) > 30, (
                    f"{path.name}:{number + 1}: explain the ignored rule on the line above"
                )


def test_hadolint_fails_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nUSER root\n")
    result = run([str(lint_tool("hadolint")), "--config", str(REPO / ".hadolint.yaml"), str(careless)])
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3002"):  # latest tag, unpinned apt, last USER root
        assert rule in result.stdout


def test_multi_stage_on_an_exactly_pinned_base(image: tuple[str, list[Stage]]) -> None:
    name, stages = image
    assert len(stages) >= 2, f"{name}: build and runtime stages"
    for stage in stages:
        pinned_tag = re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+(-[\w.-]+)?", stage.base)
        pinned_digest = re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", stage.base)
        assert pinned_tag or pinned_digest, f"{name}: base {stage.base} is not pinned to an exact version"
    runtime = stages[-1]
    assert any("--from=build" in args for args in runtime.all("COPY")), "runtime copies the built venv"


def test_final_stage_runs_as_a_numeric_non_root_user(image: tuple[str, list[Stage]]) -> None:
    name, stages = image
    users = stages[-1].all("USER")
    assert users, f"{name}: the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000, f"{name}: USER must be a numeric non-root uid (runAsNonRoot)"
    assert not gid or (gid.isdigit() and int(gid) > 0)


def test_final_stage_installs_and_builds_nothing(image: tuple[str, list[Stage]]) -> None:
    name, stages = image
    for args in stages[-1].all("RUN"):
        assert "pip install" not in args, f"{name}: install in the build stage"
        assert "apt-get install" not in args and "apk add" not in args, f"{name}: no packages at runtime"
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", args), f"{name}: {tool} in runtime"
    for build in stages[:-1]:
        if any("pip install" in args for args in build.all("RUN")):
            assert any("pip uninstall --yes pip setuptools wheel" in args for args in build.all("RUN")), (
                f"{name}: the copied venv must not carry pip/setuptools"
            )


def test_runtime_suits_a_read_only_root_filesystem(image: tuple[str, list[Stage]]) -> None:
    name, stages = image
    env = stages[-1].env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME") == "/tmp", f"{name}: writes go to /tmp (an emptyDir)"
    if name == "worker":
        for key in ("XDG_CACHE_HOME", "HF_HOME", "MPLCONFIGDIR"):
            assert env[key].startswith("/tmp/"), key


@pytest.mark.parametrize("target", ["slim", "torch"])
def test_worker_bakes_in_the_model_and_stays_offline(target: str) -> None:
    stages = parse(DOCKER_DIR / "worker.Dockerfile")
    runtime = _until(stages, target)[-1]
    env = runtime.env()
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["SENTIMENT_MODEL_DIR"] == MODEL_DIR
    build = next(stage for stage in stages if stage.name == "build")
    assert any(args.endswith(f"models/sentiment-minilm/ {MODEL_DIR}/") for args in build.all("COPY"))
    # The onnx-int8 export is built into the model folder at image build time, not at pod start.
    assert any("sentiment_workers.model.prepare" in r and "--into-model-dir" in r for r in build.all("RUN"))
    assert any(
        args.startswith("--from=build") and "/opt/sentiment/models/" in args for args in runtime.all("COPY")
    )
    assert runtime.all("EXPOSE") == ["9000"] and env["SENTIMENT_METRICS_PORT"] == "9000"
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["sentiment-pipeline"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["sentiment-pipeline"].startswith("sentiment_workers.")


def test_worker_torch_matches_the_project_pin_and_the_variant_is_a_build_arg() -> None:
    text = (DOCKER_DIR / "worker.Dockerfile").read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (torch_pin,) = [
        dep for dep in pyproject["project"]["optional-dependencies"]["model"] if dep.startswith("torch")
    ]
    assert f"ARG TORCH_VERSION={torch_pin.split('==')[1]}" in text, (
        f"Dockerfile torch != pyproject {torch_pin}"
    )
    assert "ARG TORCH_VARIANT=cpu" in text
    build = next(s for s in parse(DOCKER_DIR / "worker.Dockerfile") if s.name == "build")
    assert _dependency_extras(build) == ["workers", "model", "registry"]


def _dependency_extras(stage: Stage) -> list[str]:
    """The extras whose requirements a worker build stage installs (read from pyproject.toml by its
    requirements step), checked to be installed before the sources are copied in."""
    steps = [(keyword, args) for keyword, args in stage.instructions if keyword in ("COPY", "RUN")]
    (index,) = [
        i for i, (_, args) in enumerate(steps) if "pip install --requirement requirements.txt" in args
    ]
    assert [args for keyword, args in steps[:index] if keyword == "COPY"][-1] == "pyproject.toml ./"
    assert not any(args.startswith(("workers/", "operator/")) for _, args in steps[:index]), (
        f"{stage.name}: the dependency layer must not depend on the sources"
    )
    assert any("pip install --no-deps ." in args for _, args in steps[index + 1 :])
    script = re.match(r"python -c '([^']*)'\s+(.*?)\s*>requirements\.txt", steps[index][1])
    assert script, steps[index][1]
    return script[2].split()


def test_worker_dependency_layer_depends_on_pyproject_only(tmp_path: Path) -> None:
    """An edit to workers/ reinstalled every wheel: the third-party dependencies are now installed from
    pyproject.toml alone (its requirements step, run here on the real pyproject.toml), the project after
    them with --no-deps."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for stage in parse(DOCKER_DIR / "worker.Dockerfile"):
        runs = [a for a in stage.all("RUN") if "pip install --requirement requirements.txt" in a]
        if not runs:
            continue
        extras = _dependency_extras(stage)
        script = re.match(r"python -c '([^']*)'", runs[0])
        assert script
        (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
        result = run([sys.executable, "-c", script[1], *extras], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        expected = [
            *pyproject["dependencies"],
            *(r for e in extras for r in pyproject["optional-dependencies"][e]),
        ]
        assert result.stdout.splitlines() == expected


def _compile_steps(path: Path) -> list[str]:
    """The shell steps of a Dockerfile's RUN instructions that byte-compile the venv."""
    steps = []
    for stage in parse(path):
        for args in stage.all("RUN"):
            steps += [step.strip() for step in re.split(r"\s&&\s", args) if "compileall" in step]
    return steps


def _fake_venv(root: Path, *, broken_own_code: bool) -> Path:
    """/opt/venv as pip leaves it: our packages plus a third-party file only a newer Python can parse."""
    site = root / "lib" / "python3.11" / "site-packages"
    for package in ("sentiment_workers", "sentiment_operator"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("VALUE = 1\n")
    # torch 2.13.0 ships torch/testing/_internal/py312_intrinsics.py (PEP 695 syntax, Python 3.12 only).
    internal = site / "torch" / "testing" / "_internal"
    internal.mkdir(parents=True)
    (internal / "py312_intrinsics.py").write_text("type Alias = int\n")
    if broken_own_code:
        (site / "sentiment_workers" / "broken.py").write_text("def f(:\n")
    return root


@pytest.mark.parametrize("name", IMAGES)
def test_bytecode_step_tolerates_third_party_files_for_newer_pythons(name: str, tmp_path: Path) -> None:
    """The build ran `compileall /opt/venv/lib`, which exits 1 on torch's py3.12-only file: the image
    never built. The same steps, run on such a venv with this Python 3.11, must succeed."""
    steps = _compile_steps(DOCKER_DIR / f"{name}.Dockerfile")
    assert steps, f"{name}: the venv is byte-compiled at build time (read-only root filesystem)"
    venv = _fake_venv(tmp_path / "venv", broken_own_code=False)
    for step in steps:
        result = run(
            ["bash", "-c", step.replace("/opt/venv", str(venv))], env={"PATH": f"{PYTHON_BIN}:/usr/bin:/bin"}
        )
        assert result.returncode == 0, f"{name}: {step!r} failed:\n{result.stdout}{result.stderr}"
    compiled = list((venv / "lib" / "python3.11" / "site-packages" / "sentiment_workers").rglob("*.pyc"))
    assert compiled, f"{name}: the project's own modules are byte-compiled"


@pytest.mark.parametrize("name", IMAGES)
def test_bytecode_step_still_fails_on_a_syntax_error_in_the_project(name: str, tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path / "venv", broken_own_code=True)
    script = " && ".join(_compile_steps(DOCKER_DIR / f"{name}.Dockerfile")).replace("/opt/venv", str(venv))
    result = run(["bash", "-c", script], env={"PATH": f"{PYTHON_BIN}:/usr/bin:/bin"})
    assert result.returncode != 0, f"{name}: a broken module of ours must fail the build"


def test_the_default_worker_image_is_slim_onnx_int8_without_torch() -> None:
    """The default image carried torch (~850 MB of a 1.4 GB venv) though onnx-int8, the CPU production
    backend, needs none of it. The default target (last stage) copies a venv built from the
    `onnx-runtime` extra only; the torch target keeps the full one."""
    stages = parse(DOCKER_DIR / "worker.Dockerfile")
    slim, torch = stages[-1], _until(stages, "torch")[-1]
    assert slim.name == "slim"
    venv_from = {
        s.name: re.findall(r"--from=(\S+) /opt/venv ", " ".join(s.all("COPY"))) for s in (slim, torch)
    }
    assert venv_from == {"slim": ["build-slim"], "torch": ["build"]}
    build_slim = next(s for s in stages if s.name == "build-slim")
    installs = " ".join(a for a in build_slim.all("RUN") if "pip install" in a)
    assert _dependency_extras(build_slim) == ["workers", "onnx-runtime", "registry"]
    assert "torch" not in installs
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for requirement in [*extras["onnx-runtime"], *extras["workers"], *extras["registry"]]:
        assert not re.match(r"(torch|transformers|mlflow)\b(?!-skinny)", requirement), requirement
    assert slim.env()["SENTIMENT_IMAGE_BACKENDS"] == "onnx-int8,sklearn"
    assert slim.env()["SENTIMENT_MODEL_BACKEND"] == "onnx-int8"
    assert torch.env()["SENTIMENT_IMAGE_BACKENDS"] == "torch,torch-int8,onnx-int8,sklearn"


# Run as the slim image does: torch and transformers are absent (None in sys.modules: find_spec says None,
# an import raises ModuleNotFoundError).
_NO_TORCH = "import sys\nsys.modules.update(torch=None, transformers=None)\n"


@pytest.fixture(scope="module")
def exported_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with its onnx-int8 export next to it, as the image build bakes the default one."""
    from sentiment_workers.model.testing import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    prepare = [
        sys.executable,
        "-m",
        "sentiment_workers.model.prepare",
        "--model",
        str(model),
        "--into-model-dir",
    ]
    result = run(prepare, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    return model


def test_onnx_int8_classifies_without_torch_or_transformers(exported_tiny_model: Path) -> None:
    script = _NO_TORCH + (
        "from sentiment_workers.model import load_classifier\n"
        f"c = load_classifier({str(exported_tiny_model)!r}, 'onnx-int8', threads=1)\n"
        "print(len(c.predict(['great stuff', 'awful'])))\n"
    )
    result = run([sys.executable, "-c", script], env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_the_torch_backend_on_the_slim_image_is_one_clear_error(exported_tiny_model: Path) -> None:
    """Not a traceback in a crash loop: one line saying what to change, and a distinct exit status."""
    script = _NO_TORCH + "from sentiment_workers.cli import main\nmain()\n"
    env = {"SENTIMENT_MODEL_NAME": str(exported_tiny_model), "SENTIMENT_MODEL_BACKEND": "torch"}
    result = run([sys.executable, "-c", script, "infer"], env=env)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: model backend torch needs torch") and "onnx-int8" in line


def test_torch_index_is_a_build_argument() -> None:
    """Where download.pytorch.org cannot be reached (a mirror, an offline wheel index) the index is an ARG."""
    text = (DOCKER_DIR / "worker.Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}" in text
    assert 'pip install --index-url "${TORCH_INDEX_URL}"' in text
    assert "download.pytorch.org" not in text.split("ARG TORCH_INDEX_URL=", 1)[1].split("\n", 1)[1]


def test_operator_image_has_no_model_runtime_or_worker_io() -> None:
    stages = parse(DOCKER_DIR / "operator.Dockerfile")
    instructions = " ".join(args for stage in stages for _, args in stage.instructions)
    assert 'pip install ".[operator]"' in instructions
    for heavy in ("torch", "[workers", ",model", "models/"):
        assert heavy not in instructions, f"the operator image must not carry {heavy}"
    assert json.loads(stages[-1].all("ENTRYPOINT")[-1]) == ["python", "-m", "sentiment_operator"]
    assert (REPO / "operator" / "sentiment_operator" / "__main__.py").is_file()


def _build_context(tmp_path: Path) -> set[str]:
    """Files Docker would send as build context from a fresh clone with the model trained.

    The tree is the repository's tracked files (empty stand-ins), the trained model and the usual local
    clutter; docker-py's ``exclude_paths`` applies .dockerignore exactly as ``docker build`` does.
    """
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    extra = [
        "models/sentiment-minilm/config.json",
        "models/sentiment-minilm/model.safetensors",
        "models/sentiment-minilm/onnx/model-int8.onnx",
        ".venv/bin/python",
        ".dev/tools/bin/hadolint",
        "workers/sentiment_workers/__pycache__/config.cpython-311.pyc",
        ".git/HEAD",
    ]
    for rel in [*tracked.stdout.splitlines(), *extra]:
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    (tmp_path / ".dockerignore").write_text((REPO / ".dockerignore").read_text())
    python = TOOLS_BIN.parent / "venv" / "bin" / "python"
    lint_tool("checkov")  # docker-py comes with checkov in the tools venv
    script = (
        "import json, sys\nfrom docker.utils.build import exclude_paths\n"
        "patterns = [p for p in open(sys.argv[1] + '/.dockerignore').read().splitlines()"
        " if p.strip() and not p.startswith('#')]\n"
        "print(json.dumps(sorted(exclude_paths(sys.argv[1], patterns))))\n"
    )
    result = run([str(python), "-c", script, str(tmp_path)])
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_build_context_holds_what_the_images_copy_and_nothing_else(tmp_path: Path) -> None:
    context = _build_context(tmp_path)
    for needed in (
        "pyproject.toml",
        "README.md",
        "workers/sentiment_workers/config.py",
        "operator/sentiment_operator/__main__.py",
        "models/sentiment-minilm/model.safetensors",
        "models/sentiment-minilm/config.json",
    ):
        assert needed in context, f"{needed} is excluded by .dockerignore"
    for path in context:
        top = path.split("/", 1)[0]
        # Docker always sends .dockerignore itself.
        assert top in {"pyproject.toml", "README.md", "workers", "operator", "models", ".dockerignore"}, path
        assert "__pycache__" not in path and "/onnx/" not in path, path
    for name in IMAGES:
        for stage in parse(DOCKER_DIR / f"{name}.Dockerfile"):
            for args in stage.all("COPY"):
                if "--from=" in args:
                    continue
                sources = [a for a in args.split() if not a.startswith("--")][:-1]
                for source in sources:
                    prefix = source.rstrip("/")
                    assert any(p == prefix or p.startswith(prefix + "/") for p in context), (
                        f"{name}: COPY {source} has nothing in the build context"
                    )
