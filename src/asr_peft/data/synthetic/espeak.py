"""espeak-ng, the synthesiser of the offline corpus: its command, or its library where there is no command.

- The `espeak-ng` command (Debian: `apt-get install espeak-ng`) is used whenever it is on the PATH;
  the shipped corpus and checkpoint were made with it.
- Without it (no root), libespeak-ng is called through ctypes: from the PyPI package
  `espeakng-loader`, which bundles the library and its voice data, or else from the system. Its
  version may differ from the system's command, so a corpus made this way is equivalent, not
  bit-identical. The library keeps state from one utterance to the next (its pitch-flutter phase,
  for one), so each utterance is spoken in a child forked from a process whose library is
  initialised but has never spoken: the same call gives the same samples in any worker, in any order.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache

import numpy as np
import soundfile

from asr_peft.errors import DataError

INSTALL_HINT = "apt-get install espeak-ng, or without root: pip install espeakng-loader (see README)"
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1
_RATE, _PITCH = 1, 3  # espeak_PARAMETER values
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def synthesise(text: str, voice: str, pitch: int, rate: int) -> tuple[np.ndarray, int]:
    """float32 samples in [-1, 1] and their sample rate; `pitch` 0-99, `rate` in words per minute."""
    if shutil.which("espeak-ng"):
        return synthesise_with_command(text, voice, pitch, rate)
    return synthesise_with_library(text, voice, pitch, rate)


def synthesise_with_command(text: str, voice: str, pitch: int, rate: int) -> tuple[np.ndarray, int]:
    with tempfile.NamedTemporaryFile(suffix=".wav") as handle:
        try:
            subprocess.run(
                ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", handle.name, text],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except FileNotFoundError as err:
            raise DataError(f"espeak-ng is not installed ({INSTALL_HINT})") from err
        except subprocess.CalledProcessError as err:
            raise DataError(f"espeak-ng failed for voice {voice}: {err.stderr.decode(errors='replace').strip()}") from err
        samples, rate_hz = soundfile.read(handle.name, dtype="float32")
    return samples, rate_hz


def _library_location() -> tuple[str, str | None]:
    """(library path, voice data directory, or None for the library's built-in default)."""
    try:
        import espeakng_loader
    except ImportError:
        library = ctypes.util.find_library("espeak-ng")
        if library is None:
            raise DataError(f"neither the espeak-ng command nor libespeak-ng was found ({INSTALL_HINT})") from None
        return library, None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class _Library:
    """An initialised libespeak-ng; its callback collects the samples of the utterance being spoken."""

    def __init__(self) -> None:
        library, data = _library_location()
        self.lib = ctypes.CDLL(library)
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data and data.encode(), 0)
        if self.sample_rate <= 0:
            raise DataError(f"libespeak-ng ({library}) could not load its voice data ({INSTALL_HINT})")
        self.chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def speak(self, text: str, voice: str, pitch: int, rate: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise DataError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PITCH, pitch, 0)
        encoded = text.encode()
        self.chunks.clear()
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@lru_cache(maxsize=1)
def _library() -> _Library:
    return _Library()


def synthesise_with_library(text: str, voice: str, pitch: int, rate: int) -> tuple[np.ndarray, int]:
    engine = _library()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: speak, send the samples, and exit without returning into the caller's stack
        os.close(read_end)
        status = 1
        try:
            samples = engine.speak(text, voice, pitch, rate)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(samples.astype("<i2").tobytes())
            status = 0
        except DataError:
            status = 2
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code == 2:
        raise DataError(f"espeak-ng has no voice {voice!r}")
    if code != 0 or not payload:
        raise DataError(f"libespeak-ng failed (exit {code}) on voice {voice!r} for {text!r}")
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0, engine.sample_rate
