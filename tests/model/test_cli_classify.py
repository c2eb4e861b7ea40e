"""`sentiment-pipeline classify`, run as a real subprocess: text lines in, JSON lines out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from sentiment_workers.cli import main; main()"]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [*CLI, "classify", *args], input=stdin, capture_output=True, text=True, env=env, timeout=240
    )


def test_stdin_lines_become_json_lines_in_order(tiny_model: Path) -> None:
    texts = ["I love it", "awful", "ünïcode 🚗 ok"]
    result = run("--model", str(tiny_model), "--batch-size", "2", stdin="\n".join(texts) + "\n\n")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == texts  # order kept, blank line skipped
    for row in rows:
        assert row["label"] in {"negative", "neutral", "positive"}
        assert 0.0 < row["score"] <= 1.0


def test_reads_a_file_argument_with_another_backend(tiny_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "texts.txt"
    source.write_text("first text\nsecond text\n", encoding="utf-8")
    result = run(str(source), "--model", str(tiny_model), "--backend", "onnx-int8", "--max-length", "32")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["first text", "second text"]


def test_default_model_is_used_without_options(shipped_model: Path) -> None:
    result = run(stdin="What a fantastic result, I'm thrilled!\n")
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["label"] == "positive"


def test_unknown_backend_is_a_usage_error_naming_the_choices(tiny_model: Path) -> None:
    result = run("--model", str(tiny_model), "--backend", "tensorrt")
    assert result.returncode == 2
    assert "tensorrt" in result.stderr
    assert "onnx-int8" in result.stderr


def test_bad_batch_size_is_a_usage_error(tiny_model: Path) -> None:
    result = run("--model", str(tiny_model), "--batch-size", "0")
    assert result.returncode == 2
    assert "--batch-size" in result.stderr


def test_missing_model_prints_the_cause_and_exits_2(tmp_path: Path) -> None:
    result = run("--model", str(tmp_path / "no-such-model"), stdin="hello\n")
    assert result.returncode == 2
    assert "cannot load sentiment model" in result.stderr
    assert "no-such-model" in result.stderr
    assert result.stdout == ""
