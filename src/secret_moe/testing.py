"""Tiny models and corpora built locally, for tests and smoke runs (no network, seconds on a CPU)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from secret_moe.store import commit_rows, create_store, finish_store, partial_path
from secret_moe.students import active_neurons, parse_student

# The repository's Snakefile (src/secret_moe/testing.py is two folders below it), and the Snakemake of this Python's
# environment: tests run the workflow of this checkout with the Snakemake installed beside it, whatever PATH holds.
SNAKEFILE = Path(__file__).resolve().parents[2] / "Snakefile"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "as",
    "with",
    "by",
    "at",
    "from",
    "his",
    "her",
    "that",
    "which",
    "it",
    "an",
    "are",
    "were",
    "be",
    "this",
    "had",
    "not",
    "but",
    "river",
    "city",
    "music",
    "army",
    "king",
    "song",
    "film",
    "team",
    "church",
    "school",
    "war",
    "island",
    "species",
    "album",
    "game",
    "road",
    "bridge",
    "light",
]

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt_neox": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "max_position_embeddings": 128,
        "rotary_pct": 0.25,
    },
    "gemma3_text": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "num_hidden_layers": 3,
        "max_position_embeddings": 128,
        "sliding_window": 8,
    },
    "llama": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 3,
        "max_position_embeddings": 128,
    },
    "gpt2": {"n_embd": 32, "n_head": 4, "n_layer": 3, "n_positions": 128},
}


def tiny_tokenizer(style: str = "plain") -> PreTrainedTokenizerFast:
    """A word-level tokenizer of `WORDS`.  `style`: "plain" (pad token, pads on the right, no BOS added),
    "gemma" (pad token, pads on the left, BOS before every line) or "pythia" (no pad token: id 0 is EOS,
    which the workflow pads with, on the right).  The vocabulary size is the same in every style."""
    first = "<eos>" if style == "pythia" else "<pad>"
    vocab = {first: 0, "<unk>": 1, "<bos>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if style == "gemma":
        backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    special = {"eos_token": "<eos>"} if style == "pythia" else {"pad_token": "<pad>"}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<bos>",
        padding_side="left" if style == "gemma" else "right",
        **special,
    )


def tiny_model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # a wide init gives the tiny MLPs outputs of order one, so FVUs are meaningful
    config = AutoConfig.for_model(arch, vocab_size=len(WORDS) + 3, initializer_range=0.2, **TINY_CONFIGS[arch])
    return AutoModelForCausalLM.from_config(config).eval()


def save_tiny_model(directory: str | Path, arch: str = "gpt_neox", seed: int = 0, style: str = "plain") -> Path:
    """A tiny model and its tokenizer (`tiny_tokenizer(style)`) saved in Hugging Face format."""
    directory = Path(directory)
    tiny_model(arch, seed).save_pretrained(directory)
    tiny_tokenizer(style).save_pretrained(directory)
    return directory


def write_gguf_header(path: str | Path, arch: str = "llama", layers: int = 5, hidden: int = 16) -> Path:
    """A GGUF file holding only the metadata a model's shape is read from (no tensors, no tokenizer)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(layers)
    writer.add_embedding_length(hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def write_hub_cache(root: str | Path, hf_id: str, config: dict[str, Any]) -> Path:
    """A local Hugging Face cache (huggingface_hub's layout under `root`) holding one model's config.json only."""
    repo, commit = Path(root) / f"models--{hf_id.replace('/', '--')}", "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit / "config.json").write_text(json.dumps(config))
    return repo


def write_tiny_corpus(directory: str | Path, lines: dict[str, int], seed: int = 0) -> dict[str, str]:
    """Random sentences of 5-60 words from a small vocabulary, one per line, per split."""
    rng = random.Random(seed)
    paths = {}
    for split, count in lines.items():
        path = Path(directory) / f"{split}.txt"
        path.write_text("\n".join(" ".join(rng.choices(WORDS, k=rng.randint(5, 60))) for _ in range(count)) + "\n")
        paths[split] = str(path)
    return paths


def tiny_corpus_config(
    files: dict[str, str], train_tokens: int = 3000, validation_tokens: int = 800, validation_lines: int = 60
) -> dict[str, Any]:
    """The `corpus` config of the tiny corpus files (`write_tiny_corpus`), complete without the schema's defaults
    (so the tokenise step can take it directly): lines of 8 to 48 tokens, capped token counts."""
    return {
        "source": "files",
        "files": {**files, "text_column": "text"},
        "min_tokens": 8,
        "max_length": 48,
        "validation_lines": validation_lines,
        "max_tokens": {"train": train_tokens, "validation": validation_tokens},
    }


def tiny_config(model_dir: str | Path, corpus: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A complete workflow config on the tiny model: a few hundred rows, two epochs, small students."""
    families = every_family()
    config = {
        "seed": 0,
        "device": "cpu",
        "corpus": tiny_corpus_config(corpus),
        "models": {
            "tiny": {
                "source": "local",
                "path": str(model_dir),
                "hf_id": "local/tiny-gpt-neox",
                "layers": [1],
                "router_rank": 8,
            }
        },
        "capture": {"batch_tokens": 512, "window_sequences": 16, "chunk_mb": 1},
        "gaussian": {"block_rows": 4096},
        "distill": {
            "epochs": 2,
            "batch_size": 256,
            "learning_rates": [0.001, 0.003],
            "mlp_widths": [4, 16],
            "moe": {"routers": ["lowrank"], "experts": [64], "k": [4]},
        },
        # two families of every_family(), the router comparison without its product-key router
        "experiments": {
            "shared_split": families["shared_split"],
            "router_rank": {k: v for k, v in families["router_rank"].items() if k != "product_key_ranks"},
        },
    }
    for key, value in overrides.items():
        config[key] = value
    return config


# The students `tiny_config` asks for, worked out by hand from the config (tests compare the plan with them):
#  main: MLP widths [4, 16]; MoE lowrank (router_rank 8), m = 64, s = k = 4
#  shared_split at 8 active neurons, m = 64: s = 0 (k = 8), s = 4 (k = 4), and the dense MLP of width 8
#  router_rank: lowrank ranks [4] and full rank, m = 64, s = k = 4
TINY_MOE = "moe_lowrank_r8_m64_s4_k4"  # the main grid's one MoE
TINY_FAMILIES: dict[str, list[str]] = {
    "main": ["mlp_h4", "mlp_h16", TINY_MOE],
    "shared_split": ["moe_lowrank_r8_m64_s0_k8", TINY_MOE, "mlp_h8"],
    "router_rank": ["moe_lowrank_r4_m64_s4_k4", "moe_fullrank_m64_s4_k4"],
}
TINY_STUDENTS: list[str] = sorted({student for students in TINY_FAMILIES.values() for student in students})


def tiny_scan_budget() -> dict[str, Any]:
    """A budget file of `secret-moe scan --budget` (the shape of config/scan.yaml) for the tiny models: the tiny
    corpus's line filters and token caps, the tiny capture, one MoE size beside two MLPs, a ladder of 1 and 2 epochs
    with its budget check, two seeds (so that the verdict has intervals), one timed step per student."""
    corpus = tiny_corpus_config({})
    return {
        "device": "cpu",
        "corpus": {key: corpus[key] for key in ("min_tokens", "max_length", "validation_lines", "max_tokens")},
        "capture": {"batch_tokens": 512, "window_sequences": 16, "chunk_mb": 1},
        "gaussian": {"block_rows": 4096},
        "distill": {
            "epochs": 2,
            "batch_size": 256,
            "learning_rates": [0.003],
            "seeds": [0, 1],
            "schedule": {"kind": "wsd", "cooldown_fraction": 0.5, "rungs": 2},
            "mlp_widths": [4, 16],
            "moe": {"routers": ["lowrank"], "experts": [64], "k": [4]},
        },
        "experiments": {"budget_check": {"enabled": True, "tolerance": 0.03}},
        "scan": {"projections": 8, "block_rows": 4096, "timing_steps": 1},
    }


def every_family(model: str = "tiny") -> dict[str, Any]:
    """`experiments` with every family of secret_moe.families on, each key written out, at tiny sizes (router
    rank of the tiny model: 8); the layer sweep adds layer 0 of `model`."""
    return {
        "shared_split": {
            "enabled": True,
            "active": 8,
            "shared_fractions": [0, 0.5],
            "experts": 64,
            "router": "lowrank",
        },
        "router_rank": {
            "enabled": True,
            "ranks": [4],
            "include_fullrank": True,
            "product_key_ranks": [8],
            "experts": 64,
            "k": [4],
        },
        "expert_width": {"enabled": True, "widths": [1, 2], "active": 8, "experts": 64, "router": "lowrank"},
        "num_experts": {
            "enabled": True,
            "experts": [16, 64],
            "k": 2,
            "router": "lowrank",
            "product_key_experts": [256],
        },
        "layer_sweep": {
            "enabled": True,
            "model": model,
            "layers": [0],
            "mlp_widths": [4],
            "k": [2],
            "experts": 64,
            "router": "lowrank",
        },
    }


def write_config(path: str | Path, config: dict[str, Any]) -> Path:
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
    return Path(path)


def tiny_project(root: str | Path, lines: dict[str, int], **overrides: Any) -> dict[str, Any]:
    """A project for a real Snakemake run under `root`: the tiny GPT-NeoX model and corpus (`lines` per split), an
    empty `root/work` to run in, and the returned config (`tiny_config` with `overrides`): change it, then
    `write_config(root / "config.yaml", config)`."""
    root = Path(root)
    model = save_tiny_model(root / "tiny-model", "gpt_neox", seed=0)
    corpus = write_tiny_corpus(root, lines, seed=0)
    (root / "work").mkdir()
    return tiny_config(model, corpus, **overrides)


def metric(
    model: str, layer: int, data: str, student: str, lr: float, seed: int, fvus: list[float], epochs: int = 10
) -> dict[str, Any]:
    """A metrics.json as train_students writes it (best over epochs, final epoch, history)."""
    spec = parse_student(student)
    return {
        "model": model,
        "layer": layer,
        "data": data,
        "student": student,
        "epochs": epochs,
        "lr": lr,
        "seed": seed,
        "spec": spec,
        "active_neurons": active_neurons(spec),
        "best_fvu": min(fvus),
        "best_epoch": int(np.argmin(fvus)) + 1,
        "final_fvu": fvus[-1],
        "output_variance": 0.5,
        "parameters": 100,
        "timing": {"wall_seconds": 1.0, "samples_per_second": 1000.0, "bundle_size": 1},
        "history": [{"epoch": i + 1, "train_mse": f, "val_mse": f / 2, "val_fvu": f} for i, f in enumerate(fvus)],
    }


def families_for(metrics: list[dict[str, Any]], family: str = "main") -> dict[tuple[str, int, str], list[str]]:
    """Every run's student in one experiment family (the `families` argument of runs_table)."""
    return {(m["model"], m["layer"], m["student"]): [family] for m in metrics}


def write_mlp_store(
    path: str | Path, rows: int, d_model: int, chunk_rows: int, seed: int, attrs: dict[str, Any] | None = None
) -> Path:
    """A finished activation store, written with the package's store writer: Gaussian inputs x and the outputs y of
    a random GELU MLP (hidden width 2 d_model, outputs of order one), all from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    up_HD = torch.randn(2 * d_model, d_model, generator=generator) / d_model**0.5
    down_DH = torch.randn(d_model, 2 * d_model, generator=generator) / d_model**0.5
    partial = partial_path(path)
    group = create_store(partial, rows, d_model, chunk_rows, attrs or {"layer": 1, "model_id": "tiny"})
    for start in range(0, rows, chunk_rows):
        x_ND = torch.randn(min(chunk_rows, rows - start), d_model, generator=generator)
        group["x"][start : start + len(x_ND)] = x_ND.numpy()
        group["y"][start : start + len(x_ND)] = (torch.nn.functional.gelu(x_ND @ up_HD.T) @ down_DH.T).numpy()
    commit_rows(partial, rows)
    finish_store(partial, path)
    return Path(path)


# A training process: `steps.distill.train_students(**arguments)`, logging as a Snakemake job of rule train_students
_TRAINING = """import json, sys
from secret_moe.logs import log_to
from secret_moe.steps.distill import train_students
log_to(sys.argv[2])
train_students(**json.loads(sys.argv[1]))
"""


def start_training(arguments: dict[str, Any], log: str | Path) -> subprocess.Popen:
    """`steps.distill.train_students(**arguments)` in a new Python process (a real one, that can be killed), its
    logging and progress bars appended to `log`."""
    with open(log, "a") as stream:
        return subprocess.Popen(
            [sys.executable, "-c", _TRAINING, json.dumps(arguments), str(log)], stdout=stream, stderr=stream
        )


def kill_after_checkpoint(process: subprocess.Popen, log: str | Path, epochs: int, timeout: float = 600) -> None:
    """SIGKILL a `start_training` process as soon as its log says that its checkpoint after `epochs` epochs of
    training is written (`checkpoint.Checkpoint.write`); a RuntimeError if it ends or times out before."""
    mark, deadline = f"checkpoint after {epochs} epochs written", time.monotonic() + timeout
    while mark not in Path(log).read_text():
        if process.poll() is not None:
            raise RuntimeError(f"the training process ended (exit {process.returncode}) before {mark!r}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"the training process took more than {timeout} s to log {mark!r}")
        time.sleep(0.005)
    process.kill()
    process.wait()


def snakemake_command(
    workdir: str | Path | None,
    *args: str | Path,
    configfile: str | Path | None = None,
    snakefile: str | Path | None = SNAKEFILE,
    prefix: Sequence[str] = (),
) -> list[str]:
    """`prefix snakemake [--configfile C] [-s Snakefile] [-d workdir] args...` as a command list; `snakefile=None`
    leaves Snakemake to find the Snakefile in its working folder.  The options come before `args`, so that
    `--configfile` (which takes several values) never swallows a target."""
    command = [*prefix, str(SNAKEMAKE)]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    if snakefile is not None:
        command += ["-s", str(snakefile)]
    if workdir is not None:
        command += ["-d", str(workdir)]
    return command + [str(arg) for arg in args]


def run_snakemake(
    workdir: str | Path | None,
    *args: str | Path,
    configfile: str | Path | None = None,
    snakefile: str | Path | None = SNAKEFILE,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    check: bool = False,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Run `snakemake_command(...)` to its end, its output captured as text; the result also carries stdout and
    stderr together as `.output`.  `env`: the whole environment (default: this one, with PYTHONUNBUFFERED=1 so
    that job logs arrive in order); `check`: an AssertionError with the output's tail when it fails."""
    command = snakemake_command(workdir, *args, configfile=configfile, snakefile=snakefile, prefix=prefix)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"} if env is None else env
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.output[-4000:]}")
    return result
