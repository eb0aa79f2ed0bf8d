"""Rebuild src/asr_peft/data/synthetic/sentences.txt from WordNet 3.0's example sentences.

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb wn
    python scripts/extract_wordnet_sentences.py wn/usr/share/wordnet > src/asr_peft/data/synthetic/sentences.txt

Keeps quoted usage examples of 3-15 words whose every word is among the most frequent words of all
examples, so that a small model can learn the vocabulary; lower-cased, punctuation removed.
"""

import collections
import re
import sys
from pathlib import Path

MIN_WORDS, MAX_WORDS, VOCABULARY, LIMIT = 3, 15, 3000, 9000


def examples(wordnet_dir: Path):
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet_dir / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header
            for quoted in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                text = re.sub(r"[^a-z' ]+", " ", quoted.lower().replace("-", " "))
                words = [w.strip("'") for w in text.split() if w.strip("'")]
                if MIN_WORDS <= len(words) <= MAX_WORDS and all(re.fullmatch(r"[a-z]+('[a-z]+)?", w) for w in words):
                    yield " ".join(words)


def main() -> None:
    sentences = sorted(set(examples(Path(sys.argv[1]))))
    counts = collections.Counter(w for s in sentences for w in s.split())
    common = {w for w, _ in counts.most_common(VOCABULARY)}
    kept = [s for s in sentences if all(w in common for w in s.split())]
    print("\n".join(kept[:LIMIT]))


if __name__ == "__main__":
    main()
