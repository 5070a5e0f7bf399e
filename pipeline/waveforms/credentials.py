"""Accounts for restricted data: from the environment or a named secret, never from a config.

A section that needs an account (an FDSN service with ``restricted: true``, Hi-net) names at
most a secret (``secret_block``), resolved by the orchestration layer (a Prefect Secret
holding ``'user:password'``); without one, the account comes from two environment variables.
The password never enters a log line, an error message or a ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.errors import EqcatInputError
from pipeline.waveforms.params import FDSNService

#: Environment variables of an FDSN account (HTTP Digest user name and password).
FDSN_ENV = ("FDSN_USER", "FDSN_PASSWORD")
#: Environment variables of a Hi-net account.
HINET_ENV = ("HINET_USER", "HINET_PASSWORD")


class CredentialsError(EqcatInputError):
    """An account is needed and missing or malformed; retrying cannot help."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password (the password is left out of ``repr``); ``origin`` says
    where they came from (the environment variables or the secret's name), for messages."""

    user: str
    password: str = field(repr=False)
    origin: str = ""


def resolve_credentials(
    what: str,
    env: tuple[str, str],
    secret_block: str | None,
    secret_loader: Callable[[str], str] | None,
    field_name: str,
) -> Credentials:
    """The account of ``what`` (e.g. ``'FDSN service X'``): the secret ``secret_block`` when
    named, else the environment variables ``env`` (user, password).

    Raises:
        CredentialsError: naming what is missing and where it is looked for (``field_name``:
            the config field of the secret's name); never the values.
    """
    if secret_block:
        if secret_loader is None:
            raise CredentialsError(
                f"{what}: secret {secret_block!r} is configured but no secret loader was given "
                f"(run through the Prefect flow, or set {env[0]}/{env[1]} and drop "
                f"{field_name})"
            )
        try:
            value = secret_loader(secret_block)
        except Exception as exc:  # noqa: BLE001 - the store's own errors: one line, no retry
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CredentialsError(
                f"{what}: secret {secret_block!r} ({field_name}) could not be read: {reason}"
            ) from None
        user, sep, password = str(value).strip().partition(":")  # a pasted trailing newline
        if not (sep and user and password):
            raise CredentialsError(f"{what}: secret {secret_block!r} must hold 'user:password'")
        return Credentials(user, password, f"secret {secret_block!r}")
    user, password = os.environ.get(env[0], ""), os.environ.get(env[1], "")
    if not (user and password):
        if user or password:  # one of the two: say which, it looks set to whoever set one
            unset, given = (env[1], env[0]) if user else (env[0], env[1])
            wanted = f"{unset} is not set (or empty) while {given} is; set both"
        else:
            wanted = f"set the environment variables {env[0]} and {env[1]}"
        raise CredentialsError(
            f"{what} needs credentials: {wanted}, or name a secret in {field_name}"
        )
    return Credentials(user, password, f"{env[0]}/{env[1]}")


def fdsn_credentials(
    cfg: FDSNService, field_prefix: str, secret_loader: Callable[[str], str] | None = None
) -> Credentials | None:
    """The account for an FDSN section; None when it is not ``restricted``.
    ``field_prefix`` names the section, e.g. ``'waveforms.source'``."""
    if not cfg.restricted:
        return None
    return resolve_credentials(
        f"{field_prefix} ({cfg.base_url}, restricted)",
        FDSN_ENV,
        cfg.secret_block,
        secret_loader,
        f"{field_prefix}.secret_block",
    )
