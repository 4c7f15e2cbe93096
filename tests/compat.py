"""Test-only imports that moved between Airflow 3.1 (the floor CI job) and newer releases."""

from __future__ import annotations

from typing import Any

try:  # Airflow >= 3.2
    from airflow.dag_processing.dagbag import DagBag

    def sync_for_dag_test(dagbag: Any) -> None:
        """Nothing to do: ``dag.test()`` writes the DAG's bundle to the metadata DB itself."""

except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef,unused-ignore]

    def sync_for_dag_test(dagbag: Any) -> None:
        """Serialise ``dagbag``'s DAGs into the metadata DB, as ``airflow dags test`` does on 3.1.

        Airflow 3.1's ``dag.test()`` creates its DAG run from the latest serialised version in
        the DB and fails with "the dag is not serialized" when there is none (3.2+ syncs the
        bundle itself). The DAGs are recorded under the ``dags-folder`` bundle, which reads
        ``settings.DAGS_FOLDER``.
        """
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.models.dagbag import sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()
        sync_bag_to_db(dagbag, "dags-folder", None)


try:  # Airflow >= 3.2
    from airflow.sdk.serde import deserialize, serialize
except ImportError:  # Airflow 3.1
    from airflow.serialization.serde import deserialize, serialize  # type: ignore[no-redef,unused-ignore]

__all__ = ["DagBag", "deserialize", "serialize", "sync_for_dag_test"]
