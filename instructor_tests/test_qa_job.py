"""The Part 4 main job (``run_finetune_qa.py``) on a tiny setup, and the shipped QA data.

The job runs in-process on 12 train, 8 dev and 8 test questions copied from ``data/qa`` with a
one-layer LM pretrained for 4 steps, so a run takes seconds: both predictions files must validate
against the test questions, the report must hold the dev accuracies and points, a second run
must reuse the LM, the fine-tuned head and the prompting choice, and a run after the questions
changed must not reuse the head or the choice. The command line's errors are
argparse errors (exit code 2) naming the file; a pretraining directory trained with other
settings is a clear ValueError.

The shipped-data checks need the instructor-only files (``data/tinystories/heldout.txt``,
``data/qa/test.json``, ``make_qa_data.py``), so they live here rather than in the public tests:
``make_qa_data.py`` regenerates the shipped files byte for byte, its audit passes on them (no
lookup, no frequency or position rule above 35% on dev and test) and fails on a file that gives
answers away, dev and test come from disjoint halves of the held-out stories, and the students'
test file is the test split without answers.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import make_qa_data
import run_finetune_qa
from cs288_lm.common.predictions import load_predictions
from cs288_lm.common.qa_data import BLANK, build_lexicon, load_questions, split_sentences, split_stories
from cs288_lm.training import qa_job
from cs288_lm.training.qa_job import FINETUNED_BACKBONE, PRETRAINED_LM, QAJobConfig, ensure_pretrained_lm, run_qa_job

REPO_ROOT = Path(__file__).resolve().parent.parent
QA_DIR = REPO_ROOT / "data" / "qa"
STORIES = REPO_ROOT / "data" / "tinystories"
QA_FILES = ("train.json", "dev.json", "test.json", "test_questions.json")
PREDICTED_BY = ("finetuned", "prompting")
TINY_PRETRAIN = {
    "max_steps": 4,
    "model": {"d_model": 32, "num_layers": 1, "num_heads": 2, "context_length": 128},
    "batch_size": 4,
    "eval_interval": 2,
    "eval_batches": 1,
    "checkpoint_interval": 2,
    "num_samples": 0,
    "sample_tokens": 4,
    "final_eval_tokens": 2000,
}


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def captured(function, *args) -> SimpleNamespace:
    """``function(*args)`` with its result, stdout, stderr and wall time."""
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with one_thread(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        result = function(*args)
    seconds = time.perf_counter() - start
    return SimpleNamespace(result=result, stdout=stdout.getvalue(), stderr=stderr.getvalue(), seconds=seconds)


# ---------------------------------------------------------------------------------------------
# The shipped data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qa_data") / "qa"
    run = captured(make_qa_data.main, ["--out", str(out)])
    assert run.result == 0, run.stderr
    assert (
        "train: 5331 questions" in run.stdout
        and "dev: 436 questions" in run.stdout
        and "test: 417 questions" in run.stdout
    )
    assert run.result == 0 and "| lookup | 0.0% | 0.0% | 0.0% |" in run.stdout, run.stdout + run.stderr  # the audit
    return out


def test_make_qa_data_regenerates_the_shipped_files_byte_for_byte(regenerated):
    """make_qa_data.py with its defaults rebuilds data/qa exactly (generation is reproducible)."""
    for name in QA_FILES:
        assert (regenerated / name).read_bytes() == (QA_DIR / name).read_bytes(), name


def test_audit_fails_on_questions_that_give_answers_away(tmp_path):
    """The audit exits with 1 and names the problem when a dev question's sentence is copied into
    another question's context (a lookup finds it), and when the answer is always the most
    frequent choice in the context."""
    for name in ("train", "test"):  # the first questions only: the problems planted are in dev
        questions = json.loads((QA_DIR / f"{name}.json").read_text(encoding="utf-8"))[:300]
        (tmp_path / f"{name}.json").write_text(json.dumps(questions), encoding="utf-8")
    dev = json.loads((QA_DIR / "dev.json").read_text(encoding="utf-8"))
    leaked = [dict(q) for q in dev]
    first = leaked[0]
    leaked[1]["context"] += " " + first["question"].replace(BLANK, first["choices"][first["answer"]])
    (tmp_path / "dev.json").write_text(json.dumps(leaked), encoding="utf-8")
    run = captured(make_qa_data.main, ["--out", str(tmp_path), "--audit"])
    assert run.result == 1 and "dev: a lookup finds" in run.stderr, run.stderr
    frequent = [dict(q) for q in dev]
    for q in frequent:
        q["context"] += " " + " ".join([q["choices"][q["answer"]]] * 5)
    (tmp_path / "dev.json").write_text(json.dumps(frequent), encoding="utf-8")
    run = captured(make_qa_data.main, ["--out", str(tmp_path), "--audit"])
    assert run.result == 1 and "dev: the rule 'most frequent' scores 100.0%" in run.stderr, run.stderr


def test_students_test_file_is_the_test_split_without_answers():
    """test_questions.json is test.json record for record, minus the answers."""
    test = json.loads((QA_DIR / "test.json").read_text(encoding="utf-8"))
    students = json.loads((QA_DIR / "test_questions.json").read_text(encoding="utf-8"))
    assert students == [{key: value for key, value in q.items() if key != "answer"} for q in test]
    assert all(isinstance(q["answer"], int) for q in test)


def normalised(stories: list[str]) -> list[str]:
    """Each story as make_questions sees it: its sentences joined by single spaces."""
    return [" ".join(split_sentences(story)) for story in stories]


def test_dev_and_test_come_from_disjoint_heldout_stories():
    """Every dev and test question (passage and filled-in sentence) is found in a held-out story
    and in no training story; no held-out story feeds both dev and test; choices share one kind."""
    train_stories = split_stories((STORIES / "train.txt").read_text(encoding="utf-8"))
    heldout_stories = split_stories((STORIES / "heldout.txt").read_text(encoding="utf-8"))
    heldout, train_text = normalised(heldout_stories), "\n".join(normalised(train_stories))
    lexicon = build_lexicon(train_stories + heldout_stories)
    used = {}
    for split in ("dev", "test"):
        used[split] = set()
        for question in load_questions(QA_DIR / f"{split}.json", require_answers=True):
            assert question["id"].startswith(f"{split}-")
            filled = question["question"].replace(BLANK, question["choices"][question["answer"]])
            passage = f"{question['context']} {filled}"
            stories = {index for index, story in enumerate(heldout) if passage in story}
            assert stories, question["id"]
            used[split] |= stories
            assert question["context"] not in train_text, question["id"]
            kinds = {lexicon.kind(choice) for choice in question["choices"]}
            assert len(kinds) == 1 and None not in kinds, question["id"]
    assert not used["dev"] & used["test"]
    assert len(used["dev"]) + len(used["test"]) > 0.75 * len(heldout)  # short stories give no question
    train_kinds = {lexicon.kind(q["choices"][0]) for q in load_questions(QA_DIR / "train.json")}
    assert train_kinds == {"name", "noun", "verb"}


# ---------------------------------------------------------------------------------------------
# The main job, end to end on a tiny setup
# ---------------------------------------------------------------------------------------------


def tiny_settings(root: Path, **model_changes) -> dict:
    """QAJobConfig settings (JSON-serialisable) for the tiny setup under ``root``, with other model settings."""
    pretrain = {**TINY_PRETRAIN, "out_dir": str(root / "pretrain"), "cache_dir": str(root / "cache")}
    pretrain["model"] = {**TINY_PRETRAIN["model"], **model_changes}
    return {
        "qa_dir": str(root / "qa"),
        "pretrain": pretrain,
        "finetune": {"epochs": 1, "batch_size": 4},
        "out_dir": str(root / "out"),
        "predictions_dir": str(root / "predictions"),
        "baseline_metrics": str(root / "baseline_metrics.json"),
        "device": "cpu",
    }


def write_tiny_qa_dir(qa_dir: Path) -> None:
    qa_dir.mkdir(parents=True)
    sizes = {"train": 12, "dev": 8, "test": 8}
    for split, size in sizes.items():
        records = json.loads((QA_DIR / f"{split}.json").read_text(encoding="utf-8"))[:size]
        (qa_dir / f"{split}.json").write_text(json.dumps(records), encoding="utf-8")
    test = json.loads((qa_dir / "test.json").read_text(encoding="utf-8"))
    students = [{k: v for k, v in q.items() if k != "answer"} for q in test]
    (qa_dir / "test_questions.json").write_text(json.dumps(students), encoding="utf-8")


def determinism() -> tuple[bool, bool]:
    """torch's deterministic-algorithms setting: (enabled, warn_only)."""
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


