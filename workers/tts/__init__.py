"""Text-to-speech: pending announcements become audio (`synthesis.synthesize_announcement`).

Engines (`engine.Engine`) are chosen by ``RUNDRUF_TTS_ENGINE``: `espeak` (espeak-ng,
the default) and `coqui` (a local coqui-tts model, run by `coqui_runner` under the
Python that has it). See docs/decisions/tts-engines.md.
"""
