"""Secrets at rest: encryption for values we must read back, hashes for values we only compare."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from borealis.files import private_dir

KEY_FILE_NAME = "secret.key"


class SecretBox:
    """Encrypts Dynatrace tokens and webhook secrets with a key that never enters the database."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._fernet = Fernet(key)

    def derive(self, purpose: str) -> str:
        """A separate key for another use (cookie signing, CSRF), so one leak does not expose the rest."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def from_passphrase(cls, passphrase: str) -> SecretBox:
        digest = hashlib.sha256(b"borealis-secret-box:" + passphrase.encode()).digest()
        return cls(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_key_file(cls, data_dir: Path) -> SecretBox:
        """Load the generated key, creating it (mode 0600) on first start."""
        path = private_dir(data_dir) / KEY_FILE_NAME
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "stored secret cannot be decrypted: BOREALIS_SECRET_KEY or the key file changed"
            ) from exc


def new_secret(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def digest(value: str) -> str:
    """SHA-256 of a high-entropy secret (API keys, webhook secrets): enough, and fast to look up."""
    return hashlib.sha256(value.encode()).hexdigest()


def matches(value: str, expected_digest: str) -> bool:
    return hmac.compare_digest(digest(value), expected_digest)
