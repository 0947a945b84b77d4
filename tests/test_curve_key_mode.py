"""The mode of a CURVE secret key file: one other users can read is used with a warning;
the credential systemd hands over (systemd/curve.conf) is not warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import zmq

from aerd.security import CurveServer, apply_curve_server, keygen


def test_a_secret_key_others_can_read_is_warned_about(tmp_path: Path, caplog) -> None:
    _, secret = keygen(tmp_path / "k", "srv")
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as sock, caplog.at_level(logging.WARNING):
        apply_curve_server(ctx, sock, CurveServer(secret, None))
        assert not [r for r in caplog.records if "secret key" in r.getMessage()]
        secret.chmod(0o644)
        apply_curve_server(ctx, sock, CurveServer(secret, None))   # still used, and said
    [warn] = [r.getMessage() for r in caplog.records if "secret key" in r.getMessage()]
    assert str(secret) in warn and "644" in warn and "chmod 600" in warn


def test_a_systemd_credential_is_not_warned_about(tmp_path: Path, caplog, monkeypatch) -> None:
    """systemd/curve.conf hands the key over with LoadCredential: systemd writes it 0400,
    root's, and lets the service's user read it by an ACL entry, whose mask stat shows in the
    group bits (mode 440: measured with the ACL systemd sets). Only this service may read it
    and nobody may chmod it, so "other users can read it: chmod 600" at every start was false."""
    creds = tmp_path / "credentials"
    _, secret = keygen(creds, "server")
    secret.chmod(0o440)
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as sock, caplog.at_level(logging.WARNING):
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        apply_curve_server(ctx, sock, CurveServer(secret, None))
        assert not [r for r in caplog.records if "secret key" in r.getMessage()]
        monkeypatch.delenv("CREDENTIALS_DIRECTORY")   # the same file elsewhere: said
        apply_curve_server(ctx, sock, CurveServer(secret, None))
    assert [r for r in caplog.records if "secret key" in r.getMessage()]
