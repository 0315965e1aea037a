"""`ganforge eval` and training's --eval-every: the same metrics, finite JSON, best.pt, bad input in one line."""

import json
import subprocess

import numpy as np
import pytest
import torch

from ganforge.errors import UserError
from ganforge.serve.evaluation.evaluate import EvalConfig, evaluate_model
from ganforge.serve.evaluation.inception import torchmetrics_fid_kid
from ganforge.train.data import load_data
from ganforge.train.loop import train
from ganforge.train.metrics.evaluator import Evaluator
from ganforge.train.metrics.frechet import frechet_distance_of


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A tiny digits run that evaluates every 3 steps (the classifier is trained once and cached)."""
    from tests.conftest import tiny_config

    root = tmp_path_factory.mktemp("evaluated")
    return train(tiny_config(root, steps=6, eval_every=3, checkpoint_every=3))


@pytest.fixture(scope="module")
def digits_evaluator(evaluated_run):
    return Evaluator(load_data("digits", 16, 0), cache=evaluated_run / "eval")


def test_training_evaluations_are_finite_json_with_a_best_checkpoint_and_a_plot(evaluated_run):
    lines = (evaluated_run / "metrics.jsonl").read_text().splitlines()
    evals = [json.loads(line)["eval"] for line in lines if '"eval"' in line]
    assert len(evals) == 2 and all("fd" in e and "recognised" in e for e in evals)
    for line in lines:
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in metrics.jsonl"))
    assert (evaluated_run / "checkpoints" / "best.pt").is_file()
    assert (evaluated_run / "quality.png").is_file() and (evaluated_run / "eval" / "classifier.pt").is_file()
    config = json.loads((evaluated_run / "config.json").read_text())
    assert config["precision"] == "fp32" and config["device"] == "cpu" and config["out"] == str(evaluated_run)


def test_real_held_out_digits_score_near_the_floor_and_noise_does_not(digits_evaluator):
    floor = digits_evaluator.real_floor()
    assert floor["recognised"] > 0.9 and floor["classes"] == 10 and floor["class_kl"] < 0.05
    assert floor["precision"] > 0.8 and floor["recall"] > 0.8 and floor["near_copies"] < 0.1
    noise = digits_evaluator.evaluate(torch.rand(500, 1, 16, 16) * 2 - 1)
    assert noise["fd"] > 50 * max(floor["fd"], 0.1) and noise["precision"] < 0.05
    copies = torch.from_numpy(digits_evaluator.train_images[:500].numpy() / 127.5 - 1.0)
    assert digits_evaluator.evaluate(copies)["near_copies"] == 1.0  # a generator that copies is caught


def test_per_class_metrics_compare_with_that_class_s_real_images(evaluated_run, digits_evaluator):
    data = load_data("digits", 16, 0)
    threes = Evaluator(data, cache=evaluated_run / "eval", only_class=3)
    floor = threes.real_floor()
    assert floor["class_share"] > 0.9 and "class_kl" not in floor
    fives = torch.from_numpy(data.stream.images[data.labels == 5].numpy() / 127.5 - 1.0)
    other = threes.evaluate(fives)
    assert other["class_share"] < 0.1 and other["fd"] > 10 * floor["fd"]
    assert digits_evaluator.evaluate(fives)["fd"] < other["fd"]  # against all digits, fives are no outliers


def test_a_pseudo_class_is_measured_against_the_real_images_its_clusters_hold(digits_evaluator):
    """With the labels hidden, pseudo-class k's reference is the real images the clusters put in k: held-out images
    of k sit near that reference, the images of another pseudo-class far from it, and the class report gives the
    share of samples showing the digit most of k's real images show."""
    from ganforge.train.clusters import fit_clusters
    from ganforge.train.data.base import to_unit_range

    data = load_data("digits", 16, 0)
    clusters = fit_clusters(data.stream.images, 10, seed=0)
    classes_of = lambda images: clusters.assign(to_unit_range(images))  # noqa: E731
    assigned = classes_of(data.stream.images)
    k, other = (int(c) for c in torch.bincount(assigned).argsort(descending=True)[:2])
    cluster = Evaluator(data, extractor=digits_evaluator.extractor, only_class=k, classes_of=classes_of)
    assert len(cluster.train_images) + len(cluster.held_images) == int((assigned == k).sum())
    floor = cluster.real_floor()
    away = cluster.evaluate(torch.from_numpy(data.stream.images[assigned == other].numpy() / 127.5 - 1.0))
    assert away["fd"] > 5 * floor["fd"] and floor["cluster_label"] == away["cluster_label"]
    assert floor["class_share"] > 0.5 > 0.2 > away["class_share"]  # k's digit, as its real images show it
    with pytest.raises(UserError, match="class 99"):
        Evaluator(data, extractor=digits_evaluator.extractor, only_class=99, classes_of=classes_of)


