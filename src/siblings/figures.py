"""The report's figures by name, each with the HTML report category it is filed under.

Free of plotting imports, because the workflow reads it while it plans (the report rule's
outputs are ``reports/<name>/<figure>.png`` and ``.pdf``); :data:`siblings.report.DRAW`
says how each is drawn.
"""

from __future__ import annotations

FIGURES: dict[str, str] = {
    "frontier": "Claims",
    "amplification": "Claims",
    "transfer_success": "Transfer",
    "query_success": "Queries",
    "accuracy_vs_size": "Efficiency",
    "similarity": "Similarity",
    "defense": "Defense",
    "lambda_sweep": "Defense",
}
