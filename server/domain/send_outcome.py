"""What one attempt to send a superlike did: the answer of the storage's one write call.

Storage reads the rules' facts, applies the rules (server/domain/superlike_rules.py) and, when they
allow and the idempotency key is unused, debits the sender, records the host's credit and stores the
superlike with its two ledger entries, atomically; then says which of these happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.domain import errors
from server.domain.superlike import Superlike
from server.domain.superlike_rules import SuperlikeFacts, refusal


@dataclass(frozen=True, slots=True)
class Charged:
    """The new superlike, charged and stored."""

    superlike: Superlike


@dataclass(frozen=True, slots=True)
class Replayed:
    """A superlike was already stored under the request's idempotency key; nothing was charged."""

    prior: Superlike


@dataclass(frozen=True, slots=True)
class Refused:
    """The rules refuse on `facts`; nothing was charged."""

    facts: SuperlikeFacts

    def error(self) -> errors.DomainError:
        refused = refusal(self.facts)
        if refused is None:
            raise AssertionError(f"refused on facts the rules allow: {self.facts}")
        return refused()


@dataclass(frozen=True, slots=True)
class Contended:
    """A concurrent writer got there between this attempt's read and its write (another server
    committed a superlike under the same key, or spent the coins the rules saw and a credit has
    arrived since): nothing was charged, and a new attempt reads what it did."""


SendOutcome = Charged | Replayed | Refused | Contended


def not_charged(facts: SuperlikeFacts) -> Refused | Contended:
    """The outcome of a write that charged nothing and found no prior superlike: the rules refused
    on what was read, or they allowed it and a concurrent writer changed the facts first."""
    return Refused(facts) if refusal(facts) is not None else Contended()