def test_eval_with_a_chosen_class_and_truncation_records_them(conditional_run, evaluated_run, tmp_path):
    import shutil

    from ganforge.serve.evaluation.report import table

    (tmp_path / "eval").mkdir()  # the digits classifier, trained once for this module
    shutil.copy(evaluated_run / "eval" / "classifier.pt", tmp_path / "eval" / "classifier.pt")
    result = evaluate_model(EvalConfig(model=str(conditional_run), n=100, quiet=True, truncation=0.5, classes=(7,),
                                       out=str(tmp_path / "eval")))
    assert (result["truncation"], result["class"], result["per_class"]) == (0.5, [7], 7)
    assert "class_share" in result["generated"] and "truncation 0.5, class 7" in table(result)


@pytest.mark.filterwarnings("error")  # and says nothing a user need not act on
def test_torchmetrics_path_agrees_with_our_frechet_distance_on_the_local_extractor(digits_evaluator):
    """--features inception computes FID/KID with torchmetrics; here it runs on the domain classifier's features."""
    real = digits_evaluator.train_images[:400]
    fake = digits_evaluator.held_images[:300]
    theirs = torchmetrics_fid_kid(digits_evaluator.extractor, real, fake, subset_size=200)
    ours_real, _ = digits_evaluator.extractor.run(real.float() / 127.5 - 1)
    ours_fake, _ = digits_evaluator.extractor.run(fake.float() / 127.5 - 1)
    assert theirs["fd"] == pytest.approx(frechet_distance_of(ours_fake, ours_real), rel=1e-3, abs=1e-3)


