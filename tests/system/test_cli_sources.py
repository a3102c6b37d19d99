"""`paperwire papers fetch` and `papers show`, run as a person runs them, against the scripted
sources on 127.0.0.1."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paper_server import PaperServer, Reply, fixture_reply

PAPERWIRE = str(Path(sys.executable).parent / "paperwire")


def run(
    tmp_path: Path, server: PaperServer, *args: str, exit_code: int = 0, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PAPERWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PAPERWIRE_HF_BASE_URL": server.url,
        "PAPERWIRE_ARXIV_BASE_URL": server.url,
        "PAPERWIRE_HF_PAGE_SIZE": "3",
        "PAPERWIRE_ARXIV_PAGE_SIZE": "3",
        "PAPERWIRE_SOURCE_MAX_ATTEMPTS": "2",
        "PAPERWIRE_SOURCE_BACKOFF_SECONDS": "0.01",
        "PAPERWIRE_ARXIV_REQUEST_INTERVAL_SECONDS": "0",
        "COLUMNS": "200",
        **extra_env,
    }
    result = subprocess.run(
        [PAPERWIRE, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    return result


def test_fetch_then_show_a_paper_from_both_sources(
    tmp_path: Path, paper_server: PaperServer
) -> None:
    for number in range(3):
        name = f"hf/daily_papers_2026-11-24_p{number}.json"
        paper_server.script("/api/daily_papers", fixture_reply(name), p=str(number))
    for start in (0, 3):
        name = f"arxiv/query_2026-11-23_start{start}.xml"
        paper_server.script("/api/query", fixture_reply(name), start=str(start))
    run(tmp_path, paper_server, "db", "upgrade")

    fetched = run(
        tmp_path, paper_server, "papers", "fetch", "--source", "all", "--date", "2026-11-24"
    )
    lines = fetched.stdout.splitlines()
    assert any(line.split()[:5] == ["│", "hf", "│", "6", "│"] for line in lines), fetched.stdout
    assert any(line.split()[:5] == ["│", "arxiv", "│", "3", "│"] for line in lines)

    shown = run(tmp_path, paper_server, "papers", "show", "2511.18001").stdout
    assert "One-Step Consistency Distillation for Video Diffusion Models" in shown
    assert "cs.CV, cs.LG" in shown and "https://arxiv.org/abs/2511.18001" in shown
    assert f"{paper_server.url}/papers/2511.18001" in shown
    assert "https://github.com/example/one-step-video" in shown
    assert "trending signals" in shown and "412" in shown
    unknown = run(tmp_path, paper_server, "papers", "show", "2511.99999", exit_code=2)
    assert unknown.stderr.strip() == "error: no paper with id '2511.99999'"


def test_a_failing_source_is_summarised_and_exits_non_zero(
    tmp_path: Path, paper_server: PaperServer
) -> None:
    paper_server.script("/api/daily_papers", Reply(status=500))
    run(tmp_path, paper_server, "db", "upgrade")
    result = run(
        tmp_path,
        paper_server,
        "papers",
        "fetch",
        "--source",
        "hf",
        "--date",
        "2026-11-24",
        exit_code=1,
    )
    # Said once: the table tells which source failed, stderr what went wrong.
    (row,) = (line.split("│") for line in result.stdout.splitlines() if line.startswith("│"))
    assert [cell.strip() for cell in row] == ["", "hf", "0", "0", "0", "failed", ""]
    (said,) = (line for line in result.stderr.splitlines() if line.strip())
    assert said == "hf: Hugging Face daily papers of 2026-11-24, page 1: HTTP 500, 2 tries"


def test_a_source_tried_once_says_one_try(tmp_path: Path, paper_server: PaperServer) -> None:
    paper_server.script("/api/daily_papers", Reply(status=500))
    run(tmp_path, paper_server, "db", "upgrade")
    fetch = ("papers", "fetch", "--source", "hf", "--date", "2026-11-24")
    result = run(tmp_path, paper_server, *fetch, exit_code=1, PAPERWIRE_SOURCE_MAX_ATTEMPTS="1")
    assert result.stderr.strip().endswith("HTTP 500, 1 try")


def test_bad_fetch_input_gets_one_line_and_exit_2(
    tmp_path: Path, paper_server: PaperServer
) -> None:
    for args in (
        ("papers", "fetch", "--date", "2026-13-01"),
        ("papers", "fetch", "--date", "2026-11-24", "--since", "2026-11-20"),
    ):
        result = run(tmp_path, paper_server, *args, exit_code=2)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert paper_server.requests == []
