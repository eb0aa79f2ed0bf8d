"""Preparing the real corpora (MyST, CGN) into the JSONL manifests `data=myst` / `data=cgn` read.

```
python -m asr_peft.data.prepare myst <corpus_dir> <out_dir> [--keep-list FILE]
python -m asr_peft.data.prepare cgn <corpus_dir> <out_dir> [--components o,k,m] [--regions vl]
```
"""

from asr_peft.data.prepare.cgn import prepare_cgn
from asr_peft.data.prepare.myst import prepare_myst

__all__ = ["prepare_cgn", "prepare_myst"]
