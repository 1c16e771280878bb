"""The problems of the assignment, from their two halves: what students may see and what they may not.

The handout's ``configs/grading.json`` (``"problems"``) says which public tests belong to each
problem: its public test modules and a pattern on test names, the first problem that matches
taking a test (``tests/problems.py``, which is also what ``pytest --problem NAME`` runs). This
folder's ``grading_config.json`` adds, under the same names in the same order, what only the grader
knows: the part, the public and hidden points, the hidden test modules, and the problems each one
builds on (``depends_on``: when one of those fails too, the feedback says to fix it first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

GRADER_KEYS = ("name", "part", "public", "hidden", "hidden_modules")  # every grader half has these
SHIPPED_KEYS = ("name", "modules")  # every shipped half has these (and "tests", a pattern, unless it takes every test)


def grading_problems(config: Mapping, rules: Mapping) -> list[dict]:
    """Each problem whole: the shipped half of ``rules`` (``configs/grading.json``) with the grader's
    half of ``config`` (``grading_config.json``), ``modules`` holding its public then hidden test modules."""
    grader, shipped = list(config["problems"]), list(rules.get("problems", []))
    names, shipped_names = [p.get("name") for p in grader], [p.get("name") for p in shipped]
    if names != shipped_names:
        raise ValueError(
            f"grading_config.json and {config['rules']} must name the same problems in the same order:"
            f" {names} vs {shipped_names}"
        )
    problems = []
    for own, public in zip(grader, shipped, strict=True):
        missing = [key for key in GRADER_KEYS if key not in own] + [key for key in SHIPPED_KEYS if key not in public]
        if missing:
            raise ValueError(f"problem {own['name']} has no {', '.join(missing)}")
        whole = {key: value for key, value in own.items() if key != "hidden_modules"}
        whole["modules"] = [*public["modules"], *own["hidden_modules"]]
        if "tests" in public:
            whole["tests"] = public["tests"]
        whole["depends_on"] = list(own.get("depends_on", []))
        problems.append(whole)
    check_dependencies(problems)
    return problems


def check_dependencies(problems: Sequence[Mapping]) -> None:
    """Every ``depends_on`` names another problem, and no problem depends on itself through others."""
    graph = {problem["name"]: list(problem.get("depends_on", [])) for problem in problems}
    for name, needs in graph.items():
        unknown = [need for need in needs if need not in graph or need == name]
        if unknown:
            raise ValueError(f"problem {name} depends on {', '.join(unknown)}, which is not another problem")
    for name, needs in graph.items():
        if name in dependencies(name, graph):
            raise ValueError(f"problem {name} depends on itself (through {', '.join(needs)})")


def dependencies(name: str, graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Every problem ``name`` builds on, directly or through others, nearest first."""
    found: list[str] = []
    frontier = list(graph.get(name, ()))
    while frontier:
        need = frontier.pop(0)
        if need not in found:
            found.append(need)
            frontier += graph.get(need, ())
    return found


def with_problems(config: Mapping, rules: Mapping) -> dict:
    """``config`` with its problems whole (what the grading bundle's ``grading_config.json`` holds)."""
    return {**config, "problems": grading_problems(config, rules)}