def modification_times(root: Path, pretrain_only: bool = False) -> dict[str, int]:
    paths = [*(root / "pretrain" / "checkpoints").glob("*.pt")] + (
        [] if pretrain_only else [root / "out" / "finetuned.pt"]
    )
    return {str(path): path.stat().st_mtime_ns for path in paths}


def outputs(root: Path) -> SimpleNamespace:
    """What a run left: checkpoint times, the predictions files and the prompting choice."""
    predictions = {name: (root / "predictions" / f"{name}_predictions.json").read_text() for name in PREDICTED_BY}
    return SimpleNamespace(
        times=modification_times(root), predictions=predictions, prompting=(root / "out" / "prompting.json").read_text()
    )


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory) -> SimpleNamespace:
    """The job run three times on the tiny setup: through run_qa_job; again through the command
    line (``--config``) with ``--write-baseline``; and once more after the dev questions changed
    (same number of questions, choices in another order), writing its predictions elsewhere."""
    root = tmp_path_factory.mktemp("qa_job")
    write_tiny_qa_dir(root / "qa")
    (root / "baseline_metrics.json").write_text(
        json.dumps({"finetuned_dev_accuracy": 0.512, "prompting_dev_accuracy": 0.538}), encoding="utf-8"
    )
    settings = tiny_settings(root)
    config_path = root / "config.json"
    config_path.write_text(json.dumps(settings), encoding="utf-8")
    determinism_before = determinism()
    first = captured(run_qa_job, QAJobConfig(**settings))
    after_first = outputs(root)
    determinism_after_first = determinism()
    argv = ["--config", str(config_path), "--write-baseline", str(root / "written.json")]
    second = captured(run_finetune_qa.main, argv)
    after_second = outputs(root)
    dev = json.loads((root / "qa" / "dev.json").read_text(encoding="utf-8"))
    for question in dev:  # rotate the choices, the answer follows its word
        question["choices"] = question["choices"][1:] + question["choices"][:1]
        question["answer"] = (question["answer"] - 1) % 4
    (root / "qa" / "dev.json").write_text(json.dumps(dev), encoding="utf-8")
    changed = {**settings, "predictions_dir": str(root / "predictions_changed_dev")}
    third = captured(run_qa_job, QAJobConfig(**changed))
    return SimpleNamespace(
        root=root,
        first=first,
        second=second,
        third=third,
        after_first=after_first,
        after_second=after_second,
        determinism_before=determinism_before,
        determinism_after_first=determinism_after_first,
    )


