"""Consent: the STOP/START ledger shared by every provider and app, the keywords people
text (``keywords``), the ledger itself (``ledger``), what an inbound keyword does
(``inbound``), the send path's check (``guard``) and ``/v1/consents``, ``/v1/opt-outs``
(``api``).

Kept import-light: ``gateway.settings`` imports ``keywords`` at start-up.
"""
