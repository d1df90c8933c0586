"""The human-ranking answers (the paper's Table 2) in an SQLite file, one row per answer.

Each answer is one INSERT committed in its own transaction before the page confirms it, with
SQLite's default full sync of the rollback journal: a crash or a kill loses at most the answer
being saved, never an earlier one, and never leaves half a row.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from sdn.errors import UserError

CRITERIA = {"quality": "image quality", "correlation": "match to the caption"}  # the paper's two human ranks
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,          -- UTC, ISO 8601
    rater TEXT NOT NULL,         -- random id of one browser session: anonymous
    criterion TEXT NOT NULL,     -- 'quality' or 'correlation'
    caption TEXT NOT NULL,
    image_index INTEGER,         -- the caption's image in the cache
    models TEXT NOT NULL,        -- JSON list: the models in the order their drawings were shown
    ranks TEXT NOT NULL,         -- JSON list: the rank given to each shown drawing (1 = best)
    real_shown INTEGER NOT NULL  -- 1 if the real image was shown beside them
)"""


def _connect(path: str | Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("PRAGMA synchronous=FULL")
        return conn
    except sqlite3.Error as e:
        raise UserError(f"cannot open the ranking database {path}: {e}") from None


def create(path: str | Path) -> Path:
    """Create the file and its table if absent; check that an existing file is a ranking database."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"--rank-db: folder {path.parent} does not exist")
    conn = _connect(path)
    try:
        with conn:
            conn.execute(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(answers)")}
    except sqlite3.DatabaseError as e:
        raise UserError(f"{path} is not an SQLite ranking database: {e}") from None
    finally:
        conn.close()
    if not {"models", "ranks", "criterion"} <= columns:
        raise UserError(f"{path} has an 'answers' table that is not sdn's")
    return path


def check_ranks(ranks: list[int], count: int) -> None:
    if sorted(ranks) != list(range(1, count + 1)):
        raise UserError(f"give each drawing a different rank from 1 to {count} (1 = best)")


def add_answer(path: str | Path, rater: str, criterion: str, caption: str, image_index: int | None,
               models: list[str], ranks: list[int], real_shown: bool) -> int:
    """Store one answer in its own transaction; returns its row id."""
    if criterion not in CRITERIA:
        raise UserError(f"criterion must be one of {', '.join(CRITERIA)}")
    check_ranks(ranks, len(models))
    row = (datetime.now(timezone.utc).isoformat(timespec="seconds"), rater, criterion, caption, image_index,
           json.dumps(models), json.dumps(ranks), int(real_shown))
    conn = _connect(path)
    try:
        with conn:  # BEGIN ... COMMIT, or ROLLBACK on any error
            cursor = conn.execute("INSERT INTO answers (time, rater, criterion, caption, image_index, models, ranks, real_shown) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        return cursor.lastrowid
    finally:
        conn.close()


def read_answers(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no ranking database at {path}")
    conn = _connect(path)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM answers ORDER BY id").fetchall()
    except sqlite3.DatabaseError as e:
        raise UserError(f"{path} is not an sdn ranking database: {e}") from None
    finally:
        conn.close()
    return [{**dict(r), "models": json.loads(r["models"]), "ranks": json.loads(r["ranks"])} for r in rows]
