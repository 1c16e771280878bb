"""The Part 4 main job (given): pretrained LM -> fine-tuned QA head and prompting -> predictions.

Its command line is :mod:`cs288_lm.pipelines.qa_job` (``run_finetune_qa.py``). Every stage reuses what
an earlier run left behind:

1. the tokenizer (``data/tokenizer``, or trained on the pretraining text if the directory is empty);
2. the language model: ``--checkpoint``, or the default small LM in ``out/pretrain`` (trained if
   missing, resumed if interrupted, reused if finished with the same settings; a run folder's model
   is read by the rule of :mod:`cs288_lm.training.run_dir`);
3. fine-tuning a :class:`~cs288_lm.qa_model.TransformerForMultipleChoice` on the train questions
   with token distillation from the LM, pooling the answer span (:mod:`cs288_lm.training.finetune`,
   :mod:`cs288_lm.training.answer_span`; ``out/qa/finetuned.pt``, reused if the LM and the settings
   are the same);
4. prompting: every setup of :func:`~cs288_lm.prompting.default_setups` scored on dev with the
   pretrained LM, and the cloze ones with the fine-tuned model's backbone (the Part 4 handout asks to
   prompt "your finetuned model in 4A"), the best pair kept (``out/qa/prompting.json``, reused
   likewise);
5. predictions for the test questions (``finetuned_predictions.json``,
   ``prompting_predictions.json``; kept with the head and the prompting choice, so that a second
   run only reads them) and a table of dev accuracies next to the shipped baselines with
   the points each would earn under the course's rule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cs288_lm.bpe import train_bpe
from cs288_lm.common.predictions import (
    accuracy,
    baseline_accuracies,
    load_grading_rules,
    part4_points,
    save_predictions,
)
from cs288_lm.common.pretokenization import EOT
from cs288_lm.common.qa_data import has_one_blank, load_questions
from cs288_lm.datasets import CHOICE_TEMPLATE, CLOZE_TEMPLATE, MultipleChoiceQADataset, check_template
from cs288_lm.prompting import PromptingPipeline, ScoringSetup, default_setups
from cs288_lm.qa_model import Pooling, TransformerForMultipleChoice
from cs288_lm.tokenizer import VOCAB_FILENAME, Tokenizer
from cs288_lm.training.answer_span import POOLED_POSITIONS, check_pooled_positions, pooled_dataset
from cs288_lm.training.finetune import FinetuneConfig, finetune_multiple_choice, predict_multiple_choice
from cs288_lm.training.loading import load_pretrained_model, read_checkpoint
from cs288_lm.training.run_dir import RunDir, model_checkpoint_path
from cs288_lm.training.settings import (
    DEVICE_HELP,
    REPO_ROOT,
    config_from_settings,
    resolve_device,
    setting,
    settings_of,
)
from cs288_lm.training.token_files import tokenizer_fingerprint
from cs288_lm.training.train_config import TrainConfig, train_config
from cs288_lm.training.trainer import run as pretrain

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # cs288_lm/

# The language models the prompting stage scores, in the order of its table.
PRETRAINED_LM, FINETUNED_BACKBONE = "pretrained LM", "fine-tuned backbone (4A)"

# Settings of the pretraining run that do not change the model it produces.
RUN_ONLY_SETTINGS = {"resume", "device", "out_dir", "cache_dir", "log_interval", "num_samples", "sample_tokens"}


@dataclass
class QAJobConfig:
    """The settings of the main job (a ``--config`` JSON object); each field's help is its ``--help`` text."""

    tokenizer: str = setting(str(REPO_ROOT / "data" / "tokenizer"), "saved tokenizer directory; trained there if empty")
    tokenizer_vocab_size: int = setting(4096, "vocabulary size of a tokenizer that has to be trained")
    qa_dir: str = setting(str(REPO_ROOT / "data" / "qa"), "folder of train.json, dev.json and test_questions.json")
    checkpoint: str | None = setting(
        None,
        "a pretrained LM checkpoint (or a pretrain run directory: its model checkpoint); none: reuse or train "
        "--pretrain-out",
    )
    pretrain: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'TrainConfig settings of the LM pretrained here (the model\'s under "model")'},
    )
    finetune: dict[str, Any] = field(default_factory=dict, metadata={"help": "FinetuneConfig settings"})
    pooling: Pooling = setting("mean", "how the QA head pools a sequence's hidden states: last, mean or max")
    pooled_positions: str = setting(
        "answer",
        f"the positions pooled ({', '.join(POOLED_POSITIONS)}): every real token, or the choice and what follows "
        "it (cs288_lm/training/answer_span.py)",
    )
    # "auto": CLOZE_TEMPLATE when every question has one blank (it scores better on dev than
    # CHOICE_TEMPLATE there), else CHOICE_TEMPLATE; or a template of MultipleChoiceQADataset.
    choice_template: str = setting(
        "auto", "auto: the cloze template when every question has one blank, else the choice template; or a template"
    )
    freeze_backbone: bool = setting(False, "train the QA head only, not the LM")
    # 48 keeps the question and the story's last sentence or two (the answer span ends the row, so a
    # cut almost never touches it) and makes an epoch cheaper than 64 did: the job keeps a margin under its
    # 10 minutes on a 2-core CPU.
    max_length: int | None = setting(48, "tokens of a question's sequences; none: the LM's context length")
    prompting_shots: int = setting(2, "demonstrations in the few-shot prompting template")
    out_dir: str = setting("out/qa", "where the fine-tuned head and the prompting choice are kept")
    predictions_dir: str = setting(".", "where the two predictions files go")
    baseline_metrics: str = setting(
        str(REPO_ROOT / "baseline_metrics.json"), "the shipped baselines shown beside dev accuracies"
    )
    device: str = setting("auto", DEVICE_HELP)
    seed: int = setting(0, "seed of fine-tuning and of the prompting demonstrations")

    def __post_init__(self) -> None:
        check_pooled_positions(self.pooled_positions)
        if self.choice_template != "auto":  # checked here, not after the pretraining
            check_template(self.choice_template)
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be positive (or null: the LM's context length), got {self.max_length}")

    def pretrain_config(self) -> TrainConfig:
        """The LM's pretraining settings (checked as the pretraining's own command line checks them)."""
        return train_config({"tokenizer": self.tokenizer, "device": self.device, **self.pretrain}, "'pretrain'")

    def finetune_config(self) -> FinetuneConfig:
        return config_from_settings(FinetuneConfig, {"seed": self.seed, **self.finetune}, "'finetune'")


def log(message: str) -> None:
    print(f"[qa] {message}", file=sys.stderr, flush=True)


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable settings, to tell whether saved results can be reused."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_fingerprint(package: Path = PACKAGE_DIR) -> str:
    """A short hash of the package's Python source: results made by other code are not reused."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(
            name.encode() + tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()[:16]


# ---- stages --------------------------------------------------------------------------------------


def ensure_tokenizer(config: QAJobConfig) -> Tokenizer:
    """Load the tokenizer, or train one on the pretraining text if its directory has none."""
    directory = Path(config.tokenizer)
    if not (directory / VOCAB_FILENAME).is_file():
        train_text = config.pretrain_config().train_data
        log(f"no tokenizer in {directory}: training one with {config.tokenizer_vocab_size} tokens on {train_text}")
        vocab, merges = train_bpe(train_text, config.tokenizer_vocab_size, [EOT])
        Tokenizer(vocab, merges, [EOT]).save(directory)
    return Tokenizer.from_directory(directory)


def ensure_pretrained_lm(config: QAJobConfig) -> Path:
    """The checkpoint of the language model: given, reused, resumed or trained (module docstring)."""
    if config.checkpoint is not None:
        return model_checkpoint_path(config.checkpoint)
    train_config = config.pretrain_config()
    run_dir = RunDir(train_config.out_dir)
    latest = run_dir.latest_checkpoint
    if latest.is_file():
        saved = read_checkpoint(latest)
        differences = _changed_settings(saved.get("config", {}), settings_of(train_config))
        if saved.get("tokenizer", {}).get("fingerprint") != tokenizer_fingerprint(train_config.tokenizer):
            differences.append(f"another tokenizer than the one now in {train_config.tokenizer}")
        if differences:
            raise ValueError(
                f"{latest} was trained with other settings ({', '.join(differences)}); pass --checkpoint "
                f"{run_dir.root} to use it anyway, or --pretrain-out DIR to train a new model elsewhere"
            )
        if saved["step"] >= train_config.total_steps:
            log(f"reusing the pretrained LM in {run_dir.checkpoint_dir} ({saved['step']} steps)")
            return run_dir.model_checkpoint()
        log(f"resuming the pretraining in {run_dir.checkpoint_dir} from step {saved['step']}")
        train_config = dataclasses.replace(train_config, resume=True)
    else:
        log(f"pretraining the LM ({train_config.total_steps} steps) into {train_config.out_dir}")
    pretrain(train_config)
    latest = run_dir.latest_checkpoint
    step = read_checkpoint(latest)["step"] if latest.is_file() else 0
    if step < train_config.total_steps:  # stopped early (a signal): fine-tuning the unfinished LM would mislead
        raise ValueError(
            f"the pretraining stopped at step {step} of {train_config.total_steps}; run the job again to resume it"
        )
    return run_dir.model_checkpoint()


def _changed_settings(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The names of the settings that differ (a model's by its own name, as its flag), but for those that
    leave the model as is."""
    changed = []
    for name in sorted(wanted.keys() - RUN_ONLY_SETTINGS):
        if isinstance(wanted[name], dict) and isinstance(saved.get(name), dict):
            changed += [inner for inner in sorted(wanted[name]) if saved[name].get(inner) != wanted[name][inner]]
        elif saved.get(name) != wanted[name]:
            changed.append(name)
    return changed


def load_splits(config: QAJobConfig) -> dict[str, list[dict]]:
    """train and dev (with answers) and the test questions (without). Where the test answers are
    at hand too (the instructors' copy of the data), ``test_answers`` holds them for reporting."""
    qa_dir = Path(config.qa_dir)
    splits = {
        "train": load_questions(qa_dir / "train.json", require_answers=True),
        "dev": load_questions(qa_dir / "dev.json", require_answers=True),
        "test": load_questions(qa_dir / "test_questions.json"),
    }
    if (qa_dir / "test.json").is_file():
        splits["test_answers"] = load_questions(qa_dir / "test.json", require_answers=True)
    return splits


def choice_template(config: QAJobConfig, splits: dict[str, list[dict]]) -> str:
    """The template the QA head reads choices with (see ``QAJobConfig.choice_template``)."""
    if config.choice_template != "auto":
        return config.choice_template
    questions = [q for name in ("train", "dev", "test") for q in splits[name]]
    return CLOZE_TEMPLATE if all(has_one_blank(q["question"]) for q in questions) else CHOICE_TEMPLATE


def run_finetuning(
    config: QAJobConfig, checkpoint: Path, tokenizer: Tokenizer, splits: dict[str, list[dict]], device: torch.device
) -> dict:
    """Fine-tune (or reuse) the QA model; returns it, its dev accuracy, its test predictions and the key
    of its inputs."""
    backbone, model_config = load_pretrained_model(checkpoint, device)
    max_length = config.max_length or model_config.context_length
    settings = dataclasses.asdict(config.finetune_config())
    template = choice_template(config, splits)
    key = fingerprint(
        str(checkpoint),
        checkpoint.stat().st_mtime_ns,
        settings,
        config.pooling,
        config.pooled_positions,
        config.freeze_backbone,
        max_length,
        template,
        splits["train"],
        splits["dev"],  # other questions (a regenerated data/qa) must not reuse the head
        code_fingerprint(),  # nor may fixed code (a student's qa_model.py)
    )
    torch.manual_seed(config.seed)  # the head's initialisation, whatever ran before in this process
    model = TransformerForMultipleChoice(
        backbone, model_config.d_model, pooling=config.pooling, freeze_backbone=config.freeze_backbone
    ).to(device)
    datasets = {
        name: pooled_dataset(
            MultipleChoiceQADataset(splits[name], tokenizer, max_length=max_length, template=template),
            config.pooled_positions,
        )
        for name in ("train", "dev", "test")
    }
    saved_path = Path(config.out_dir) / "finetuned.pt"
    saved = torch.load(saved_path, map_location=device, weights_only=True) if saved_path.is_file() else None
    test_key = fingerprint(key, splits["test"])
    if saved is not None and saved.get("key") == key:
        log(f"reusing the fine-tuned model in {saved_path} (dev accuracy {saved['dev_accuracy']:.2%})")
        model.load_state_dict(saved["model"])
        result = {name: saved[name] for name in ("dev_accuracy", "epoch", "history")}
    else:
        log(f"fine-tuning a {config.pooling}-pooled head on {len(splits['train'])} questions")
        result = finetune_multiple_choice(model, datasets["train"], datasets["dev"], config.finetune_config())
        saved = None
    if saved is not None and saved.get("test_key") == test_key:
        test_predictions = list(saved["test_predictions"])
    else:  # new head or new test questions: predict, and keep the predictions with the head
        test_predictions = predict_multiple_choice(model, datasets["test"])
        saved_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"key": key, "model": model.state_dict(), **result}
        torch.save({**state, "test_key": test_key, "test_predictions": test_predictions}, saved_path)
    return {
        "model": model,
        "key": key,
        "dev_accuracy": result["dev_accuracy"],
        "epoch": result["epoch"],
        "test_predictions": test_predictions,
    }


