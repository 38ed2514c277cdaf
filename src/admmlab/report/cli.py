"""``admmlab-report <study name or run id> [--out DIR] [--tracking-uri URI]``."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from admmlab.report import paper_table
from admmlab.report.build import REPORT_DIR_ENV, default_out, write_report
from admmlab.tracking import TrackingError, default_uri
from admmlab.tracking.reader import StudyNotFound


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="admmlab-report",
        description="Draw a study's figures and tables from MLflow and log them on its study "
        "run (artifact path report/).",
    )
    p.add_argument(
        "study",
        help="study name (its latest study run) or a study run id; 'paper_table' compares "
        "every chunk of the reproduction study with the paper's headline table",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default: reports/<study>/ in the project, or under "
        f"${REPORT_DIR_ENV})",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the "
        "project's mlruns/mlflow.db)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    uri = args.tracking_uri or default_uri()
    try:
        if args.study == paper_table.STUDY:
            folder = paper_table.write(uri, args.out or default_out(args.study))
            print(f"report: {folder / 'tables.md'}")
            return
        folder = write_report(args.study, uri=uri, out=args.out)
    except (StudyNotFound, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {folder / 'index.md'} (in a browser: {folder / 'index.html'})")


if __name__ == "__main__":
    main()
