"""lumamba: research-only EEG screening with LuMamba. Not a medical device; no clinical decisions.

Pipeline, one module per stage (ARCHITECTURE.md)::

    edf.py / recording.py → montage.py → preprocess.py → inference.py (model/) → report.py
    screening.py and batch.py run the screen job; train.py / evaluate.py fine-tune and measure heads.

The Python API (``lumamba_cli.api``, imported on first use so that ``import lumamba_cli`` stays light)::

    import lumamba_cli as lm
    lm.screen(source, tasks=("qc", "tuab"), head=None, **options) -> ScreenResult
    lm.encode(source, encoder=None, pool="mean") -> Embeddings
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "RESEARCH USE ONLY: lumamba is not a medical device. Its outputs have not been clinically validated "
    "and must not be used for diagnosis, treatment or any clinical decision."
)

_API = ("screen", "encode", "ScreenResult", "TaskResult", "Embeddings")

__all__ = ["__version__", "DISCLAIMER", *_API]


def __getattr__(name: str):
    if name in _API:
        from lumamba_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'lumamba_cli' has no attribute {name!r}")
