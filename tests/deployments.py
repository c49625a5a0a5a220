"""S3 (moto) + PostgreSQL deployments for the tests: configuration sections and buckets.

The sections are what a deployment writes in its configuration file (see
``settings.s3-postgresql.example.json``), with short S3 timeouts and few attempts so
that an outage answers 503 within a few seconds. Databases come from ``tests.pg``.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3

REGION = "us-east-1"
CREDENTIALS = {"AccessKey": "testing", "SecretKey": "testing"}  # moto accepts any


def new_bucket() -> str:
    return f"dicomweb-{uuid.uuid4().hex[:24]}"


def s3_section(endpoint: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """``AwsS3Storage`` for moto: path-style addressing, the bucket created at start-up."""
    return {"BucketName": bucket, "Region": REGION, **CREDENTIALS, "Endpoint": endpoint,
            "VirtualAddressing": False, "CreateBucket": True, "ConnectionTimeout": 2,
            "RequestTimeout": 10, "MaxAttempts": 2, **overrides}


def postgresql_section(dsn: str, **overrides: Any) -> dict[str, Any]:
    """``PostgreSQL`` with the index in the database ``dsn`` names (a libpq conninfo)."""
    return {"EnableIndex": True, "ConnectionUri": dsn, "IndexConnectionsCount": 4,
            **overrides}


def s3_client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing")


def objects(endpoint: str, bucket: str) -> list[str]:
    """Names of every object in the bucket."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", ())]


def drop_bucket(endpoint: str, bucket: str) -> None:
    """Empty and remove a bucket (moto keeps everything in memory for the session)."""
    client = s3_client(endpoint)
    for name in objects(endpoint, bucket):
        client.delete_object(Bucket=bucket, Key=name)
    client.delete_bucket(Bucket=bucket)