def test_job_writes_valid_predictions_and_a_report(tiny_job):
    """Both predictions files validate against the test questions; the summary and the printed
    table hold the dev accuracies, the chosen setup, the baseline and the points."""
    root, summary = tiny_job.root, tiny_job.first.result
    questions = load_questions(root / "qa" / "test_questions.json")
    answers = load_questions(root / "qa" / "test.json")
    for name in PREDICTED_BY:
        path = root / "predictions" / f"{name}_predictions.json"
        assert summary["predictions"][name] == str(path)
        predictions = load_predictions(path, questions)
        assert path.read_text() == tiny_job.after_first.predictions[name]
        assert list(predictions) == [q["id"] for q in questions]
        right = sum(predictions[q["id"]] == q["answer"] for q in answers) / len(answers)
        assert summary[f"{name}_test_accuracy"] == pytest.approx(right)
        assert 0 <= summary[f"{name}_dev_accuracy"] <= 1 and summary[f"{name}_dev_accuracy"] * 8 % 1 == 0
    table = summary["prompting_table"]  # the 22 setups on the pretrained LM, the 4 cloze ones on the backbone
    assert len({(row["model"], row["setup"]) for row in table}) == len(table) == 26
    assert [row["model"] for row in table] == [PRETRAINED_LM] * 22 + [FINETUNED_BACKBONE] * 4
    assert all(row["setup"].startswith("cloze,") for row in table[22:])
    assert summary["prompting_dev_accuracy"] == max(row["dev_accuracy"] for row in table)
    best = next(row for row in table if row["dev_accuracy"] == summary["prompting_dev_accuracy"])  # the first
    assert (summary["prompting_setup"], summary["prompting_model"]) == (best["setup"], best["model"])
    assert summary["checkpoint"] == str(root / "pretrain" / "checkpoints" / "best.pt")
    report = tiny_job.first.stdout
    assert f"Prompting setup chosen on dev: {best['setup']}, on the {best['model']}" in report
    for model in (PRETRAINED_LM, FINETUNED_BACKBONE):  # both LMs' best setups are reported
        rows = [row for row in table if row["model"] == model]
        top = next(row for row in rows if row["dev_accuracy"] == max(r["dev_accuracy"] for r in rows))
        assert f"  best on the {model}: {top['dev_accuracy']:.1%} dev, {top['setup']}\n" in report
    finetuned_row = re.search(r"\| finetuned \(4A\) \| ([\d.]+)% \| 51\.2% \| ([\d.]+) / 12 \|", report)
    prompting_row = re.search(r"\| prompting \(4B\) \| ([\d.]+)% \| 53\.8% \| ([\d.]+) / 8 \|", report)
    assert finetuned_row and prompting_row, report
    assert float(finetuned_row.group(1)) == pytest.approx(100 * summary["finetuned_dev_accuracy"], abs=0.05)
    assert float(prompting_row.group(1)) == pytest.approx(100 * summary["prompting_dev_accuracy"], abs=0.05)
    stages = (
        "pretraining the LM (4 steps)",
        "fine-tuning a mean-pooled head on 12 questions",
        "scoring prompting setups on 8 dev questions: 22 on the pretrained LM and 4 on the fine-tuned backbone (4A)",
    )
    for stage in stages:
        assert f"[qa] {stage}" in tiny_job.first.stderr


