"""Hostile predictions files: whatever bytes a student submits, parse_predictions returns the
predictions or raises a PredictionsError naming the file and the problem; never another exception,
which would fail the whole grade (a 5000-digit integer once raised ValueError, a deep list
RecursionError)."""

from __future__ import annotations

import codecs
import json
import os
import random
import re

import pytest

from cs288_lm.common.predictions import (
    MAX_BYTES,
    PredictionsError,
    load_predictions,
    parse_predictions,
    validate_predictions,
)

QUESTIONS = [
    {"id": "q0", "choices": ["a", "b", "c", "d"], "answer": 1},
    {"id": "q1", "choices": ["a", "b", "c", "d"], "answer": 3},
    {"id": "q2", "choices": ["a", "b"], "answer": 0},
]
EXPECTED = {"q0": 1, "q1": 0, "q2": 0}
VALID = json.dumps([{"id": qid, "prediction": p} for qid, p in EXPECTED.items()], indent=1).encode()
SOURCE = "finetuned_predictions.json"


def entries(*overrides: str) -> bytes:
    """A file whose first entries are ``overrides`` (raw JSON text) and the rest valid."""
    rest = [json.dumps({"id": qid, "prediction": p}) for qid, p in EXPECTED.items()]
    return ("[" + ", ".join([*overrides, *rest[len(overrides) :]]) + "]").encode()


def q0_predicts(literal: str) -> bytes:
    """A valid file but for the first prediction, written ``literal``."""
    return entries(f'{{"id": "q0", "prediction": {literal}}}')