def run_prompting(
    config: QAJobConfig,
    checkpoint: Path,
    tokenizer: Tokenizer,
    splits: dict[str, list[dict]],
    device: torch.device,
    finetuned: dict,
) -> dict:
    """Choose the language model and the prompting setup on dev (or reuse the choice); returns its dev
    accuracy and test predictions. ``finetuned`` is what :func:`run_finetuning` returned."""
    models = {PRETRAINED_LM: load_pretrained_model(checkpoint, device)[0], FINETUNED_BACKBONE: finetuned["model"]}
    if config.freeze_backbone:  # the fine-tuned model's backbone is the pretrained LM
        del models[FINETUNED_BACKBONE]
    setups = default_setups(splits["train"], shots=config.prompting_shots, seed=config.seed)
    key = fingerprint(
        str(checkpoint),
        checkpoint.stat().st_mtime_ns,
        weights_fingerprint(finetuned["model"]),  # the backbone prompted, not only its settings
        code_fingerprint(),
        [s.describe() for s in setups],
        [s.template.demonstrations for s in setups],
        splits["dev"],  # the shots depend on the seed and train
    )
    saved_path = Path(config.out_dir) / "prompting.json"
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else None
    if saved is not None and saved.get("key") == key:
        table = saved["table"]
        log(f"reusing the prompting results in {saved_path}")
    else:
        saved = None
        scored = {name: _setups_for(name, setups) for name in models}
        counts = " and ".join(f"{len(scored[name])} on the {name}" for name in models)
        log(f"scoring prompting setups on {len(splits['dev'])} dev questions: {counts}")
        start = time.perf_counter()
        table = [
            row
            for name in models
            for row in _prompting_table(name, _pipeline(models, name, tokenizer, device), splits["dev"], scored[name])
        ]
        for row in sorted(table, key=lambda row: -row["dev_accuracy"]):
            log(f"  {row['dev_accuracy']:6.1%}  {row['setup']}, {row['model']}")
        log(f"prompting selection took {time.perf_counter() - start:.0f}s")
    best_index = max(range(len(table)), key=lambda i: table[i]["dev_accuracy"])  # the first on ties
    best_model = table[best_index]["model"]
    best = next(setup for setup in setups if setup.describe() == table[best_index]["setup"])
    test_key = fingerprint(key, best_model, best.describe(), splits["test"])
    if saved is not None and saved.get("test_key") == test_key:
        test_predictions = saved["test_predictions"]
    else:  # new choice or new test questions: predict, and keep the predictions with the choice
        test_predictions = _pipeline(models, best_model, tokenizer, device).predict(splits["test"], best)
        saved_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": key, "table": table, "test_key": test_key, "test_predictions": test_predictions}
        saved_path.write_text(json.dumps(record, indent=1) + "\n")
    return {
        "dev_accuracy": table[best_index]["dev_accuracy"],
        "setup": best.describe(),
        "model": best_model,
        "table": table,
        "test_predictions": test_predictions,
    }


