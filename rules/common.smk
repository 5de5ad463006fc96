# Config validation, wildcard constraints and path helpers shared by every stage.
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.utils import validate

from secret_moe.plan import all_students, check_config, distill_runs, students_by_family


validate(config, schema="../config/schema.yaml", set_default=True)
check_config(config)

SPLITS = ["train", "validation"]
ENV = "../envs/secret-moe.yaml"


wildcard_constraints:
    model="|".join(config["models"]),
    layer=r"\d+",
    split="train|validation",
    data="activations|gaussian",
    student=r"mlp_h\d+|moe_[a-z_]+?(_r\d+)?_m\d+_s\d+_k\d+(_e\d+)?",
    lr=r"[0-9.e-]+",
    seed=r"\d+",


def model_spec(wildcards):
    return config["models"][wildcards.model]


def data_store(data, split):
    """Path of the store a distillation run reads: real activations or their Gaussian control."""
    stage = "activations" if data == "activations" else "gaussian"
    return f"results/{stage}/{{model}}/layer{{layer}}/{split}.zarr"


def distill_metrics():
    return expand(
        "results/distill/{model}/layer{layer}/{data}/{student}/lr{lr}_seed{seed}/metrics.json",
        zip,
        **{key: [run[key] for run in distill_runs(config)] for key in ("model", "layer", "data", "student", "lr", "seed")},
    )


def model_layers():
    return [(model, layer) for model, spec in config["models"].items() for layer in spec["layers"]]
