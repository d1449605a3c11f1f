"""openvino stays optional: graphopt imports without it and says how to install it."""

import subprocess
import sys

_NO_OPENVINO = """
import sys
sys.modules['openvino'] = None  # any 'import openvino' now raises ImportError
import graphopt
try:
    graphopt.export_openvino(None, 'model.xml')
except graphopt.GraphoptError as e:
    print('ERR', e)
"""


def test_graphopt_imports_without_openvino_and_says_how_to_install():
    out = subprocess.run([sys.executable, "-c", _NO_OPENVINO], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'graphopt[openvino]'" in out.stdout
