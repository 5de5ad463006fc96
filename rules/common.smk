# Config validation, wildcard constraints and path helpers shared by every stage.
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.utils import validate

from secret_moe.plan import check_config, distill_runs, layers_of, model_layers, students_by_family


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


SOURCE_KEYS = ("source", "hf_id", "revision", "gguf_package", "path", "init", "dtype")


def model_spec(wildcards):
    """The keys that decide a model's weights and compute dtype: only these trigger reruns when changed
    (a new layer or router rank must not re-materialise the model)."""
    spec = config["models"][wildcards.model]
    return {key: spec[key] for key in SOURCE_KEYS if key in spec}


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
