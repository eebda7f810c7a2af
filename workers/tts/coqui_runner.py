"""Speaks one text with a local coqui-tts model; run by `coqui.CoquiEngine` as a child.

Runs under the Python that has coqui-tts and torch, which need not have
Rundruf: standard library and coqui-tts only. Downloads are off: the Hugging
Face libraries are told they are offline, coqui's model manager refuses, and
sockets cannot connect, so a model that wants anything from the network fails
here instead of fetching it.

    python -I coqui_runner.py synthesize < request.json
        request: {"model_path", "config_path", "text", "language", "speaker", "out"};
        the WAV goes to "out"; on failure the last stderr line says why, exit code 3.
    python -I coqui_runner.py tiny-model DIR
        writes DIR/model.pth and DIR/config.json: an untrained, tiny VITS model for
        tests and the benchmark (it speaks noise in the rhythm of the text).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _refuse(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("downloads are off in Rundruf: configure a local model")


def forbid_downloads() -> None:
    os.environ.update(_OFFLINE)
    socket.socket.connect = _refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = _refuse  # type: ignore[method-assign]
    socket.create_connection = _refuse
    from TTS.utils import manage  # type: ignore[import-not-found]

    manage.ModelManager.download_model = _refuse
    manage.ModelManager.download_fairseq_model = _refuse


def synthesize(request: dict[str, Any]) -> None:
    forbid_downloads()
    from TTS.api import TTS  # type: ignore[import-not-found]

    # coqui prints progress and warnings on stdout; keep them with the diagnostics.
    with contextlib.redirect_stdout(sys.stderr):
        tts = TTS(
            model_path=request["model_path"], config_path=request["config_path"], progress_bar=False
        )
        options: dict[str, str] = {}
        if tts.is_multi_lingual:
            options["language"] = request["language"]
        if tts.is_multi_speaker:
            options["speaker"] = request.get("speaker") or tts.speakers[0]
        tts.tts_to_file(text=request["text"], file_path=request["out"], **options)


def tiny_model(directory: Path) -> None:
    """A VITS model small enough to build and run in about a second, untrained."""
    import torch  # type: ignore[import-not-found]
    from TTS.tts.configs.shared_configs import CharactersConfig  # type: ignore[import-not-found]
    from TTS.tts.configs.vits_config import VitsConfig  # type: ignore[import-not-found]
    from TTS.tts.models.vits import Vits, VitsArgs  # type: ignore[import-not-found]

    torch.manual_seed(0)
    args = VitsArgs(
        hidden_channels=16,
        num_layers_text_encoder=1,
        num_layers_flow=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_initial_channel_decoder=32,
        init_discriminator=False,
    )
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzÄÖÜäöüß"
    characters = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters",
        pad="<PAD>",
        eos="<EOS>",
        bos="<BOS>",
        blank="<BLNK>",
        characters=letters,
        punctuations="!'(),-.:;? ",
        phonemes=None,
    )
    config = VitsConfig(model_args=args, characters=characters, use_phonemes=False)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):
        model = Vits(config)
    torch.save({"model": model.state_dict()}, directory / "model.pth")
    config.save_json(str(directory / "config.json"))


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["synthesize"]:
            synthesize(json.load(sys.stdin))
        elif argv[:1] == ["tiny-model"] and len(argv) == 2:
            tiny_model(Path(argv[1]))
        else:
            usage = "usage: coqui_runner.py synthesize < request.json | tiny-model DIR"
            print(usage, file=sys.stderr)
            return 2
    except Exception as exc:  # the parent reads the last line as the reason
        import traceback

        traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
