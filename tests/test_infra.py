"""infra/ files parse, and every command they run is a real tokenmill command line."""
from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser

INFRA = Path(__file__).resolve().parent.parent / "infra"


def tokenmill_argv(command: str) -> list[str] | None:
    """The tokenmill arguments of a shell command line, if it runs tokenmill."""
    words = shlex.split(command.split("&&")[-1].split(">>")[0])
    for i, word in enumerate(words):
        if word.endswith("tokenmill") and not word.endswith("/tokenmill/"):
            return words[i + 1:]
    return None


def check_argv(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)  # raises SystemExit on an unknown command or option
    assert args.command in ("run", "submit")


def yaml_commands(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "entrypoint":
                found.append(value)
            elif key == "command" and isinstance(value, list):
                found.append(shlex.join(value))
            else:
                found += yaml_commands(value)
    elif isinstance(node, list):
        for item in node:
            found += yaml_commands(item)
    return found


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.yaml")), ids=lambda p: p.name)
def test_yaml_files_parse(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for command in yaml_commands(docs):
        argv = tokenmill_argv(command)
        assert argv is not None, command
        check_argv(argv)


def test_kubernetes_kinds():
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in INFRA.rglob("*.yaml") if "kind" in p.read_text()}
    assert {"RayCluster", "RayJob", "RayCronJob", "CronJob"} <= kinds
    launcher = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    assert {"cpu_worker", "gpu_worker"} <= set(launcher["available_node_types"])


def test_systemd_and_cron():
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(INFRA / "systemd" / "tokenmill-nightly.service")
    check_argv(tokenmill_argv(service["Service"]["ExecStart"]))
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(INFRA / "systemd" / "tokenmill-nightly.timer")
    assert timer["Timer"]["OnCalendar"]
    lines = [l for l in (INFRA / "cron" / "tokenmill.crontab").read_text().splitlines() if l and not l.startswith("#")]
    assert len(lines) == 1 and len(lines[0].split()[:5]) == 5
    check_argv(tokenmill_argv(" ".join(lines[0].split()[5:])))