def test_eval_of_run_and_of_its_onnx_export_agree(evaluated_run, tmp_path, ganforge_cli):
    by_torch = evaluate_model(EvalConfig(model=str(evaluated_run), n=300, quiet=True))
    assert json.loads((evaluated_run / "eval" / "eval.json").read_text())["generated"]["n"] == 300
    assert (evaluated_run / "eval" / "eval.png").stat().st_size > 1000
    onnx = tmp_path / "g.onnx"
    subprocess.run([ganforge_cli, "export", str(evaluated_run), "--out", str(onnx)], check=True, capture_output=True)
    # --out: the run's eval folder, whose cached classifier fits (it is keyed by the data, not the model)
    result = subprocess.run([ganforge_cli, "eval", str(onnx), "--n", "300", "--quiet", "--out",
                             str(evaluated_run / "eval")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Fréchet distance" in result.stdout and "real held-out" in result.stdout
    by_onnx = json.loads((evaluated_run / "eval" / "eval.json").read_text())
    assert by_onnx["backend"] == "onnxruntime"
    assert by_onnx["generated"]["fd"] == pytest.approx(by_torch["generated"]["fd"], rel=1e-3)


def test_best_checkpoint_is_usable_downstream(evaluated_run, tmp_path, ganforge_cli):
    out = tmp_path / "best.onnx"
    result = subprocess.run([ganforge_cli, "export", str(evaluated_run), "--checkpoint", "best", "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([ganforge_cli, "eval", str(evaluated_run), "--checkpoint", "best", "--n", "100",
                             "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "best.pt" in json.loads((evaluated_run / "eval" / "eval.json").read_text())["checkpoint"]


@pytest.mark.parametrize("args, message", [
    (["--n", "10"], "too few"),
    (["--data", "grid"], "wrong model or --data"),
    (["--features", "inception"], "needs --weights"),
    (["--features", "inception", "--weights", "/nonexistent.pt"], "no such file"),
    (["--checkpoint", "step-999999"], "no checkpoint step-999999.pt"),
    (["--features", "fancy"], "unknown --features"),
])
def test_bad_eval_input_is_one_line_and_exit_2(evaluated_run, ganforge_cli, args, message):
    result = subprocess.run([ganforge_cli, "eval", str(evaluated_run), *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_sorted_grid_groups_samples_by_predicted_class():
    from ganforge.serve.evaluation.report import sorted_by_class

    probs = np.eye(3)[[2, 0, 1, 0, 2, 1]]
    images = torch.arange(6).float().view(6, 1, 1, 1)
    assert sorted_by_class(images, probs, per_class=2).flatten().tolist() == [1, 3, 2, 5, 0, 4]


def test_eval_reports_a_self_conditioned_runs_pseudo_classes(tmp_path):
    """The pseudo-classes (count, shares) beside the metrics, and how pure they are against the ignored labels; an
    export reports the count and shares it carries in its generator config."""
    from ganforge.export.api import ExportConfig, export
    from ganforge.serve.evaluation.report import table
    from tests.conftest import tiny_config

    run = train(tiny_config(tmp_path, steps=2, labels="ignore", self_conditional=4))
    result = evaluate_model(EvalConfig(model=str(run), n=200, quiet=True))
    pseudo = result["pseudo_classes"]
    assert pseudo["count"] == 4 and abs(sum(pseudo["shares"]) - 1) < 1e-9 and 0.3 < pseudo["purity"] <= 1
    assert "pseudo-classes (self-conditional): 4" in table(result) and "purity" in table(result)
    largest = int(np.argmax(pseudo["shares"]))
    chosen = evaluate_model(EvalConfig(model=str(run), n=200, quiet=True, classes=(largest,)))
    assert (chosen["per_class"], chosen["per_class_by"]) == (largest, "clusters")
    assert "the real images of that pseudo-class" in table(chosen)
    onnx_path = export(ExportConfig(source=str(run), out=str(tmp_path / "g.onnx"), max_batch=8)).path
    from ganforge.serve.evaluation.evaluate import model_description

    *_, meta = model_description(EvalConfig(model=str(onnx_path), quiet=True))
    assert meta["pseudo_classes"]["shares"] == pseudo["shares"] and "purity" not in meta["pseudo_classes"]
    # an export does not carry the clusters: its pseudo-class is measured against the whole data, and says so
    whole = evaluate_model(EvalConfig(model=str(onnx_path), n=200, quiet=True, classes=(largest,)))
    assert whole["per_class"] is None and "reference" not in table(whole)
    plain = evaluate_model(EvalConfig(model=str(train(tiny_config(tmp_path / "plain", steps=2))), n=100, quiet=True))
    assert plain["pseudo_classes"] is None and "pseudo-classes" not in table(plain)


def test_eval_picks_the_real_images_of_a_pseudo_class_found_again_on_the_discriminator(tmp_path):
    """Clusters re-fitted on D's features during training: eval embeds the real images with the checkpoint's D."""
    from tests.conftest import tiny_config

    run = train(tiny_config(tmp_path, steps=3, labels="ignore", self_conditional=4, recluster_every=2))
    result = evaluate_model(EvalConfig(model=str(run), n=200, quiet=True))
    assert result["pseudo_classes"]["features"] == "discriminator"
    largest = int(np.argmax(result["pseudo_classes"]["shares"]))
    chosen = evaluate_model(EvalConfig(model=str(run), n=200, quiet=True, classes=(largest,)))
    assert (chosen["per_class"], chosen["per_class_by"]) == (largest, "clusters")
    assert 0 < chosen["real"]["n"] < result["real"]["n"]  # the reference: the real images D's features put there
