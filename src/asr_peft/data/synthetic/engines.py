"""The offline speech synthesisers: libespeak-ng (through ctypes) and the flite command.

libespeak-ng comes from the PyPI package `espeakng-loader` when it is installed (no root needed; it
bundles the library and its data), otherwise from the system (Debian: `apt-get install espeak-ng`).
The library keeps state from one utterance to the next (its pitch-flutter phase, for one), so the
same call in one process does not give the same samples twice. Each utterance is therefore
synthesised in a child forked from a process whose library is initialised but has never spoken:
every utterance starts from the same state, whatever ran before it, in whichever worker.
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

ESPEAK_INSTALL = "install the PyPI package espeakng-loader, or espeak-ng with apt-get (see README)"
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1
_RATE, _PITCH = 1, 3  # espeak_PARAMETER


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _espeak_location() -> tuple[str, str | None]:
    """(library path, data directory or None for the library's built-in default)."""
    try:
        import espeakng_loader
    except ImportError:
        library = ctypes.util.find_library("espeak-ng")
        if library is None:
            raise DataError(f"libespeak-ng was not found: {ESPEAK_INSTALL}") from None
        return library, None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class _Espeak:
    """An initialised libespeak-ng; `chunks` collects the samples its callback receives."""

    def __init__(self) -> None:
        library, data = _espeak_location()
        self.lib = ctypes.CDLL(library)
        self.lib.espeak_Info.restype = ctypes.c_char_p
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data and data.encode(), 0)
        if self.sample_rate <= 0:
            raise DataError(f"libespeak-ng ({library}) could not load its data: {ESPEAK_INSTALL}")
        self.version = self.lib.espeak_Info(None).decode()
        self.chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def speak(self, text: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise DataError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, rate_wpm, 0)
        self.lib.espeak_SetParameter(_PITCH, pitch, 0)
        encoded = text.encode()
        self.chunks.clear()
        self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@lru_cache(maxsize=1)
def _espeak() -> _Espeak:
    return _Espeak()


def espeak_version() -> str:
    return _espeak().version


def espeak(text: str, voice: str, rate_wpm: int, pitch: int) -> tuple[np.ndarray, int]:
    """Synthesise with espeak-ng in a forked child (see the module docstring); int16 samples and their rate."""
    engine = _espeak()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: speak, send the samples, exit without returning into the caller's stack
        os.close(read_end)
        status = 1
        try:
            samples = engine.speak(text, voice, rate_wpm, pitch)
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
        raise DataError(f"espeak-ng failed (exit {code}) on voice {voice!r} for text {text!r}")
    return np.frombuffer(payload, dtype="<i2"), engine.sample_rate


def flite_available() -> bool:
    return shutil.which("flite") is not None


def flite_version() -> str:
    if not flite_available():
        raise DataError("flite is not installed (apt-get install flite), or generate without it (--no-flite)")
    report = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in report.splitlines() if "version:" in line), report.strip())


def flite(text: str, voice: str, f0_hz: float, duration_stretch: float) -> tuple[np.ndarray, int]:
    """Synthesise with the flite command (a fresh process each time, so reproducible); int16 samples."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "flite.wav")
        command = ["flite", "-voice", voice, "--setf", f"int_f0_target_mean={f0_hz:.1f}",
                   "--setf", f"duration_stretch={duration_stretch:.4f}", "-t", text, "-o", path]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=120)
        except FileNotFoundError:
            raise DataError("flite is not installed (apt-get install flite), or generate without it (--no-flite)") from None
        except subprocess.CalledProcessError as err:
            raise DataError(f"flite failed on voice {voice!r}: {err.stderr.decode(errors='replace').strip()}") from None
        samples, rate = soundfile.read(path, dtype="int16")
    return samples, rate
