"""The handout's given code holds no copy of a solution block.

Students get every file of the handout; what lies between ``# BEGIN SOLUTION`` and ``# END
SOLUTION`` is replaced by a stub (:mod:`autograder.make_handout`). A given module that repeats a
solution's code (the trainer once computed its model FLOPs utilisation with its own copy of Part 2's
``count_flops_per_token`` formula) hands the answer out with it. "Given code" is every Python file
of the handout outside ``tests/`` (the package with its stubs, ``adapters.py``, the scripts): the
public tests compute expected values on purpose.

Two kinds of distinctive solution code are looked for:

* **lines**: a line of a solution block, without whitespace and comments, at least
  ``MIN_LINE_LENGTH`` characters long and containing a call or an arithmetic operator (so that
  ``else:``, ``return x`` or ``"question": record["question"],`` are not distinctive);
* **formulas**: an arithmetic expression of a solution block whose leaves are names and numbers,
  with at least two of each (``2 * 4 * d_model * d_model``), compared with every name replaced by
  ``_``: a copy that renames the variables (``2 * 4 * d * d``) is still the same formula.

``instructor_tests/test_handout.py`` checks, on the built handout, that no verbatim line of a
solution appears anywhere in it; this module also catches copies with other names, and needs no
bundle.
"""

from __future__ import annotations

import ast
import copy
import io
import tokenize
from dataclasses import dataclass

import pytest

from autograder.make_handout import REPO_ROOT, handout_files
from autograder.markers import find_blocks, strip_solutions, student_modules

MIN_LINE_LENGTH = 30
# Solution lines that given code may repeat, and why.
ALLOWED_LINES = {
    # RMSNorm's gain: its docstring says it "starts at ones"; GPT-2's given LayerNorm has the same line.
    "self.weight=nn.Parameter(torch.ones(d_model,device=device,dtype=dtype))",
}
# What pretrain.py computed model FLOPs with before it called count_flops_per_token (issue 12).
OLD_TRAINER_FLOPS = '''
def training_flops_per_token(config: ModelConfig) -> int:
    """Forward + backward FLOPs per token (3x the forward pass), attention over the full context."""
    d, context = config.d_model, config.context_length
    mlp = 2 * 3 * d * config.resolved_d_ff if config.architecture == "llama" else 2 * 2 * d * config.resolved_d_ff
    per_layer = 2 * 4 * d * d + 2 * 2 * context * d + mlp
    return 3 * (config.num_layers * per_layer + 2 * d * config.vocab_size)
'''


@dataclass(frozen=True)
class Place:
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def normalised_lines(source: str) -> dict[int, str]:
    """Line number -> the line's tokens joined without whitespace, comments left out."""
    lines: dict[int, list[str]] = {}
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skipped:
            lines.setdefault(token.start[0], []).append(token.string)
    return {number: "".join(tokens) for number, tokens in lines.items()}


def is_distinctive_line(line: str) -> bool:
    return len(line) >= MIN_LINE_LENGTH and any(c in line for c in "(+-*/%@") and line not in ALLOWED_LINES


def _leaves(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp):
        return _leaves(node.left) + _leaves(node.right)
    if isinstance(node, ast.UnaryOp):
        return _leaves(node.operand)
    return [node]


class _AnyName(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name("_", ast.Load())

    def visit_Attribute(self, node: ast.Attribute) -> ast.Name:
        return ast.Name("_", ast.Load())


def formula(node: ast.expr) -> str | None:
    """The formula ``node`` computes with its names replaced by ``_``, or None if it is not one."""
    if not isinstance(node, ast.BinOp):
        return None
    leaves = _leaves(node)
    if not all(isinstance(leaf, (ast.Name, ast.Attribute, ast.Constant)) for leaf in leaves):
        return None
    numbers = [
        leaf
        for leaf in leaves
        if isinstance(leaf, ast.Constant) and isinstance(leaf.value, (int, float)) and not isinstance(leaf.value, bool)
    ]
    if len(numbers) < 2 or len(leaves) - len(numbers) < 2:
        return None
    return ast.unparse(_AnyName().visit(copy.deepcopy(node)))


def distinctive_code(source: str, path: str, blocks=None) -> dict[str, Place]:
    """The distinctive lines and formulas of ``source`` (of its solution blocks, if ``blocks``)."""

    def wanted(first: int, last: int) -> bool:
        return blocks is None or any(block.begin < first and last < block.end for block in blocks)

    found: dict[str, Place] = {}
    for number, line in normalised_lines(source).items():
        if wanted(number, number) and is_distinctive_line(line):
            found.setdefault(f"line {line}", Place(path, number))
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.expr) and wanted(node.lineno, node.end_lineno) and (text := formula(node)):
            found.setdefault(f"formula {text}", Place(path, node.lineno))
    return found


@pytest.fixture(scope="module")
def solution_code() -> dict[str, Place]:
    """The distinctive code of every solution block of the reference solution."""
    found: dict[str, Place] = {}
    for path in student_modules(REPO_ROOT, handout_files()):
        source = (REPO_ROOT / path).read_text(encoding="utf-8")
        for key, place in distinctive_code(source, path, find_blocks(source, path)).items():
            found.setdefault(key, place)
    return found


def given_sources() -> dict[str, str]:
    """Path -> text of every Python file of the handout outside tests/, student modules as stubs."""
    files = [path for path in handout_files() if path.endswith(".py") and not path.startswith("tests/")]
    stubs = set(student_modules(REPO_ROOT, files))
    sources = {}
    for path in files:
        text = (REPO_ROOT / path).read_text(encoding="utf-8")
        sources[path] = strip_solutions(text, path) if path in stubs else text
    return sources


def copies(solution_code: dict[str, Place], sources: dict[str, str]) -> list[str]:
    """Each distinctive piece of solution code that appears in ``sources``, with both places."""
    found = []
    for path, source in sorted(sources.items()):
        for key, place in distinctive_code(source, path).items():
            if key in solution_code:
                found.append(f"{place}: {key} (the solution's {solution_code[key]})")
    return found


def test_there_is_distinctive_solution_code_to_look_for(solution_code):
    """The definitions find what they should: Part 2's FLOPs formula, and lines of several modules."""
    for piece in ("formula 2 * 4 * _ * _", "formula 2 * 2 * _ * _", "formula 2 * 3 * _ * _"):
        assert solution_code[piece].path == "cs288_lm/model.py", piece
    lines = {place.path for key, place in solution_code.items() if key.startswith("line ")}
    assert {"cs288_lm/model.py", "cs288_lm/bpe.py", "cs288_lm/tokenizer.py", "cs288_lm/sampling.py"} <= lines
    assert len(solution_code) > 100


def test_the_trainers_old_flops_formula_would_be_caught(solution_code):
    """The copy of count_flops_per_token that pretrain.py once had, with renamed variables."""
    found = copies(solution_code, {"cs288_lm/pipelines/pretrain.py": OLD_TRAINER_FLOPS})
    assert len(found) == 3, found
    assert all("cs288_lm/model.py" in message for message in found)
    # And a verbatim solution line pasted into given code.
    pasted = (
        "def count(model):\n"
        "    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)\n"
    )
    assert len(copies(solution_code, {"cs288_lm/pasted.py": pasted})) == 1


def test_given_code_repeats_no_solution_code(solution_code):
    found = copies(solution_code, given_sources())
    assert not found, "given code of the handout repeats solution code:\n" + "\n".join(found)
