"""Which rules run locally, and what the others request, are each stated once.

The local rules are `secret_moe.workflow_rules.LOCAL_RULES` (declared by rules/common.smk); every other rule
takes its memory from the config's `resources:` section (whose schema lists exactly those rules) and writes a
`benchmark:` file; the Slurm profile adds only runtime and GPUs, for rules that are not local.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from secret_moe.workflow_rules import LOCAL_RULES

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())


def rule_blocks() -> dict[str, str]:
    """Each rule of rules/*.smk and the Snakefile, `use rule ... as NAME` ones included: its name and the text of
    its block."""
    blocks = {}
    for file in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        text = file.read_text()
        heads = list(re.finditer(r"^(?:rule (\w+):|[ \t]+use rule \w+ as (\w+) with:)\n", text, re.MULTILINE))
        for i, head in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            blocks[head.group(1) or head.group(2)] = text[head.end() : end].split("\n\n\n")[0]
    return blocks


def test_local_rules_are_declared_once_from_the_package():
    files = [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]
    assert not [f.name for f in files if re.search(r"^localrules:", f.read_text(), re.MULTILINE)]
    assert "workflow.localrules(*LOCAL_RULES)" in (REPO / "rules" / "common.smk").read_text()
    assert set(LOCAL_RULES) < set(rule_blocks())


def test_every_rule_that_does_real_work_has_a_benchmark_and_config_resources():
    blocks = rule_blocks()
    working = set(blocks) - set(LOCAL_RULES) - {"all"}
    assert set(SCHEMA["properties"]["resources"]["properties"]) == working
    for name in working:
        assert "    benchmark:\n" in blocks[name], name
        assert f'mem_mb=mem_mb("{name}")' in blocks[name], name
        assert not re.search(r"mem_mb=\d|threads: \d", blocks[name]), name  # no literal resources


def test_the_slurm_profile_sets_no_memory_or_threads_and_no_local_rule():
    assert not {"mem_mb", "threads", "cpus_per_task"} & set(PROFILE["default-resources"])
    for name, settings in PROFILE["set-resources"].items():
        assert name in rule_blocks() and name not in LOCAL_RULES, name
        assert not {"mem_mb", "threads", "cpus_per_task"} & set(settings), name


def test_a_configured_memory_reaches_the_jobs(workflow_config, tmp_path, dry_run):
    workflow_config["resources"] = {"capture_activations": {"mem_mb": 1234, "threads": 1}}
    result = dry_run(workflow_config, tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    jobs = re.findall(r"^rule (\w+):\n((?:    .*\n)+)", result.output, re.MULTILINE)  # each job: indented lines
    capture = [body for name, body in jobs if name == "capture_activations"]
    assert len(capture) == 2 and all("mem_mb=1234" in body for body in capture), capture
    train = [body for name, body in jobs if name == "train_students"]
    assert train and all("mem_mb=4000" in body for body in train)  # the schema's default
