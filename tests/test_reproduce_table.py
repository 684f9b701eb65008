"""``reproduce``'s table marks the numbers that the authors' code prints as NaN (a class never predicted, never
present, or without a true positive), compared with a re-creation of their Evaluator (tests/test_protocol.py)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_protocol import AuthorsEvaluator

from sam_cffnet.metrics import metrics_from_confusion
from sam_cffnet.reproduce import RUNS, write_table

#: cm[truth, prediction] (class 1 = landslide), one per run of the table.
CASES = {
    'landslide never predicted': [[90, 0], [10, 0]],
    'background never predicted': [[0, 70], [0, 30]],
    'no true positive': [[80, 5], [15, 0]],
    'no landslide present': [[95, 5], [0, 0]],
    'only landslide, all found': [[0, 0], [0, 100]],
    'every class predicted and right somewhere': [[80, 5], [5, 10]],
}


def authors_macro(cm: list[list[int]]) -> dict[str, float]:
    """The authors' macro P/R/F1 of a confusion matrix, through their Evaluator re-created from their code."""
    theirs = AuthorsEvaluator()
    theirs.confusion_matrix = np.array(cm, dtype=float)
    result = theirs.result()
    return {k: result[k] for k in ('macro_precision', 'macro_recall', 'macro_f1')}


def test_table_marks_where_the_authors_code_prints_nan(tmp_path: Path) -> None:
    assert len(RUNS) >= len(CASES)
    expected = {}
    for run, (case, cm) in zip(RUNS, CASES.items(), strict=False):
        values = {k: float(v) for k, v in metrics_from_confusion(torch.tensor(cm)).items()}  # what validate logs
        (tmp_path / run.name).mkdir()
        (tmp_path / run.name / 'result.json').write_text(json.dumps({
            'run': run.name, 'epochs': 1, 'best_epoch': 1, 'best_checkpoint': 'x.ckpt', 'dry_run': True,
            'metrics': {'val': values},
        }))  # fmt: skip
        expected[run.name] = (case, {k for k, v in authors_macro(cm).items() if math.isnan(v)})
    assert any(nan for _, nan in expected.values()) and any(not nan for _, nan in expected.values())
    md, table_csv = write_table(tmp_path)
    rows = {r['run']: r for r in csv.DictReader(table_csv.open(newline=''))}
    for name, (case, nan) in expected.items():
        assert set(rows[name]['authors_nan'].split()) == nan, case
    lines = {line.split(' | ')[0][2:]: line for line in md.read_text().splitlines() if line.startswith('| sam')}
    for name, (case, nan) in expected.items():
        assert lines[name].count(' †') == len(nan), case
    assert "**†**: the authors' code prints NaN here" in md.read_text()


@pytest.mark.parametrize('cm', list(CASES.values()), ids=list(CASES))
def test_authors_nan_agrees_with_the_authors_evaluator(cm: list[list[int]]) -> None:
    from sam_cffnet.reproduce import authors_nan

    values = {k: float(v) for k, v in metrics_from_confusion(torch.tensor(cm)).items()}
    assert set(authors_nan(values)) == {k for k, v in authors_macro(cm).items() if math.isnan(v)}
