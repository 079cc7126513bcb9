"""The hostile corpus of issue #14, one parametrized case per row (see ``corpus.py``).

Each row asserts the exact outcome: the error class (or acceptance), that the message names the file or the
parameter, that a CLI prints one error line and no traceback and exits non-zero, and that nothing stale or
half-written is left where a reader looks.
"""

from __future__ import annotations

import pytest

from astrid_pipeline_tests.hostile.corpus import Refused, all_cases, evaluate

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case, tmp_path):
    outcome = evaluate(case, tmp_path / "case")
    expected = "accepted_ok" if case.error is None else "named_errors"
    assert outcome.kind == expected, f"{case.id}: {outcome.kind}: {outcome.detail}"
    if case.error is not None and case.error is not Refused:
        assert type(outcome.error) is case.error, f"{case.id}: {type(outcome.error).__name__}: {outcome.error}"
    if case.cli and case.error is not None:
        assert outcome.value.rc != 0


def test_corpus_is_large_and_covers_every_item():
    assert len(CASES) >= 150
    assert {c.item for c in CASES} >= {1, 3, 4, 5, 6, 7}


def test_debug_shows_the_traceback(tmp_path):
    from astrid_pipeline.cli_ramps import main
    from astrid_pipeline.errors import InputFileError

    with pytest.raises(InputFileError, match="none.h5"):
        main(["--debug", "detect", str(tmp_path / "none.h5"), "-o", str(tmp_path / "out")])
    with pytest.raises(InputFileError, match="none.h5"):  # after the command too, as ohana-predict passes it
        main(["predict", "--input", str(tmp_path / "none.h5"), "--output", str(tmp_path / "p"), "--debug"])
