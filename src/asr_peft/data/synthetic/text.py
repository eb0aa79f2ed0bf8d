"""The corpus's text: real English sentences, their spelling policy, and held-out sentence pools.

`sentences.txt` holds usage examples from Princeton WordNet 3.0 (licence: `SENTENCES_LICENSE.txt`),
rebuilt by `python -m asr_peft.data.synthetic.text /usr/share/wordnet > sentences.txt` from the
Debian package `wordnet-base`. Kept: quoted examples of 3-15 words made of letters only (an example
with a digit or an unusual symbol is dropped, never repaired into a different sentence) whose every
word is among the `VOCABULARY` most frequent example words, so that a small model can learn them.

Spelling policy (what the model is asked to output): lower case a-z, apostrophes inside words
(``don't``, ``mother's``), hyphens read as word breaks, no other punctuation, single spaces. The
`whisper_basic` scoring normaliser maps this text to itself except that apostrophes become spaces,
on references and hypotheses alike.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import numpy as np

SENTENCES = Path(__file__).with_name("sentences.txt")
MIN_WORDS, MAX_WORDS, VOCABULARY = 3, 15, 4000
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# What a usage example may contain before it is normalised; anything else (digits, slashes, brackets,
# ellipses, accented letters) disqualifies it.
ALLOWED = re.compile(r"[A-Za-z ,.;:!?'\-]+")


def normalise(example: str) -> str | None:
    """The example in the corpus's spelling, or None when it is not a usable sentence."""
    example = example.strip().replace("--", " ")
    if not ALLOWED.fullmatch(example):
        return None
    words = re.sub(r"[,.;:!?\-]+", " ", example.lower()).split()
    words = [w.strip("'") for w in words]
    if not MIN_WORDS <= len(words) <= MAX_WORDS or not all(WORD.fullmatch(w) for w in words):
        return None
    return " ".join(words)


def wordnet_examples(wordnet_dir: Path) -> list[str]:
    """Every normalised quoted usage example of WordNet's data files, deduplicated and sorted."""
    found = set()
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet_dir / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header
            for quoted in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                sentence = normalise(quoted)
                if sentence is not None:
                    found.add(sentence)
    return sorted(found)


def common_word_sentences(sentences: list[str], vocabulary: int = VOCABULARY) -> list[str]:
    """The sentences whose every word is among the `vocabulary` most frequent words of all of them."""
    counts = collections.Counter(w for s in sentences for w in s.split())
    common = {w for w, _ in counts.most_common(vocabulary)}
    return [s for s in sentences if all(w in common for w in s.split())]


def load_sentences() -> list[str]:
    """The shipped sentences, in file order."""
    return [line for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line]


def hold_out(sentences: list[str], count: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Draw `count` held-out sentences (for dev and test) and return (held_out, training).

    A sentence is held out only if every one of its words still occurs in another sentence that is not
    held out, so held-out sets contain no word the training text lacks (a small model cannot spell a
    word it never heard).
    """
    remaining = collections.Counter(w for s in sentences for w in s.split())
    held, training = [], []
    for index in rng.permutation(len(sentences)):
        sentence = sentences[index]
        own = collections.Counter(sentence.split())
        if len(held) < count and all(remaining[w] > n for w, n in own.items()):
            held.append(sentence)
            remaining.subtract(own)
        else:
            training.append(sentence)
    return held, training


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m asr_peft.data.synthetic.text WORDNET_DIR > sentences.txt")
    print("\n".join(common_word_sentences(wordnet_examples(Path(sys.argv[1])))))


if __name__ == "__main__":
    main()
