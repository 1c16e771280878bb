"""Section 5, embeddings: 2-D maps of frequent tokens (PCA; t-SNE with scikit-learn), nearest
neighbours, and a noun/verb linear probe of each layer's hidden state against a majority baseline."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from cs288_lm.analysis import MissingDependency, pyplot
from cs288_lm.analysis import embeddings as embedding_analysis
from cs288_lm.common.qa_data import build_lexicon, split_stories
from cs288_lm.reporting.context import Context, read_text_file
from cs288_lm.reporting.writer import ReportWriter

TITLE = "Embeddings"
NEIGHBOUR_WORDS = ("girl", "dog", "happy", "ran", "ball", "mom", "red", "tree", "sad", "big")
NEIGHBOURS = 6
PROBE_COLUMNS = ("layer", "accuracy", "majority_baseline", "train_examples", "test_examples")


def embedding_tables(context: Context) -> dict[str, Tensor]:
    """``input`` and, when the output layer is not tied to it, ``output``: (vocab, d_model) each."""
    tables = {"input": embedding_analysis.input_embeddings(context.model)}
    output_table = embedding_analysis.output_embeddings(context.model)
    if output_table is not None:
        tables["output"] = output_table
    return tables


def maps(context: Context, tables: dict[str, Tensor], report: ReportWriter) -> None:
    """PCA and t-SNE maps of the most frequent tokens of --text, one pair per table."""
    tokenizer = context.tokenizer
    frequent = embedding_analysis.frequent_tokens(context.ids, tokenizer, context.args.map_tokens)
    labels = [embedding_analysis.token_label(tokenizer, t) for t in frequent]
    extra = (
        " The output embeddings are the rows of the output layer: tokens the model predicts in similar contexts "
        "get similar rows."
        if "output" in tables
        else " The output layer is tied to them."
    )
    report.paragraph(
        f"The {' and '.join(tables)} embeddings of the {len(frequent)} most frequent tokens of --text (a leading "
        f"space is shown as _).{extra}"
    )
    for kind, table in tables.items():
        points = table[frequent]
        projected, shares = embedding_analysis.pca_2d(points)
        title = f"PCA of {kind} embeddings (PC1 {shares[0]:.0%}, PC2 {shares[1]:.0%} of variance)"
        report.figure(
            lambda path, projected=projected, title=title: embedding_analysis.plot_projection(
                projected, labels, title, path, ("PC1", "PC2")
            ),
            f"embeddings_{kind}_pca.png",
            f"PCA of the {kind} embeddings",
        )
        try:
            tsne = embedding_analysis.tsne_2d(points, context.args.seed)
            report.figure(
                lambda path, tsne=tsne, kind=kind: embedding_analysis.plot_projection(
                    tsne, labels, f"t-SNE of {kind} embeddings", path, ("t-SNE 1", "t-SNE 2")
                ),
                f"embeddings_{kind}_tsne.png",
                f"t-SNE of the {kind} embeddings",
            )
        except MissingDependency as error:
            report.note(f"no t-SNE map: {error}")


def neighbour_rows(context: Context, tables: dict[str, Tensor]) -> list[dict]:
    """For each of :data:`NEIGHBOUR_WORDS` that is one token: its nearest tokens in each table."""
    tokenizer = context.tokenizer
    special = list(tokenizer.special_token_ids.values())
    rows = []
    for word in NEIGHBOUR_WORDS:
        token = embedding_analysis.word_token(tokenizer, word)
        if token is None or token >= context.config.vocab_size:
            continue
        row = {"word": word}
        for kind, table in tables.items():
            neighbours = embedding_analysis.nearest_neighbours(table, token, NEIGHBOURS, special)
            row[kind] = ", ".join(
                f"{tokenizer.decode([n]).strip() or repr(tokenizer.decode([n]))} ({s:.2f})" for n, s in neighbours
            )
        rows.append(row)
    return rows


def neighbours(context: Context, tables: dict[str, Tensor], report: ReportWriter) -> None:
    report.paragraph("#### Nearest neighbours (cosine similarity)")
    rows = neighbour_rows(context, tables)
    if rows:
        report.table(
            rows,
            ["word", *tables],
            "embedding_neighbours.csv",
            headers=["word", *(f"{kind} embeddings" for kind in tables)],
        )
    else:
        report.note("none of the chosen words is a single token of this tokenizer")


def plot_probe(results: list[embedding_analysis.ProbeResult], path: Path) -> None:
    """Probe accuracy per layer against the majority baseline."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    axis.plot([r.layer for r in results], [r.accuracy for r in results], "o-", label="probe (test words)")
    axis.axhline(results[0].baseline, color="grey", linestyle="--", label="majority baseline")
    axis.set_title("Linear probe: noun or verb from each layer's hidden state", fontsize=10)
    axis.set_xlabel("layer (0: embeddings)")
    axis.set_xticks([r.layer for r in results])
    axis.set_ylabel("accuracy, noun vs verb")
    axis.set_ylim(0.0, 1.0)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def probe_data(context: Context) -> tuple[Path, embedding_analysis.ProbeData]:
    """(the text the word kinds come from, the nouns and verbs of --text with their positions):
    the kinds from the training text when it is here, else from --text."""
    train_path = context.training.train_data
    lexicon_path = train_path if train_path is not None and train_path.is_file() else context.text_path
    lexicon = build_lexicon(split_stories(read_text_file(lexicon_path, "lexicon text")))
    data = embedding_analysis.labelled_word_positions(
        context.text,
        context.ids,
        context.tokenizer,
        lexicon.kind,
        offset=1 if context.eos is not None else 0,
        limit=context.args.probe_examples,
        seed=context.args.seed,
    )
    return lexicon_path, data