HOSTILE = {
    "3 MiB": (b" " * ((3 << 20) - len(VALID)) + VALID, ["3,145,728 bytes", "at most 2,097,152"]),
    "empty": (b"", ["not valid JSON", "empty"]),
    "whitespace only": (b" \n\t\r\n", ["not valid JSON", "empty"]),
    "only a BOM": (codecs.BOM_UTF8, ["not valid JSON", "empty"]),
    "not UTF-8": (
        VALID.replace(b'"q1"', b'"q\xff1"'),
        ["line 7 column 11: byte 0xff is not UTF-8", "save it as UTF-8"],
    ),
    "truncated UTF-8": (VALID[:-1] + "é".encode()[:1], ["not UTF-8", "byte 0xc3"]),
    "encoded surrogate": (b'["\xed\xa0\x80"]', ["line 1 column 3: byte 0xed is not UTF-8"]),
    "UTF-16 with BOM": (VALID.decode().encode("utf-16"), ["cannot be read", "UTF-16", "save it as UTF-8"]),
    "UTF-16 without BOM": (VALID.decode().encode("utf-16-be"), ["UTF-16"]),
    "UTF-32": (VALID.decode().encode("utf-32"), ["UTF-32"]),
    "random bytes": (random.Random(0).randbytes(1000), ["is not UTF-8", "cannot be read"]),
    "missing colon": (
        b'[{"id": "q0",\n "prediction" 1}]',
        ["line 2 column 15: expected ':' after the key, found '1}]'"],
    ),
    "single quotes": (b"[{'id': 'q0'", ["line 1 column 3: single quotes: JSON strings and keys take double quotes"]),
    "trailing comma": (VALID[:-1] + b",]", ["line 14 column 2: trailing comma after the last item (not valid JSON)"]),
    "trailing comma, spaced": (VALID[:-1] + b",\n\n  ]", ["line 16 column 3: trailing comma after the last item"]),
    "trailing comma in an entry": (entries('{"id": "q0", "prediction": 1,}'), ["line 1 column 31: trailing comma"]),
    "missing comma": (entries('{"id": "q0" "prediction": 1}'), ["line 1 column 14: missing comma: expected ','"]),
    "missing comma between entries": (
        b'[{"id": "q0", "prediction": 1}\n{"id": "q1", "prediction": 0}]',
        ["line 2 column 1: missing comma: expected ',' or a closing bracket", 'found \'{"id": "q1",\''],
    ),
    "truncated": (VALID[:40], ["line 5 column 4: the file ends before the JSON is complete (is it truncated?)"]),
    "truncated in a string": (VALID[:-9], ["line 12 column 3: the file ends inside this string (is it truncated?)"]),
    "unquoted key": (b"[{id: 1}]", ["line 1 column 3: expected a key in double quotes", "found 'id: 1}]'"]),
    "Python True": (q0_predicts("True"), ["line 1 column 29: True is Python, not JSON: write true, false or null"]),
    "Python None": (b"None", ["line 1 column 1: None is Python"]),
    "bare word": (
        q0_predicts("one"),
        ["line 1 column 29: expected a value (a number, a string", "found 'one}, {\"id\":'"],
    ),
    "line break in a string": (b'[{"id": "q\n0"}]', ["line 1 column 11: a line break or control character"]),
    "bad escape": (b'[{"id": "q\\x0"}]', ["line 1 column 11: an invalid backslash escape"]),
    "two documents": (VALID + VALID, ["line 14 column 2: more text after the end of the list", "holds one JSON list"]),
    "100000 deep": (b"[" * 100_000 + b"]" * 100_000, ["line 1 column 21: brackets nested more than 20 deep"]),
    "deep in objects": (b'{"a":' * 50 + b"1" + b"}" * 50, ["nested more than 20 deep"]),
    "deep, unclosed": (b"[" * 100_000, ["nested more than 20 deep"]),
    "deep inside an entry": (entries('{"id": "q0", "prediction": 1, "x": ' + "[" * 30 + "]" * 30 + "}"), ["20 deep"]),
    "5000-digit integer": (
        q0_predicts("1" + "0" * 4999),
        ["line 1 column 29: an integer of 5,000 digits (1000000000...)"],
    ),
    "21-digit negative": (q0_predicts("-" + "9" * 21), ["21 digits"]),
    "long integer elsewhere": (
        entries('{"id": "q0", "prediction": 1, "score": "' + "7" * 30 + '", "x": ' + "7" * 25 + "}"),
        ["line 1 column 80: an integer of 25 digits"],  # the digits in the string before it are not a number
    ),
    "long integer in a float": (q0_predicts("1" * 30 + ".5"), ["prediction 1.111111111111111e+29 is not an integer"]),
    "NaN": (q0_predicts("NaN"), ["line 1 column 29: NaN is not a JSON number (not valid JSON)"]),
    "NaN after one in a string": (entries('{"id": "NaN", "prediction": NaN}'), ["line 1 column 30: NaN is not"]),
    "Infinity": (b"Infinity", ["line 1 column 1: Infinity is not a JSON number"]),
    "-Infinity": (q0_predicts("-Infinity"), ["line 1 column 29: -Infinity is not a JSON number"]),
    "duplicate key": (b'{"a":1,"a":2}', ["finetuned_predictions.json: an object has the key 'a' twice"]),
    "duplicate prediction key": (
        entries('{"id": "q0", "prediction": 1}', '{"id": "q1", "prediction": 1, "prediction": 2}'),
        ["line 1 column 33, entry 1: an object has the key 'prediction' twice; which one counts?"],
    ),
    "duplicate key nested in an entry": (
        entries('{"id": "q0", "prediction": 1, "x": [{"a": 1, "a": 1}]}'),
        ["line 1 column 2, entry 0: an object has the key 'a' twice"],
    ),
    "1e999": (b"1e999", ["expected a JSON list", "got a number with a fraction"]),
    "-0": (b"-0", ["expected a JSON list", "got an integer"]),
    "null": (b"null", ["expected a JSON list", "got null"]),
    "a string": (b'"[{\\"id\\": \\"q0\\", \\"prediction\\": 1}]"', ["expected a JSON list", "got a string"]),
    "an object": (json.dumps(EXPECTED).encode(), ["expected a JSON list", "got an object"]),
    "float prediction": (q0_predicts("1.0"), ["entry 0", "'q0'", "1.0 is not an integer"]),
    "huge exponent": (q0_predicts("1e999999999"), ["prediction inf is not an integer"]),
    "tiny exponent": (q0_predicts("1e-999999999"), ["prediction 0.0 is not an integer"]),
    "bool prediction": (q0_predicts("true"), ["prediction True is not an integer", "true/false"]),
    "string prediction": (entries('{"id": "q0", "prediction": "1"}'), ["prediction '1' is not an integer", "a string"]),
    "list prediction": (q0_predicts("[1]"), ["prediction [1] is not an integer", "a list"]),
    "null prediction": (q0_predicts("null"), ["prediction None is not an integer", "null"]),
    "integer id": (entries('{"id": 0, "prediction": 1}'), ["entry 0", "id 0 is an integer", "id is a string"]),
    "bool id": (entries('{"id": true, "prediction": 1}'), ["id True is true/false"]),
    "float id": (entries('{"id": 0.0, "prediction": 1}'), ["id 0.0 is a number"]),
    "list id": (entries('{"id": ["q0"], "prediction": 1}'), ["id ['q0'] is a list"]),
    "object id": (entries('{"id": {"q0": 1}, "prediction": 1}'), ["id {'q0': 1} is an object"]),
    "long id": (entries(json.dumps({"id": "q" * 100_000, "prediction": 1})), ["is not a test question"]),
    "entry not an object": (
        entries('["q0", 1]'),
        ["line 1 column 2, entry 0: expected an object with 'id' and 'prediction', got ['q0', 1]"],
    ),
    "entry without prediction": (
        entries('{"id": "q0"}'),
        ["entry 0: expected an object with 'id' and 'prediction', got {'id': 'q0'}"],
    ),
    "out of range": (q0_predicts("4"), ["line 1 column 2, entry 0 (id 'q0'): prediction 4 is outside 0..3"]),
    "negative": (q0_predicts("-1"), ["prediction -1 is outside 0..3"]),
    "out of range, two choices": (
        VALID.replace(b"0\n }\n]", b"2}]"),
        ["line 10 column 2, entry 2 (id 'q2'): prediction 2 is outside 0..1"],
    ),
    "duplicated id": (
        entries(*['{"id": "q0", "prediction": 1}'] * 2),
        ["line 1 column 33, entry 1: id 'q0' appears more than once"],
    ),
    "missing id": (b'[{"id": "q0", "prediction": 1}]', [": 2 question(s) have no prediction: 'q1', 'q2'"]),
    "extra id": (
        VALID[:-1] + b', {"id": "q9", "prediction": 0}]',
        ["line 14 column 3, entry 3: id 'q9' is not a test question"],
    ),
    "empty list": (b"[]", ["3 question(s) have no prediction"]),
}


