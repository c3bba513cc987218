"""Codes, their hashes and the texts that carry them. Pure functions.

A code is ``length`` decimal digits from the OS's CSPRNG. Only ``SHA-256(salt, id, code)``
is stored, compared in constant time. A 6-digit code has a million values, so no hash
stops someone who has read the database from finding it offline: what protects a code
is its short life, the bounded number of checks and the per-number send limit; the hash
keeps it out of plain sight (dumps, support queries, logs of SQL).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

MIN_LENGTH, MAX_LENGTH, DEFAULT_LENGTH = 4, 10, 6
MAX_TEMPLATE = 320

#: By language; ``{code}`` is the code and ``{minutes}`` its lifetime.
TEMPLATES = {
    "en": "Your verification code is {code}. It expires in {minutes} minutes.",
    "fr": "Votre code de vérification est {code}. Il expire dans {minutes} minutes.",
    "de": "Ihr Bestätigungscode lautet {code}. Er läuft in {minutes} Minuten ab.",
    "es": "Tu código de verificación es {code}. Caduca en {minutes} minutos.",
    "it": "Il tuo codice di verifica è {code}. Scade tra {minutes} minuti.",
    "pt": "Seu código de verificação é {code}. Expira em {minutes} minutos.",
}


def new_code(length: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(length))


def new_salt() -> str:
    return secrets.token_hex(16)


def code_hash(salt: str, verification_id: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{verification_id}:{code}".encode()).hexdigest()


def matches(stored_hash: str, salt: str, verification_id: str, presented: str) -> bool:
    """Constant time in the presented code (the comparison, not an early exit)."""
    return hmac.compare_digest(stored_hash, code_hash(salt, verification_id, presented))


def template_for(locale: str) -> str | None:
    """The default text for ``fr``, ``fr-CA``, ``pt_BR``…; ``None`` for a language we lack."""
    language = locale.replace("_", "-").split("-")[0].lower()
    return TEMPLATES.get(language)


def check_template(template: str) -> str | None:
    """Why a custom template cannot be used, or ``None``."""
    if template.count("{code}") != 1:
        return "must contain {code} exactly once"
    if len(template) > MAX_TEMPLATE:
        return f"at most {MAX_TEMPLATE} characters"
    return None


def render(template: str, code: str, minutes: int) -> str:
    # Plain replacement, never str.format: a template is the app's text, not code.
    return template.replace("{minutes}", str(minutes)).replace("{code}", code)
