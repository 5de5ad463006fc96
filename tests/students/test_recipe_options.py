"""The recipe's options (issue 30): lazy Adam, per-part learning rates and initialisation from the data; each seeded
and reproducible, doing what it claims on tiny inputs, and refused by name when misconfigured."""

from __future__ import annotations

import pytest
import torch

from secret_moe.config import load_config
from secret_moe.errors import ConfigError
from secret_moe.schedule import Schedule
from secret_moe.settings import DistillSettings
from secret_moe.students import build_student, parse_student
from secret_moe.students.data_init import init_from_data, kmeans_pp_rows, refit_output
from secret_moe.students.optim import LazyAdam, RateScales, make_optimizer, scaled_rate
from secret_moe.students.revive import revival_ends, revive_dead
from secret_moe.testing import tiny_config

MOE = "moe_lowrank_r8_m32_s4_k4"


def clustered_rows(n=512, d=16, clusters=12, seed=0):
    """Rows around a few centres (as activations are), and the outputs of a random GELU MLP of them."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=generator) * 3
    x = centres[torch.randint(clusters, (n,), generator=generator)] + torch.randn(n, d, generator=generator) * 0.5
    up, down = torch.randn(32, d, generator=generator) / d**0.5, torch.randn(d, 32, generator=generator) / 32**0.5
    return x, torch.nn.functional.gelu(x @ up.T) @ down.T


def test_lazy_adam_agrees_with_torch_sparse_adam_and_leaves_zero_rows_alone():
    torch.manual_seed(0)
    start = torch.randn(10, 4)
    lazy_param, sparse_param = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    lazy = LazyAdam([{"params": [lazy_param], "lazy": [True]}], lr=0.01)
    sparse = torch.optim.SparseAdam([sparse_param], lr=0.01)
    for step in range(6):
        grad = torch.randn(10, 4)
        grad[torch.arange(10) % 3 == step % 3] = 0  # a third of the rows: not routed this step
        lazy_param.grad, sparse_param.grad = grad.clone(), grad.to_sparse(sparse_dim=1)
        untouched = lazy_param.detach()[grad.abs().sum(dim=1) == 0].clone()
        moments = lazy.state[lazy_param]["exp_avg"][grad.abs().sum(dim=1) == 0].clone() if step else None
        lazy.step()
        sparse.step()
        torch.testing.assert_close(lazy_param.detach()[grad.abs().sum(dim=1) == 0], untouched, rtol=0, atol=0)
        if moments is not None:
            torch.testing.assert_close(lazy.state[lazy_param]["exp_avg"][grad.abs().sum(dim=1) == 0], moments)
    torch.testing.assert_close(lazy_param.detach(), sparse_param.detach(), rtol=1e-5, atol=1e-6)


def test_lazy_adam_keeps_unrouted_experts_where_dense_adam_moves_them():
    x = torch.randn(64, 16)
    moved = {}
    for kind in ("adam", "lazy_adam"):
        torch.manual_seed(0)
        student = build_student(parse_student(MOE), 16)
        optimizer = make_optimizer(student, 1e-2, kind)
        for batch in (x, x[:2]):  # the second batch routes 2 x 4 pairs: most experts get no row
            optimizer.zero_grad()
            student(batch).pow(2).mean().backward()
            before = student.w_in.detach().clone()
            optimizer.step()
        _, idx = student.router(x[:2])
        unrouted = torch.ones(32, dtype=torch.bool)
        unrouted[idx.flatten()] = False
        moved[kind] = (student.w_in.detach() - before)[unrouted].abs().amax().item()
    assert moved["lazy_adam"] == 0 and moved["adam"] > 1e-4


def test_rate_scales_give_each_part_its_multiple_and_bad_scales_are_refused_by_name():
    student = build_student(parse_student(MOE), 16)
    optimizer = make_optimizer(student, 1e-3, "adam", RateScales(router=0.5, experts=4.0))
    scaled_rate(optimizer, 2e-3)
    rates = {group["lr_scale"]: group["lr"] for group in optimizer.param_groups}
    assert rates == pytest.approx({0.5: 1e-3, 4.0: 8e-3, 1.0: 2e-3})
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(student.parameters()))
    with pytest.raises(ConfigError, match=r"distill\.lr_scale\.experts"):
        RateScales(experts=0)
    with pytest.raises(ConfigError, match=r"distill\.optimizer"):
        make_optimizer(student, 1e-3, "sgd")


@pytest.mark.parametrize("router", ["fullrank", "lowrank"])
def test_a_data_initialised_expert_fires_on_the_row_it_was_drawn_from(router):
    x, y = clustered_rows()
    student = build_student(parse_student(f"moe_{router}{'_r8' if router == 'lowrank' else ''}_m32_s4_k4"), 16)
    picked = init_from_data(student, x, y, seed=0)["experts"]
    with torch.no_grad():
        pre_MN = student.w_in @ x.T + student.b_in[:, None]  # every expert's pre-activation on every row
        own = pre_MN[torch.arange(32), picked]
        _, idx_MK = student.router(x[picked])
    torch.testing.assert_close(own, torch.ones(32), rtol=0, atol=1e-4)  # 1 on its own row, 0 at the mean
    assert (own > pre_MN.median(dim=1).values + 0.5).all()
    chosen = (idx_MK == torch.arange(32)[:, None]).any(dim=1).float().mean()  # its own row routes to it
    assert chosen == 1 if router == "fullrank" else chosen >= 0.75


def test_kmeans_pp_spreads_its_picks_over_the_clusters():
    x, _ = clustered_rows(clusters=8)
    unit = torch.nn.functional.normalize(x - x.mean(dim=0), dim=1)
    picked = kmeans_pp_rows(unit, 8, torch.Generator().manual_seed(0))
    assert len(set(picked.tolist())) == 8
    random = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:8]

    def spread(idx):  # the mean distance between picks: k-means++ keeps them apart
        return torch.pdist(unit[idx]).mean()

    assert spread(picked) > spread(random)


@pytest.mark.parametrize("name", ["mlp_h8", MOE])
def test_data_init_fits_the_output_layer_by_least_squares_and_is_seeded(name):
    x, y = clustered_rows()
    students = []
    for seed in (0, 0, 1):
        torch.manual_seed(0)  # the same uniform start (the low-rank query keeps it): only the init's seed differs
        students.append(build_student(parse_student(name), 16))
        init_from_data(students[-1], x, y, seed)
    first, again, other = students
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())
    output = first.down.weight if name.startswith("mlp") else first.w_out
    torch.nn.functional.mse_loss(first(x), y).backward()
    uniform = build_student(parse_student(name), 16)
    torch.nn.functional.mse_loss(uniform(x), y).backward()
    uniform_output = uniform.down.weight if name.startswith("mlp") else uniform.w_out
    assert output.grad.norm() < 1e-2 * uniform_output.grad.norm()  # at the least-squares optimum, nearly
    assert torch.nn.functional.mse_loss(first(x), y) < 0.5 * torch.nn.functional.mse_loss(uniform(x), y)


def test_bad_recipe_settings_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"distill\.init"):
        DistillSettings(init="kmeans")
    with pytest.raises(ConfigError, match=r"distill\.optimizer"):
        DistillSettings(optimizer="sgd")
    with pytest.raises(ConfigError, match="product_key"):
        init_from_data(build_student(parse_student("moe_product_key_r8_m16_s2_k2"), 16), *clustered_rows(), 0)
    config = tiny_config(tmp_path, {"train": "t.txt", "validation": "v.txt"})
    for key, value, name in (("init", "kmeans", "init"), ("lr_scale", {"experts": -1}, "experts")):
        config["distill"][key] = value
        with pytest.raises(ConfigError, match=name):
            load_config(config)
        config["distill"].pop(key)


def test_revival_redraws_only_the_dead_experts_and_routes_their_rows_to_them():
    x, y = clustered_rows()
    torch.manual_seed(0)
    student = build_student(parse_student(MOE), 16)
    optimizer = make_optimizer(student, 1e-2)
    student(x).sub(y).pow(2).mean().backward()  # a training step: moments everywhere
    optimizer.step()
    routed = torch.ones(32, dtype=torch.long)
    dead = torch.tensor([3, 7, 20])
    routed[dead] = 0
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    assert revive_dead(student, optimizer, routed, (x, y), seed=0) == 3
    alive = torch.ones(32, dtype=torch.bool)
    alive[dead] = False
    for name in ("w_in", "b_in", "w_out", "router.gate.weight", "router.gate.bias"):
        param = dict(student.named_parameters())[name]
        assert torch.equal(param.detach()[alive], before[name][alive]), name  # the living are untouched
        assert not torch.equal(param.detach()[dead], before[name][dead]) or name == "w_out"
        assert optimizer.state[param]["exp_avg"][dead].abs().max() == 0, name
    assert student.w_out.detach()[dead].abs().max() == 0  # the function does not jump
    with torch.no_grad():  # each revived expert: pre-activation 1 on the row it was drawn from, routed there
        pre_MN = student.w_in[dead] @ x.T + student.b_in[dead, None]
        rows = (pre_MN - 1).abs().argmin(dim=1)
        _, idx = student.router(x[rows])
    torch.testing.assert_close(pre_MN[torch.arange(3), rows], torch.ones(3), rtol=0, atol=1e-4)
    assert all(expert in picked for expert, picked in zip(dead.tolist(), idx.tolist(), strict=True))


def memory_batches(x, y):
    """Training (shuffled, batch 64) and validation batches (batch 256) of the rows (x, y), held in memory."""
    from secret_moe.batches import ActivationBatches

    store = {"x": x.numpy(), "y": y.numpy()}

    class Group(dict):  # the two arrays of a store, in memory, as ActivationBatches reads them
        attrs: dict = {}

    group = Group(store)
    group["x"] = type("A", (), {"shape": x.shape, "chunks": (256,), "__getitem__": lambda s, i: store["x"][i]})()
    group["y"] = type("A", (), {"shape": y.shape, "chunks": (256,), "__getitem__": lambda s, i: store["y"][i]})()
    options = {"shuffle": True, "seed": 0, "group_chunks": 0, "in_memory": True, "device": "cpu"}
    return ActivationBatches(group, 64, **options), ActivationBatches(group, 256, **{**options, "shuffle": False})


def test_a_run_that_revives_records_dead_experts_reproducibly(tmp_path):
    from secret_moe.train import RowSample, TrainConfig, fit_together

    x, y = clustered_rows(n=1024)
    train, val = memory_batches(x, y)
    histories = []
    schedule = Schedule("wsd", 1, 0.2, 3)  # the ladder 2 / 4 / 8 epochs
    for revive in ("first_rung", "first_rung", "none", "trunk"):
        torch.manual_seed(0)
        students = [build_student(parse_student(MOE), 16), build_student(parse_student("mlp_h8"), 16)]
        configs = [TrainConfig(8, 3e-3, f"r{i}", revive=revive) for i in range(2)]
        sample = RowSample(x[:256], y[:256], seed=0)
        results = fit_together(students, train, val, configs, 1.0, None, schedule, sample=sample)
        histories.append([result["history"] for result in results])
    moe, mlp = histories[0]
    assert all(0 <= h["dead_experts"] <= 1 for h in moe) and all("dead_experts" not in h for h in mlp)
    assert histories[0] == histories[1]  # seeded: the same run twice
    assert histories[0][0] != histories[2][0] and histories[0][1] == histories[2][1]  # only the MoE changes
    until = revival_ends(schedule, schedule.budgets(8))
    assert until == {"none": 0, "first_rung": schedule.cooldown_start(2), "trunk": schedule.cooldown_start(8)}
    assert histories[3][0][: until["first_rung"]] == moe[: until["first_rung"]]  # the same revivals up to there


def test_revival_is_refused_where_it_cannot_run():
    with pytest.raises(ConfigError, match=r"distill\.revive"):
        DistillSettings(revive="first_rung")  # the default schedule is cosine: no cooldown to stop at
    with pytest.raises(ConfigError, match=r"distill\.revive"):
        DistillSettings(revive="always", schedule=Schedule("wsd", 1, 0.2, 1))
    assert DistillSettings(revive="trunk", schedule=Schedule("wsd", 1, 0.2, 1)).revive == "trunk"
    student = build_student(parse_student("moe_product_key_r8_m16_s2_k2"), 16)
    with pytest.raises(ConfigError, match=r"distill\.revive"):
        revive_dead(student, make_optimizer(student, 1e-3), torch.zeros(16, dtype=torch.long), clustered_rows(), 0)


@pytest.mark.parametrize("name", ["mlp_h8", MOE])
def test_refit_leaves_each_epoch_with_the_least_squares_output_layer(name):
    from secret_moe.train import RowSample, TrainConfig, fit_together

    x, y = clustered_rows(n=1024)
    train, val = memory_batches(x, y)
    sample = RowSample(x[:256], y[:256], seed=0)
    weights = {}
    for refit in ("epoch", "epoch", "none"):
        torch.manual_seed(0)
        student = build_student(parse_student(name), 16)
        config = TrainConfig(3, 3e-3, "r", refit=refit)
        fit_together([student], train, val, [config], 1.0, None, Schedule("wsd", 1, 0.2, 1), sample=sample)
        weights.setdefault(refit, []).append({k: v.detach().clone() for k, v in student.state_dict().items()})
    assert all(torch.equal(a, weights["epoch"][1][k]) for k, a in weights["epoch"][0].items())  # seeded
    assert any(not torch.equal(a, weights["none"][0][k]) for k, a in weights["epoch"][0].items())
    # the last thing each epoch did was the refit: a second one moves nothing, and any other output layer fits worse
    student.load_state_dict(weights["epoch"][0])
    output = [p for n, p in student.named_parameters() if n.split(".")[-2:] in (["down", "weight"], ["down", "bias"])]
    output += [p for n, p in student.named_parameters() if n in ("w_out", "b_out")]
    refit_output(student, sample.x_ND, sample.y_ND)
    for k, value in student.state_dict().items():
        torch.testing.assert_close(value, weights["epoch"][0][k], rtol=1e-3, atol=1e-5)
    with torch.no_grad():
        best = student(sample.x_ND).sub(sample.y_ND).pow(2).mean()
        for param in output:
            param.add_(torch.randn_like(param) * 1e-2)
        assert student(sample.x_ND).sub(sample.y_ND).pow(2).mean() > best
    with pytest.raises(ValueError, match="sample"):
        fit_together([student], train, val, [TrainConfig(3, 3e-3, "r", refit="epoch")], 1.0)
    with pytest.raises(ConfigError, match=r"distill\.refit"):
        TrainConfig(3, 3e-3, "r", refit="rung")
    with pytest.raises(ConfigError, match=r"distill\.refit"):
        DistillSettings(refit="always")
