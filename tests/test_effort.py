"""Coding effort: a framework file's own statements and its harness adapters are counted apart."""

from dlcompare.effort import coding_effort
from dlcompare.frameworks import NAMES, source_file


def test_adapters_are_counted_apart_from_the_own_code(tmp_path):
    source = tmp_path / "example_fw.py"
    source.write_text('''"""Docstrings and comments are not statements."""
import numpy as np

HARNESS_ADAPTERS = ("to_canonical", "weights")


# ---- model
def build(x):
    # a comment
    y = x + 1
    return y


def to_canonical(v):
    return v.T


# ---- training
class Implementation:
    def fit(self):
        for i in range(3):
            pass

    def weights(self):
        """Only for the harness."""
        a = 1
        return a
''')
    # model: def build + 2; training loop: the import, class header, def fit + for + pass = 5; adapters: the marker,
    # def to_canonical + return, def weights + 2 = 6
    assert coding_effort(source) == {"model": 3, "training_loop": 5, "adapters": 6}


def test_every_framework_file_marks_its_adapters():
    for name in NAMES:
        effort = coding_effort(source_file(name))
        assert effort["adapters"] > 3 and effort["model"] > 20 and effort["training_loop"] > 20, (name, effort)


def test_a_misspelt_adapter_name_is_an_error_not_own_code(tmp_path):
    import pytest

    source = tmp_path / "example_fw.py"
    source.write_text('HARNESS_ADAPTERS = ("weigths",)\n# ---- model\n# ---- training\nclass Implementation:\n'
                      '    def weights(self):\n        return 1\n')
    with pytest.raises(ValueError, match="HARNESS_ADAPTERS names weigths, which the file does not define"):
        coding_effort(source)


def test_a_file_without_its_section_lines_is_an_error_not_a_silent_split(tmp_path):
    import pytest

    source = tmp_path / "example_fw.py"
    source.write_text("HARNESS_ADAPTERS = ()\n# ---- model\ndef build():\n    return 1\n")
    with pytest.raises(ValueError, match="no '# ---- training' section line"):
        coding_effort(source)
    source.write_text("# ---- training\n# ---- model\ndef build():\n    return 1\n")
    with pytest.raises(ValueError, match="comes before"):
        coding_effort(source)
