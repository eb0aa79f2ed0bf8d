"""The corpus's data card: card.json (for programs) and CARD.md (for people).

Besides what was asked for (voices, ranges, transforms, split sizes) the card reports what came out,
measured on the paired test sets: median F0 (YIN over loud frames) and median spectral centroid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile

from asr_peft.data.synthetic import engines
from asr_peft.data.synthetic.render import SAMPLE_RATE, Rendering
from asr_peft.data.synthetic.text import MAX_WORDS, MIN_WORDS, VOCABULARY, load_sentences
from asr_peft.data.synthetic.voices import ADULT_TRACT_CM, DEFAULT_WPM, domains

MEASURED_UTTERANCES = 60  # per domain: enough for a stable median, seconds to compute


def acoustics(paths: list[Path]) -> dict:
    """Median over utterances of each one's median F0 and spectral centroid over its loud frames."""
    import librosa  # slow to import; only the card needs it

    f0s, centroids = [], []
    for path in paths:
        samples, rate = soundfile.read(path, dtype="float32")
        f0 = librosa.yin(samples, fmin=60, fmax=600, sr=rate, frame_length=1024, hop_length=256)
        centroid = librosa.feature.spectral_centroid(y=samples, sr=rate, n_fft=1024, hop_length=256)[0]
        rms = librosa.feature.rms(y=samples, frame_length=1024, hop_length=256)[0]
        n = min(len(f0), len(centroid), len(rms))
        loud = rms[:n] > 0.3 * rms.max()
        f0s.append(float(np.median(f0[:n][loud])))
        centroids.append(float(np.median(centroid[:n][loud])))
    return {"median_f0_hz": round(float(np.median(f0s)), 1), "median_centroid_hz": round(float(np.median(centroids)), 1),
            "utterances": len(paths)}


def write_card(out_dir: Path, wanted: dict, planned: dict[str, list[Rendering]], durations: list[float]) -> None:
    from asr_peft.data.synthetic.corpus import LEVEL_DBFS, SNR_DB, SPLITS, utterance_id

    splits, index = {}, 0
    for split in SPLITS:
        specs = planned[split.name]
        seconds = sum(durations[index: index + len(specs)])
        index += len(specs)
        splits[split.name] = {"domain": split.domain, "utterances": len(specs), "hours": round(seconds / 3600, 3),
                              "distinct_sentences": len({s.text for s in specs}),
                              "words": sum(len(s.text.split()) for s in specs),
                              "speakers": len({s.draw.voice.speaker for s in specs})}
    measured = {}
    for split in SPLITS:
        if split.pool == "test":
            count = min(MEASURED_UTTERANCES, len(planned[split.name]))
            measured[split.domain] = acoustics(
                [out_dir / "audio" / split.name / f"{utterance_id(split.name, i)}.flac" for i in range(count)])
    domain_specs = {
        name: {"voices": [v.speaker for v in d.voices], "f0_hz": d.f0_hz, "tempo": d.tempo,
               "child_vocal_tract_cm": d.tract_cm,
               "formant_scaling_alpha": ({sex: [round(length / d.tract_cm[1], 3), round(length / d.tract_cm[0], 3)]
                                          for sex, length in ADULT_TRACT_CM.items()} if d.tract_cm else None)}
        for name, d in domains(wanted["flite"]).items()}
    card = {
        "settings": wanted, "sample_rate": SAMPLE_RATE, "audio": "FLAC, 16-bit PCM, mono",
        "engines": {"espeak-ng": engines.espeak_version(), "flite": engines.flite_version() if wanted["flite"] else None},
        "text": {"source": "Princeton WordNet 3.0 usage examples (SENTENCES_LICENSE.txt)",
                 "sentences_available": len(load_sentences()), "words_per_sentence": [MIN_WORDS, MAX_WORDS],
                 "vocabulary": f"the {VOCABULARY} most frequent example words",
                 "spelling": "lower case a-z, apostrophes inside words, no other punctuation"},
        "domains": domain_specs,
        "transforms": {"vtlp_warp": "resample to 16000/alpha Hz, read at 16000 Hz (child only)",
                       "tempo_reference_wpm": DEFAULT_WPM, "trim": "silence below -40 dB of peak, 0.1 s kept",
                       "level_dbfs_rms": LEVEL_DBFS, "white_noise_snr_db": SNR_DB},
        "splits": splits, "measured_on_test_sets": measured,
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    (out_dir / "CARD.md").write_text(markdown(card), encoding="utf-8")


def markdown(card: dict) -> str:
    s = card["settings"]
    split_rows = "\n".join(f"| {name} | {v['domain']} | {v['utterances']} | {v['hours']:.2f} | {v['distinct_sentences']} | "
                           f"{v['speakers']} |" for name, v in card["splits"].items())
    domain_rows = "\n".join(
        f"- **{name}**: {len(d['voices'])} voices ({', '.join(d['voices'][:4])}, ...); F0 {d['f0_hz']} Hz; tempo "
        f"{d['tempo']} x {card['transforms']['tempo_reference_wpm']} wpm"
        + (f"; vocal tract {d['child_vocal_tract_cm']} cm, formant scaling alpha {d['formant_scaling_alpha']}"
           if d["child_vocal_tract_cm"] else "")
        for name, d in card["domains"].items())
    measured_rows = "\n".join(f"| {name} | {m['median_f0_hz']} | {m['median_centroid_hz']} | {m['utterances']} |"
                              for name, m in card["measured_on_test_sets"].items())
    engines = ", ".join(f"{k} {v}" for k, v in card["engines"].items() if v)
    return f"""# Synthetic domain-shift corpus

Generated by `python -m asr_peft.data.synthetic` (generator {s['generator_version']}, seed {s['seed']},
scale {s['scale']}, settings hash {s['hash']}) with {engines}. {card['audio']}, {card['sample_rate']} Hz.

Text: {card['text']['source']}; {card['text']['sentences_available']} sentences of
{card['text']['words_per_sentence'][0]}-{card['text']['words_per_sentence'][1]} words from {card['text']['vocabulary']};
spelling: {card['text']['spelling']}.

## Domains (targets after the warp; ranges and their sources: `asr_peft/data/synthetic/voices.py`)

{domain_rows}

Every utterance: silence trimmed, RMS level {card['transforms']['level_dbfs_rms']} dBFS, white noise at
SNR {card['transforms']['white_noise_snr_db']} dB.

## Splits

| split | domain | utterances | hours | distinct sentences | voices |
|---|---|---|---|---|---|
{split_rows}

Dev and test sets are paired (the same sentences in every domain); no dev or test sentence occurs in a
training split.

## Measured on the test sets

| domain | median F0 (Hz) | median spectral centroid (Hz) | utterances |
|---|---|---|---|
{measured_rows}

Synthetic speech differs between domains in pitch, formants, tempo and rule-based accent only: no
disfluencies, no child language. Only relative effects are meant to transfer to real data.
"""
