"""Fixtures of the object-storage tests (`pytest_plugins = ("storage_fixtures",)`): a local S3 server (moto's server
mode) on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    """A local S3 server (moto) on 127.0.0.1 with a bucket `rclip`; yields (endpoint, storage options, server)."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="rclip")
    options = {"endpoint": endpoint, "allow_http": "true", "region": "us-east-1"}
    try:
        yield endpoint, options, server
    finally:
        server.stop()
