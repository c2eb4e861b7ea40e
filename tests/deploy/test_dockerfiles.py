"""docker/*.Dockerfile and .dockerignore: what the images are made of (no Docker engine runs here).

hadolint lints both files; the instructions are read back to check the promises (multi-stage, pinned
base, non-root numeric user, nothing built in the final stage, the model and offline settings baked into
the worker, the layers: third-party dependencies from pyproject.toml alone, then the project's own code
as a small layer of its own); the project's install step is run as the image runs it, and the build
context is computed with docker-py's own .dockerignore implementation.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy._tools import DOCKER_DIR, REPO, TOOLS_BIN, lint_tool, run

IMAGES = ("operator", "worker")
MODEL_DIR = "/opt/sentiment/models/sentiment-e5"
# The final images: third-party dependencies in /opt/venv, the project's own code in /opt/app.
VENV, APP = "/opt/venv", "/opt/app"
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
    assert _copied_from(runtime, VENV) and _copied_from(runtime, APP), "runtime copies what was built"


def _copied_from(stage: Stage, path: str) -> str | None:
    """The stage a COPY --from=STAGE <path> <path> of ``stage`` takes ``path`` from, if any."""
    for args in stage.all("COPY"):
        match = re.fullmatch(rf"--from=(\S+) (?:--\S+ )*{re.escape(path)}/? {re.escape(path)}/?", args)
        if match:
            return match[1]
    return None


def _stage(stages: list[Stage], name: str) -> Stage:
    return next(stage for stage in stages if stage.name == name)


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
    # The venv the final stage copies carries no pip/setuptools: removed after the stage's last install.
    deps = _stage(stages, _copied_from(stages[-1], VENV) or "")
    runs = deps.all("RUN")
    last_install = max(i for i, args in enumerate(runs) if "pip install" in args)
    assert any("pip uninstall --yes pip setuptools wheel" in args for args in runs[last_install:]), (
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
    model = _stage(stages, "model")
    assert any(args.endswith(f"models/sentiment-e5/ {MODEL_DIR}/") for args in model.all("COPY"))
    # The onnx-int8 export is built into the model folder at image build time, not at pod start, with torch
    # (the stage starts from the torch dependencies) and the project (its layer, on PYTHONPATH).
    assert any("sentiment_workers.model.prepare" in r and "--into-model-dir" in r for r in model.all("RUN"))
    assert model.base == _stage(stages, "deps").base and "torch==" in " ".join(model.all("RUN"))
    assert _copied_from(model, APP) == "app" and model.env()["PYTHONPATH"] == APP
    assert any(
        args.startswith("--from=model") and "/opt/sentiment/models/" in args for args in runtime.all("COPY")
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
    assert _dependency_extras(_stage(parse(DOCKER_DIR / "worker.Dockerfile"), "deps")) == [
        "workers",
        "model",
        "registry",
    ]


def _dependency_extras(stage: Stage) -> list[str]:
    """The extras whose requirements a dependency stage installs (read from pyproject.toml by its
    requirements step), checked to copy nothing of the project but pyproject.toml and to take nothing
    from another stage: its layers change with pyproject.toml alone."""
    steps = [(keyword, args) for keyword, args in stage.instructions if keyword in ("COPY", "RUN")]
    (index,) = [
        i for i, (_, args) in enumerate(steps) if "pip install --requirement requirements.txt" in args
    ]
    assert [args for keyword, args in steps if keyword == "COPY"] == ["pyproject.toml ./"], (
        f"{stage.name}: the dependency stage copies pyproject.toml and nothing else (no workers/, operator/)"
    )
    assert not any("pip install ." in args or "--no-deps" in args for _, args in steps), stage.name
    script = re.match(r"python -c '([^']*)'\s+(.*?)\s*>requirements\.txt", steps[index][1])
    assert script, steps[index][1]
    return script[2].split()


@pytest.mark.parametrize("name", IMAGES)
def test_dependency_layer_depends_on_pyproject_only(name: str, tmp_path: Path) -> None:
    """An edit to workers/ reinstalled every wheel: the third-party dependencies are installed from
    pyproject.toml alone (its requirements step, run here on the real pyproject.toml)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    stages = parse(DOCKER_DIR / f"{name}.Dockerfile")
    # The stages whose venv a final stage copies (the operator's one, the worker's two).
    venvs = {_copied_from(s, VENV) for s in stages} - {None}
    assert len(venvs) == {"operator": 1, "worker": 2}[name], venvs
    for stage in (s for s in stages if s.name in venvs):
        runs = [a for a in stage.all("RUN") if "pip install --requirement requirements.txt" in a]
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


