"""The admin login is throttled (django-axes): per address and per user, with a logged lockout."""
import logging

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password-1"


@pytest.fixture
def operator_user():
    return get_user_model().objects.create_superuser("boss", password=PASSWORD)


def log_in(client, password, username="boss", address="192.0.2.1"):
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password},
                           REMOTE_ADDR=address)
    return response.status_code, response.get("Location", "")


def test_five_wrong_passwords_from_one_address_lock_it_out_even_with_the_right_one(client, operator_user, caplog):
    with caplog.at_level(logging.WARNING):
        # The form again, with an error, four times; the fifth failure locks out.
        assert [log_in(client, f"guess-{i}")[0] for i in range(5)] == [200] * 4 + [429]
        assert log_in(client, PASSWORD)[0] == 429
    lockouts = [r.getMessage() for r in caplog.records if "Locking out" in r.getMessage()]
    assert lockouts and all("192.0.2.1" in line for line in lockouts)
    assert log_in(client, PASSWORD, address="192.0.2.2") == (429, "")  # and the user, from anywhere


def test_failures_spread_over_addresses_still_lock_the_user(client, operator_user):
    for i in range(5):
        log_in(client, f"guess-{i}", address=f"198.51.100.{i}")
    assert log_in(client, PASSWORD, address="203.0.113.9")[0] == 429


def test_a_right_password_before_the_limit_logs_in(client, operator_user):
    for i in range(3):
        log_in(client, f"guess-{i}")
    assert log_in(client, PASSWORD) == (302, "/admin/")


@pytest.mark.django_db(transaction=True)
def test_the_lockout_holds_over_two_server_processes(own_server):
    """Multi-process mode: the attempts are in the database every worker shares."""
    import urllib.error

    from tests.rigs.admin_http import AdminOverHttp

    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    first, second = own_server(), own_server()

    def attempt(server, password):
        try:
            AdminOverHttp(server.url()).log_in("boss", password)
            return "in"
        except AssertionError:
            return "refused"  # the form again
        except urllib.error.HTTPError as error:
            return error.code

    tries = [attempt(first, f"guess-{i}") for i in range(3)] + [attempt(second, f"guess-{i}") for i in range(3, 5)]
    assert tries == ["refused"] * 4 + [429]
    assert attempt(first, PASSWORD) == 429
