"""``/dashboard``: the operator's page of cost and delivery per provider and country,
server-rendered HTML with inline SVG charts (no script at all)."""

from gateway.dashboard.controller import dashboard

__all__ = ["dashboard"]
