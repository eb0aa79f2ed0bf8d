"""WER/CER against hand-counted errors, and the text normalisers on hand-written cases."""

from __future__ import annotations

import shutil

import pytest

from asr_peft.data.normalizers import get_normalizer
from asr_peft.errors import ConfigError
from asr_peft.evaluation.sclite import sclite_word_errors
from asr_peft.evaluation.trn import write_trn
from asr_peft.evaluation.wer import error_rates

identity = get_normalizer("none")


def test_wer_hand_computed():
    # "sat"->"sit" is 1 substitution, the second "the" is 1 deletion: 2 errors over 6 words.
    rates = error_rates(["the cat sat on the mat"], ["the cat sit on mat"], identity)
    assert rates["wer"] == pytest.approx(2 / 6)
    assert (rates["substitutions"], rates["deletions"], rates["insertions"], rates["num_words"]) == (1, 1, 0, 6)


def test_wer_is_corpus_level_not_a_mean_of_utterances():
    # 1 error in 1 word + 0 errors in 3 words = 1/4, not (1 + 0) / 2.
    rates = error_rates(["yes", "a b c"], ["no", "a b c"], identity)
    assert rates["wer"] == pytest.approx(0.25)


def test_cer_hand_computed():
    # "kitten" -> "sitting": k->s, e->i, +g = 3 edits over 6 characters.
    assert error_rates(["kitten"], ["sitting"], identity)["cer"] == pytest.approx(3 / 6)


def test_normaliser_applies_to_both_sides_and_empty_references_are_counted():
    whisper = get_normalizer("whisper_basic")
    rates = error_rates(["Hello, World!", "[noise]"], ["hello world", "uh"], whisper)
    assert rates["wer"] == 0.0 and rates["num_utterances"] == 1 and rates["num_empty_references"] == 1
    with pytest.raises(ValueError):
        error_rates(["a"], [], identity)


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("whisper_basic", "Hello, World! (laughs) It's [noise] fine.", "hello world it s fine"),
        ("whisper_basic", "Café—au lait", "café au lait"),
        # CGN: a marker before sentence punctuation, reduced forms keep the apostrophe, a quoted word, latin-1 letters.
        ("cgn", "'t is goed*v. zo'n 'dinge' één café Xxx", "'t is goed zo'n dinge één café"),
        ("none", "  Keep   As Is. ", "Keep As Is."),
    ],
)
def test_normalisers(name, text, expected):
    assert get_normalizer(name)(text) == expected


def test_whisper_english_is_whispers_english_normaliser_from_transformers():
    """Whisper's rules (fillers, contractions, titles, numbers as digits, currency) on a hand-written case;
    British spellings stay as they are (transformers does not ship Whisper's spelling list)."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    from asr_peft.data.normalizers import _whisper_english_normalizer

    normalise = get_normalizer("whisper_english")
    assert (
        normalise("Mr. Smith won't pay twenty five dollars, uh, for the second one.")
        == "mister smith will not pay $25 for the 2nd one"
    )
    assert normalise("Hmm, she's gonna read one hundred and one books (laughs).") == "she is going to read 101 books"
    assert normalise("The colour is grey [noise]") == "the colour is grey"
    assert isinstance(_whisper_english_normalizer(), EnglishTextNormalizer)  # the maintained class, not a copy


# ESPnet's MyST recipe (local/text_preprocess.py), worked through by hand rule by rule: markup (incl.
# "+...+" and nested parentheses) removed, every digit run spelled by inflect ("and", hyphens), then
# "&", hyphens, "/", clitics (upper-case only, before upper-casing), punctuation, upper case.
@pytest.mark.parametrize(
    "text, expected",
    [
        ("um so the <no-signal> (( )) frog, uh, JUMPED... it's", "UM SO THE FROG UH JUMPED IT'S"),  # fillers stay
        ("They 're making 25 circuits, uh, right?", "THEY 'RE MAKING TWENTYFIVE CIRCUITS UH RIGHT"),
        ("THEY 'RE at 3 & 125 m[NOISE] {laugh} ((maybe)) +um+ ok", "THEY'RE AT THREE AND ONE HUNDRED AND TWENTYFIVE M OK"),
        ("1,000 or 2.5 or 50% on the 3rd", "ONEZERO OR TWOFIVE OR FIFTY% ON THE THREERD"),  # digit runs, one by one
        (
            "the well-known lab/room: I 'M 'CAUSE 'EM it\u2019s \u2013 yes; no! +UH",
            "THE WELLKNOWN LAB SLASH ROOM I'M CAUSE EM IT'S YES NO",
        ),
        ("in 2014 we had 0 or 1000000", "IN TWO THOUSAND AND FOURTEEN WE HAD ZERO OR ONE MILLION"),
    ],
)
def test_myst_normaliser_follows_the_recipe(text, expected):
    assert get_normalizer("myst")(text) == expected


def test_unknown_normaliser_names_the_key():
    with pytest.raises(ConfigError, match="data.normalizer"):
        get_normalizer("klingon")


def test_trn_lines(tmp_path):
    write_trn(tmp_path / "h.trn", ["spk1-u1", "u2"], ["hello  world", ""], ["spkA", None])
    assert (tmp_path / "h.trn").read_text() == "hello world (spkA-spk1-u1)\n (u2-u2)\n"


SCLITE_PAIRS = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("één café alstublieft", "een café alstublieft"),
    ("hello world", "hello big world"),
    ("a b c d", "b c"),
    ("we need two batteries", ""),
    ("one more line here", "one more line here"),
]


@pytest.mark.skipif(not (shutil.which("sclite") or shutil.which("sctk")), reason="NIST sclite (sctk) is not installed")
def test_sclite_agrees_with_jiwer_on_the_same_trn_files(tmp_path):
    refs, hyps = [r for r, _ in SCLITE_PAIRS], [h for _, h in SCLITE_PAIRS]
    ids = [f"spk{i % 2}-utt{i}" for i in range(len(SCLITE_PAIRS))]
    write_trn(tmp_path / "ref.trn", ids, refs)
    write_trn(tmp_path / "hyp.trn", ids, hyps)
    ours = error_rates(refs, hyps, get_normalizer("none"))
    theirs = sclite_word_errors(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    # By hand: 1 sub; 1 sub; 1 ins; 2 del; 4 del; 0 -> 2 sub, 6 del, 1 ins over 23 words.
    assert (theirs["substitutions"], theirs["deletions"], theirs["insertions"], theirs["num_words"]) == (2, 6, 1, 23)
    assert {k: ours[k] for k in theirs} == theirs


def test_sclite_missing_is_a_config_error_naming_the_key(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="evaluation.sclite"):
        sclite_word_errors("ref.trn", "hyp.trn")
