"""The shipped prior model file: a missing one is logged and said in the forecast's reason; a corrupt one is an
error that names the file and says to reinstall, with its shapes checked when it is loaded."""

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from foresail.autoscaler import prior
from foresail.autoscaler.forecast import DemandForecaster

T0 = 1_700_000_040.0
GOOD = json.loads(prior.PRIOR_PATH.read_text())


@pytest.fixture
def prior_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Point the shipped prior's path at another file; the real one is loaded again afterwards."""

    def point(path: Path) -> None:
        monkeypatch.setattr(prior, "PRIOR_PATH", path)
        prior.load_prior.cache_clear()

    yield point
    prior.load_prior.cache_clear()


def test_a_missing_prior_is_logged_and_named_in_the_reason_the_forecast_is_not_ready(tmp_path, prior_at, caplog):
    path = tmp_path / "prior.json"
    prior_at(path)
    with caplog.at_level(logging.WARNING, logger="foresail.autoscaler.prior"):
        fc = DemandForecaster()
    assert fc.prior_ is None and f"{path} is missing" in caplog.text and "reinstall foresail" in caplog.text
    fc.fit(T0 + 60 * np.arange(1, 100), np.full(99, 5.0))
    f = fc.predict(T0 + 60 * 100)
    assert not f.ready and f"no prior model ({path} is missing: reinstall foresail)" in f.reason


def _without(key: str) -> str:
    return json.dumps({k: v for k, v in GOOD.items() if k != key})


CORRUPT = {
    "truncated": (prior.PRIOR_PATH.read_text()[:5000], "Expecting ',' delimiter"),
    "not an object": ("[1, 2]", "it is not a JSON object"),
    "no coefficients": (_without("coef"), "it has no 'coef' entry"),
    "coefficient rows cut": (json.dumps({**GOOD, "coef": GOOD["coef"][:10]}),
                             "intercept has shape (60,), not (10,) as coef's horizons"),
    "a feature column cut": (json.dumps({**GOOD, "coef": [r[:-1] for r in GOOD["coef"]]}), "coef has shape (60, 31)"),
    "ragged rows": (json.dumps({**GOOD, "coef": [GOOD["coef"][0][:3]] + GOOD["coef"][1:]}),
                    "setting an array element with a sequence"),
    "residual columns cut": (json.dumps({**GOOD, "residuals": [r[:59] for r in GOOD["residuals"]]}),
                             "residuals has shape (8, 59), not (8, 60)"),
    "levels out of order": (json.dumps({**GOOD, "residual_levels": GOOD["residual_levels"][::-1]}),
                            "are not increasing levels in (0, 1)"),
    "a NaN": (json.dumps({**GOOD, "intercept": [float("nan")] + GOOD["intercept"][1:]}), "not all finite"),
}


@pytest.mark.parametrize("case", CORRUPT)
def test_a_corrupt_prior_is_an_error_that_names_the_file_and_how_to_fix_it(tmp_path, prior_at, case):
    text, why = CORRUPT[case]
    path = tmp_path / "prior.json"
    path.write_text(text)
    prior_at(path)
    with pytest.raises(ValueError) as raised:
        DemandForecaster()
    assert str(raised.value).startswith(f"cannot load the forecaster's prior model {path}: ")
    assert why in str(raised.value) and str(raised.value).endswith("; reinstall foresail")


def test_the_shipped_prior_passes_the_checks():
    model = prior.load_prior()
    assert model is not None and model.horizon_steps == 60 and model.coef.shape == (60, len(model.feature_names))
