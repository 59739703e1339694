import subprocess
import sys


def test_image_checking_imports_without_beam_tfx_or_tensorflow():
    """`finetune predict` checks images with it: it must not load the ingestion machinery."""
    code = ("import sys\n"
            "from tfx_finetune.components.image_example_gen import image_check\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('apache_beam', 'tfx', 'tensorflow'))\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
