"""Moved: :mod:`airflow_provider_babou.connection` (``ClientConfig``), ``hooks._http`` (``BearerAuth``)."""

from airflow_provider_babou.connection import ClientConfig
from airflow_provider_babou.hooks._http import BearerAuth

__all__ = ["BearerAuth", "ClientConfig"]