def probe(context: Context, report: ReportWriter) -> None:
    """A linear probe per layer: noun or verb from the hidden state at each word's last token."""
    report.paragraph("#### Linear probe: nouns against verbs, per layer")
    lexicon_path, data = probe_data(context)
    if len(set(data.labels)) < 2 or len(set(data.words)) < 4:
        report.note(f"too few nouns and verbs in --text for a probe ({len(data.positions)} occurrences)")
        return
    states = embedding_analysis.hidden_states_at(context.model, data.ids, data.positions)
    try:
        seed = context.args.seed
        results = embedding_analysis.linear_probe([s.numpy() for s in states], data.labels, data.words, seed=seed)
    except MissingDependency as error:
        report.note(f"no probe: {error}")
        return
    counts = {kind: data.labels.count(kind) for kind in sorted(set(data.labels))}
    report.paragraph(
        f"Word kinds from `cs288_lm.common.qa_data.build_lexicon` on {lexicon_path.name}; "
        f"{len(data.positions)} occurrences in --text ({', '.join(f'{n} {k}s' for k, n in counts.items())}) "
        f"of {len(set(data.words))} words, the hidden state at each word's last token. Logistic regression "
        "per layer (layer 0: the embeddings), trained and tested on disjoint words (30% of the words for "
        "testing); the baseline always answers the training set's most frequent kind."
    )
    rows = [
        {
            "layer": r.layer,
            "accuracy": r.accuracy,
            "majority_baseline": r.baseline,
            "train_examples": r.train_examples,
            "test_examples": r.test_examples,
        }
        for r in results
    ]
    report.table(rows, PROBE_COLUMNS, "probe.csv")
    best = max(results, key=lambda r: r.accuracy)
    report.paragraph(f"Best: layer {best.layer}, {best.accuracy:.1%} against a baseline of {best.baseline:.1%}.")
    report.figure(lambda path: plot_probe(results, path), "probe.png", "probe accuracy per layer")


def render(context: Context, report: ReportWriter) -> None:
    tables = embedding_tables(context)
    maps(context, tables, report)
    neighbours(context, tables, report)
    probe(context, report)