@pytest.mark.parametrize(("data", "fragments"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_files_are_prediction_errors_naming_the_problem(data, fragments):
    """Each message starts with the file, then where (line and column, and the entry) when there is a where."""
    with pytest.raises(PredictionsError) as error:
        parse_predictions(data, QUESTIONS, source=SOURCE)
    message = str(error.value)
    assert re.match(rf"{re.escape(SOURCE)}( line \d+ column \d+(, entry \d+( \(id '\w+'\))?)?)?: ", message), message
    assert all(fragment in message for fragment in fragments), message
    assert len(message) < 300, message  # quotes of the submitted file are cut short


@pytest.mark.parametrize("prefix", [b"", codecs.BOM_UTF8], ids=["plain", "BOM"])
def test_a_valid_file_parses(prefix):
    assert parse_predictions(prefix + VALID, QUESTIONS, source=SOURCE) == EXPECTED
    # -0 is the JSON integer 0; other fields of an entry are ignored
    data = entries('{"id": "q0", "prediction": 1, "score": [0.5, {"x": null}]}', '{"id": "q1", "prediction": -0}')
    assert parse_predictions(prefix + data, QUESTIONS, source=SOURCE) == EXPECTED


def test_max_bytes_is_the_files_limit():
    assert len(VALID) < 1000 < MAX_BYTES
    assert parse_predictions(VALID, QUESTIONS, source=SOURCE, max_bytes=len(VALID)) == EXPECTED
    with pytest.raises(PredictionsError, match="at most"):
        parse_predictions(VALID, QUESTIONS, source=SOURCE, max_bytes=len(VALID) - 1)


def test_integer_ids_are_accepted_when_the_questions_use_them():
    questions = [{**question, "id": index} for index, question in enumerate(QUESTIONS)]
    data = b'[{"id": 0, "prediction": 1}, {"id": 1, "prediction": 0}, {"id": 2, "prediction": 0}]'
    assert parse_predictions(data, questions, source=SOURCE) == {"0": 1, "1": 0, "2": 0}
    with pytest.raises(PredictionsError, match="id '0' is a string, but a test question's id is an integer"):
        parse_predictions(data.replace(b'"id": 0', b'"id": "0"'), questions, source=SOURCE)


def test_load_predictions_runs_the_same_checks(tmp_path):
    path = tmp_path / SOURCE
    path.write_bytes(codecs.BOM_UTF8 + VALID)
    assert load_predictions(path, QUESTIONS) == EXPECTED
    path.write_bytes(b"[" * 100_000)
    with pytest.raises(PredictionsError, match="nested more than 20 deep") as error:
        load_predictions(path, QUESTIONS)
    assert str(path) in str(error.value)


def test_validate_predictions_survives_hostile_python_values():
    """Values no JSON file can produce (the parser's limits come first) still give short messages."""
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    cases = [
        ([{"id": "q0", "prediction": 10**5000}], "prediction <int too long to show> is outside 0..3"),
        ([{"id": "q0", "prediction": [10**5000]}], "prediction <list too long to show> is not an integer"),
        ([deep], "entry 0: expected an object"),
        ([{"id": deep, "prediction": 1}], "is a list"),
    ]
    for records, fragment in cases:
        with pytest.raises(PredictionsError, match=fragment):
            validate_predictions(records, QUESTIONS, source=SOURCE)


def test_random_damage_to_a_valid_file_is_only_ever_a_prediction_error():
    rng = random.Random(0)
    pieces = [b"[", b"]", b"{", b"}", b'"', b"\\", b"\xff", b"\x00", b"1e999", b"NaN", b"-", b"9" * 30, b",", b":"]
    pieces += [b"true", b"null", b"1.0", b"\xef\xbb\xbf", b"\n", b"[" * 50, b'"q0"', b'"prediction"']
    outcomes = {"valid": 0, "rejected": 0}
    for _ in range(1000):
        data = bytearray(VALID)
        for _ in range(rng.randint(1, 4)):
            start = rng.randrange(len(data) + 1)
            data[start : start + rng.choice([0, 0, 1, 5])] = rng.choice(pieces + [b""])
        try:
            assert parse_predictions(bytes(data), QUESTIONS, source=SOURCE) == EXPECTED, bytes(data)
            outcomes["valid"] += 1
        except PredictionsError as error:
            assert str(error).startswith(SOURCE)
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 900, outcomes


def test_a_trailing_comma_in_a_long_one_line_file_is_named_with_its_column():
    """The issue's file: one line of 417 entries ending ``},]``; the message says where and what."""
    questions = [{"id": f"q{k}", "choices": ["a", "b", "c", "d"]} for k in range(417)]
    data = json.dumps([{"id": f"q{k}", "prediction": k % 4} for k in range(417)]).encode()
    data = data[:-1] + b",]"
    with pytest.raises(PredictionsError) as error:
        parse_predictions(data, questions, source=SOURCE)
    assert (
        str(error.value) == f"{SOURCE} line 1 column {len(data)}: trailing comma after the last item (not valid JSON)"
    )


def test_an_error_deep_in_a_large_file_names_its_entry_quickly():
    """The entry's line and column are found only for the error: a 2 MB file with a bad last entry."""
    count = 25_000
    questions = [{"id": f"q{k}", "choices": ["a", "b", "c", "d"]} for k in range(count)]
    records = [{"id": f"q{k}", "prediction": k % 4} for k in range(count)]
    records[-1]["prediction"] = 7
    data = json.dumps(records, indent=1).encode()
    assert len(data) < MAX_BYTES
    with pytest.raises(PredictionsError) as error:
        parse_predictions(data, questions, source=SOURCE)
    line = 4 * (count - 1) + 2  # "[" then 4 lines per entry
    assert str(error.value).startswith(
        f"{SOURCE} line {line} column 2, entry {count - 1} (id 'q{count - 1}'): prediction 7"
    )


def test_a_pipe_or_a_folder_is_refused_without_reading_and_binary_is_not_called_utf16(tmp_path):
    """A named pipe would block a read forever; random bytes are not UTF-16 text."""
    pipe = tmp_path / "finetuned_predictions.json"
    os.mkfifo(pipe)
    for path in (pipe, tmp_path):
        with pytest.raises(PredictionsError, match="not a regular file"):
            load_predictions(path, QUESTIONS)
    binary = bytes([0x8F, 0x00, 0x41, 0x9C, 0x00, 0x00, 0x12, 0x7F])  # a NUL early, but not every other byte
    with pytest.raises(PredictionsError) as error:
        parse_predictions(binary, QUESTIONS, source="x.json")
    assert "UTF-16" not in str(error.value) and "not UTF-8" in str(error.value)
    with pytest.raises(PredictionsError, match="looks like UTF-16"):
        parse_predictions("[]".encode("utf-16-le"), QUESTIONS, source="x.json")