def _pipeline(models: dict[str, Any], name: str, tokenizer: Tokenizer, device: torch.device) -> PromptingPipeline:
    """A prompting pipeline on the language model ``name`` (the QA model's backbone for the fine-tuned one)."""
    model = models[name].transformer_lm if name == FINETUNED_BACKBONE else models[name]
    return PromptingPipeline(model, tokenizer, device=device)


def _setups_for(model_name: str, setups: list[ScoringSetup]) -> list[ScoringSetup]:
    """The setups scored on a language model: all of them on the pretrained LM; on the fine-tuned
    backbone, those of the cloze template, the text it was fine-tuned on (the listed templates' next
    letter is near chance for these small LMs, and their long prompts take most of the time)."""
    return setups if model_name == PRETRAINED_LM else [setup for setup in setups if setup.template.is_cloze]


def _prompting_table(
    model_name: str, pipeline: PromptingPipeline, dev: list[dict], setups: list[ScoringSetup]
) -> list[dict]:
    """One row per setup: ``{"model", "setup", "dev_accuracy"}``."""
    _, results = pipeline.select(dev, setups)
    return [{"model": model_name, "setup": setup.describe(), "dev_accuracy": value} for setup, value in results]


# ---- the whole job -------------------------------------------------------------------------------


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Run the block with ``torch.use_deterministic_algorithms(True, warn_only=True)``, then restore
    the previous setting, so that callers in the same process (tests, notebooks) keep their own."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def run_qa_job(config: QAJobConfig) -> dict:
    """Run every stage (module docstring); returns the dev accuracies, setups and file paths."""
    start = time.perf_counter()
    # The same command twice gives the same numbers: with several CPU threads, the embedding
    # gradient's scatter-add over the many repeated padding ids otherwise sums in varying order.
    with deterministic_algorithms():
        torch.manual_seed(config.seed)
        device = resolve_device(config.device)
        tokenizer = ensure_tokenizer(config)
        splits = load_splits(config)
        checkpoint = ensure_pretrained_lm(config)
        finetuned = run_finetuning(config, checkpoint, tokenizer, splits, device)
        prompting = run_prompting(config, checkpoint, tokenizer, splits, device, finetuned)
    predictions_dir = Path(config.predictions_dir)
    files = {}
    for name, result in (("finetuned", finetuned), ("prompting", prompting)):
        files[name] = predictions_dir / f"{name}_predictions.json"
        save_predictions(files[name], [q["id"] for q in splits["test"]], result["test_predictions"])
    summary = {
        "finetuned_dev_accuracy": finetuned["dev_accuracy"],
        "prompting_dev_accuracy": prompting["dev_accuracy"],
        "prompting_setup": prompting["setup"],
        "prompting_model": prompting["model"],
        "prompting_table": prompting["table"],
        "checkpoint": str(checkpoint),
        "predictions": {name: str(path) for name, path in files.items()},
        "seconds": time.perf_counter() - start,
    }
    if "test_answers" in splits:
        test_ids = [q["id"] for q in splits["test"]]
        for name, result in (("finetuned", finetuned), ("prompting", prompting)):
            summary[f"{name}_test_accuracy"] = accuracy(
                dict(zip(test_ids, result["test_predictions"], strict=True)), splits["test_answers"]
            )
    print(format_report(summary, load_baseline(config.baseline_metrics)))
    return summary


