"""End-to-end tests record their runs on the session's Prefect server."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def _e2e_server(shared_server):
    yield shared_server