@pytest.mark.parametrize(("name", "target"), TARGETS, ids=lambda t: t or "")
def test_the_project_is_a_layer_of_its_own_after_the_dependencies(name: str, target: str | None) -> None:
    """Every edit to workers/ made a new multi-GB layer: the final stage copied one venv holding both the
    third-party packages and the project. Now it copies the dependency venv (pyproject.toml's), then the
    model, then the project's code (/opt/app, from the `app` stage) last, found through PATH and PYTHONPATH:
    a code edit changes the small last layers only."""
    stages = parse(DOCKER_DIR / f"{name}.Dockerfile")
    final = _until(stages, target)[-1]
    copies = final.all("COPY")
    venv, app = _copied_from(final, VENV), _copied_from(final, APP)
    assert venv and venv.startswith("deps") and app == "app", copies
    assert copies[-1].startswith("--from=app "), f"{name}: the project's code is the last layer copied"
    assert copies.index(next(c for c in copies if c.startswith(f"--from={venv} "))) == 0
    env = final.env()
    assert env["PYTHONPATH"] == APP
    assert env["PATH"].startswith(f"{APP}/bin:{VENV}/bin:")
    # The project alone goes to /opt/app (no dependencies, bytecode by compileall), installed by the pip of
    # a venv at the runtime's venv path: the console script's #! names the runtime's python.
    app_stage = _stage(stages, "app")
    assert f"python -m venv {VENV}" in app_stage.all("RUN")
    assert any(f"pip install --no-deps --no-compile --target {APP} ." in a for a in app_stage.all("RUN"))
    assert not any(c.startswith("--from=") for c in app_stage.all("COPY")), "app depends on the sources only"