def load_baseline(path: str | Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _best_prompting_per_model(table: list[dict]) -> list[str]:
    """One line per language model: its best dev accuracy and setup (the first on ties)."""
    lines = []
    for model in dict.fromkeys(row["model"] for row in table):
        best = max((row for row in table if row["model"] == model), key=lambda row: row["dev_accuracy"])
        lines.append(f"  best on the {model}: {best['dev_accuracy']:.1%} dev, {best['setup']}")
    return lines


def format_report(summary: dict, baseline: dict | None) -> str:
    """The table the job prints: dev accuracy of each method, the baseline's, and the points earned."""
    rules = load_grading_rules()
    try:
        baselines = baseline_accuracies(baseline, "dev") if baseline else None
    except ValueError:
        baselines = None
    if baselines is None and rules["part4"].get("require_beating_baselines"):
        rules = {**rules, "part4": {**rules["part4"], "require_beating_baselines": False}}  # nothing to beat here
    ours = part4_points(summary["finetuned_dev_accuracy"], summary["prompting_dev_accuracy"], rules, baselines)
    lines = [
        "",
        f"Prompting setup chosen on dev: {summary['prompting_setup']}, on the {summary['prompting_model']}",
        *_best_prompting_per_model(summary["prompting_table"]),
        "",
        "| method | dev accuracy | baseline dev accuracy | points (if test = dev) |",
        "| --- | --- | --- | --- |",
    ]
    for method, part in (("finetuned", "4A"), ("prompting", "4B")):
        points = rules["part4"][method]["points"]
        reference = baseline.get(f"{method}_dev_accuracy") if baseline else None
        reference = f"{reference:.1%}" if isinstance(reference, (int, float)) else "n/a"
        accuracy = summary[f"{method}_dev_accuracy"]
        lines.append(f"| {method} ({part}) | {accuracy:.1%} | {reference} | {ours[part]:.1f} / {points} |")
    lines += [
        "",
        "Predictions for the test questions: "
        f"{summary['predictions']['finetuned']}, {summary['predictions']['prompting']}",
        f"Total time {summary['seconds']:.0f}s.",
    ]
    return "\n".join(lines)
