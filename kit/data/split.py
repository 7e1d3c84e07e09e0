"""Deterministic train/validation/test split by organisation.

An organisation is its name plus its address (each branch of a chain is its
own organisation, as on Yandex Maps). All reviews of one organisation land in
one split, so evaluation never sees a place the model was trained on. The
split depends only on the organisation key and the seed, not on row order or
the machine, which makes `prepare` repeatable byte for byte.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "validation", "test")


def org_id(name: str | None, address: str) -> str:
    """A stable 16-hex-digit id for an organisation (case and spacing ignored).

    Example:
        >>> org_id("Пятёрочка", "Москва, ул. Ленина, 1") == org_id("пятёрочка ", "москва,  ул. ленина, 1")
        True
    """
    key = f"{' '.join((name or '').lower().split())}\x1f{' '.join(address.lower().split())}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def unit_hash(key: str, seed: int) -> float:
    """Map `key` and `seed` to a number in [0, 1), the same on every machine.

    Example:
        >>> 0.0 <= unit_hash("abc", 0) < 1.0
        True
    """
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(org: str, *, seed: int = 0, val_share: float = 0.05, test_share: float = 0.05) -> str:
    """The split of one organisation: `train`, `validation` or `test`.

    Example:
        >>> assign_split(org_id("Кафе", "Омск"), seed=0) in SPLITS
        True
    """
    u = unit_hash(org, seed)
    if u < test_share:
        return "test"
    if u < test_share + val_share:
        return "validation"
    return "train"


def check_shares(val_share: float, test_share: float) -> None:
    """Refuse shares that leave no room for training.

    Raises:
        UserError: when a share is outside [0, 0.5] or the two sum to ≥ 1.

    Example:
        >>> check_shares(0.05, 0.05)
    """
    from kit.errors import UserError

    for name, share in (("--val-share", val_share), ("--test-share", test_share)):
        if not 0.0 <= share <= 0.5:
            raise UserError(f"{name} must be between 0 and 0.5. Received: {name}={share}")
    if val_share + test_share >= 1.0:
        raise UserError(f"--val-share + --test-share must be below 1. Received: {val_share + test_share}")
