"""The commands' checks of the files they will write (foresail/checks.py)."""

import pytest

from foresail.checks import check_plot


def test_a_plot_without_an_extension_is_a_png_and_one_with_a_known_extension_keeps_it(tmp_path):
    assert check_plot("--plot", str(tmp_path / "p")) == str(tmp_path / "p.png")
    assert check_plot("--plot", str(tmp_path / "p.svg")) == str(tmp_path / "p.svg")


@pytest.mark.parametrize("name, message", [("p.txt", "the name must end in one of"),
                                           ("no-such-folder/p.png", "is not a folder this user can write to")])
def test_a_plot_that_cannot_be_written_names_the_flag_and_why(tmp_path, name, message):
    with pytest.raises(ValueError, match=message) as err:
        check_plot("--plot", str(tmp_path / name))
    assert str(err.value).startswith("--plot ")


def test_a_bare_plot_name_is_refused_where_its_png_would_be_a_folder(tmp_path):
    (tmp_path / "p.png").mkdir()
    with pytest.raises(ValueError, match="is a folder, not a file"):
        check_plot("--plot", str(tmp_path / "p"))
