"""One-time verification codes (the job Twilio Verify does, on any provider): codes
(``codes``), the verification's life (``service``), ``/v1/verifications`` (``controller``)."""
