"""The one webhook route for every provider: detect, verify, parse, dedupe, apply, ack."""