def test_second_run_reuses_everything(tiny_job):
    """The second run (from the command line) trains nothing: it says so, leaves the checkpoints
    untouched, makes the same predictions and choice, is faster, and writes the baseline file."""
    second = tiny_job.second
    assert second.result == 0, second.stderr
    reused = [line for line in second.stderr.splitlines() if line.startswith("[qa] reusing")]
    assert len(reused) == 3, second.stderr
    assert "pretrained LM" in reused[0] and "fine-tuned model" in reused[1] and "prompting results" in reused[2]
    for stage in ("[qa] pretraining", "[qa] resuming", "[qa] fine-tuning", "[qa] scoring", "[finetune]", "[train]"):
        assert stage not in second.stderr
    assert tiny_job.after_second.times == tiny_job.after_first.times
    assert tiny_job.after_second.predictions == tiny_job.after_first.predictions
    assert tiny_job.after_second.prompting == tiny_job.after_first.prompting
    assert second.seconds < tiny_job.first.seconds
    written = json.loads((tiny_job.root / "written.json").read_text(encoding="utf-8"))
    first = tiny_job.first.result
    settings = ["prompting_setup", "prompting_model"]
    for key in [f"{name}_{split}_accuracy" for name in PREDICTED_BY for split in ("dev", "test")] + settings:
        assert written[key] == first[key], key
    assert written["command"].startswith("python run_finetune_qa.py --config ")


