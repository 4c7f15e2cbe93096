"""Test-only imports that moved between Airflow 3.1 (the floor CI job) and newer releases."""

from __future__ import annotations

try:  # Airflow >= 3.2
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef,unused-ignore]

try:  # Airflow >= 3.2
    from airflow.sdk.serde import deserialize, serialize
except ImportError:  # Airflow 3.1
    from airflow.serialization.serde import deserialize, serialize  # type: ignore[no-redef,unused-ignore]

__all__ = ["DagBag", "deserialize", "serialize"]
