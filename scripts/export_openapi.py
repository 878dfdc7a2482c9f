"""Write the OpenAPI document of the application, as a running server serves it at /openapi.json.

The application is built on a throwaway SQLite database in a temporary folder, with no .env file read:
the document depends on the code alone. ``make docs`` runs this before building the site.

    .venv/bin/python scripts/export_openapi.py [docs/api/openapi.json]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from borealis.app import create_app
from borealis.config import Settings
from borealis.db import Database


def export(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="borealis-openapi-") as folder:
        data_dir = Path(folder)
        settings = Settings(
            _env_file=None,
            data_dir=data_dir,
            database_url=f"sqlite:///{data_dir / 'borealis.db'}",
            secret_key="openapi-export",  # nothing is encrypted with it
        )
        database = Database(settings.effective_database_url)
        try:
            document = create_app(settings, database).openapi()
        finally:
            database.dispose()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    export(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api/openapi.json"))
