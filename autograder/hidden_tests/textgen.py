"""Text for the hidden tests: seeded generators of awkward text (multilingual, code-like, odd
whitespace) and the TinyStories text that no public test reads."""

from __future__ import annotations

import random

from tests.common import DATA, EOT

# The public tests train on and compare encodings of at most the first 200 KB of train.txt: its
# last stories are new to them (they stand in for the QA held-out split, which tests must not read).
UNSEEN_STORIES_BYTES = 156_000


def unseen_stories_text(num_bytes: int = UNSEEN_STORIES_BYTES) -> str:
    """The end of ``train.txt`` from the first story boundary in its last ``num_bytes`` bytes.

    About 200 whole stories (156 KB) in the file's own layout, each followed by an
    ``<|endoftext|>`` line: real TinyStories text that the public tests never read.
    """
    data = (DATA / "train.txt").read_bytes()
    separator = f"{EOT}\n".encode()
    start = data.rfind(separator, 0, len(data) - num_bytes) + len(separator)
    return data[start:].decode("utf-8")


def unseen_stories(num_bytes: int = UNSEEN_STORIES_BYTES) -> list[str]:
    """The stories of :func:`unseen_stories_text`, each without its ``<|endoftext|>`` line."""
    return [story.strip("\n") for story in unseen_stories_text(num_bytes).split(EOT) if story.strip()]


WORDS = [
    # plain and accented Latin, with combining marks
    "the",
    "The",
    "cat",
    "sat",
    "on",
    "mat",
    "Hello",
    "world",
    "café",
    "naïve",
    "Zürich",
    "façade",
    "résumé",
    "e\u0301te\u0301",
    "a\u0308rger",
    "man\u0303ana",
    "ÆSIR",
    "straße",
    "İstanbul",
    # other scripts
    "привет",
    "мир",
    "λόγος",
    "Ελλάδα",
    "مرحبا",
    "العربية",
    "שלום",
    "नमस्ते",
    "हिन्दी",
    "ภาษาไทย",
    "中文",
    "字符测试",
    "日本語",
    "のテキスト",
    "한국어",
    "ㅋㅋㅋ",
    # emoji, including multi-code-point sequences
    "🙂",
    "🚀🚀",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "🇫🇷",
    "❤️",
    "🤖",
    # numbers in several scripts
    "0",
    "7",
    "42",
    "2024",
    "3.14",
    "1,000,000",
    "٣٤٥",
    "१२३",
    "½",
    "Ⅻ",
    "x²",
    # contractions, including ones the GPT-2 pattern does not treat specially
    "I'll",
    "we've",
    "they're",
    "can't",
    "it's",
    "I'm",
    "he'd",
    "'ll",
    "'s",
    "WE'LL",
    "it’s",
    "o'clock",
    "'''",
    "''",
    # punctuation and symbols
    "!",
    "?!",
    "...",
    "—",
    "«",
    "»",
    "(",
    ")",
    "{}",
    "[]",
    "<",
    ">",
    "|",
    "<|",
    "|>",
    "#",
    "@",
    "$",
    "%",
    "&&",
    "->",
    "=>",
    "::",
    "\\",
    "/",
    "*",
    "~",
    "`",
    "^",
    "_",
    "__init__",
    "x_1",
]

SPACES = [
    " ",
    " ",
    " ",
    " ",
    " ",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n",
    "\n ",
    "\x0b",
    "\x0c",
    "\u00a0",
    "\u2028",
    "\u3000",
    " \t ",
    "",
    "",
    "",
]


def random_text(
    rng: random.Random, items: int, specials: list[str] | tuple[str, ...] = (), special_rate: float = 0.02
) -> str:
    """``items`` random words joined by random whitespace, with special tokens sprinkled in.

    Words are drawn with Zipf-like weights so that pairs repeat and BPE has something to learn.
    """
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(WORDS))]
    order = WORDS[:]
    rng.shuffle(order)
    parts = []
    for _ in range(items):
        if specials and rng.random() < special_rate:
            parts.append(rng.choice(specials))
        else:
            parts.append(rng.choices(order, weights)[0])
        parts.append(rng.choice(SPACES))
    return "".join(parts)


CODE_LINES = [
    "def {name}(self, {arg}: int = {num}) -> list[int]:",
    "    return [{arg} ** 2 for {arg} in range({num})]  # squares",
    "\tif {arg} != {num} and not {name}({arg}):",
    '\t\traise ValueError(f"bad {{{arg}!r}}")',
    "class {Name}({Name}Base):",
    "    '''Docstring with 'quotes' and \"double quotes\".'''",
    "{arg}_{num} = {{'key': [{num}, {num}.5, -{num}e-3], \"x\": None}}",
    "for (i, j) in zip({arg}, {arg}[1:]):  {arg} += i*j;",
    "#include <stdio.h>",
    'int main(void) {{ printf("%d\\n", {num}); return 0; }}',
    "    x = a  +  b\t# tab",
    "",
    "   ",
    '<div class="{name}">&nbsp;{Name} &amp; co</div>',
    "SELECT * FROM {name} WHERE id >= {num};",
    "$ ls -la | grep '{name}' > out.txt 2>&1",
]

CODE_NAMES = ["foo", "bar", "baz", "qux", "spam", "eggs", "tokenize", "encode", "decode", "merge"]


def random_code(rng: random.Random, lines: int, newline: str = "\n") -> str:
    """Python/C/HTML-like lines with indentation, tabs, brackets and quotes."""
    out = []
    for _ in range(lines):
        name, arg = rng.choice(CODE_NAMES), rng.choice(CODE_NAMES)
        number = rng.randint(0, 10 ** rng.randint(1, 6))
        out.append(rng.choice(CODE_LINES).format(name=name, Name=name.capitalize(), arg=arg, num=number))
    return newline.join(out) + newline
