#!/usr/bin/env python3
"""Writes datasets/tests/fixtures/mfcc_reference.json: librosa MFCCs of three test signals with
exactly the KWT front-end parameters that datasets::mfcc implements.

Run from the repository root:
    python3 -m venv /tmp/mfccvenv && /tmp/mfccvenv/bin/pip install librosa
    /tmp/mfccvenv/bin/python experiments/mfcc_reference/make_fixture.py

The chirp and tone signals are closed-form (the Rust test regenerates them with the same
formulas); the noise signal is stored as int16 samples in the fixture.
"""
import json
import os

import librosa
import numpy as np
import scipy.fft

SR = 16000
N = 16000
PARAMS = dict(n_fft=480, hop_length=160, win_length=480, window="hann", center=False,
              power=2.0, n_mels=40, fmin=0.0, fmax=8000.0, htk=False, norm="slaney")


def chirp():
    t = np.arange(N, dtype=np.float64) / SR
    f0, f1, dur = 100.0, 7000.0, 1.0
    return (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur)))).astype(np.float32)


def tones():
    # First 0.2 s silent to exercise the log floor, then a 3-tone mixture with a slow AM envelope.
    t = np.arange(N, dtype=np.float64) / SR
    x = (0.3 * np.sin(2 * np.pi * 440.0 * t)
         + 0.2 * np.sin(2 * np.pi * 1234.5 * t + 0.3)
         + 0.1 * np.sin(2 * np.pi * 3000.0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)))
    x[: N // 5] = 0.0
    return x.astype(np.float32)


def noise_i16():
    rng = np.random.default_rng(1234)
    return np.clip(np.round(rng.normal(0.0, 0.1, N) * 32768.0), -32768, 32767).astype(np.int16)


def mfcc(y):
    s = librosa.feature.melspectrogram(y=y, sr=SR, **PARAMS)
    db = librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=None)
    c = scipy.fft.dct(db, axis=-2, type=2, norm="ortho")[:40]
    return c.T  # frames x coefficients


def sig6(a):
    return [float(f"{v:.6g}") for v in np.asarray(a, dtype=np.float64).ravel()]


def main():
    noise = noise_i16()
    signals = [("chirp", chirp(), None), ("tones", tones(), None),
               ("noise", noise.astype(np.float32) / 32768.0, noise)]
    out = {"librosa_version": librosa.__version__, "params": PARAMS,
           "log": "power_to_db(ref=1, amin=1e-10, top_db=None); dct type 2 ortho, 40 kept",
           "signals": []}
    for name, y, raw in signals:
        m = mfcc(y)
        assert m.shape == (98, 40), m.shape
        entry = {"name": name, "frames": m.shape[0], "coefficients": m.shape[1], "mfcc": sig6(m)}
        if raw is not None:
            entry["samples_i16"] = [int(v) for v in raw]
        out["signals"].append(entry)
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "datasets", "tests", "fixtures", "mfcc_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
