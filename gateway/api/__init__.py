"""HTTP-facing pieces shared by every controller: problem+json errors and auth."""
