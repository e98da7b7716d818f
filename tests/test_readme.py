"""The README's Python example runs and learns the true weights."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README shows a Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    import purestate as ps

    np.testing.assert_allclose(
        ps.get(namespace["states"], "w").ravel(), [1.0, -2.0, 0.5], atol=1e-3
    )
    assert int(ps.get(namespace["states"], "seen")) == 200 * 32
