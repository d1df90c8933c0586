"""`sdn serve` without a browser: request checks, batched drawing, interpolation, the ranking
database and `sdn rank-report` (the page itself: test_serve_browser.py)."""

import json
import math
import sqlite3

import pytest
import torch
from conftest import ColourEncoder, fit_colour_model

from sdn import cli
from sdn.errors import UserError
from sdn.serve import ranking_db
from sdn.serve.models import load_models, parse_captions, parse_steps
from sdn.serve.rank_report import rank_report, rank_table


@pytest.fixture(scope="module")
def colour_model(module_tmp):
    return fit_colour_model(module_tmp("colour"))


@pytest.fixture
def page(colour_model):
    from sdn.serve.app import DrawPage

    return DrawPage(load_models([str(colour_model)], []), None)


def colour_of(path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).float().mean((0, 1)) / 255


@pytest.mark.parametrize("text, message", [
    ("", "caption box is empty"),
    ("  \n \n", "caption box is empty"),
    ("red " * 76, "304 characters; at most 300"),
    ("\n".join(["red"] * 17), "17 captions: at most 16"),
    ("red\ud800", "not valid UTF-8"),
    (42, "must be text"),
])
def test_bad_captions_are_refused_with_one_clear_line(text, message):
    with pytest.raises(UserError, match=message):
        parse_captions(text)


def test_captions_are_one_per_line_with_blank_lines_ignored():
    assert parse_captions("a  red flower\n\n yellow petals \n") == ["a red flower", "yellow petals"]
    assert len(parse_captions("\n".join(["red"] * 16))) == 16


@pytest.mark.parametrize("steps, ok", [(2, True), (16, True), ("7", True), (17, False), (1, False), (2.5, False), ("x", False)])
def test_interpolation_steps_are_bounded(steps, ok):
    if ok:
        assert parse_steps(steps) == int(steps)
    else:
        with pytest.raises(UserError, match="steps must be"):
            parse_steps(steps)


def test_a_batch_of_requests_gets_each_its_own_drawings_and_a_bad_one_only_its_message(page, colour_model):
    name = str(colour_model)
    galleries, messages = page.draw(["a red flower", "", "yellow petals\na blue one", "x" * 301], [name] * 4)
    assert [len(g) for g in galleries] == [1, 0, 2, 0]
    assert "empty" in messages[1] and "at most 300" in messages[3]
    assert "2 request(s) in this batch" in messages[0]  # the two bad ones never reached the model
    wanted = {"red": ColourEncoder.colours["red"], "yellow": ColourEncoder.colours["yellow"], "blue": ColourEncoder.colours["blue"]}
    for (path, caption), colour in zip(galleries[0] + galleries[2], wanted.values()):
        assert torch.allclose(colour_of(path), torch.tensor(colour), atol=0.15), caption
    assert [caption for _, caption in galleries[2]] == ["yellow petals", "a blue one"]


def test_unknown_model_is_a_message_not_a_crash(page):
    galleries, messages = page.draw(["red"], ["no/such/model"])
    assert galleries == [[]] and "unknown model 'no/such/model'" in messages[0]


def test_interpolation_strip_goes_from_caption_a_to_caption_b(page, colour_model):
    items, message = page.interpolate("red", "yellow", 3, str(colour_model))
    assert [label for _, label in items] == ["1.00 A + 0.00 B", "0.50 A + 0.50 B", "0.00 A + 1.00 B"]
    green = [colour_of(path)[1].item() for path, _ in items]
    assert green[0] < 0.3 and green[2] > 0.7  # red, then yellow (whose green channel is high)
    assert page.interpolate("red", "yellow", 17, str(colour_model))[0] == []
    assert "between 2 and 16" in page.interpolate("red", "yellow", 17, str(colour_model))[1]
    assert "caption B is empty" in page.interpolate("red", " ", 3, str(colour_model))[1]


def test_models_load_from_a_run_folder_or_by_packaged_name(colour_model, monkeypatch):
    import sys
    from types import SimpleNamespace

    import sdn

    [model] = load_models([str(colour_model.parent)], [])  # a run folder holding only its export
    assert model.name == str(colour_model.parent) and model.n_outputs == 1
    packaged = SimpleNamespace(list_models=lambda: ["tiny-colours"], model_path=lambda name: colour_model)
    monkeypatch.setitem(sys.modules, "sdn.pretrained", packaged)
    monkeypatch.setattr(sdn, "pretrained", packaged, raising=False)
    [model] = load_models([], ["tiny-colours"])
    assert model.name == "tiny-colours" and model.draw(["red"]).shape == (1, 1, 3, 32, 32)
    with pytest.raises(UserError, match="'other' is not a packaged model; choose from: tiny-colours"):
        load_models([], ["other"])


