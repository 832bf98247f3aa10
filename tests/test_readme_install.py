"""The README's set-up commands: the test command is the one CI runs word for word, and a machine without
an NVIDIA GPU gets a command to paste that installs PyTorch's CPU build of the same version first."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    test_command = _readme().split("Set up and run the tests:", 1)[1]
    command = _bash_blocks(test_command)[0]
    assert command.endswith("python -m pytest") and "'torch==2.13.0'" in command
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci.splitlines()


def test_a_machine_without_a_gpu_gets_a_cpu_only_command_to_paste() -> None:
    readme = _readme()
    test_command = _bash_blocks(readme.split("Set up and run the tests:", 1)[1])[0]
    cpu = [b for b in _bash_blocks(readme) if CPU_INDEX in b and b.endswith("python -m pytest")]
    assert len(cpu) == 1, "one paste-able set-up-and-test command with PyTorch's CPU index"
    parts = cpu[0].split(" && ")
    (i,) = [k for k, part in enumerate(parts) if CPU_INDEX in part]
    first = shlex.split(parts.pop(i))
    # First the CPU build of the very version the test command pins, from PyTorch's index alone ...
    pinned = re.search(r"'(torch==[^']+)'", test_command).group(1)
    assert first[:2] == ["pip", "install"] and pinned in first
    assert first[first.index("--index-url") + 1] == CPU_INDEX and "--extra-index-url" not in first
    # ... then exactly the test command CI runs, which finds that torch installed.
    assert " && ".join(parts) == test_command
    section = readme.split("## The PyTorch backend", 1)[1].split("\n## ", 1)[0]
    assert any(CPU_INDEX in b and "pyflux-mnist[torch]" in b for b in _bash_blocks(section))