def test_the_project_layer_runs_on_a_venv_at_the_runtime_path(tmp_path: Path) -> None:
    """The `app` stage's steps, run on a copy of the sources (the build context) with /opt/venv and
    /opt/app moved under tmp_path: /opt/app holds the project and nothing else, every module with its
    bytecode; the console script starts with the venv's python; the distribution's version (which
    importlib.metadata reads) and the entry point work from PYTHONPATH."""
    src, venv, app = tmp_path / "src", tmp_path / "venv", tmp_path / "app"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for tree in ("workers", "operator"):
        shutil.copytree(REPO / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    stage = _stage(parse(DOCKER_DIR / "worker.Dockerfile"), "app")
    assert stage.instructions == _stage(parse(DOCKER_DIR / "operator.Dockerfile"), "app").instructions
    env = {**stage.env(), "PATH": f"{venv}/bin:{PYTHON_BIN}:/usr/bin:/bin"}
    for step in stage.all("RUN"):
        script = step.replace(VENV, str(venv)).replace(APP, str(app))
        result = run(["bash", "-c", script], cwd=src, env=env, timeout=300)
        assert result.returncode == 0, f"{step!r} failed:\n{result.stdout}{result.stderr}"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert sorted(p.name for p in app.iterdir()) == [
        "bin",
        "sentiment_operator",
        f"sentiment_pipeline-{version}.dist-info",
        "sentiment_workers",
    ]
    shebang = (app / "bin" / "sentiment-pipeline").read_text().splitlines()[0]
    assert re.fullmatch(rf"#!{re.escape(str(venv))}/bin/python[\d.]*", shebang), shebang
    for module in app.rglob("*.py"):
        assert list((module.parent / "__pycache__").glob(f"{module.stem}.cpython-*.pyc")), module
    # The dependencies come from this interpreter's venv, the project from PYTHONPATH alone.
    script = (
        "import importlib.metadata as m, sentiment_operator, sentiment_workers\n"
        "print(m.version('sentiment-pipeline'), sentiment_workers.__file__, sentiment_operator.__file__)\n"
    )
    result = run([sys.executable, "-c", script], env={"PYTHONPATH": str(app)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found, *files = result.stdout.split()
    assert found == version and all(f.startswith(f"{app}/") for f in files), result.stdout
    result = run(
        [sys.executable, str(app / "bin" / "sentiment-pipeline"), "--help"], env={"PYTHONPATH": str(app)}
    )
    assert result.returncode == 0 and "infer" in result.stdout, result.stderr


def _compile_steps(path: Path) -> list[str]:
    """The shell steps of a Dockerfile's RUN instructions that byte-compile /opt/venv and /opt/app."""
    steps = []
    for stage in parse(path):
        for args in stage.all("RUN"):
            steps += [step.strip() for step in re.split(r"\s&&\s", args) if "compileall" in step]
    return steps


def _fake_install(root: Path, *, broken_own_code: bool) -> tuple[Path, Path]:
    """/opt/venv and /opt/app as pip leaves them: a third-party file only a newer Python can parse in the
    venv, our packages in the app folder."""
    venv, app = root / "venv", root / "app"
    # torch 2.13.0 ships torch/testing/_internal/py312_intrinsics.py (PEP 695 syntax, Python 3.12 only).
    internal = venv / "lib" / "python3.11" / "site-packages" / "torch" / "testing" / "_internal"
    internal.mkdir(parents=True)
    (internal / "py312_intrinsics.py").write_text("type Alias = int\n")
    for package in ("sentiment_workers", "sentiment_operator"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text("VALUE = 1\n")
    if broken_own_code:
        (app / "sentiment_workers" / "broken.py").write_text("def f(:\n")
    return venv, app


def _on(step: str, venv: Path, app: Path) -> str:
    return step.replace(VENV, str(venv)).replace(APP, str(app))


@pytest.mark.parametrize("name", IMAGES)
def test_bytecode_step_tolerates_third_party_files_for_newer_pythons(name: str, tmp_path: Path) -> None:
    """The build ran `compileall /opt/venv/lib`, which exits 1 on torch's py3.12-only file: the image
    never built. The same steps, run on such a venv with this Python 3.11, must succeed."""
    steps = _compile_steps(DOCKER_DIR / f"{name}.Dockerfile")
    assert steps, f"{name}: the venv is byte-compiled at build time (read-only root filesystem)"
    venv, app = _fake_install(tmp_path, broken_own_code=False)
    for step in steps:
        result = run(["bash", "-c", _on(step, venv, app)], env={"PATH": f"{PYTHON_BIN}:/usr/bin:/bin"})
        assert result.returncode == 0, f"{name}: {step!r} failed:\n{result.stdout}{result.stderr}"
    for package in ("sentiment_workers", "sentiment_operator"):
        assert list((app / package).rglob("*.pyc")), f"{name}: the project's own modules are byte-compiled"


@pytest.mark.parametrize("name", IMAGES)
def test_bytecode_step_still_fails_on_a_syntax_error_in_the_project(name: str, tmp_path: Path) -> None:
    venv, app = _fake_install(tmp_path, broken_own_code=True)
    script = _on(" && ".join(_compile_steps(DOCKER_DIR / f"{name}.Dockerfile")), venv, app)
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
    assert venv_from == {"slim": ["deps-slim"], "torch": ["deps"]}
    deps_slim = _stage(stages, "deps-slim")
    installs = " ".join(a for a in deps_slim.all("RUN") if "pip install" in a)
    assert _dependency_extras(deps_slim) == ["workers", "onnx-runtime", "registry"]
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
    assert _dependency_extras(_stage(stages, "deps")) == ["operator"]
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
        "models/sentiment-e5/config.json",
        "models/sentiment-e5/model.safetensors",
        "models/sentiment-e5/onnx/model-int8.onnx",
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
        "models/sentiment-e5/model.safetensors",
        "models/sentiment-e5/config.json",
    ):
        assert needed in context, f"{needed} is excluded by .dockerignore"
    # Only the default model goes into the images; the earlier English one stays in the repository.
    assert not [path for path in context if path.startswith("models/sentiment-minilm/")]
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