def test_model_choice_errors(colour_model):
    with pytest.raises(UserError, match="at least one model"):
        load_models([], [])
    with pytest.raises(UserError, match="given twice"):
        load_models([str(colour_model), str(colour_model)], [])
    with pytest.raises(UserError, match="packaged model"):
        load_models([], ["no-such-packaged-model"])


def test_answers_are_rows_read_back_and_bad_rankings_are_refused(tmp_path):
    db = ranking_db.create(tmp_path / "ranks.sqlite")
    ranking_db.add_answer(db, "rater1", "quality", "a red flower", 3, ["B", "A"], [2, 1], True)
    for bad in ([1, 1], [0, 1], [1, 2, 3]):
        with pytest.raises(UserError, match="different rank from 1 to 2"):
            ranking_db.add_answer(db, "rater1", "quality", "a red flower", 3, ["B", "A"], bad, True)
    with pytest.raises(UserError, match="criterion"):
        ranking_db.add_answer(db, "rater1", "beauty", "a red flower", 3, ["B", "A"], [1, 2], True)
    rows = ranking_db.read_answers(ranking_db.create(db))  # reopening keeps the rows
    assert [(r["rater"], r["caption"], r["models"], r["ranks"], r["real_shown"]) for r in rows] == \
        [("rater1", "a red flower", ["B", "A"], [2, 1], 1)]
    (tmp_path / "other.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match="ranking database .* file is not a database"):
        ranking_db.create(tmp_path / "other.sqlite")


def test_rank_report_numbers_on_a_hand_made_database(tmp_path, capsys):
    db = tmp_path / "hand.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(ranking_db.SCHEMA)
    answers = [  # (rater, criterion, shown order, ranks)
        ("r1", "quality", ["sdn", "stage1", "image"], [1, 2, 3]),
        ("r1", "quality", ["image", "sdn", "stage1"], [3, 2, 1]),
        ("r2", "quality", ["stage1", "image", "sdn"], [3, 2, 1]),
        ("r2", "correlation", ["sdn", "image", "stage1"], [2, 1, 3]),
    ]
    with conn:
        for rater, criterion, models, ranks in answers:
            conn.execute("INSERT INTO answers (time, rater, criterion, caption, image_index, models, ranks, real_shown) "
                         "VALUES ('2026-01-01T00:00:00+00:00', ?, ?, 'c', 0, ?, ?, 0)", (rater, criterion, json.dumps(models), json.dumps(ranks)))
    conn.close()
    # By hand: quality ranks sdn 1, 2, 1 -> mean 4/3, s.d. sqrt(1/3), s.e. 1/3; stage1 2, 1, 3 -> mean 2,
    # s.d. 1, s.e. 1/sqrt(3); image 3, 3, 2 -> 8/3, sqrt(1/3), 1/3.
    quality = {r["model"]: r for r in rank_table(ranking_db.read_answers(db))["quality"]}
    assert [r for r in quality] == ["sdn", "stage1", "image"]  # best first
    assert quality["sdn"]["mean"] == pytest.approx(4 / 3) and quality["sdn"]["se"] == pytest.approx(1 / 3)
    assert quality["sdn"]["sd"] == pytest.approx(math.sqrt(1 / 3)) and quality["sdn"]["n"] == 3
    assert quality["stage1"]["mean"] == pytest.approx(2) and quality["stage1"]["se"] == pytest.approx(1 / math.sqrt(3))
    assert quality["image"]["mean"] == pytest.approx(8 / 3)
    assert cli.main(["rank-report", "--rank-db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "4 answers by 2 rater(s)" in out
    assert "| sdn | 1.33 | 0.33 | 0.58 | 3 |" in out and "| stage1 | 2.00 | 0.58 | 1.00 | 3 |" in out
    assert "| image | 1.00 | nan | nan | 1 |" in out.split("(correlation)")[1]  # one answer: no spread to estimate
    assert rank_report(str(db)).index("(quality)") < rank_report(str(db)).index("(correlation)")


def test_cli_refuses_bad_serve_settings_before_loading_anything(tmp_path, capsys):
    pytest.importorskip("gradio", reason="the web extra is not installed")
    assert cli.main(["serve"]) == 2
    assert "give at least one model" in capsys.readouterr().err
    assert cli.main(["serve", "--rank", "--checkpoint", "a", "--checkpoint", "b"]) == 2
    assert "--rank needs --data" in capsys.readouterr().err
    assert cli.main(["serve", "--rank", "--data", "x", "--checkpoint", "a"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert cli.main(["rank-report", "--rank-db", str(tmp_path / "none.sqlite")]) == 2
    assert "no ranking database" in capsys.readouterr().err
