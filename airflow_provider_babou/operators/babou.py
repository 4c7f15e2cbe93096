"""Every Babou operator, importable from one stable path (each lives in a module of its own)."""

from __future__ import annotations

from airflow_provider_babou.operators.asset import BabouUploadAssetOperator
from airflow_provider_babou.operators.campaign import BabouCampaignOperator, campaign_chunks
from airflow_provider_babou.operators.chapter import BabouCreateChapterOperator
from airflow_provider_babou.operators.download import BabouDownloadExportOperator
from airflow_provider_babou.operators.export import BabouStartExportOperator
from airflow_provider_babou.operators.project import BabouCreateProjectOperator
from airflow_provider_babou.operators.prompt import BabouSubmitPromptOperator
from airflow_provider_babou.operators.video import BabouGenerateVideoOperator

__all__ = [
    "BabouCampaignOperator",
    "BabouCreateChapterOperator",
    "BabouCreateProjectOperator",
    "BabouDownloadExportOperator",
    "BabouGenerateVideoOperator",
    "BabouStartExportOperator",
    "BabouSubmitPromptOperator",
    "BabouUploadAssetOperator",
    "campaign_chunks",
]