def test_changed_questions_are_not_answered_with_stale_results(tiny_job):
    """After the dev questions change, the LM is reused but the head is fine-tuned again and the
    prompting setups are scored again on the new questions."""
    third = tiny_job.third
    assert "[qa] reusing the pretrained LM" in third.stderr
    assert "[qa] fine-tuning a mean-pooled head" in third.stderr and "[qa] scoring prompting setups" in third.stderr
    assert "reusing the fine-tuned model" not in third.stderr and "reusing the prompting results" not in third.stderr
    for name in PREDICTED_BY:
        path = tiny_job.root / "predictions_changed_dev" / f"{name}_predictions.json"
        load_predictions(path, load_questions(tiny_job.root / "qa" / "test_questions.json"))


def test_job_restores_the_deterministic_algorithms_setting(tiny_job):
    """The job runs with deterministic algorithms but leaves the process's setting as it found it."""
    assert tiny_job.determinism_after_first == tiny_job.determinism_before


@pytest.mark.parametrize("previous", [(False, False), (True, False)], ids=["off", "on-erroring"])
def test_job_restores_the_deterministic_algorithms_setting_when_it_raises(tmp_path, monkeypatch, previous):
    seen = []

    def failing(config: QAJobConfig) -> None:
        seen.append(determinism())
        raise OSError("disk full")

    monkeypatch.setattr(qa_job, "ensure_tokenizer", failing)
    original = determinism()
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    try:
        with pytest.raises(OSError, match="disk full"):
            run_qa_job(QAJobConfig(**tiny_settings(tmp_path)))
        assert seen == [(True, True)] and determinism() == previous
    finally:
        torch.use_deterministic_algorithms(original[0], warn_only=original[1])


def test_pretraining_dir_trained_with_other_settings_is_a_clear_error(tiny_job, tmp_path):
    """Other model settings for an existing pretraining directory: a ValueError naming the settings
    and the checkpoint and saying what to do, before anything is trained or overwritten; from the
    command line, exit code 1 and the same message."""
    settings = tiny_settings(tiny_job.root, d_model=48, num_heads=4)
    before = modification_times(tiny_job.root)
    with pytest.raises(ValueError) as error:
        captured(run_qa_job, QAJobConfig(**settings))
    message = str(error.value)
    latest = tiny_job.root / "pretrain" / "checkpoints" / "latest.pt"
    assert f"{latest} was trained with other settings (d_model, num_heads)" in message
    assert "--checkpoint" in message and "--pretrain-out" in message
    config_path = tmp_path / "other.json"
    config_path.write_text(json.dumps(settings), encoding="utf-8")
    run = captured(run_finetune_qa.main, ["--config", str(config_path)])
    assert run.result == 1
    assert "error: " in run.stderr and "trained with other settings (d_model, num_heads)" in run.stderr
    assert modification_times(tiny_job.root) == before


def test_pretraining_that_stopped_early_is_not_fine_tuned(tmp_path, monkeypatch):
    """A pretraining run that returns before its last step (a signal stopped it) ends the job with a
    one-line error that says to rerun; nothing is fine-tuned on the unfinished LM."""
    write_tiny_qa_dir(tmp_path / "qa")
    monkeypatch.setattr(qa_job, "pretrain", lambda config: None)  # stopped before its first checkpoint
    with pytest.raises(ValueError, match=r"the pretraining stopped at step 0 of 4; run the job again to resume it"):
        captured(run_qa_job, QAJobConfig(**tiny_settings(tmp_path)))
    assert not (tmp_path / "out" / "finetuned.pt").exists()


