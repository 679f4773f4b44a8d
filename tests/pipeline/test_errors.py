"""Credentials never reach the terminal: ``pipeline.errors.redact`` masks the userinfo of every URL
and the values of the secret environment variables, in ``esrgan: error:`` lines and in every log
record once ``esrgan``'s ``main()`` has installed the redaction (MLflow's own loggers included)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from pipeline.errors import SECRET_ENV_VARS, install_log_redaction, redact

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pw@host:5000/api", "http://***@host:5000/api"),
        ("https://token@mlflow.example.com", "https://***@mlflow.example.com"),
        ("http://user:p%40ss%2Fw@host/x", "http://***@host/x"),
        ("http://user:p@ss@host/x", "http://***@host/x"),  # an @ in the password, not percent-encoded
        ("http://user:a/b@host/x", "http://***@host/x"),  # a / in the password, not percent-encoded
        ("s3://AKIA:secret@bucket/key", "s3://***@bucket/key"),
        ("to http://u:pw@h1/api failed; retry http://u:pw@h2", "to http://***@h1/api failed; retry http://***@h2"),
        (
            "MLflow tracking server http://127.0.0.1:9 is unreachable",
            "MLflow tracking server http://127.0.0.1:9 is unreachable",
        ),
        ("models:/esrgan-x4@champion not found", "models:/esrgan-x4@champion not found"),
        ("runs:/0123/model and user@example.com", "runs:/0123/model and user@example.com"),
        ("http://***@host", "http://***@host"),  # idempotent
    ],
)
def test_redact_masks_the_userinfo_of_urls(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("name", SECRET_ENV_VARS)
def test_redact_masks_secret_environment_values(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, SECRET)
    assert redact(f"auth failed with {SECRET} (and again: {SECRET})") == "auth failed with *** (and again: ***)"


def test_very_short_secret_values_do_not_garble_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a")
    assert redact("a model at a path") == "a model at a path"


@pytest.fixture
def redacting_logs() -> Iterator[None]:
    """``install_log_redaction()``, undone afterwards (record factory and root handlers' filters)."""
    factory = logging.getLogRecordFactory()
    handlers = {h: list(h.filters) for h in logging.getLogger().handlers}
    install_log_redaction()
    install_log_redaction()  # idempotent
    yield
    logging.setLogRecordFactory(factory)
    for handler, filters in handlers.items():
        handler.filters = filters


def test_log_records_are_redacted_even_on_loggers_that_do_not_propagate(
    redacting_logs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    stream = io.StringIO()
    logger = logging.getLogger("mlflow.test_redaction")  # like MLflow's: own handler, no propagation
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        logger.info("request to %s failed", "http://user:pw@host/api")
        logger.warning("S3 said %s", SECRET)
        try:
            raise ConnectionError("http://user:pw@host refused")
        except ConnectionError:
            logger.exception("boom at http://tok@host")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "request to http://***@host/api failed" in text
    assert "S3 said ***" in text
    assert "boom at http://***@host" in text and "ConnectionError: http://***@host refused" in text
    assert "pw@" not in text and "tok@" not in text and SECRET not in text


def test_main_installs_the_redaction(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import main

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):  # main() sets them
        monkeypatch.setenv(name, "1")
    factory = logging.getLogRecordFactory()
    try:
        assert main(["registry", "--tracking-uri", "http://user:pw@127.0.0.1:9", "list"]) == 2
        with caplog.at_level(logging.INFO):
            logging.getLogger("esrgan").info("server %s", "http://user:pw@host")
        assert caplog.messages[-1] == "server http://***@host"
    finally:
        logging.setLogRecordFactory(factory)
