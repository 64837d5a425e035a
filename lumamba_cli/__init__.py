"""lumamba: research-only EEG screening with LuMamba. Not a medical device; no clinical decisions.

Pipeline, one module per stage::

    recording.py  → montage.py → preprocess.py → inference.py (model/) → report.py
    cli.py drives it; batch.py walks folders; train.py / evaluate.py / datasets.py fine-tune heads.
"""

import os as _os

# OpenMP's default spin-waiting makes idle threads burn the cores the busy ones need; on small or shared machines
# (2 cores) that cost 10x in model throughput. Must be set before torch loads its OpenMP runtime.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

DISCLAIMER = (
    "RESEARCH USE ONLY: lumamba is not a medical device. Its outputs have not been clinically validated "
    "and must not be used for diagnosis, treatment or any clinical decision."
)

__all__ = ["__version__", "DISCLAIMER"]