def test_checkpoint_setting_takes_a_file_or_a_run_directory(tiny_job):
    """--checkpoint skips pretraining: a checkpoint file is used as is, a run directory means its model
    checkpoint (best.pt; latest.pt where there is no best.pt yet, cs288_lm/training/run_dir.py)."""
    best = tiny_job.root / "pretrain" / "checkpoints" / "best.pt"
    for given in (best, tiny_job.root / "pretrain"):
        config = QAJobConfig(**{**tiny_settings(tiny_job.root, d_model=48), "checkpoint": str(given)})
        assert ensure_pretrained_lm(config) == best


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "config file not found: {path}"),
        ('{"epochs": 2,', "{path}: not valid JSON"),
        ('["out_dir"]', "{path}: expected a JSON object of settings, got a list"),
        ('{"out_dir": "x", "learning_rate": 0.1}', "{path}: unknown settings ['learning_rate']"),
        ('{"pretrain": {"max_steps": 0}}', "max_steps must be at least 1"),
        ('{"pretrain": {"d_modle": 64}}', "d_modle"),
        ('{"pretrain": {"d_model": 64}}', "'d_model' is a setting of 'model'; move it under \"model\""),
        ('{"pretrain": {"model": {"d_modle": 64}}}', "'pretrain' 'model': unknown settings ['d_modle']"),
        ('{"finetune": {"epochs": 0}}', "epochs and batch_size must be at least 1"),
        ('{"pretrain": null}', "{path}: 'pretrain' must be an object, got null"),
        ('{"finetune": {"epochs": "2"}}', "'finetune': 'epochs' must be an integer, got a string '2'"),
        ("DIRECTORY", "{path}: cannot be read"),
        ('{"choice_template": "{context} {answer}"}', "unknown template field {{answer}}"),
        ('{"choice_template": "{question} {choice}"}', "a choice template must start with '{{context}}'"),
        ('{"max_length": 0}', "max_length must be positive (or null: the LM's context length), got 0"),
        ('{"pooled_positions": "middle"}', "unknown pooled positions 'middle'"),
        ('{"finetune": {"keep": "best"}}', "unknown keep 'best'"),
    ],
)
def test_bad_config_is_an_argparse_error_naming_the_file(tmp_path, capsys, content, message):
    """``run_finetune_qa.py --config bad.json`` exits with code 2 and a one-line reason, no traceback."""
    path = tmp_path / "bad.json"
    if content == "DIRECTORY":
        path.mkdir()
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run_finetune_qa.main(["--config", str(path)])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert message.format(path=path) in stderr
    assert "Traceback" not in stderr and stderr.startswith("usage:")


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "configs").glob("qa_*.json")), ids=lambda path: path.name)
def test_shipped_qa_configs_are_valid(path):
    """Every shipped QA config parses as the command line reads it, nested settings included, and
    keeps its outputs apart from the default run's."""
    config, _ = run_finetune_qa.parse_config(["--config", str(path)])
    assert config.out_dir != QAJobConfig().out_dir
    assert config.pretrain_config().out_dir != QAJobConfig().pretrain_config().out_dir


def test_saved_results_follow_the_code_and_the_weights(tmp_path):
    """The reuse keys change when any source file of the package changes (a student fixes their
    qa_model.py) and when the fine-tuned weights do (the prompted backbone)."""
    package = tmp_path / "package"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    before = qa_job.code_fingerprint(package)
    assert qa_job.code_fingerprint(package) == before
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert qa_job.code_fingerprint(package) != before
    assert qa_job.code_fingerprint() == qa_job.code_fingerprint(REPO_ROOT / "cs288_lm")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))  # with 0-dim buffers
    weights = qa_job.weights_fingerprint(model)
    with torch.no_grad():
        model[0].weight[0, 0] += 1e-3
    assert qa_job.weights_fingerprint(model) != weights
